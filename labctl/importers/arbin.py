"""Arbin MITS Pro ``.res`` files (an MS Access / Jet 4 database): mdbtools or access-parser.

Two readers of the Access file, the same result: Debian's mdbtools (``mdb-export``, C, GPL
programs run as a separate process; ``apt-get install mdbtools``) when it is on the PATH, about
20x faster; else access-parser, a pure-Python reader (Apache-2.0, ``pip install
'labctl[arbin]'``), so no system package is needed.  A ``.res`` file holds, per test, a ``Global_Table`` row
(``Test_Name``, ``Start_DateTime`` as an OLE date in the instrument PC's local time, ``MASS``,
``Schedule_File_Name``...) and the samples in ``Channel_Normal_Table``: ``Data_Point``,
``Test_Time`` (s), ``Step_Time`` (s), ``Step_Index``, ``Cycle_Index``, ``Current`` (A),
``Voltage`` (V), ``Charge_Capacity`` / ``Discharge_Capacity`` (Ah, the instrument's
counters: they run on through a cycle and reset when ``Cycle_Index`` changes), energies, ...

The samples are handed to the same column mapping as Arbin's CSV export
(:func:`labctl.importers.table.table_to_data`, the names ``Test_Time(s)``, ``Current(A)``,
``Voltage(V)``, ``Charge_Capacity(Ah)``, ...), so steps, cycles and the counters come out
as for a CSV export of the same test.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportFileError
from .table import Table, table_to_data

# Channel_Normal_Table column -> the name Arbin's CSV export gives it (units as in the CSV)
COLUMNS = {
    "Data_Point": "Data_Point",
    "Test_Time": "Test_Time(s)",
    "Step_Time": "Step_Time(s)",
    "Step_Index": "Step_Index",
    "Cycle_Index": "Cycle_Index",
    "Current": "Current(A)",
    "Voltage": "Voltage(V)",
    "Charge_Capacity": "Charge_Capacity(Ah)",
    "Discharge_Capacity": "Discharge_Capacity(Ah)",
    "Charge_Energy": "Charge_Energy(Wh)",
    "Discharge_Energy": "Discharge_Energy(Wh)",
}
REQUIRED = ("Data_Point", "Test_Time", "Step_Index", "Cycle_Index", "Current", "Voltage")
_SIGN = "Arbin: positive current = charge; kept as is (charge is anodic at a positive-electrode WE)"
_CYCLE = "Arbin Cycle_Index (from 1): labctl cycle = that number"
_OLE_EPOCH = _dt.datetime(1899, 12, 30)


def _page_size(path: Path, raw: bytes) -> int:
    """Jet 3 (Access 97) pages are 2 kB, Jet 4 and later (all MITS Pro files) 4 kB."""
    if len(raw) < 0x15:
        raise ImportFileError(f"{path}: an Arbin .res file of {len(raw)} bytes: truncated (no database header)")
    return 2048 if raw[0x14] == 0 else 4096


def _read_access_parser(path: Path) -> tuple[dict, dict, str]:
    try:
        from access_parser import AccessParser  # type: ignore[import-untyped]
    except ImportError:
        raise ImportFileError(
            f"{path}: reading Arbin .res files needs mdbtools (apt-get install mdbtools) or the package "
            "access-parser (pip install 'labctl[arbin]'), or export the test from MITS Pro / Data Watcher as CSV"
        ) from None
    log = logging.getLogger("access_parser")
    level = log.level
    log.setLevel(logging.CRITICAL)  # it logs every odd page; the checks below say what matters
    try:
        try:
            db = AccessParser(str(path))
        except Exception as exc:  # struct/construct errors on a damaged file
            raise ImportFileError(
                f"{path}: an MS Access file that cannot be read as an Arbin .res ({type(exc).__name__}: {exc}); "
                "a damaged file?"
            ) from None
        tables = set(db.catalog)
        _need_channel_table(path, tables)
        try:
            cnt = db.parse_table("Channel_Normal_Table")
            glob = db.parse_table("Global_Table") if "Global_Table" in tables else {}
        except Exception as exc:
            raise ImportFileError(
                f"{path}: an Arbin .res file whose Channel_Normal_Table cannot be read "
                f"({type(exc).__name__}: {exc}); a truncated or damaged file?"
            ) from None
    finally:
        log.setLevel(level)
    try:
        from importlib.metadata import version

        reader = f"access-parser {version('access-parser')}"
    except Exception:  # PackageNotFoundError: a copy without metadata
        reader = "access-parser"
    return cnt, glob, reader


def _need_channel_table(path: Path, tables: set[str]) -> None:
    if "Channel_Normal_Table" not in tables:
        raise ImportFileError(
            f"{path}: an MS Access database without the table Channel_Normal_Table, so not an Arbin .res "
            f"file (its tables: {', '.join(sorted(t for t in tables if not t.startswith('MSys'))) or 'none'})"
        )


def _run(path: Path, argv: list[str], what: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImportFileError(f"{path}: mdbtools could not read the Arbin .res file (MS Access): {exc}") from None
    if out.returncode != 0:
        err = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ImportFileError(
            f"{path}: an Arbin .res file (an MS Access database) whose {what} mdbtools cannot read "
            f"({err[-1] if err else 'exit ' + str(out.returncode)}): truncated or damaged?"
        )
    return out.stdout.decode("utf-8", "replace")


def _read_mdbtools(path: Path) -> tuple[dict, dict, str]:
    tables = {t.strip() for t in _run(path, ["mdb-tables", "-1", str(path)], "the table list").splitlines()}
    _need_channel_table(path, tables)

    def table(name: str) -> dict[str, list]:
        rows = list(csv.reader(io.StringIO(_run(path, ["mdb-export", str(path), name], f"the table {name}"))))
        if not rows:
            return {}
        cols: dict[str, list] = {h: [] for h in rows[0]}
        for r in rows[1:]:
            if len(r) != len(rows[0]):
                raise ImportFileError(
                    f"{path}: an Arbin .res file (an MS Access database) whose {name} mdbtools reads with a "
                    f"short row ({len(r)} of {len(rows[0])} fields): truncated or damaged?"
                )
            for h, v in zip(rows[0], r, strict=True):
                cols[h].append(_cell(v))
        return cols

    cnt = table("Channel_Normal_Table")
    glob = table("Global_Table") if "Global_Table" in tables else {}
    try:
        ver = subprocess.run(["mdb-ver", "-M"], capture_output=True, check=False, timeout=30).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        ver = ""
    return cnt, glob, ("mdbtools " + ver.strip().removeprefix("mdbtools v")).strip()


def _cell(v: str) -> object:
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def read_res(path: Path, raw: bytes, *, area_cm2: float | None = None, backend: str | None = None) -> ImportedData:
    """Read an Arbin .res; ``backend`` "mdbtools" or "access-parser" (default: the environment's
    ``LABCTL_ARBIN_READER``, else mdbtools when installed, else access-parser)."""
    page = _page_size(path, raw)
    if len(raw) % page:
        raise ImportFileError(
            f"{path}: an Arbin .res file (an MS Access database) of {len(raw):,} bytes, not a whole number of "
            f"{page}-byte database pages: truncated or damaged (copy it again from the instrument PC)"
        )
    backend = backend or os.environ.get("LABCTL_ARBIN_READER") or ""
    if backend == "":
        backend = "mdbtools" if shutil.which("mdb-export") else "access-parser"
    if backend == "mdbtools":
        if not (shutil.which("mdb-export") and shutil.which("mdb-tables")):
            raise ImportFileError(
                f"{path}: reading Arbin .res files with mdbtools needs its programs mdb-export and mdb-tables: "
                "apt-get install mdbtools (Debian/Ubuntu), or unset LABCTL_ARBIN_READER to use access-parser"
            )
        cnt, glob, reader = _read_mdbtools(path)
    elif backend == "access-parser":
        cnt, glob, reader = _read_access_parser(path)
    else:
        raise ImportFileError(
            f"LABCTL_ARBIN_READER={backend!r}: the Arbin .res reader is 'mdbtools' or 'access-parser' "
            "(unset: mdbtools when installed)"
        )
    missing = [c for c in REQUIRED if c not in cnt]
    if missing:
        raise ImportFileError(f"{path}: Arbin Channel_Normal_Table without the column(s) {', '.join(missing)}")
    n = len(cnt["Data_Point"])
    if n == 0:
        raise ImportFileError(f"{path}: an Arbin .res file with no data rows in Channel_Normal_Table")
    tests = sorted(set(cnt.get("Test_ID", [1])))
    if len(tests) > 1:
        raise ImportFileError(
            f"{path}: an Arbin .res file holding {len(tests)} tests (Test_ID {', '.join(map(str, tests))}); "
            "labctl imports one test per file: export each test from MITS Pro as CSV"
        )
    arrays: dict[str, np.ndarray] = {}
    for col in COLUMNS:
        if col not in cnt:
            continue
        vals = cnt[col]
        if len(vals) != n:
            raise ImportFileError(f"{path}: Arbin column {col} has {len(vals)} values for {n} data points (damaged?)")
        arrays[col] = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
    order = np.argsort(arrays["Data_Point"], kind="stable")  # pages need not be in record order
    names = list(COLUMNS[c] for c in arrays)
    tab = Table(names, [arrays[c][order] for c in arrays], 1, 2, "access", [])
    d = table_to_data(path, tab, fmt="arbin-res", reader=reader, area_cm2=area_cm2, sign_note=_SIGN, cycle_note=_CYCLE)
    d.mapping["table"] = "Channel_Normal_Table (sorted by Data_Point)"
    d.mapping["time"] = "Arbin Test_Time (s), from the first data point"
    g = {k: (v[0] if v else None) for k, v in glob.items()}
    for k in ("Test_Name", "Schedule_File_Name", "Creator", "Comments", "Software_Version", "Serial_Number"):
        if g.get(k) not in (None, ""):
            d.header[k] = str(g[k])
    for k in ("Channel_Index", "MASS"):
        if isinstance(g.get(k), int | float):
            d.header[k] = g[k]
    start = g.get("Start_DateTime")
    if isinstance(start, int | float) and 1.0 < start < 200000.0:
        when = _OLE_EPOCH + _dt.timedelta(days=float(start))
        d.header["Start_DateTime"] = when.isoformat(timespec="seconds")
        # Arbin writes the instrument PC's local time without a zone: taken as this machine's local time
        d.started_unix = when.timestamp()
        d.notes.append(f"test started {d.header['Start_DateTime']} (instrument PC's local time, no zone in the file)")
    return d
