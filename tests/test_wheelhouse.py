"""The wheelhouse: turnkit's wheel built each time, its dependency wheels reused by their inputs' key."""

from __future__ import annotations

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
