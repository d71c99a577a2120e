"""Column-table exports: cycler CSV/XLSX (Arbin, Maccor, Neware BTSDA), Metrohm Nova ASCII,
CH Instruments text, PalmSens CSV, BioLogic EC-Lab ``.mpt`` text and ``.mpr`` (galvani).

The header line is the one whose names give a time, a potential or a current column;
the data are the numeric lines under it (separator tab, semicolon, comma or runs of
spaces; a decimal comma where the separator is not a comma; text columns such as
Nova's ``Current range`` are skipped).  Columns are recognised by name, with their unit:

* time: ``Test_Time(s)``, ``Test Time``, ``time/s``, ``Time (s)``, ``T``, ``TestTime``;
  ``Step_Time(s)`` only when no test time is given (then summed over the steps);
* potential: ``Voltage(V)``, ``Ewe/V``, ``Ecell/V``, ``WE(1).Potential (V)``,
  ``Potential applied (V)`` (used only without a measured potential), ``Potential/V``,
  ``Volts``, ``E (mV)``...; mV and uV converted;
* current: ``Current(A)``, ``I/mA``, ``<I>/mA``, ``WE(1).Current (A)``, ``Current/A``,
  ``Amps``, ``I (uA)``...; or a current density: ``j (mA/cm2)``, ``Current density (A/m2)``,
  ``i (uA/cm2)``, converted with the electrode area (which must be known);
* cycle: ``Cycle_Index``, ``Cycle``, ``cycle number``, ``Cyc#``; step: ``Step_Index``,
  ``Step``, ``Ns``, ``Step Number``; status: ``Status``, ``Step Type``, ``MD``, ``Mode``;
* the instrument's capacity counters: ``Charge_Capacity(Ah)``/``Discharge_Capacity(Ah)``,
  ``Charge Capacity(mAh)``/``Discharge Capacity(mAh)``, ``Q charge/discharge/mA.h``,
  ``Amp-hr``, ``Capacity(mAh)``;
* impedance: ``freq/Hz``, ``Re(Z)/Ohm``, ``-Im(Z)/Ohm``, ``Z'``, ``Z''``...
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportedStep, ImportFileError, decode_text, read_bytes, step_charge
from .cycler import cycler_steps, sign_steps

READER = "labctl.importers.table 1"


def key(name: str) -> str:
    return re.sub(r"[\s_]+", "", name.strip().strip('"').strip("#").strip()).lower()


def _unit(name: str) -> str:
    m = re.search(r"[(\[/]\s*([^()\[\]/]*(?:/[^()\[\]]*)?)\s*[)\]]?\s*$", name)
    return m.group(1).strip() if m else ""


_SI = {"": 1.0, "k": 1e3, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9, "p": 1e-12}


def _prefix_scale(unit: str, base: str) -> float | None:
    u = unit.replace(" ", "")
    m = re.fullmatch(r"([kmuµμnp]?)" + base, u, flags=re.I if base != "A" else 0)
    if not m:
        return None
    return _SI[m.group(1).lower() if m.group(1) not in ("µ", "μ") else "u"]


# (role, pattern on key(name)); earlier patterns win for the same role
_ROLES: list[tuple[str, re.Pattern]] = [
    ("time", re.compile(r"^(?:testtime|totaltime|time|elapsedtime|t|runtime|timestamp\(s\))(?:[/(\[].*)?$")),
    ("time", re.compile(r"^(?:test_time|testtime\(s\)|time/s|time\(s\)|corrected time \(s\))")),
    ("step_time", re.compile(r"^(?:steptime|steptime\(.*\))(?:[/(\[].*)?$")),
    ("density", re.compile(r"^(?:j|i|currentdensity|<i>|current)(?:[/(\[]).*(?:cm2|cm\^2|cm²|m2|m\^2|m²)")),
    (
        "voltage",
        re.compile(r"^(?:we\(1\)\.potential|<?ewe>?|<?ecell>?|voltage|potential|volts|e|u|v|ecell)(?:[/(\[].*)?$"),
    ),
    ("applied", re.compile(r"^(?:potentialapplied|eapplied|vf|vu)(?:[/(\[].*)?$")),
    ("current", re.compile(r"^(?:we\(1\)\.current|<?i>?|current|amps|im|i)(?:[/(\[].*)?$")),
    ("cycle", re.compile(r"^(?:cycleindex|cycle|cyclenumber|cyc#|cycleid|cycleno\.?)(?:[/(\[].*)?$")),
    ("step", re.compile(r"^(?:stepindex|step|ns|stepnumber|stepid|step#|stepno\.?)(?:[/(\[].*)?$")),
    ("status", re.compile(r"^(?:status|steptype|md|mode|state)$")),
    ("q_charge", re.compile(r"^(?:chargecapacity|chgcap|chargecap)(?:[/(\[].*)?$")),
    ("q_discharge", re.compile(r"^(?:dischargecapacity|dchgcap|dischargecap)(?:[/(\[].*)?$")),
    ("q_signed", re.compile(r"^(?:qcharge/discharge|capacity|amp-hr|amphr|q)(?:[/(\[].*)?$")),
    ("frequency", re.compile(r"^(?:freq|frequency|f)(?:[/(\[].*)?$")),
    ("z_re", re.compile(r"^(?:re\(z\)|z'|zre|zreal)(?:[/(\[].*)?$")),
    ("z_im", re.compile(r"^(-)?(?:im\(z\)|z''|z\"|zim|zimag|-z'')(?:[/(\[].*)?$")),
    ("temperature", re.compile(r"^(?:temperature|temp|t1|aux_temperature)(?:[/(\[].*)?$")),
]


def roles(names: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, n in enumerate(names):
        kn = key(n)
        if not kn:
            continue
        for role, pat in _ROLES:
            if role in out:
                continue
            if pat.match(kn):
                out[role] = k
                break
    return out


@dataclass
class Table:
    names: list[str]
    columns: list[np.ndarray]  # float, NaN where a field was text
    header_line: int  # 1-based
    first_line: int
    encoding: str
    preamble: list[str]
    text: dict[int, np.ndarray] | None = None  # text columns by index (spreadsheets)


def _split(line: str) -> tuple[list[str], bool]:
    if "\t" in line:
        return [p.strip() for p in line.split("\t")], True
    if ";" in line:
        return [p.strip() for p in line.split(";")], True
    if "," in line:
        return [p.strip() for p in line.split(",")], False
    return line.split(), True


def _num(tok: str, comma: bool) -> float | None:
    tok = tok.strip().strip('"')
    try:
        return float(tok)
    except ValueError:
        if comma and "," in tok:
            try:
                return float(tok.replace(",", "."))
            except ValueError:
                return None
        return None


def read_table_text(path: Path, *, header_at: int | None = None) -> Table:
    text, enc = decode_text(path, read_bytes(path))
    lines = text.splitlines()
    hdr = None
    if header_at is not None:
        hdr = header_at - 1
    else:
        for k, line in enumerate(lines[:400]):
            s = line.strip().lstrip("#").strip()
            if not s:
                continue
            names, _ = _split(s)
            r = roles(names)
            if len(names) >= 2 and (
                (("voltage" in r or "applied" in r) and ("current" in r or "density" in r))
                or ("frequency" in r and ("z_re" in r or "z_im" in r))
                or ("time" in r and "voltage" in r)
            ):
                hdr = k
                break
    if hdr is None or hdr >= len(lines):
        raise ImportFileError(
            f"{path}: no header line naming a potential and a current column (or frequency and Z) in its first "
            "400 lines: an unknown column layout; the columns labctl reads are listed in docs/importers.md"
        )
    names, _ = _split(lines[hdr].strip().lstrip("#").strip())
    names = [n.strip('"') for n in names]
    fast = _fast_numeric(lines, hdr, len(names))
    if fast is not None:
        arr, first_line = fast
        return Table(names, [arr[:, c] for c in range(len(names))], hdr + 1, first_line, enc, lines[:hdr])
    rows: list[list[float]] = []
    first = None
    ncol = len(names)
    for j in range(hdr + 1, len(lines)):
        s = lines[j].strip()
        if not s or s[0] in "#%":
            continue
        toks, comma = _split(s)
        vals = [_num(t, comma) for t in toks]
        if all(v is None for v in vals):
            if not rows and j <= hdr + 2:
                continue  # a units line under the names
            break  # text after the data (a second section): stop
        if len(toks) < ncol:
            raise ImportFileError(
                f"{path}:{j + 1}: {len(toks)} fields where the header (line {hdr + 1}) has {ncol} (truncated file?)"
            )
        rows.append([np.nan if v is None else v for v in vals[:ncol]])
        if first is None:
            first = j + 1
    if not rows:
        raise ImportFileError(f"{path}:{hdr + 1}: header found but no data rows under it")
    arr = np.array(rows, dtype=float)
    return Table(names, [arr[:, c] for c in range(ncol)], hdr + 1, first or hdr + 2, enc, lines[:hdr])


def _fast_numeric(lines: list[str], hdr: int, ncol: int) -> tuple[np.ndarray, int] | None:
    """All rows under the header at C speed when every field is a number (else None: the slow path)."""
    j = hdr + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    if j >= len(lines):
        return None
    sample = lines[j].strip()
    toks, comma = _split(sample)
    if len(toks) != ncol or any(_num(t, comma) is None for t in toks):
        return None
    sep = "\t" if "\t" in sample else (";" if ";" in sample else ("," if "," in sample and not comma else None))
    if sep is None:
        return None
    body = "\n".join(lines[j:]).strip()
    if comma and "," in body:
        body = body.replace(",", ".")
    if '"' in body:
        return None
    flat = body.replace("\r", "").replace("\n", sep)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fromstring's "could not be read to its end": the slow path then
        try:
            arr = np.array(flat.split(sep), dtype=float) if len(flat) < 4096 else np.fromstring(flat, sep=sep)
        except ValueError:
            return None
    n_rows = body.count("\n") + 1
    if arr.size != n_rows * ncol:
        return None  # text fields, short rows, a second section: read line by line for the error
    return arr.reshape(n_rows, ncol), j + 1


def _scale_voltage(name: str) -> float:
    u = _unit(name)
    s = _prefix_scale(u, "V")
    return 1.0 if s is None else s


def _scale_current(path: Path, name: str) -> float:
    u = _unit(name).replace("uA", "µA")
    if not u:
        return 1.0  # no unit written (Amps, Im, Current): A
    s = _prefix_scale(u, "A")
    if s is None:
        raise ImportFileError(f"{path}: current column {name!r} has the unit {u!r}, which labctl cannot convert to A")
    return s


def density_to_a_per_cm2(path: Path, name: str) -> float:
    """Factor from the density column's unit to A/cm2."""
    u = _unit(name).replace(" ", "").replace("^", "").replace("²", "2").replace("uA", "µA")
    m = re.fullmatch(r"([kmuµμnp]?)A/(cm|m)2", u)
    if not m:
        raise ImportFileError(
            f"{path}: current density column {name!r}: unit {u!r} not understood (A/m2, mA/cm2, uA/cm2)"
        )
    pre = m.group(1)
    f = _SI["u" if pre in ("µ", "μ") else pre]
    return f if m.group(2) == "cm" else f * 1e-4


