"""The wheelhouse: turnkit's wheel built each time, its dependency wheels reused by their inputs' key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from turnkit import wheelhouse


@pytest.fixture(scope="module")
def turnkit_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheelhouse.turnkit_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_key_follows_the_pins_and_turnkits_requirements(turnkit_wheel: Path) -> None:
    key = wheelhouse.dependencies_key("a==1\n", turnkit_wheel)
    assert key == wheelhouse.dependencies_key("a==1\n", turnkit_wheel)
    assert key != wheelhouse.dependencies_key("a==2\n", turnkit_wheel)
    assert any(r.startswith("Requires-Dist: websockets") for r in wheelhouse.requires(turnkit_wheel))


def test_cached_dependency_wheels_are_shipped_without_downloading(tmp_path: Path, turnkit_wheel: Path) -> None:
    cache = tmp_path / "cache"
    deps = cache / f"deps-{wheelhouse.dependencies_key(wheelhouse.constraints(), turnkit_wheel)}"
    deps.mkdir(parents=True)
    (deps / "fake_dep-1.0-py3-none-any.whl").write_bytes(b"not downloaded")
    (deps / ".complete").touch()
    lines: list[str] = []
    house = wheelhouse.build(tmp_path / "house", lines.append, cache=cache)
    names = sorted(p.name for p in house.iterdir())
    assert names == ["fake_dep-1.0-py3-none-any.whl", turnkit_wheel.name]
    assert (house / turnkit_wheel.name).read_bytes() == turnkit_wheel.read_bytes()  # reproducible build
    assert any("reusing" in line for line in lines)


def test_the_archive_holds_every_wheel_and_is_byte_identical_for_identical_wheels(tmp_path: Path) -> None:
    """Ansible copies the archive and reinstalls only when it changed: same wheels, same bytes."""
    import tarfile

    house = tmp_path / "house"
    house.mkdir()
    (house / "b-1.0-py3-none-any.whl").write_bytes(b"bee")
    (house / "a-2.0-py3-none-any.whl").write_bytes(b"ay")
    first = wheelhouse.archive(house).read_bytes()
    os.utime(house / "a-2.0-py3-none-any.whl", (1, 1))  # a rebuilt, identical wheel: new mtime only
    tar = wheelhouse.archive(house)
    assert tar == tmp_path / "house.tar" and tar.read_bytes() == first
    with tarfile.open(tar) as t:
        assert [(m.name, m.uid, m.mtime, m.mode) for m in t.getmembers()] == [
            ("a-2.0-py3-none-any.whl", 0, 0, 0o644),
            ("b-1.0-py3-none-any.whl", 0, 0, 0o644),
        ]
        extracted = t.extractfile("b-1.0-py3-none-any.whl")
        assert extracted is not None and extracted.read() == b"bee"
    (house / "b-1.0-py3-none-any.whl").write_bytes(b"new code, same version")
    assert wheelhouse.archive(house).read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["house", "house.tar"]  # no temp file left behind
