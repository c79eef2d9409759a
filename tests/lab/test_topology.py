"""The lab's pure parts: names, addresses, the mirror it builds from, the image cache key."""

from __future__ import annotations

import pytest

from turnkit.lab import image, topology


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
