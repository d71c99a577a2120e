"""The ``labctl`` package laid out as installed, as a tree of symbolic links.

The repository keeps ``drivers/``, ``protocols/``, ``db/`` and ``simulators/`` at the
top and installs them as ``labctl.drivers`` and so on (``[tool.setuptools.package-dir]``
in pyproject.toml).  Tools that find modules by walking folders (mypy, import-linter's
grimp) see neither that mapping nor the import hook of an editable install; they read
``build/package-tree/labctl/`` instead, which :func:`build_tree` makes from the mapping:
links to every entry of ``labctl/`` plus ``labctl/drivers -> ../../../drivers`` and so on.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "package-tree"


def package_dirs() -> dict[str, Path]:
    """``{"labctl": ROOT/labctl, "labctl.drivers": ROOT/drivers, ...}`` from pyproject.toml."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = conf["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def build_tree() -> dict[Path, Path]:
    """Make (or refresh) the link tree; returns each linked folder in the tree -> its folder in the repository."""
    dirs = package_dirs()
    pkg = TREE / "labctl"
    pkg.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in dirs["labctl"].iterdir() if entry.name != "__pycache__"}
    for name, folder in dirs.items():
        if name != "labctl":
            wanted[name.removeprefix("labctl.")] = folder
    for link in pkg.iterdir():
        if link.name not in wanted or not link.is_symlink() or Path(os.readlink(link)) != wanted[link.name]:
            link.unlink()
    for name, target in wanted.items():
        link = pkg / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=target.is_dir())
    folders = {pkg / name: target for name, target in wanted.items() if target.is_dir()}
    folders[pkg] = dirs["labctl"]
    return folders


def path_mapper(folders: dict[Path, Path]) -> re.Pattern[str]:
    """A pattern matching tree paths (absolute or relative to ROOT) of ``folders``, longest first."""
    keys = sorted(folders, key=lambda p: len(str(p)), reverse=True)
    alternatives = [re.escape(f"{p}/") for p in keys] + [re.escape(f"{p.relative_to(ROOT)}/") for p in keys]
    return re.compile("|".join(alternatives))


def to_repo_paths(text: str, folders: dict[Path, Path]) -> str:
    """``build/package-tree/labctl/drivers/x.py`` -> ``drivers/x.py`` (and so on) in ``text``."""
    by_text = {f"{p}/": t for p, t in folders.items()} | {f"{p.relative_to(ROOT)}/": t for p, t in folders.items()}
    return path_mapper(folders).sub(lambda m: f"{by_text[m.group(0)].relative_to(ROOT)}/", text)
