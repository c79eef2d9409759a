"""The lab's pure parts: names, addresses, mirror, cache key, /etc/hosts block, NAT rules, peer policy."""

from __future__ import annotations

import tomllib

import pytest

from bench import lab as bench_lab
from turnkit import config as config_mod
from turnkit import render
from turnkit.errors import ConfigError
from turnkit.lab import hostsfile, image, nat, topology
from turnkit.nodes import Node


def test_hosts_get_consecutive_lab_addresses_and_prefixed_names() -> None:
    lab = topology.lab_id("/srv/project/.turnkit", "lab")
    topo = topology.topology(lab, ["signaling", "turn-1", "turn-2"])
    assert lab.startswith("tk") and len(lab) == 8
    assert [h.ip for h in topo.hosts] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    assert all(topology.in_lab(h.ip) for h in topo.hosts)
    assert topo.host("turn-2").netns == f"{lab}-turn-2"
    assert all(len(h.veth) <= 15 and len(h.peer) <= 15 for h in topo.hosts)  # Linux IFNAMSIZ
    assert topo.bridge == f"{lab}br"


def test_lab_ids_differ_per_project_and_region() -> None:
    ids = {topology.lab_id(d, r) for d in ("/a/.turnkit", "/b/.turnkit") for r in ("lab", "lab2")}
    assert len(ids) == 4


def test_a_lab_refuses_more_hosts_than_its_address_block() -> None:
    with pytest.raises(ValueError, match="at most 190 hosts, got 191"):
        topology.topology("tk000000", [f"h{i}" for i in range(191)])


def test_only_the_benchmarking_range_is_lab() -> None:
    assert topology.in_lab("198.19.255.254")
    assert not topology.in_lab("198.20.0.1")
    assert not topology.in_lab("192.168.1.1")


DEB822 = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_comes_from_deb822_or_one_line_sources() -> None:
    assert (
        image.mirror_from_sources(["deb https://example/x cloud-sdk main\n", DEB822]) == "http://deb.debian.org/debian"
    )
    assert image.mirror_from_sources(["deb [arch=amd64] http://mirror.test/debian bookworm main\n"]) == (
        "http://mirror.test/debian"
    )
    assert image.mirror_from_sources(["deb http://mirror.test/debian bullseye main\n"]) is None


def test_the_cache_key_changes_with_every_input() -> None:
    base = image.ImageSpec("bookworm", "http://m/debian")
    keys = {
        base.key,
        image.ImageSpec("bookworm", "http://other/debian").key,
        image.ImageSpec("trixie", "http://m/debian").key,
        image.ImageSpec("bookworm", "http://m/debian", include=("python3",)).key,
        image.ImageSpec("bookworm", "http://m/debian", fixups=base.fixups + 1).key,
    }
    assert len(keys) == 5


def test_the_hosts_block_is_replaced_and_removed_without_touching_other_lines() -> None:
    base = "127.0.0.1 localhost\n10.0.0.5 build-box\n"
    once = hostsfile.with_block(base, "tk123456", {"turn-1.lab.example.test": "198.18.0.11"})
    twice = hostsfile.with_block(once, "tk123456", {"call.example.test": "198.18.0.10"})
    assert twice == base + "# turnkit lab tk123456 begin\n198.18.0.10 call.example.test\n# turnkit lab tk123456 end\n"
    other = hostsfile.with_block(twice, "tkabcdef", {"x.test": "198.18.0.12"})
    assert hostsfile.without_block(other, "tk123456") == hostsfile.with_block(
        base, "tkabcdef", {"x.test": "198.18.0.12"}
    )
    assert hostsfile.without_block(hostsfile.without_block(other, "tkabcdef"), "tk123456") == base


def test_the_nat_box_masquerades_fully_random_and_forwards_only_outbound() -> None:
    rules = nat.ruleset()
    assert 'oifname "wan" masquerade fully-random' in rules
    assert "policy drop;" in rules and "ct state established,related accept" in rules
    assert 'iifname "lan" oifname "wan" accept' in rules
    blocked = nat.ruleset(("meta l4proto udp", "tcp dport 3478"))
    drops = [line.strip() for line in blocked.splitlines() if line.strip().endswith("drop")]
    assert drops == ['iifname "lan" meta l4proto udp drop', 'iifname "lan" tcp dport 3478 drop']
    assert blocked.index("udp drop") < blocked.index('oifname "wan" accept')  # drops come before the accept


def test_homes_sit_outside_the_bridge_block_and_nat_boxes_on_it() -> None:
    home = nat.Home(1, "tk123456")
    assert (home.wan_ip, home.home_ip, str(home.lan)) == ("198.18.0.201", "198.19.1.2", "198.19.1.0/24")
    assert topology.in_lab(home.home_ip)
    # whatever runs in the home (`ip netns exec`) resolves through the lab's DNS server only
    assert home.etc == nat.NETNS_ETC / "tk123456-home1"
    assert nat.resolv_conf().splitlines()[0] == f"nameserver {topology.BRIDGE_IP}"
    assert [line for line in nat.resolv_conf().splitlines() if line.startswith("nameserver")] == [
        f"nameserver {topology.BRIDGE_IP}"
    ]


LAB_TOML = """
[regions.lab]
provider = "{provider}"
allow_lab_peers = true
"""


def test_only_a_lab_region_may_relay_to_its_lab_hosts() -> None:
    with pytest.raises(ConfigError, match="allow_lab_peers: only a `lab` region may relay to its lab hosts, got true"):
        config_mod.parse(tomllib.loads(LAB_TOML.format(provider="local")))
    cfg = config_mod.parse(tomllib.loads(LAB_TOML.format(provider="lab")))
    denied = render.coturn_context(cfg, Node("turn-1", "lab", "turn-1.lab.example.test", "198.18.0.11"), [], "4.6.1")[
        "coturn_denied_peer_ranges"
    ]
    assert "198.18.0.0-198.19.255.255" not in denied
    # the bridge's hosts are allowed; its network and broadcast addresses and the rest of the range are not
    assert {"198.18.0.0", "198.18.0.255", "198.18.1.0-198.18.1.255", "198.19.0.0-198.19.255.255"} <= set(denied)
    assert "10.0.0.0-10.255.255.255" in denied and "127.0.0.0-127.255.255.255" in denied


def test_one_project_file_serves_make_lab_the_benchmark_and_the_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert tomllib.loads(bench_lab.project_toml('odd "name"\n', 1))["project"]["name"] == 'odd "name"\n'  # escaped
    cfg = config_mod.parse(tomllib.loads(bench_lab.project_toml("labtest", 2, allow_lab_peers=False)))
    assert cfg.project.name == "labtest"
    assert cfg.tls.acme_server == f"https://{topology.BRIDGE_IP}:14000/dir"
    assert (cfg.signaling.server_name, cfg.region("lab").provider, cfg.region("lab").nodes) == (
        "call.example.test", "lab", 2,
    )  # fmt: skip
    assert cfg.region("lab").allow_lab_peers is False
    assert config_mod.parse(tomllib.loads(bench_lab.project_toml("x", 3))).region("lab").allow_lab_peers is True
    # `make lab` writes its project file with `python -m bench.lab --print-toml lab`.
    assert bench_lab.main(["--print-toml", "lab"]) == 0
    assert capsys.readouterr().out == bench_lab.project_toml("lab", bench_lab.NODES)
