"""Maccor raw-data text exports (``.0NN``, ``.txt``; MacTest/MIMS "export to text").

Layout: an optional first line ``Today's Date ...  Date of Test: ...  Filename: ...
Procedure: ...  Comment/Barcode: ...``, then a header line starting ``Rec#`` and one
tab-separated row per record (commas are accepted too).  Columns read:

* ``Cyc#``: the procedure's cycle counter (it advances where the procedure says so, not
  necessarily once per charge/discharge pair): labctl's cycle;
* ``Step``: the procedure's step number; ``State`` (older exports: ``MD``): ``C`` charge,
  ``D`` discharge, ``R`` rest, other letters (``O``, ``P``, ``S``, ``FRA`` ...) kept as
  the step's name;
* ``Test (Sec)`` / ``TestTime`` / ``Test Time``: seconds, or ``Nd HH:MM:SS.ffff``;
* ``Amps``: the current, unsigned in some exports and signed (negative on discharge) in
  others: labctl takes the sign from ``State`` (C +, D -) either way;
* ``Volts``; ``Amp-hr``: the capacity counter, unsigned, which Maccor resets at every
  step (the reader checks, and re-bases a counter that runs on); ``Temp 1`` if present;
* ``DPt Time`` of the first record: the start time (the instrument PC's local time).

``Watt-hr``, ``ES`` (end-step codes), ``Loop1..4``, ``ACImp/Ohms``, ``DCIR/Ohms``, the
``WF`` columns and ``VAR1..15`` are not stored.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportedStep, ImportFileError, decode_text, read_bytes, segments, step_charge

READER = "labctl.importers.maccor 1"

_DHMS = re.compile(r"^\s*(\d+)\s*d\s+(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*$")
_TIME_NAMES = ("test (sec)", "testtime", "test time", "test time (sec)", "test time (s)", "test(sec)")
_STEP_TIME_NAMES = ("step (sec)", "steptime", "step time", "step time (sec)")
_STATE_NAMES = ("state", "md")
_REQUIRED = ("Cyc#", "Step", "Amps", "Volts", "Amp-hr")
_CV_FLAT_V = 0.005  # a C/D step whose voltage stays within 5 mV while its current falls: CV


def is_maccor_header(line: str) -> bool:
    """True for a Maccor export's column line (``Rec#``, ``Cyc#``, ``State`` or ``MD``, ``Amps``)."""
    names = {n.strip().lower() for n in re.split(r"[\t,]", line)}
    return "rec#" in names and "cyc#" in names and "amps" in names and bool(names & set(_STATE_NAMES))


def looks_maccor(text: str) -> bool:
    lines = text.lstrip("\ufeff").splitlines()[:3]
    return any(is_maccor_header(x) for x in lines)


def _header_fields(first: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pats = {
        "date_of_test": r"Date of Test:\s*([^\t]*)",
        "filename": r"Filename:\s*(.*?)\s*(?:Procedure:|\t|$)",
        "procedure": r"Procedure:\s*([^\t]*)",
        "comment": r"Comment/Barcode:\s*(.*)$",
        "export_date": r"Today's Date\s*(\S+)",
    }
    for k, pat in pats.items():
        m = re.search(pat, first)
        if m and m.group(1).strip():
            out[k] = m.group(1).strip()
    return out


def maccor_seconds(tok: str) -> float:
    """Seconds from a Maccor time field: a number of seconds, or ``Nd HH:MM:SS.ffff`` (ValueError if neither)."""
    m = _DHMS.match(tok)
    if m:
        d, h, mi, s = m.groups()
        return int(d) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)
    return float(tok)


def _seconds(path: Path, line_of, name: str, toks: list[str]) -> np.ndarray:
    """A time column: seconds as numbers, or Maccor's ``Nd HH:MM:SS.ffff``."""
    try:
        return np.array(toks, dtype=float)
    except ValueError:
        pass
    out = np.empty(len(toks))
    for k, tok in enumerate(toks):
        try:
            out[k] = maccor_seconds(tok)
        except ValueError:
            raise ImportFileError(
                f"{path}:{line_of(k)}: field {name!r}: {tok.strip()!r} is neither seconds nor a time "
                "like '0d 01:02:03.0000'"
            ) from None
    return out


def _numbers(path: Path, line_of, name: str, toks: list[str]) -> np.ndarray:
    try:
        return np.array(toks, dtype=float)
    except ValueError:
        for k, tok in enumerate(toks):
            try:
                float(tok)
            except ValueError:
                raise ImportFileError(f"{path}:{line_of(k)}: field {name!r}: {tok.strip()!r} is not a number") from None
        raise


def _start_time(stamp: str) -> float | None:
    for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%d-%b-%y %I:%M:%S %p"):
        try:
            return datetime.strptime(stamp.strip(), fmt).timestamp()  # the instrument PC's local time
        except ValueError:
            continue
    return None


