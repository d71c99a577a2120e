"""PalmSens PSTrace "Export to CSV" files of curves (voltammetry, chronoamperometry, chronopotentiometry).

Layout (PSTrace 5; usually UTF-16 with a byte-order mark)::

    Date and time:,2024-11-07 14:56:00
    Notes:
    ,,,,
    Cyclic Voltammetry: CV i vs E Scan 1,,Cyclic Voltammetry: CV i vs E Scan 2,
    Date and time measurement:,2024-11-07 14:48:29,Date and time measurement:,2024-11-07 14:48:29
    V,µA,V,µA
    0.2499,7.15E-06,0.2499,7.15E-07
    ...

Each curve is a pair of columns under its title (``<technique>: <curve name>``), with the units
of its x and y (``V``/``mV`` potential, ``A``/``mA``/``µA``/``uA``/``nA``/``pA`` current, ``s``
time); a shorter curve's cells are empty below its end.  Separators: comma, else ``;`` or tab
(then a decimal comma is accepted).  The technique gives the step kind as in a ``.pssession``
(:data:`labctl.importers.palmsens.METHODS`); a CV scan k is cycle k.  A voltammogram holds no
time: ``t`` is the point number (a note says so).  A chronoamperogram holds no potential and a
chronopotentiogram no current: that column is NaN (a note says so).  ``Date and time
measurement`` (PSTrace's local time) is the start time.  The impedance layout (``freq / Hz``,
``Z' / Ohm``, ...) is read by the text-table reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportedStep, ImportFileError, decode_text, read_bytes
from .palmsens import METHODS

READER = "labctl.importers.palmsens_csv 1"
_SIGN = "PalmSens: positive current = oxidation (anodic) at the WE, as labctl's; kept as is"
_MEASURED = "date and time measurement:"

#: PSTrace's technique name (the text before ':' in a curve title) -> METHOD_ID
TECHNIQUES = {
    "cyclic voltammetry": "cv",
    "fast cyclic voltammetry": "fcv",
    "linear sweep voltammetry": "lsv",
    "differential pulse voltammetry": "dpv",
    "square wave voltammetry": "swv",
    "normal pulse voltammetry": "npv",
    "ac voltammetry": "acv",
    "chronoamperometry": "ca",
    "amperometric detection": "ad",
    "pulsed amperometric detection": "pad",
    "chronopotentiometry": "cp",
    "open circuit potentiometry": "ocp",
}
_CURRENT = {"A": 1.0, "mA": 1e-3, "µA": 1e-6, "μA": 1e-6, "uA": 1e-6, "nA": 1e-9, "pA": 1e-12}
_VOLT = {"V": 1.0, "mV": 1e-3}


@dataclass
class _Curve:
    title: str
    x: str  # unit of the first column
    y: str  # unit of the second
    role: str  # 'sweep' (E, i), 'i(t)' or 'E(t)'
    method: str | None  # METHOD_ID from the technique name, None if unknown
    scan: int | None


def looks_palmsens_csv(text: str) -> bool:
    lines = text.lstrip("\ufeff").splitlines()[:12]
    if not lines or not re.match(r"\s*(date and time:|file date:)", lines[0], re.I):
        return False
    return any(x.strip().lower().startswith(_MEASURED) for x in lines)


def _sep(line: str) -> str:
    return "\t" if "\t" in line else (";" if ";" in line else ",")


def _started(stamp: str) -> float | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d-%m-%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(stamp.strip(), fmt).timestamp()  # PSTrace's PC local time
        except ValueError:
            continue
    return None


def read_palmsens_csv(path: Path, *, area_cm2: float | None = None) -> ImportedData:
    text, enc = decode_text(path, read_bytes(path))
    lines = text.lstrip("\ufeff").splitlines()
    mline = next((k for k, x in enumerate(lines[:12]) if x.strip().lower().startswith(_MEASURED)), None)
    if mline is None or mline == 0 or mline + 1 >= len(lines):
        raise ImportFileError(
            f"{path}: a PSTrace CSV without the lines 'Date and time measurement:' and the units under it "
            "(an unknown layout; export the curves again with PSTrace's Export to CSV)"
        )
    sep = _sep(lines[mline + 1])
    units = [u.strip() for u in lines[mline + 1].split(sep)]
    while units and not units[-1]:
        units.pop()
    if not units or len(units) % 2:
        raise ImportFileError(
            f"{path}:{mline + 2}: units line {lines[mline + 1].strip()!r}: expected pairs such as 'V,µA' "
            "(an unknown layout)"
        )
    titles = [x.strip() for x in lines[mline - 1].split(sep)] if mline >= 1 else []
    stamps = [x.strip() for x in lines[mline].split(sep)]
    ncurve = len(units) // 2
    curves: list[_Curve] = []
    for c in range(ncurve):
        xu, yu = units[2 * c], units[2 * c + 1]
        title = titles[2 * c] if 2 * c < len(titles) and titles[2 * c] else f"curve {c + 1}"
        if xu in _VOLT and yu in _CURRENT:
            role = "sweep"
        elif xu == "s" and yu in _CURRENT:
            role = "i(t)"
        elif xu == "s" and yu in _VOLT:
            role = "E(t)"
        else:
            raise ImportFileError(
                f"{path}:{mline + 2}: curve {c + 1} ({title!r}) has the units {xu!r}, {yu!r}: labctl reads potential "
                "(V, mV) against current (A, mA, µA, nA, pA), or time (s) against current or potential"
            )
        tech = title.split(":", 1)[0].strip().lower()
        method = TECHNIQUES.get(tech)
        m = re.search(r"scan\s+(\d+)", title, re.I)
        curves.append(_Curve(title, xu, yu, role, method, int(m.group(1)) if m else None))
    xs: list[list[float]] = [[] for _ in range(ncurve)]
    ys: list[list[float]] = [[] for _ in range(ncurve)]
    ended = [False] * ncurve
    prev_fields = None
    last = len(lines) - 1
    while last > mline + 1 and not lines[last].strip():
        last -= 1
    for j in range(mline + 2, last + 1):
        raw = lines[j]
        if not raw.strip():
            continue
        toks = [x.strip() for x in raw.split(sep)]
        nfields = len(toks)
        if j == last and prev_fields is not None and nfields < prev_fields:
            raise ImportFileError(
                f"{path}:{j + 1}: {nfields} fields where the line before has {prev_fields} (truncated file?)"
            )
        toks += [""] * (2 * ncurve - len(toks))
        if not any(toks):
            continue
        if all(not _is_number(t, sep) for t in toks if t):
            rest = next((lines[k].strip() for k in range(j, last + 1) if lines[k].strip()), "")
            raise ImportFileError(
                f"{path}:{j + 1}: text after the data ({rest[:50]!r}): another measurement follows; labctl reads "
                "one measurement per PSTrace CSV: export each measurement to its own file"
            )
        for c in range(ncurve):
            a, b = toks[2 * c], toks[2 * c + 1]
            if not a and not b:
                ended[c] = ended[c] or bool(xs[c])
                continue
            col = 2 * c + (1 if a else 0) + 1
            if not a or not b:
                raise ImportFileError(
                    f"{path}:{j + 1}: field {col} ({units[col - 1]!r} of {curves[c].title!r}) is empty while its "
                    "pair is not (truncated or damaged file?)"
                )
            if ended[c]:
                raise ImportFileError(
                    f"{path}:{j + 1}: {curves[c].title!r} has values again after empty cells above (damaged file?)"
                )
            for k, tok in ((2 * c, a), (2 * c + 1, b)):
                if not _is_number(tok, sep):
                    raise ImportFileError(f"{path}:{j + 1}: field {k + 1} ({units[k]!r}): {tok!r} is not a number")
            xs[c].append(_number(a, sep))
            ys[c].append(_number(b, sep))
        prev_fields = nfields
    if not any(xs):
        raise ImportFileError(f"{path}:{mline + 2}: units line found but no data rows under it")
    notes: list[str] = []
    ts, vs, is_ = [], [], []
    steps: list[ImportedStep] = []
    n = 0
    t_off = 0.0
    kinds: dict[str, str] = {}
    for c, cv in enumerate(curves):
        x, y = np.array(xs[c], float), np.array(ys[c], float)
        if x.size == 0:
            notes.append(f"{cv.title!r}: no points")
            continue
        method = cv.method
        if method is None:
            method = {"sweep": "lsv", "i(t)": "ca", "E(t)": "cp"}[cv.role]
            notes.append(f"{cv.title!r}: technique not known to labctl: stored as {METHODS[method][1]} by its units")
        kind, label = METHODS[method]
        if cv.role == "sweep":
            t = np.arange(x.size, dtype=float) + t_off
            v, i = x * _VOLT[cv.x], y * _CURRENT[cv.y]
        elif cv.role == "i(t)":
            t = x - x[0] + t_off
            v, i = np.full(x.size, np.nan), y * _CURRENT[cv.y]
            notes.append(f"{cv.title!r}: the export holds no potential: voltage not recorded")
        else:
            t = x - x[0] + t_off
            v, i = y * _VOLT[cv.y], np.full(x.size, np.nan)
            notes.append(f"{cv.title!r}: the export holds no current: current not recorded")
        scan = cv.scan or 1
        cycle = scan if kind == "cv" else 0
        params = {"title": cv.title, "curve": c + 1, "method_id": method}
        if cv.scan:
            params["scan"] = cv.scan
        name = cv.title.split(":", 1)[-1].strip() or cv.title
        steps.append(ImportedStep(kind, f"{label}: {name}", cycle, n, n + x.size, params))
        kinds[cv.title] = kind
        ts.append(t)
        vs.append(v)
        is_.append(i)
        n += x.size
        t_off = float(t[-1]) + 1.0
    if any(c.role == "sweep" for c in curves):
        notes.append("a PSTrace voltammogram export holds no time: t is the point number")
    started = _started(stamps[1]) if len(stamps) > 1 else None
    header = {
        "date_and_time": lines[0].split(sep, 1)[1].strip() if sep in lines[0] else "",
        "notes": " ".join(x.strip().strip(sep) for x in lines[1 : max(mline - 1, 1)] if x.strip(sep + " ")),
        "titles": [c.title for c in curves],
        "measured": stamps[1] if len(stamps) > 1 else "",
    }
    mapping = {
        "current_sign": _SIGN,
        "cycle_definition": "PalmSens CV scan number (from 'Scan k' in the curve title): labctl cycle = that number; "
        "other techniques cycle 0",
        "steps": kinds,
        "charge_source": "integrated current (the export has no charge column)",
        "columns": {c.title: f"{c.x}, {c.y}" for c in curves},
        "encoding": enc,
    }
    return ImportedData(
        source=str(path),
        format="palmsens-csv",
        reader=READER,
        t=np.concatenate(ts),
        voltage=np.concatenate(vs),
        current=np.concatenate(is_),
        steps=steps,
        mapping=mapping,
        area_cm2=area_cm2,
        started_unix=started,
        notes=notes,
        header=header,
    )


def _is_number(tok: str, sep: str) -> bool:
    try:
        _number(tok, sep)
    except ValueError:
        return False
    return True


def _number(tok: str, sep: str) -> float:
    t = tok.strip().strip('"')
    if sep != "," and "," in t:
        t = t.replace(",", ".")
    return float(t)
