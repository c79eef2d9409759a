"""turnkit.toml loading: defaults, and one exact line for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnkit import config
from turnkit.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "turnkit.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        config.load(write(tmp_path, text))
    return str(exc.value)


def test_starter_file_loads_with_documented_defaults(tmp_path: Path) -> None:
    from turnkit.cli.project import starter_text

    cfg = config.load(write(tmp_path, starter_text()))
    assert cfg.project.ttl == 3600
    assert cfg.ports.listening == 3478 and cfg.ports.tls == 5349
    assert cfg.signaling.room_capacity == 2
    assert cfg.regions["local"].provider == "local"
    assert cfg.regions["local"].allow_loopback_peers is True
    assert cfg.secrets_path == tmp_path / "turnkit.secrets.json"


def test_cloud_region_default_mapping(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[regions.eu]\nprovider = "aws"\n[regions.asia]\nprovider = "aws"\n'))
    assert cfg.cloud_region("eu") == "eu-central-1"
    assert cfg.cloud_region("asia") == "ap-southeast-1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[regions.eu]\nprovider = "aws"\nnodes = 0\n', "turnkit.toml: regions.eu.nodes: must be ≥ 1, got 0"),
        ('[regions.eu]\nprovider = "gcp"\n', "turnkit.toml: regions.eu.provider: must be one of 'aws', 'static', 'local' or 'lab', got 'gcp'"),
        ("[project]\nttl = 30\n", "turnkit.toml: project.ttl: must be ≥ 60, got 30"),
        ("[project]\nttl = 7200\nmax_ttl = 3600\n", "turnkit.toml: project.ttl: must be ≤ max_ttl (3600), got 7200"),
        ("[ports]\nlistening = 70000\n", "turnkit.toml: ports.listening: must be ≤ 65535, got 70000"),
        ("[ports]\nrelay_min = 60000\nrelay_max = 50000\n", "turnkit.toml: ports.relay_min: must be ≤ relay_max (50000), got 60000"),
        ("[ports]\nlisten = 1\n", "turnkit.toml: ports.listen: unknown key"),
        ('[signaling]\nport = "x"\n', "turnkit.toml: signaling.port: must be an integer, got 'x'"),
        ('[regions.us]\nprovider = "static"\nnodes = 2\n[[regions.us.hosts]]\naddress = "a.example.test"\n',
         "turnkit.toml: regions.us.hosts: static region needs 2 host(s), got 1"),
        ('[regions.eu]\nprovider = "aws"\nallow_loopback_peers = true\n',
         "turnkit.toml: regions.eu.allow_loopback_peers: only a `local` region may relay to loopback, got true"),
        ('[regions.eu]\nprovider = "aws"\nssh_cidr = "0.0.0.0/0"\n',
         "turnkit.toml: regions.eu.ssh_cidr: must not open SSH to the whole internet, got '0.0.0.0/0'"),
        ('[project]\ndomain = "bad domain!"\n', "turnkit.toml: project.domain: must be a DNS name (RFC 1123 labels), got 'bad domain!'"),
        ('[regions.EU]\nprovider = "aws"\n', "turnkit.toml: regions.EU: name must match ^[a-z][a-z0-9-]{0,31}$, got 'EU'"),
        ('[meter]\ncentral_url_env = "X=$(id)"\n',
         "turnkit.toml: meter.central_url_env: must be an environment variable name of A-Z, 0-9 and _ (not starting with a digit), got 'X=$(id)'"),
        ('[signaling.jwt]\nsecret_env = "A\\nB"\n',
         "turnkit.toml: signaling.jwt.secret_env: must be an environment variable name of A-Z, 0-9 and _ (not starting with a digit), got 'A\\nB'"),
    ],
)  # fmt: skip
def test_invalid_values_name_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == message


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[project\n")
    assert message.startswith("turnkit.toml: invalid TOML: ")
    assert "\n" not in message


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found \(create one with `turnkit init`\)"):
        config.load(tmp_path / "nope.toml")


def test_unknown_region_lists_known_ones(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[regions.local]\nprovider = "local"\n'))
    with pytest.raises(ConfigError, match=r"regions.mars: no such region \(known: local\)"):
        cfg.region("mars")


def test_cloud_region_required_for_unmapped_names(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[regions.mars]\nprovider = "aws"\n'))
    with pytest.raises(ConfigError, match=r"regions.mars.cloud_region: required"):
        cfg.cloud_region("mars")
