"""PalmSens PSTrace session files (``.pssession``), read by labctl with the standard library.

A ``.pssession`` is JSON in UTF-16 (little-endian, with a byte-order mark); PSTrace 5 writes a
second byte-order mark after the closing brace, and other trailing bytes occur.  The key names
are ``PascalCase`` in PSTrace 5.9+ and lower case in older files, so keys are compared without
case.  Structure (``PalmSens.DataFiles.SessionFile``): ``Measurements`` -> each with ``Title``,
``Method`` (PSTrace's method text: ``METHOD_ID=cv``, ``N_SCANS=3``, ...), ``UTCTimeStamp``
(.NET ticks), ``DataSet.Values`` (arrays, each ``{Type, Description, Unit{Type}, DataValues:
[{V: ...}, ...]}``: one ``DataArrayTime`` and per scan a ``DataArrayPotentials`` /
``DataArrayCurrents`` pair described ``scan<k>channel<m>``) and ``Curves`` (``XAxisDataArray``
/ ``YAxisDataArray``: the plotted arrays; files of PSTrace 5.0 keep their data only there).

The values' unit is in ``Unit.Type`` (``PalmSens.Units.MicroAmpere``: µA; the symbol ``S``
is only ``A``), converted to SI.  PalmSens' current is positive for oxidation at the WE, as
labctl's.  Impedance measurements are not read (see docs/importers.md).
"""

from __future__ import annotations

import codecs
import datetime as _dt
import json
import re
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportedStep, ImportFileError

READER = "labctl.importers.palmsens 1"
SESSION_TYPE = "palmsens.datafiles.sessionfile"
_SIGN = "PalmSens: positive current = oxidation (anodic) at the WE, as labctl's; kept as is"

#: METHOD_ID -> (labctl step kind, label)
METHODS = {
    "cv": ("cv", "CV"),
    "fcv": ("cv", "fast CV"),
    "lsv": ("lsv", "LSV"),
    "dpv": ("lsv", "DPV (differential pulse)"),
    "swv": ("lsv", "SWV (square wave)"),
    "npv": ("lsv", "NPV (normal pulse)"),
    "acv": ("lsv", "ACV (AC voltammetry)"),
    "ad": ("potentiostatic", "chronoamperometry"),
    "ca": ("potentiostatic", "chronoamperometry"),
    "pad": ("potentiostatic", "pulsed amperometric detection"),
    "cp": ("galvanostatic", "chronopotentiometry"),
    "pot": ("rest", "open circuit potential"),
    "ocp": ("rest", "open circuit potential"),
}
_SCALE = {"": 1.0, "milli": 1e-3, "micro": 1e-6, "nano": 1e-9, "pico": 1e-12, "kilo": 1e3}
_NET_EPOCH = _dt.datetime(1, 1, 1, tzinfo=_dt.UTC)