def _charge_scale(path: Path, name: str) -> float:
    """Factor from the counter's unit to C (Ah, mAh, mA.h, C)."""
    u = _unit(name).replace(" ", "").replace(".", "").lower()
    if u in ("ah",) or key(name) in ("amp-hr", "amphr"):
        return 3600.0
    if u in ("mah",):
        return 3.6
    if u in ("uah", "µah"):
        return 3.6e-3
    if u in ("c",):
        return 1.0
    if u in ("mc",):
        return 1e-3
    raise ImportFileError(f"{path}: capacity column {name!r}: unit {u!r} not understood (Ah, mAh, mA.h, C)")


def table_to_data(
    path: Path, tab: Table, *, fmt: str, reader: str, area_cm2: float | None, sign_note: str, cycle_note: str
) -> ImportedData:
    r = roles(tab.names)
    notes: list[str] = []
    col = tab.columns
    n = col[0].size
    is_eis = "frequency" in r and ("z_re" in r and "z_im" in r)
    if is_eis and "current" not in r and "density" not in r:
        r["current"] = -1  # an impedance table without a DC current column
    if "current" not in r and "density" not in r:
        raise ImportFileError(
            f"{path}:{tab.header_line}: no current column among: {', '.join(tab.names)} "
            "(labctl reads Current(A), I/mA, <I>/mA, WE(1).Current (A), Amps, or a density j (mA/cm2))"
        )
    mapping: dict = {"columns": {}, "encoding": tab.encoding}
    if r.get("current") == -1:
        i = np.full(n, np.nan)
        notes.append("impedance table without a DC current column: current not recorded")
    elif "current" in r:
        nm = tab.names[r["current"]]
        i = col[r["current"]] * _scale_current(path, nm)
        mapping["columns"]["current"] = nm
    else:
        nm = tab.names[r["density"]]
        f = density_to_a_per_cm2(path, nm)
        if area_cm2 is None:
            raise ImportFileError(
                f"{path}:{tab.header_line}: the current is given as a density ({nm!r}) and no electrode area is "
                "known: give --area AREA_CM2 or a cell file with area_cm2"
            )
        i = col[r["density"]] * f * area_cm2
        mapping["columns"]["current"] = f"{nm} x {area_cm2} cm2"
        notes.append(f"current density {nm!r} converted to A with the area {area_cm2} cm2")
    vkey = "voltage" if "voltage" in r else ("applied" if "applied" in r else None)
    if vkey is None and is_eis:
        v = np.full(n, np.nan)
    elif vkey is None:
        raise ImportFileError(f"{path}:{tab.header_line}: no potential column among: {', '.join(tab.names)}")
    else:
        v = col[r[vkey]] * _scale_voltage(tab.names[r[vkey]])
        mapping["columns"]["voltage"] = tab.names[r[vkey]]
    if vkey == "applied":
        notes.append(f"potential from {tab.names[r[vkey]]!r} (the applied potential; no measured one in the file)")
    bad = ~np.isfinite(i) | ~np.isfinite(v)
    if is_eis:
        bad = ~np.isfinite(col[r["frequency"]])
    if bad.all():
        raise ImportFileError(f"{path}:{tab.first_line}: no row with a numeric current and potential")
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        raise ImportFileError(
            f"{path}: row {k + 1} of the data (from line {tab.first_line}) has a non-numeric current or potential"
        )
    if "time" in r:
        t = col[r["time"]].astype(float)
        mapping["columns"]["t"] = tab.names[r["time"]]
    elif "step_time" in r:
        t = None
    else:
        t = np.arange(n, dtype=float)
        notes.append("no time column: t is the row number")
    stp = np.nan_to_num(col[r["step"]]).astype(np.int64) if "step" in r else None
    cyc = np.nan_to_num(col[r["cycle"]]).astype(np.int64) if "cycle" in r else np.zeros(n, dtype=np.int64)
    status = None
    if "status" in r:
        raw = _status_column(path, tab, r["status"])
        status = raw
    steps: list[ImportedStep]
    kinds: dict
    if is_eis:
        steps = [ImportedStep("eis", "impedance", int(cyc[0]) if n else 0, 0, n, {})]
        kinds = {"impedance table": "eis"}
    elif stp is not None or status is not None or "q_charge" in r or "q_signed" in r:
        if stp is None:
            stp = sign_steps(i)
            notes.append("no step column: a new step at each change of the current's sign")
        steps, kinds = cycler_steps(stp, cyc, status, i)
    else:
        # a potentiostat sweep export: one step
        kind = "lsv"
        label = "tafel: polarisation curve" if _monotonic(v) else "sweep"
        if not _monotonic(v):
            kind = "cv"
            label = "CV"
        steps = [ImportedStep(kind, label, int(cyc[0]) if n else 0, 0, n, {})]
        kinds = {"sweep": kind}
    if t is None:
        st = col[r["step_time"]]
        t = np.empty(n)
        off = 0.0
        for s in steps:
            t[s.start : s.stop] = st[s.start : s.stop] + off
            off = float(t[s.stop - 1])
        notes.append(f"test time summed from {tab.names[r['step_time']]!r} over the steps")
    bounds = [(s.start, s.stop) for s in steps]
    charge = None
    if "q_charge" in r and "q_discharge" in r:
        qc = step_charge(col[r["q_charge"]] * _charge_scale(path, tab.names[r["q_charge"]]), bounds)
        qd = step_charge(col[r["q_discharge"]] * _charge_scale(path, tab.names[r["q_discharge"]]), bounds)
        charge = np.where(i >= 0, qc, -qd)
        mapping["charge_source"] = (
            f"instrument counters {tab.names[r['q_charge']]} / {tab.names[r['q_discharge']]}, per step"
        )
    elif "q_signed" in r:
        q = step_charge(col[r["q_signed"]] * _charge_scale(path, tab.names[r["q_signed"]]), bounds)
        charge = np.where(i >= 0, q, -q)
        mapping["charge_source"] = f"instrument counter {tab.names[r['q_signed']]}, per step"
    else:
        mapping["charge_source"] = "integrated current (the file has no capacity counter)"
    freq = zr = zi = None
    if is_eis:
        freq = col[r["frequency"]] * _freq_scale(tab.names[r["frequency"]])
        zr = col[r["z_re"]].copy()
        zi = col[r["z_im"]].copy()
        zname = tab.names[r["z_im"]]
        if key(zname).startswith("-"):
            zi = -zi
            notes.append(f"column {zname!r} is -Z'': negated")
        mapping["columns"].update({"frequency": tab.names[r["frequency"]], "z_re": tab.names[r["z_re"]], "z_im": zname})
    if cycle_note:
        mapping["cycle_definition"] = cycle_note if "cycle" in r else "no cycle column: cycle 0"
    mapping["current_sign"] = sign_note
    mapping["steps"] = kinds
    if "cycle" in r:
        mapping["columns"]["cycle"] = tab.names[r["cycle"]]
    temp = col[r["temperature"]] if "temperature" in r else None
    return ImportedData(
        source=str(path),
        format=fmt,
        reader=reader,
        t=t - (t[0] if n else 0.0),
        voltage=v,
        current=i,
        steps=steps,
        mapping=mapping,
        charge=charge,
        temperature=temp,
        frequency=freq,
        z_re=zr,
        z_im=zi,
        notes=notes,
        area_cm2=area_cm2,
    )


def _freq_scale(name: str) -> float:
    u = _unit(name)
    s = _prefix_scale(u, "Hz")
    return 1.0 if s is None else s


def _monotonic(v: np.ndarray) -> bool:
    d = np.diff(v)
    if d.size == 0:
        return True
    big = np.abs(d) > 1e-9
    return bool(np.mean(d[big] > 0) > 0.97 or np.mean(d[big] < 0) > 0.97) if np.any(big) else True


def _status_column(path: Path, tab: Table, k: int) -> np.ndarray:
    """The status column as text: re-read the raw fields (they are not numbers)."""
    if tab.text is not None:
        return tab.text.get(k, np.full(tab.columns[0].size, "", dtype=object))
    text, _ = decode_text(path, read_bytes(path))
    lines = text.splitlines()
    out: list[str] = []
    for j in range(tab.first_line - 1, len(lines)):
        s = lines[j].strip()
        if not s or s[0] in "#%":
            continue
        toks, _ = _split(s)
        if len(out) >= tab.columns[0].size:
            break
        out.append(toks[k].strip('"') if k < len(toks) else "")
    return np.array(out, dtype=object)
