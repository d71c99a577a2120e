"""Registries of folders of named YAML files (simulator presets, protocol libraries).

A folder comes from an entry point of a group (a study's pyproject registers it; the
entry point names a :class:`~pathlib.Path`, a string, or a callable returning one) or
from :meth:`FolderRegistry.register` (notebooks, tests).  A file is known by its stem:
``presets/my-cell.yaml`` is ``my-cell``.  Folders registered at run time come first (newest
first), then the entry points sorted by their name; when two folders hold the same
name, the first one wins.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

__all__ = ["FolderRegistry"]


class FolderRegistry:
    """Folders of ``*.yaml`` files: from entry points of ``group`` and from :meth:`register`."""

    def __init__(self, group: str, what: str) -> None:
        self.group = group
        self.what = what  # e.g. "preset folder", for messages
        self._registered: list[Path] = []
        self._from_entry_points: list[Path] | None = None

    # ------------------------------------------------------------------ folders
    def register(self, folder: str | Path) -> Path:
        """Add ``folder`` (searched before the entry points); returns the resolved path."""
        p = Path(folder).expanduser().resolve()
        if not p.is_dir():
            raise ValueError(f"{self.what} {str(folder)!r} is not a folder")
        if p in self._registered:
            self._registered.remove(p)
        self._registered.insert(0, p)
        return p

    def unregister(self, folder: str | Path) -> None:
        """Forget a folder added with :meth:`register` (no error when it was not registered)."""
        p = Path(folder).expanduser().resolve()
        if p in self._registered:
            self._registered.remove(p)

    def refresh(self) -> None:
        """Read the entry points again (after installing a package in a running interpreter)."""
        self._from_entry_points = None

    def entry_point_folders(self) -> list[Path]:
        if self._from_entry_points is None:
            from importlib.metadata import entry_points

            found: list[Path] = []
            for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
                try:
                    value: Any = ep.load()
                    if callable(value):
                        value = value()
                    folder = Path(value).expanduser().resolve()
                except Exception as e:
                    warnings.warn(
                        f"entry point {ep.name!r} of {self.group} ({ep.value}) failed to load: {e}", stacklevel=2
                    )
                    continue
                if not folder.is_dir():
                    warnings.warn(
                        f"entry point {ep.name!r} of {self.group} names {folder}, which is not a folder", stacklevel=2
                    )
                    continue
                if folder not in found:
                    found.append(folder)
            self._from_entry_points = found
        return list(self._from_entry_points)

    def folders(self) -> list[Path]:
        """Every folder searched, in order."""
        out = list(self._registered)
        out += [f for f in self.entry_point_folders() if f not in out]
        return out

    # ------------------------------------------------------------------ files
    def files(self) -> dict[str, Path]:
        """name (file stem) -> path, over every folder (the first folder holding a name wins)."""
        out: dict[str, Path] = {}
        for folder in self.folders():
            for p in sorted(folder.glob("*.yaml")):
                out.setdefault(p.stem, p)
        return out

    def describe(self) -> str:
        """``'a, b (in /x/presets)'`` for error messages, or a sentence when nothing is registered."""
        names = self.files()
        if not names:
            return (
                f"no {self.what}s are registered (install a study package, or register a folder; "
                f"entry-point group {self.group!r})"
            )
        return ", ".join(sorted(names))
