"""A built wheel works outside the checkout: templates and playbooks ship inside it, tests/ and bench/ do not."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("turnkit-*.whl")
    return found


def test_wheel_contains_templates_playbooks_and_types(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "turnkit/_data/templates/coturn/turnserver.conf.j2" in names
    assert "turnkit/py.typed" in names and "turnkit/starter.toml" in names
    assert any(n.startswith("turnkit/_data/playbooks/") for n in names)
    assert any(n.startswith("signaling/") for n in names)


def imported_modules(source: str) -> set[str]:
    """Top-level package of every import in a module (relative imports stay inside their package: skipped)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_imported_modules_sees_every_absolute_import() -> None:
    source = "import os, tests.daemons\nfrom bench.procs import run\nfrom . import sibling\n"
    assert imported_modules(source) == {"os", "tests", "bench"}


def test_wheel_ships_no_tests_or_bench_and_imports_neither(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"turnkit", "signaling"}
    modules = [n for n in names if n.endswith(".py")]
    assert any(n.startswith("signaling/") for n in modules) and "turnkit/cli/__init__.py" in modules
    offenders = {n: bad for n in modules if (bad := imported_modules(archive.read(n).decode()) & {"tests", "bench"})}
    assert offenders == {}


def test_installed_wheel_renders_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    # Dependencies come from the dev venv as a plain path entry (its .pth files, incl. the editable
    # checkout, are not processed), so `turnkit` itself can only come from the wheel.
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    Path(site, "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    cli = str(venv / "bin" / "turnkit")
    for args in (["init"], ["secret", "init"], ["render", "--region", "local", "--out", "out"]):
        result = subprocess.run([cli, *args], cwd=work, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert "use-auth-secret" in (work / "out" / "turn-1" / "turnserver.conf").read_text()
    where = subprocess.run(
        [str(py), "-c", "from turnkit import resources; print(resources.template_dir())"],
        cwd=work, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(site) and where.endswith("turnkit/_data/templates")
