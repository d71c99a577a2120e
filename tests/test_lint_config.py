"""The lint set-up: the package tree mypy and import-linter read, and the layers contract's coverage."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import package_tree  # noqa: E402


def test_tree_lays_out_the_package_as_installed():
    folders = package_tree.build_tree()
    pkg = package_tree.TREE / "labctl"
    assert (pkg / "drivers" / "contracts.py").resolve() == ROOT / "drivers" / "contracts.py"
    assert (pkg / "db" / "database.py").resolve() == ROOT / "db" / "database.py"
    assert (pkg / "core" / "units.py").resolve() == ROOT / "labctl" / "core" / "units.py"
    assert (pkg / "__init__.py").resolve() == ROOT / "labctl" / "__init__.py"
    assert not (pkg / "__pycache__").exists()
    # paths in mypy's messages go back to the files in the repository
    text = (
        f"{package_tree.TREE.relative_to(ROOT)}/labctl/drivers/contracts.py:3: error: x\n"
        f"{package_tree.TREE}/labctl/cli/run.py:9: note: y\n"
    )
    assert (
        package_tree.to_repo_paths(text, folders) == "drivers/contracts.py:3: error: x\nlabctl/cli/run.py:9: note: y\n"
    )


def test_tree_follows_the_package_dir_mapping_of_pyproject():
    dirs = package_tree.package_dirs()
    assert dirs["labctl.simulators"] == ROOT / "simulators"
    assert set(dirs) >= {"labctl", "labctl.drivers", "labctl.protocols", "labctl.db", "labctl.simulators"}


def test_every_subpackage_is_in_a_layer():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in conf["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    in_layers = {m.strip() for layer in contract["layers"] for m in layer.split("|")}
    top = {".".join(p.split(".")[:2]) for p in conf["tool"]["setuptools"]["packages"] if p != "labctl"}
    assert top <= in_layers, sorted(top - in_layers)


def test_lint_imports_finds_an_upward_import():
    probe = ROOT / "labctl" / "core" / "_lint_probe_upward.py"
    probe.write_text("import labctl.cli\n")
    try:
        r = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "lint_imports.py"), "--no-cache"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        probe.unlink()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "labctl.core is not allowed to import labctl.cli" in r.stdout
    assert "labctl.core._lint_probe_upward -> labctl.cli" in r.stdout