def read_maccor(path: Path, *, area_cm2: float | None = None) -> ImportedData:
    text, enc = decode_text(path, read_bytes(path))
    lines = text.lstrip("\ufeff").splitlines()
    hdr = next((k for k, x in enumerate(lines[:3]) if is_maccor_header(x)), None)
    if hdr is None:
        raise ImportFileError(f"{path}: no Maccor column line (Rec#, Cyc#, Step, ..., State) in its first 3 lines")
    sep = "\t" if "\t" in lines[hdr] else ","
    names = [n.strip() for n in lines[hdr].split(sep)]
    low = [n.lower() for n in names]
    header = _header_fields(lines[0]) if hdr > 0 else {}

    def col(*cands: str) -> int | None:
        for c in cands:
            if c.lower() in low:
                return low.index(c.lower())
        return None

    idx = {n: col(n) for n in _REQUIRED}
    idx["time"] = col(*_TIME_NAMES)
    idx["state"] = col(*_STATE_NAMES)
    missing = [n for n, k in idx.items() if k is None]
    if missing:
        cn = {"time": "Test (Sec) or TestTime", "state": "State (or MD)"}
        raise ImportFileError(
            f"{path}:{hdr + 1}: a Maccor export without the column(s) {', '.join(cn.get(m, m) for m in missing)}: "
            f"an unknown layout (labctl reads Cyc#, Step, Test (Sec) or TestTime, Amps, Volts, State, Amp-hr; "
            "export them from MacTest/MIMS)"
        )
    opt_temp = col("Temp 1", "Temp1", "Temperature")
    opt_dpt = col("DPt Time")
    ncol = len(names)
    rows: list[list[str]] = []
    line_no: list[int] = []
    for j in range(hdr + 1, len(lines)):
        s = lines[j]
        if not s.strip():
            continue
        toks = s.split(sep)
        if len(toks) < ncol:
            raise ImportFileError(
                f"{path}:{j + 1}: {len(toks)} fields where the header (line {hdr + 1}) has {ncol} (truncated file?)"
            )
        rows.append(toks)
        line_no.append(j + 1)
    if not rows:
        raise ImportFileError(f"{path}:{hdr + 1}: header found but no data rows under it")

    def line_of(k: int) -> int:
        return line_no[k]

    def column(k: int) -> list[str]:
        return [r[k] for r in rows]

    assert idx["time"] is not None and idx["state"] is not None
    t = _seconds(path, line_of, names[idx["time"]], column(idx["time"]))
    cyc_f = _numbers(path, line_of, "Cyc#", column(idx["Cyc#"]))  # type: ignore[arg-type]
    stp_f = _numbers(path, line_of, "Step", column(idx["Step"]))  # type: ignore[arg-type]
    amps = _numbers(path, line_of, "Amps", column(idx["Amps"]))  # type: ignore[arg-type]
    volts = _numbers(path, line_of, "Volts", column(idx["Volts"]))  # type: ignore[arg-type]
    ah = _numbers(path, line_of, "Amp-hr", column(idx["Amp-hr"]))  # type: ignore[arg-type]
    state = np.array([s.strip().upper() for s in column(idx["state"])], dtype=object)
    for name, arr in (("Cyc#", cyc_f), ("Step", stp_f)):
        bad = np.nonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0]
        if bad.size:
            raise ImportFileError(f"{path}:{line_of(int(bad[0]))}: field {name!r}: not a whole number")
    for name, arr in (("Amps", amps), ("Volts", volts), ("Amp-hr", ah), (names[idx["time"]], t)):
        bad = np.nonzero(~np.isfinite(arr))[0]
        if bad.size:
            raise ImportFileError(f"{path}:{line_of(int(bad[0]))}: field {name!r}: not a finite number")
    empty = np.nonzero(state == "")[0]
    if empty.size:
        raise ImportFileError(f"{path}:{line_of(int(empty[0]))}: field 'State': empty (C, D, R, ...)")
    cyc = cyc_f.astype(np.int64)
    stp = stp_f.astype(np.int64)
    notes: list[str] = []

    # the current's sign from State
    is_c, is_d = state == "C", state == "D"
    signed = bool(np.any(amps < 0))
    against = int(np.sum(is_c & (amps < 0)) + np.sum(is_d & (amps > 0)))
    current = np.where(is_c, np.abs(amps), np.where(is_d, -np.abs(amps), amps))
    rule = (
        "labctl: +|Amps| on State C (charge, anodic at a positive-electrode WE), -|Amps| on State D, "
        "as written otherwise"
    )
    if not np.any(is_d & (amps != 0)):
        sign_note = f"Maccor: no discharge rows with a current in this file; {rule}"
    elif signed:
        sign_note = f"Maccor: Amps written signed (negative on discharge) in this file; {rule}"
    else:
        sign_note = f"Maccor: Amps written unsigned in this file; {rule}"
    if against:
        notes.append(f"{against} rows whose Amps sign disagrees with their State: the State was followed")
    other = ~(is_c | is_d) & (amps != 0)
    if np.any(other):
        k = int(np.nonzero(other)[0][0])
        notes.append(
            f"{int(other.sum())} rows of State other than C/D carry a current (first: line {line_of(k)}, State "
            f"{state[k]!r}): its sign is as written"
        )

    # steps: one per run of rows with the same (Cyc#, Step, State)
    code = np.unique(state, return_inverse=True)[1].astype(np.int64)
    key = (cyc - cyc.min()) * (int(stp.max() - stp.min()) + 1) * (int(code.max()) + 1)
    key = key + (stp - stp.min()) * (int(code.max()) + 1) + code
    bounds = segments(key)
    steps: list[ImportedStep] = []
    kinds: dict[str, str] = {}
    resets = runs_on = 0
    for a, b in bounds:
        st = str(state[a])
        params: dict = {"instrument_step": int(stp[a]), "instrument_state": st}
        if st in ("C", "D"):
            what = "charge" if st == "C" else "discharge"
            v, i = volts[a:b], np.abs(current[a:b])
            cv = b - a >= 5 and float(np.ptp(v)) <= _CV_FLAT_V and float(i[-1]) < 0.8 * float(i[0])
            kind = "potentiostatic" if cv else "galvanostatic"
            label = f"{st} {what}{' (CV)' if cv else ''} (step {int(stp[a])})"
            params["cycling"] = True
            kinds[f"{st} ({what}){' CV' if cv else ''}"] = kind
            if a > 0 and b - a >= 2:
                prev = float(ah[a - 1])
                if prev > 0 and ah[a] < prev and ah[a] <= 0.5 * max(float(np.max(ah[a:b])), 1e-12):
                    resets += 1
                elif prev > 0 and ah[a] >= prev:
                    runs_on += 1
        elif st == "R":
            kind, label = "rest", f"R rest (step {int(stp[a])})"
            kinds["R (rest)"] = "rest"
        else:
            zero = bool(np.all(amps[a:b] == 0))
            kind = "rest" if zero else "galvanostatic"
            extra = " (impedance: Maccor writes the spectrum to a separate .EDA file, not read)" if st == "FRA" else ""
            label = f"{st}{extra} (step {int(stp[a])})"
            kinds[st] = f"{kind} ({'no current' if zero else 'the current as written'})"
        steps.append(ImportedStep(kind, label, int(cyc[a]), a, b, params))
    if any(s.label.startswith("FRA") for s in steps):
        notes.append(
            "FRA rows (an impedance measurement) stored as open-circuit rest; its spectrum is in the .EDA file; "
            "the test time does not advance during them in Maccor's export (their DPt Time does)"
        )

    q = step_charge(ah * 3600.0, bounds)
    charge = np.where(is_c, q, np.where(is_d, -q, 0.0))
    if not (is_c | is_d).any():
        counter = "no charge or discharge rows in this file"
    elif runs_on and not resets:
        counter = "Amp-hr runs on across steps in this file: re-based at each step"
    elif runs_on:
        counter = f"Amp-hr restarts at {resets} step starts and runs on at {runs_on}: re-based where it runs on"
    else:
        counter = "Amp-hr restarts at every step in this file (Maccor's counter is per step)"
    mapping: dict = {
        "columns": {
            "t": names[idx["time"]],
            "voltage": "Volts",
            "current": "Amps (sign from State)",
            "cycle": "Cyc#",
            "step": "Step",
            "status": names[idx["state"]],
            "charge": "Amp-hr",
        },
        "encoding": enc,
        "current_sign": sign_note,
        "cycle_definition": "Maccor Cyc# (the procedure's cycle counter; it advances where the procedure "
        "says so, not necessarily once per charge/discharge pair): labctl cycle = that number",
        "steps": kinds,
        "charge_source": f"instrument counter Amp-hr (unsigned, Ah), signed by State; {counter}",
        "not_read": [x for x in ("Watt-hr", "ES", "ACImp/Ohms", "DCIR/Ohms") if x.lower() in low],
    }
    temp = None
    if opt_temp is not None:
        try:
            temp = np.array(column(opt_temp), dtype=float)
            mapping["columns"]["temperature"] = names[opt_temp]
        except ValueError:
            notes.append(f"column {names[opt_temp]!r} is not numeric: temperature not read")
    started = None
    if opt_dpt is not None:
        started = _start_time(rows[0][opt_dpt])
        if started is not None:
            notes.append(f"test started {rows[0][opt_dpt].strip()} (DPt Time: the instrument PC's local time)")
    if "filename" in header:
        header["filename"] = header["filename"].strip()
    return ImportedData(
        source=str(path),
        format="maccor-text",
        reader=READER,
        t=t - t[0],
        voltage=volts,
        current=current,
        steps=steps,
        mapping=mapping,
        charge=charge,
        temperature=temp,
        area_cm2=area_cm2,
        started_unix=started,
        notes=notes,
        header=header,
    )
