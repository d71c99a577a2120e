"""Gamry Framework/Echem Analyst ``.DTA`` files (read by labctl; format checked against gamry-parser).

A ``.DTA`` file is text (Latin-1 or UTF-8; a decimal comma where Windows used one):
``EXPLAIN``, a ``TAG`` naming the experiment (``CV``, ``CYCPOL``, ``POTENTIODYNAMIC``,
``LSV``, ``EISPOT``, ``EISGALV``, ``CHRONOA``, ``CHRONOP``, ``CORPOT``, ...), ``KEY\tTYPE\tVALUE``
header lines (``AREA`` in cm2, ``CONVENTION``), then tables: ``NAME\tTABLE[\tN]``, a line of
column names, a line of units, rows that start with a tab.  Sweep tables (``CURVE``,
``CURVE1``...) carry ``T`` (s), ``Vf`` (V vs. Ref.) and ``Im`` (A); ``ZCURVE`` carries
``Freq`` (Hz), ``Zreal``, ``Zimag`` (ohm, Z'' as measured); ``OCVCURVE`` the open circuit
before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ImportedData, ImportedStep, ImportFileError, decode_text, read_bytes

READER = "labctl.importers.gamry 1"

#: TAG -> (labctl step kind, label)
_TAGS = {
    "CV": ("cv", "CV"),
    "CYCPOL": ("lsv", "tafel: cyclic polarisation (CYCPOL)"),
    "POTENTIODYNAMIC": ("lsv", "tafel: potentiodynamic"),
    "TAFEL": ("lsv", "tafel"),
    "LSV": ("lsv", "LSV"),
    "LPR": ("lsv", "tafel: polarisation resistance (LPR)"),
    "EISPOT": ("eis", "PEIS"),
    "EISGALV": ("eis", "GEIS"),
    "CHRONOA": ("potentiostatic", "chronoamperometry"),
    "CHRONOP": ("galvanostatic", "chronopotentiometry"),
    "CORPOT": ("rest", "open circuit (CORPOT)"),
}


def _f(tok: str) -> float:
    try:
        return float(tok)
    except ValueError:
        return float(tok.replace(",", "."))


def _table(path: Path, lines: list[str], k: int, name: str) -> tuple[dict[str, np.ndarray], int, list[str]]:
    """The table whose ``NAME\tTABLE`` line is lines[k]: columns by name, the next line index, notes."""
    notes: list[str] = []
    parts = lines[k].split("\t")
    announced = int(parts[2]) if len(parts) > 2 and parts[2].strip().isdigit() else None
    if k + 2 >= len(lines):
        raise ImportFileError(f"{path}:{k + 1}: table {name} has no column names and units lines (truncated file?)")
    names = [c.strip() for c in lines[k + 1].split("\t")]
    if names and names[0] == "":
        names = names[1:]
    rows: list[list[float]] = []
    j = k + 3
    while j < len(lines) and lines[j].startswith("\t"):
        toks = lines[j].split("\t")[1:]
        if len(toks) < len(names):
            raise ImportFileError(
                f"{path}:{j + 1}: table {name} row has {len(toks)} of its {len(names)} columns (truncated file?)"
            )
        row = []
        for c, tok in enumerate(toks[: len(names)]):
            try:
                row.append(_f(tok))
            except ValueError:
                row.append(np.nan)  # text columns (Over, a bit mask) are not read
                if names[c] in ("Vf", "Im", "T", "Freq", "Zreal", "Zimag"):
                    raise ImportFileError(
                        f"{path}:{j + 1}:{c + 2}: table {name} column {names[c]}: not a number: {tok!r}"
                    ) from None
        rows.append(row)
        j += 1
    if j < len(lines) and lines[j].strip() and lines[j].lstrip()[:1] in "0123456789-+.":
        raise ImportFileError(
            f"{path}:{j + 1}: table {name} goes on with a row that is not tab-separated: {lines[j].strip()[:40]!r} "
            "(a damaged or hand-edited file)"
        )
    if not rows and j >= len(lines):
        raise ImportFileError(f"{path}:{k + 1}: table {name} has no rows before the end of the file (truncated file?)")
    arr = np.array(rows, dtype=float).reshape(-1, len(names))
    if announced is not None and announced != arr.shape[0]:
        notes.append(
            f"table {name} announces {announced} rows, the file holds {arr.shape[0]} (measurement stopped early)"
        )
    return {n: arr[:, c] for c, n in enumerate(names)}, j, notes


def read_gamry(path: Path) -> ImportedData:
    text, enc = decode_text(path, read_bytes(path))
    lines = text.splitlines()
    if not lines or lines[0].strip() != "EXPLAIN":
        raise ImportFileError(f"{path}:1: not a Gamry .DTA file (it must start with 'EXPLAIN')")
    header: dict[str, str] = {}
    tables: list[tuple[str, dict[str, np.ndarray], int]] = []
    notes: list[str] = []
    k = 1
    while k < len(lines):
        parts = lines[k].split("\t")
        if len(parts) >= 2 and parts[1].strip() == "TABLE":
            name = parts[0].strip()
            cols, k2, tnotes = _table(path, lines, k, name)
            tables.append((name, cols, k + 1))
            notes += tnotes
            k = k2
            continue
        if parts and parts[0].strip() and len(parts) >= 3:
            header[parts[0].strip()] = parts[2].strip()
        elif parts and parts[0].strip() and len(parts) == 2:
            header[parts[0].strip()] = parts[1].strip()
        k += 1
    tag = header.get("TAG", "").upper()
    if tag not in _TAGS:
        raise ImportFileError(
            f"{path}:2: Gamry experiment TAG {tag or '(none)'!r} is not one labctl imports "
            f"(known: {', '.join(sorted(_TAGS))})"
        )
    kind, label = _TAGS[tag]
    conv = header.get("CONVENTION")
    sign = 1.0
    if conv is not None and conv.strip() not in ("1",):
        sign = -1.0
        notes.append(f"CONVENTION {conv}: current negated to labctl's sign (anodic positive)")
    area = None
    if "AREA" in header:
        try:
            area = _f(header["AREA"])
        except ValueError:
            area = None
    t_all, v_all, i_all = [], [], []
    f_all, zr_all, zi_all = [], [], []
    steps: list[ImportedStep] = []
    n = 0
    t_off = 0.0
    cycle = 0
    for name, cols, line in tables:
        if name == "OCVCURVE" and "Vf" in cols and "T" in cols:
            m = cols["T"].size
            t_all.append(cols["T"] + t_off)
            v_all.append(cols["Vf"])
            i_all.append(np.zeros(m))
            f_all.append(np.full(m, np.nan))
            zr_all.append(np.full(m, np.nan))
            zi_all.append(np.full(m, np.nan))
            steps.append(ImportedStep("rest", "open circuit (OCVCURVE)", 0, n, n + m, {"table": name, "line": line}))
            t_off = float(cols["T"][-1]) + t_off if m else t_off
            n += m
        elif name == "ZCURVE":
            for c in ("Freq", "Zreal", "Zimag"):
                if c not in cols:
                    raise ImportFileError(f"{path}:{line + 1}: table ZCURVE has no {c} column")
            m = cols["Freq"].size
            tt = cols["Time"] if "Time" in cols else np.arange(m, dtype=float)
            t_all.append(tt + t_off)
            v_all.append(cols["Vdc"] if "Vdc" in cols else np.full(m, np.nan))
            i_all.append(sign * cols["Idc"] if "Idc" in cols else np.zeros(m))
            f_all.append(cols["Freq"])
            zr_all.append(cols["Zreal"])
            zi_all.append(cols["Zimag"])
            steps.append(ImportedStep("eis", label, cycle, n, n + m, {"table": name, "line": line}))
            n += m
        elif name.startswith("CURVE") and "Vf" in cols and "Im" in cols:
            m = cols["Vf"].size
            tt = cols["T"] if "T" in cols else np.arange(m, dtype=float)
            if tt.size and t_all and tt[0] + t_off < t_all[-1][-1]:
                t_off = float(t_all[-1][-1])
            t_all.append(tt + t_off)
            v_all.append(cols["Vf"])
            i_all.append(sign * cols["Im"])
            f_all.append(np.full(m, np.nan))
            zr_all.append(np.full(m, np.nan))
            zi_all.append(np.full(m, np.nan))
            if kind == "cv":
                cycle += 1
            steps.append(ImportedStep(kind, label, cycle, n, n + m, {"table": name, "line": line}))
            n += m
    if n == 0 or not any(s.kind != "rest" for s in steps):
        raise ImportFileError(
            f"{path}: Gamry {tag} file without a data table (CURVE with Vf and Im, or ZCURVE with Freq, "
            f"Zreal, Zimag); tables found: {', '.join(t[0] for t in tables) or 'none'}"
        )
    has_z = any(s.kind == "eis" for s in steps)
    mapping = {
        "current_sign": "Gamry Im, CONVENTION 1 (anodic positive, as labctl)"
        if sign > 0
        else f"Gamry Im negated (CONVENTION {conv})",
        "cycle_definition": "CV: each CURVEn table is cycle n; other experiments: cycle 0"
        if kind == "cv"
        else "one experiment, cycle 0",
        "steps": {s.params["table"]: s.kind for s in steps},
        "potential": "Vf (V vs. the reference electrode)",
        "encoding": enc,
    }
    return ImportedData(
        source=str(path),
        format=f"gamry-dta:{tag}",
        reader=READER,
        t=np.concatenate(t_all),
        voltage=np.concatenate(v_all),
        current=np.concatenate(i_all),
        steps=steps,
        mapping=mapping,
        frequency=np.concatenate(f_all) if has_z else None,
        z_re=np.concatenate(zr_all) if has_z else None,
        z_im=np.concatenate(zi_all) if has_z else None,
        area_cm2=area,
        notes=notes,
        header=header,
    )
