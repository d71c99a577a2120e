"""BioLogic EC-Lab files: ``.mpt`` text (read by labctl) and ``.mpr`` binary (galvani, GPL, optional).

EC-Lab's sign: positive current = anodic (oxidation at the WE), as labctl's.  Columns
``cycle number`` (EC-Lab's cycle counter), ``Ns`` (the sequence number, one per
technique step), ``mode`` (1 CC, 2 CV, 3 rest), ``ox/red``, ``Q charge/discharge/mA.h``
(the counter of the current half-cycle).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportFileError, decode_text, read_bytes
from .table import Table, key, read_table_text, table_to_data

SIGN = "EC-Lab: positive current = anodic at the WE (oxidation), as labctl's; kept as is"
CYCLE = "EC-Lab 'cycle number' column (its own counter, from 0); labctl cycle = that number"
_MODES = {1: "CC", 2: "CV", 3: "rest"}


def _technique(lines: list[str]) -> str:
    for line in lines[2:8]:
        s = line.strip()
        if s and ":" not in s:
            return s
    return ""


def _relabel(data: ImportedData, technique: str) -> None:
    low = technique.lower()
    for s in data.steps:
        if s.kind == "lsv" or "linear sweep" in low:
            s.kind, s.label = "lsv", f"tafel: {technique or 'LSV'}"
        elif "cyclic voltammetry" in low and s.kind != "eis":
            s.kind, s.label = "cv", technique
    data.mapping["technique"] = technique


def read_mpt(path: Path, *, area_cm2: float | None = None) -> ImportedData:
    text, _ = decode_text(path, read_bytes(path))
    lines = text.splitlines()
    if not lines or not lines[0].strip().startswith("EC-Lab ASCII FILE"):
        raise ImportFileError(f"{path}:1: not a BioLogic .mpt file (it must start with 'EC-Lab ASCII FILE')")
    m = re.search(r"Nb header lines\s*:\s*(\d+)", "\n".join(lines[:3]))
    if not m:
        raise ImportFileError(f"{path}:2: BioLogic .mpt without 'Nb header lines : N'")
    n_head = int(m.group(1))
    if not 1 <= n_head <= len(lines):
        raise ImportFileError(
            f"{path}:2: 'Nb header lines : {n_head}' but the file has {len(lines)} lines (truncated?)"
        )
    tab = read_table_text(path, header_at=n_head)
    modes = None
    for k, n in enumerate(tab.names):
        if key(n) == "mode":
            modes = tab.columns[k]
    area = _area(lines[:n_head]) if area_cm2 is None else area_cm2
    data = table_to_data(
        path,
        tab,
        fmt="biologic-mpt",
        reader="labctl.importers.biologic 1",
        area_cm2=area,
        sign_note=SIGN,
        cycle_note=CYCLE,
    )
    if modes is not None:
        _apply_modes(data, modes)
    _relabel(data, _technique(lines))
    if area is not None and area_cm2 is None:
        data.area_cm2 = area
    return data


def _apply_modes(data: ImportedData, modes: np.ndarray) -> None:
    for s in data.steps:
        md = int(np.nan_to_num(modes[s.start]))
        name = _MODES.get(md)
        if name == "rest":
            s.kind = "rest"
            s.params.pop("cycling", None)
        elif name == "CV" and s.params.get("cycling"):
            s.kind = "potentiostatic"
        s.params["instrument_mode"] = md


def _area(lines: list[str]) -> float | None:
    for line in lines:
        m = re.match(r"\s*Electrode surface area\s*:\s*([-+0-9.,eE]+)\s*cm", line)
        if m:
            try:
                return float(m.group(1).replace(",", "."))
            except ValueError:
                return None
    return None


def read_mpr(path: Path, *, area_cm2: float | None = None) -> ImportedData:
    try:
        from galvani import BioLogic  # type: ignore[import-untyped]  # optional dependency, GPL-3.0
    except ImportError:
        raise ImportFileError(
            f"{path}: looks like a BioLogic .mpr file; reading it needs the optional package galvani "
            "(pip install 'labctl[biologic]'), or export it as text (.mpt) from EC-Lab"
        ) from None
    try:
        mpr = BioLogic.MPRfile(str(path))
    except Exception as exc:  # galvani raises ValueError/KeyError/struct errors on malformed files
        raise ImportFileError(f"{path}: looks like a BioLogic .mpr file but galvani cannot read it ({exc})") from None
    data = mpr.data
    names = list(data.dtype.names)
    cols = [np.asarray(data[n], dtype=float) for n in names]
    tab = Table(names, cols, 1, 1, "binary", [])
    modes = np.asarray(data["mode"], float) if "mode" in names else None
    if modes is not None:
        tab.names[names.index("mode")] = "mode_numeric"
    import galvani

    out = table_to_data(
        path,
        tab,
        fmt="biologic-mpr",
        reader=f"galvani {getattr(galvani, '__version__', '?')}",
        area_cm2=area_cm2,
        sign_note=SIGN,
        cycle_note=CYCLE,
    )
    if modes is not None:
        _apply_modes(out, modes)
    return out
