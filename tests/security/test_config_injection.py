"""Hostile turnkit.toml values: every field that reaches a rendered file refuses them at load time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from turnkit import config
from turnkit.errors import ConfigError

#: Every config field whose value reaches a template, shell script or argv → a valid value.
#: `[regions.us]` is a static region (hosts), `[regions.eu]` an aws one.
FIELDS: dict[str, str] = {
    "project.domain": "acme.example.test",
    "project.realm": "acme.example.test",
    "coturn.cert_dir": "/etc/turnkit/certs",
    "coturn.version": "4.6.1",
    "signaling.host": "127.0.0.1",
    "signaling.server_name": "call.acme.example.test",
    "tls.acme_server": "https://acme.example.test/directory",
    "tls.email": "ops@acme.example.test",
    "tls.webroot": "/var/www/turnkit-acme",
    "tls.live_dir": "/etc/letsencrypt/live",
    "regions.us.hosts.name": "turn-1",
    "regions.us.hosts.address": "turn-1.us.acme.example.test",
    "regions.us.hosts.public_ip": "198.51.100.7",
    "regions.us.hosts.private_ip": "10.0.0.7",
    "regions.us.hosts.hostname": "turn-1.us.acme.example.test",
    "regions.eu.cloud_region": "eu-central-1",
    "regions.eu.instance_type": "t3.small",
    "regions.eu.ssh_cidr": "203.0.113.0/24",
    "regions.eu.ssh_user": "admin",
    "regions.eu.route53_zone": "acme.example.test",
}

#: What an attacker appends: end a line, a directive or a block, quote, expand, comment, NUL, flood.
HOSTILE: dict[str, str] = {
    "newline": "\nallow-loopback-peers",
    "semicolon": "; id",
    "double-quote": '"',
    "command-substitution": "$(id)",
    "backtick": "`id`",
    "close-brace": "}",
    "open-brace": "{",
    "hash": "#",
    "nul": "\x00",
    "10KB": "",  # see hostile_value
}


def hostile_value(base: str, kind: str) -> str:
    if kind == "10KB":
        step = "/a" if base.startswith(("/", "https://")) else ".a"
        return base + step * 5120
    return base + HOSTILE[kind]


def toml_text(values: dict[str, str]) -> str:
    """A static and an aws region plus the given dotted keys (JSON strings are TOML basic strings)."""
    sections: dict[str, list[str]] = {
        "regions.us": ['provider = "static"', "nodes = 1"],
        "regions.eu": ['provider = "aws"'],
        "regions.us.hosts": [],
    }
    for key, value in values.items():
        table, _, name = key.rpartition(".")
        sections.setdefault(table, []).append(f"{name} = {json.dumps(value)}")
    hosts = sections.pop("regions.us.hosts")
    if not any(h.startswith("address") for h in hosts):
        hosts.append('address = "198.51.100.9"')
    lines = []
    for table, items in sections.items():
        lines += [f"[{table}]", *items]
    lines += ["[[regions.us.hosts]]", *hosts]
    return "\n".join(lines) + "\n"


def load_with(tmp_path: Path, values: dict[str, str]) -> config.Config:
    path = tmp_path / "turnkit.toml"
    path.write_text(toml_text(values))
    return config.load(path)


def test_every_field_accepts_its_valid_value(tmp_path: Path) -> None:
    """The table's valid values load, so each refusal below is the hostile part's doing."""
    cfg = load_with(tmp_path, FIELDS)
    assert cfg.project.realm == FIELDS["project.realm"]
    assert cfg.regions["us"].hosts[0].hostname == FIELDS["regions.us.hosts.hostname"]
    assert cfg.regions["eu"].ssh_cidr == FIELDS["regions.eu.ssh_cidr"]


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.parametrize("key", list(FIELDS))
def test_hostile_value_is_refused_at_load(tmp_path: Path, key: str, kind: str) -> None:
    value = hostile_value(FIELDS[key], kind)
    with pytest.raises(ConfigError) as exc:
        load_with(tmp_path, {key: value})
    message = str(exc.value)
    where = key.replace("regions.us.hosts.", "regions.us.hosts.0.")
    assert message.startswith(f"turnkit.toml: {where}: must "), message
    assert message.endswith(f", got {config.shown(value)}"), message
    assert "\n" not in message and "\x00" not in message and len(message) < 300


def test_shown_value_is_a_truncated_repr() -> None:
    assert config.shown("a\nb") == "'a\\nb'"
    long = config.shown("x" * 10240)
    assert len(long) == config.SHOWN_MAX and long.startswith("'xxx") and long.endswith("…")


def test_hostile_key_is_shown_as_a_repr(tmp_path: Path) -> None:
    path = tmp_path / "turnkit.toml"
    path.write_text('[project]\n"a\\nallow-loopback-peers" = 1\n')
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert str(exc.value) == "turnkit.toml: project.'a\\nallow-loopback-peers': unknown key"


SSRF_REALM = "example.test\nallow-loopback-peers\nallowed-peer-ip=169.254.169.254"


def test_realm_newline_ssrf_example_fails_with_one_line_and_exit_2(tmp_path: Path) -> None:
    """The issue's attack: a realm that adds coturn directives. Refused before anything is written."""
    (tmp_path / "turnkit.toml").write_text(
        f'[project]\nrealm = {json.dumps(SSRF_REALM)}\n[regions.local]\nprovider = "local"\n'
    )
    out = tmp_path / "rendered"
    result = subprocess.run(
        [sys.executable, "-m", "turnkit", "render", "--region", "local", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "error: turnkit.toml: project.realm: must be a DNS name (RFC 1123 labels), "
        "got 'example.test\\nallow-loopback-peers\\nallowed-peer-ip=169.25…\n"
    )
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("coturn.cert_dir", "etc/turnkit/certs", "must be an absolute path of letters, digits and ._+@,:=-"),
        ("tls.webroot", "/var/www/../../etc", "must be an absolute path without `..`"),
        ("tls.webroot", "/var/www/acme dir", "must be an absolute path of letters, digits and ._+@,:=-"),
        ("tls.acme_server", "http://acme.example.test/dir", "must be an https URL without user, query or fragment"),
        ("tls.acme_server", "https://user@acme.example.test/dir", "must be an https URL without user, query or fragment"),
        ("tls.acme_server", "https://acme.example.test/dir?x=1", "must be an https URL without user, query or fragment"),
        ("tls.acme_server", "https://acme.example.test:99999/", "must be an https URL without user, query or fragment"),
        ("tls.email", "ops", "must be an e-mail address (letters, digits, ._+- @ a DNS name)"),
        ("tls.email", "o'ps@example.test", "must be an e-mail address (letters, digits, ._+- @ a DNS name)"),
        ("project.domain", "-bad.example.test", "must be a DNS name (RFC 1123 labels)"),
        ("project.domain", "a" * 64 + ".test", "must be a DNS name (RFC 1123 labels)"),
        ("regions.us.hosts.public_ip", "fe80::1%eth0", "must be an IP address without a zone id"),
        ("regions.us.hosts.public_ip", "010.0.0.1", "must be an IP address"),
        ("regions.us.hosts.address", "turn_1.example.test", "must be a DNS name or an IP address"),
    ],
)  # fmt: skip
def test_precise_types_refuse_near_misses(tmp_path: Path, key: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_with(tmp_path, {key: value})
    where = key.replace("regions.us.hosts.", "regions.us.hosts.0.")
    assert str(exc.value) == f"turnkit.toml: {where}: {reason}, got {config.shown(value)}"


def test_addresses_and_networks_are_canonical(tmp_path: Path) -> None:
    cfg = load_with(
        tmp_path,
        {"regions.us.hosts.address": "2001:DB8::0:1", "regions.us.hosts.public_ip": "2001:db8:0::7",
         "regions.eu.ssh_cidr": "203.0.113.9/24", "tls.acme_server": "https://[::1]:14000/dir"},
    )  # fmt: skip
    host = cfg.regions["us"].hosts[0]
    assert (host.address, host.public_ip) == ("2001:db8::1", "2001:db8::7")
    assert cfg.regions["eu"].ssh_cidr == "203.0.113.0/24"
    assert cfg.tls.acme_server == "https://[::1]:14000/dir"
