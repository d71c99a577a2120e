"""`pip install .` adds one top-level import name, `labctl`, and ships every package and data file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = {
    "labctl": "labctl",
    "drivers": "labctl/drivers",
    "protocols": "labctl/protocols",
    "db": "labctl/db",
    "simulators": "labctl/simulators",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return target


def test_only_labctl_is_a_new_top_level_name(installed: Path):
    names = {p.name for p in installed.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))}
    names -= {"__pycache__", "bin"}  # bin/: the `labctl` console script, not an import name
    assert names == {"labctl"}, names
    assert (installed / "bin" / "labctl").exists()


def test_every_source_package_is_installed(installed: Path):
    missing = []
    for src, dest in SOURCE_ROOTS.items():
        for init in (ROOT / src).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / src)
            if not (installed / dest / rel / "__init__.py").exists():
                missing.append(f"{src}/{rel} (add it to [tool.setuptools] packages in pyproject.toml)")
    assert not missing, missing


def test_package_data_is_installed(installed: Path):
    assert list((installed / "labctl" / "db" / "migrations" / "versions").glob("0002_*.py"))
    assert (installed / "labctl" / "db" / "migrations" / "env.py").exists()
    yamls = list((installed / "labctl").rglob("*.yaml"))
    assert len(yamls) >= 15  # the protocol library and presets travel with the package
    # the dashboard's pages and its charting library (no CDN: lab PCs are often offline)
    static = installed / "labctl" / "web" / "static"
    for name in ("index.html", "run.html", "campaigns.html", "run.js", "dashboard.css", "vendor/uplot/LICENSE"):
        assert (static / name).is_file(), name
    assert (static / "vendor" / "uplot" / "uPlot.iife.min.js").stat().st_size > 10_000


def test_installed_copy_imports_and_runs(installed: Path, tmp_path: Path):
    code = (
        "import labctl, labctl.drivers.contracts, labctl.protocols, labctl.db, labctl.simulators, "
        "labctl.engine.runner; print(labctl.__version__, labctl.__file__)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(installed) in r.stdout
