"""Rendering: golden files for every template, and the properties the hardening depends on."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from turnkit import config, nodes, render, resources
from turnkit.errors import RenderError

GOLDEN = Path(__file__).parent / "golden"
SECRETS = ["primary-secret-for-tests", "older-secret-for-tests"]

FLEET = """
[project]
name = "acme"
domain = "acme.example.test"

[ports]
tls_443 = {tls_443}

[tls]
email = "ops@acme.example.test"

[regions.us]
provider = "static"
nodes = 2
[[regions.us.hosts]]
address = "turn-1.us.acme.example.test"
public_ip = "198.51.100.7"
private_ip = "10.0.0.7"
[[regions.us.hosts]]
address = "198.51.100.8"
"""


def fleet(tmp_path: Path, tls_443: bool = False) -> config.Config:
    path = tmp_path / "turnkit.toml"
    path.write_text(FLEET.format(tls_443=str(tls_443).lower()))
    return config.load(path)


def render_fleet(tmp_path: Path, tls_443: bool, version: str = "4.6.1") -> dict[str, render.Rendered]:
    cfg = fleet(tmp_path, tls_443)
    return render.render_region(cfg, nodes.region_nodes(cfg, "us"), SECRETS, version, resources.template_dir())


@pytest.mark.parametrize("variant", ["plain", "tls443"])
def test_golden_files(tmp_path: Path, variant: str) -> None:
    files = render_fleet(tmp_path, tls_443=variant == "tls443")
    root = GOLDEN / variant
    if os.environ.get("UPDATE_GOLDEN"):
        for rel, item in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(item.content)
    expected = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert sorted(files) == expected
    for rel, item in files.items():
        assert item.content == (root / rel).read_text(), (
            f"{variant}/{rel} differs from golden (UPDATE_GOLDEN=1 to accept)"
        )


def test_every_file_starts_with_managed_header(tmp_path: Path) -> None:
    for rel, item in render_fleet(tmp_path, tls_443=True).items():
        head = item.content.splitlines()[:2]
        assert any("Managed by turnkit" in line for line in head), rel


def test_all_templates_are_used(tmp_path: Path) -> None:
    used = {t.template for t in render.REGION_TARGETS} | {t for t, _, _ in render.NODE_TARGETS}
    shipped = {str(p.relative_to(resources.template_dir())) for p in resources.template_dir().rglob("*.j2")}
    assert shipped == used


def test_nat_node_gets_external_ip_mapping(tmp_path: Path) -> None:
    files = render_fleet(tmp_path, tls_443=False)
    conf1 = files["turn-1/turnserver.conf"].content
    conf2 = files["turn-2/turnserver.conf"].content
    assert "external-ip=198.51.100.7/10.0.0.7" in conf1
    assert "listening-ip=10.0.0.7" in conf1 and "relay-ip=10.0.0.7" in conf1
    assert "external-ip" not in conf2 and "listening-ip=198.51.100.8" in conf2


def test_secrets_come_from_the_userdb_and_auth_required(tmp_path: Path) -> None:
    conf = render_fleet(tmp_path, tls_443=False)["turn-1/turnserver.conf"].content
    assert not any(s in conf for s in SECRETS)  # coturn reads them from its turn_secret table
    assert "static-auth-secret" not in conf
    assert [line for line in conf.splitlines() if line.startswith("userdb=")] == ["userdb=/var/lib/turn/turndb"]
    for flag in (
        "use-auth-secret",
        "fingerprint",
        "no-cli",
        "no-software-attribute",
        "no-multicast-peers",
        "no-tcp-relay",
    ):
        assert flag in conf.splitlines()
    assert "allow-loopback-peers" not in conf


REQUIRED_DENIED = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "::1/128", "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
    "100:0:0:1::/64", "2001::/23", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]  # fmt: skip


def _denied(conf: str) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]]:
    out = []
    for line in conf.splitlines():
        if line.startswith("denied-peer-ip="):
            lo, _, hi = line.removeprefix("denied-peer-ip=").partition("-")
            out.append((ipaddress.ip_address(lo), ipaddress.ip_address(hi or lo)))
    return out


def _covered(
    ranges: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]], first: int, last: int, version: int
) -> bool:
    """Whether the union of `ranges` covers [first, last]."""
    for lo, hi in sorted((int(lo), int(hi)) for lo, hi in ranges if lo.version == version):
        if lo > first:
            return False
        first = max(first, hi + 1)
        if first > last:
            return True
    return False


@pytest.mark.parametrize("cidr", REQUIRED_DENIED)
def test_special_purpose_range_is_denied(tmp_path: Path, cidr: str) -> None:
    net = ipaddress.ip_network(cidr)
    ranges = _denied(render_fleet(tmp_path, tls_443=False)["turn-1/turnserver.conf"].content)
    # `::` itself is left to coturn (which refuses it): a `::` bound is open-ended on 4.6.1.
    first = max(int(net[0]), 1) if net.version == 6 else int(net[0])
    assert _covered(ranges, first, int(net[-1]), net.version), cidr


def test_ranges_are_cidr_blocks_without_an_unspecified_bound(tmp_path: Path) -> None:
    """coturn 4.6.1 compares IPv6 bounds byte by byte and reads `::` as open-ended (tests/test_coturn.py)."""
    ranges = _denied(render_fleet(tmp_path, tls_443=False)["turn-1/turnserver.conf"].content)
    for lo, hi in ranges:
        assert len(list(ipaddress.summarize_address_range(lo, hi))) == 1, (lo, hi)
        assert int(lo) != 0 or lo.version == 4


def test_metadata_address_denied(tmp_path: Path) -> None:
    ranges = _denied(render_fleet(tmp_path, tls_443=False)["turn-1/turnserver.conf"].content)
    meta = ipaddress.ip_address("169.254.169.254")
    assert any(lo.version == 4 and lo <= meta <= hi for lo, hi in ranges)


@pytest.mark.parametrize(("version", "legacy"), [("4.6.1", True), ("4.5.2", True), ("4.7.0", False), ("4.9.1", False)])
def test_tls_flags_follow_coturn_version(tmp_path: Path, version: str, legacy: bool) -> None:
    conf = render_fleet(tmp_path, tls_443=False, version=version)["turn-1/turnserver.conf"].content
    assert ("no-tlsv1\n" in conf) is legacy and ("no-tlsv1_1\n" in conf) is legacy


def test_local_region_allows_loopback_only_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "turnkit.toml"
    for flag, expected in (("true", True), ("false", False)):
        path.write_text(f'[regions.local]\nprovider = "local"\nallow_loopback_peers = {flag}\n')
        cfg = config.load(path)
        files = render.render_region(cfg, nodes.region_nodes(cfg, "local"), ["s"], "4.6.1", resources.template_dir())
        conf = files["turn-1/turnserver.conf"].content
        assert ("allow-loopback-peers" in conf.splitlines()) is expected
        assert ("denied-peer-ip=127.0.0.0-127.255.255.255" in conf) is not expected


def test_missing_variable_is_a_render_error(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("{{ nope }}")
    env = render.environment(tmp_path)
    with pytest.raises(RenderError, match=r"template `t.j2`: 'nope' is undefined"):
        render.render_template(env, "t.j2", {})


def test_no_secrets_is_refused(tmp_path: Path) -> None:
    cfg = fleet(tmp_path)
    with pytest.raises(RenderError, match="no TURN secrets"):
        render.render_region(cfg, nodes.region_nodes(cfg, "us"), [], "4.6.1", resources.template_dir())


def test_modes(tmp_path: Path) -> None:
    files = render_fleet(tmp_path, tls_443=False)
    assert files["turn-1/turnserver.conf"].mode == 0o640
    assert files["signaling/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh"].mode == 0o755


def test_detects_local_coturn_version() -> None:
    from turnkit import coturn

    assert coturn.detect_version() == "4.6.1"  # Debian 12's coturn, installed by `make setup`
    assert coturn.detect_version("no-such-turnserver") is None


def test_readme_lists_exactly_the_denied_ranges() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Hardened coturn", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"`([0-9a-f:.]+/[0-9]+)`", section)
    assert sorted(listed) == sorted(render.DENIED_PEER_NETWORKS)