def _lower(o: object) -> object:
    if isinstance(o, dict):
        return {str(k).lower(): _lower(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_lower(x) for x in o]
    return o


def load_session(path: Path, raw: bytes) -> dict:
    """The session's JSON (keys in lower case); errors name what is missing."""
    if not raw.startswith(codecs.BOM_UTF16_LE):
        what = "an MS Access database (an Arbin .res?)" if raw[4:19] == b"Standard Jet DB" else "not UTF-16 text"
        raise ImportFileError(
            f"{path}: named .pssession but {what}: a PalmSens session file is UTF-16 JSON starting with "
            "the byte-order mark FF FE"
        )
    body = raw[2:]
    if len(body) % 2:
        body = body[:-1]  # half a character at the end: a cut file (the JSON check below says so)
    try:
        text = body.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: a PalmSens .pssession that is not valid UTF-16 ({exc})") from None
    try:
        obj, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}"
        if exc.pos >= len(text.rstrip("\x00\ufeff \r\n\t")) - 1:
            raise ImportFileError(
                f"{where}: a PalmSens .pssession whose JSON stops before its end ({exc.msg}): "
                f"truncated after {len(raw):,} bytes (copy it again)"
            ) from None
        raise ImportFileError(f"{where}: a PalmSens .pssession with broken JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ImportFileError(f"{path}: a PalmSens .pssession must hold a JSON object, not {type(obj).__name__}")
    s = _lower(obj)
    assert isinstance(s, dict)
    s["_trailing"] = text[end:].strip("\x00\ufeff \r\n\t")
    if str(s.get("type", "")).lower() != SESSION_TYPE:
        raise ImportFileError(
            f"{path}: JSON whose Type is {s.get('type')!r}, not a PalmSens session ('PalmSens.DataFiles.SessionFile')"
        )
    if not isinstance(s.get("measurements"), list) or not s["measurements"]:
        raise ImportFileError(f"{path}: a PalmSens session with no Measurements")
    return s


def _unit_scale(path: Path, arr: dict, base: str) -> float:
    ut = str((arr.get("unit") or {}).get("type", ""))
    m = re.fullmatch(r"PalmSens\.Units\.(Milli|Micro|Nano|Pico|Kilo)?(\w+)", ut, flags=re.I)
    if not m or m.group(2).lower() != base.lower():
        raise ImportFileError(
            f"{path}: PalmSens array {arr.get('description')!r} has the unit {ut!r}, not a {base} unit labctl converts"
        )
    return _SCALE[(m.group(1) or "").lower()]


def _values(path: Path, arr: dict) -> np.ndarray:
    vals = arr.get("datavalues")
    if not isinstance(vals, list):
        raise ImportFileError(f"{path}: PalmSens array {arr.get('description')!r} without DataValues")
    try:
        return np.array([float(v["v"]) for v in vals], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise ImportFileError(
            f"{path}: PalmSens array {arr.get('description')!r} with a value that is no number"
        ) from None


def _kind(arr: dict) -> str:
    return str(arr.get("type", "")).rsplit(".", 1)[-1].lower()


def _scan_no(desc: str) -> int:
    m = re.match(r"scan(\d+)", desc)
    return int(m.group(1)) if m else 0


def _method_fields(m: dict) -> dict[str, str]:
    out = {}
    for line in str(m.get("method", "")).splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip().upper()] = v.strip()
    return out


def _measurement(path: Path, k: int, m: dict) -> tuple[list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], dict]:
    """Scans of one measurement: (scan number, t, potential V, current A) and what was done."""
    meth = _method_fields(m)
    title = str(m.get("title", f"measurement {k + 1}"))
    mid = meth.get("METHOD_ID", "").lower()
    if mid in ("eis", "gs", "fis") or (m.get("eisdatalist") or []):
        raise ImportFileError(
            f"{path}: measurement {k + 1} ({title!r}) is an impedance measurement: labctl does not read "
            "impedance from .pssession files; export it from PSTrace as CSV and import that"
        )
    arrays = [a for a in (m.get("dataset") or {}).get("values", []) or [] if isinstance(a, dict)]
    pots = {str(a.get("description")): a for a in arrays if _kind(a) == "dataarraypotentials"}
    curs = {str(a.get("description")): a for a in arrays if _kind(a) == "dataarraycurrents"}
    times = [a for a in arrays if _kind(a) == "dataarraytime"]
    scans: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    info: dict = {"title": title, "method_id": mid or None}
    if curs and pots:
        chans = {re.sub(r"^scan\d+", "", d) for d in curs}
        if len(chans) > 1:
            raise ImportFileError(
                f"{path}: measurement {k + 1} ({title!r}) holds several channels ({', '.join(sorted(chans))}): "
                "labctl imports one channel; export each from PSTrace as CSV"
            )
        t_arr = _values(path, times[0]) if times else None
        dt = float(times[0].get("intervaltime") or 0.0) if times else 0.0
        t_end = 0.0
        for j, desc in enumerate(sorted(curs, key=_scan_no)):
            if desc not in pots:
                raise ImportFileError(
                    f"{path}: measurement {k + 1}: current array {desc!r} without its potential array"
                )
            i = _values(path, curs[desc]) * _unit_scale(path, curs[desc], "Ampere")
            v = _values(path, pots[desc]) * _unit_scale(path, pots[desc], "Volt")
            if i.size != v.size:
                raise ImportFileError(
                    f"{path}: measurement {k + 1}, {desc}: {i.size} currents for {v.size} potentials (damaged?)"
                )
            t: np.ndarray
            if j == 0 and t_arr is not None and t_arr.size == i.size:
                t = t_arr * _unit_scale(path, times[0], "Time")
                info["time"] = "the file's time array"
            elif dt > 0:
                t = t_end + dt * np.arange(i.size) + (dt if j else 0.0)
                info["time"] = f"the file's time array for scan 1; later scans continue at its IntervalTime {dt} s"
            else:
                t = t_end + np.arange(i.size, dtype=float) + (1.0 if j else 0.0)
                info["time"] = "no time array: t is the point number"
            t_end = float(t[-1]) if t.size else t_end
            scans.append((_scan_no(desc) or j + 1, t, v, i))
        info["source"] = "DataSet arrays (DataArrayPotentials / DataArrayCurrents per scan)"
    else:
        curves = [c for c in m.get("curves") or [] if isinstance(c, dict)]
        if not curves:
            raise ImportFileError(f"{path}: measurement {k + 1} ({title!r}) has no data arrays and no curves")
        for j, c in enumerate(curves):
            xa, ya = c.get("xaxisdataarray") or {}, c.get("yaxisdataarray") or {}
            xu = str((xa.get("unit") or {}).get("type", ""))
            if not xu.lower().endswith("volt"):
                raise ImportFileError(
                    f"{path}: measurement {k + 1} ({title!r}): curve {c.get('title')!r} plots {xu or 'no unit'} on x; "
                    "labctl reads curves of current against potential only"
                )
            v = _values(path, xa) * _unit_scale(path, xa, "Volt")
            i = _values(path, ya) * _unit_scale(path, ya, "Ampere")
            if i.size != v.size:
                raise ImportFileError(f"{path}: curve {c.get('title')!r}: {i.size} currents for {v.size} potentials")
            base = scans[-1][1][-1] + 1.0 if scans else 0.0
            scans.append((j + 1, base + np.arange(i.size, dtype=float), v, i))
        info["source"] = "Curves (x = potential, y = current; the file has no data set)"
        info["time"] = "no time array in the file: t is the point number"
    if not scans or all(s[1].size == 0 for s in scans):
        raise ImportFileError(f"{path}: measurement {k + 1} ({title!r}) has no data points")
    ticks = m.get("utctimestamp")
    if isinstance(ticks, int) and ticks > 0:
        info["started_unix"] = (_NET_EPOCH + _dt.timedelta(microseconds=ticks // 10)).timestamp()
    info["meth"] = meth
    return scans, info


def read_pssession(path: Path, raw: bytes) -> ImportedData:
    s = load_session(path, raw)
    ts: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    is_: list[np.ndarray] = []
    steps: list[ImportedStep] = []
    notes: list[str] = []
    infos = []
    n = 0
    t_off = 0.0
    started = None
    for k, m in enumerate(s["measurements"]):
        if not isinstance(m, dict):
            raise ImportFileError(f"{path}: measurement {k + 1} is not a JSON object")
        scans, info = _measurement(path, k, m)
        meth = info.pop("meth")
        kind, label = METHODS.get(info["method_id"] or "", ("lsv", info["method_id"] or "sweep"))
        info["kind"] = kind
        if info["method_id"] not in METHODS:
            notes.append(f"measurement {k + 1}: METHOD_ID {info['method_id']!r} stored as a sweep (lsv)")
        if started is None:
            started = info.pop("started_unix", None)
        else:
            info.pop("started_unix", None)
        t0 = scans[0][1][0] if scans[0][1].size else 0.0
        for scan, t, v, i in scans:
            params = {"measurement": k + 1, "title": info["title"], "scan": scan}
            for key in ("E_BEGIN", "E_VTX1", "E_VTX2", "E_STEP", "SCAN_RATE", "N_SCANS"):
                if key in meth:
                    params[key.lower()] = meth[key]
            cycle = scan if kind == "cv" else 0
            steps.append(ImportedStep(kind, f"{label}: {info['title']} (scan {scan})", cycle, n, n + t.size, params))
            ts.append(t - t0 + t_off)
            vs.append(v)
            is_.append(i)
            n += t.size
        t_off = float(ts[-1][-1]) + 1.0 if ts[-1].size else t_off
        infos.append(info)
    if len(infos) > 1:
        notes.append(f"{len(infos)} measurements stored one after another; each later one starts 1 s after the last")
    if s["_trailing"]:
        notes.append(f"{len(s['_trailing'])} characters after the session's JSON ignored")
    mapping = {
        "current_sign": _SIGN,
        "cycle_definition": "PalmSens CV scan number (from 1): labctl cycle = that number; other techniques cycle 0",
        "steps": {f"{i['title']} ({i['method_id']})": i["kind"] for i in infos},
        "charge_source": "integrated current (the session's charge arrays are not read)",
        "measurements": infos,
        "encoding": "utf-16",
    }
    header = {"core_version": str(s.get("coreversion", "")), "titles": [i["title"] for i in infos]}
    return ImportedData(
        source=str(path),
        format="palmsens-pssession",
        reader=READER,
        t=np.concatenate(ts),
        voltage=np.concatenate(vs),
        current=np.concatenate(is_),
        steps=steps,
        mapping=mapping,
        notes=notes,
        header=header,
        started_unix=started,
    )
