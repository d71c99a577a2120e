"""Neware ``.ndax`` records as a BTS 8 PC writes them into its data folder (the emulator's side).

An ``.ndax`` is a zip of XML members (``VersionInfo.xml``, ``TestInfo.xml``, ``Step.xml``) and
binary ``.ndc`` members.  The layout written here is the one of the real BTS 8.0 file
``tests/data/import/neware_TESTCELL0001-B2.ndax`` (ndc version 17), learned by reading that file
and the byte offsets the maintained readers (NewareNDA, fastnda) use:

* every ``.ndc`` is 4096-byte pages: page 0 is the file header (byte 0 the file type, byte 2 the
  ndc version, byte 4 = 1); each data page starts with the file type + 1, a zero byte, the
  number of rows in the page (uint16), then a bitmap of the rows in use (bit k of byte 4 + k//8,
  little bit order); rows start at byte 132; the last 4 bytes are the CRC-32 of bytes 0..4091;
* ``data.ndc`` (type 1): per row voltage (V) and current (A) as float32, 495 rows a page; a
  row's index is its position in the file (1-based);
* ``data_runInfo.ndc`` (type 18): 100-byte rows, 39 a page: step time (uint32 ms), charge and
  discharge capacity (float32 Ah) and energy (float32 Wh), the time since the row before (int32
  ms), the Unix time (uint32 s + uint16 ms), the step counter (the how-many-th step) and the
  row's index;
* ``data_step.ndc`` (type 7): one 100-byte row per step: cycle (0-based), the step's number in
  the step file, its type (1 CC charge, 2 CC discharge, 3 CV charge, 4 rest, 19 CV discharge)
  and the index of its first data row.

A real BTS writes ``data_runInfo`` rows only every so often (the readers interpolate the rest);
this writer writes one for every row, so the readers interpolate nothing.  Auxiliary channels,
``data_log.ndc`` and ``data_es.ndc`` are not written (the readers need none of them).
"""

from __future__ import annotations

import os
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NDC_VERSION", "STATUS", "NdaxTest", "write_ndax"]

NDC_VERSION = 17
PAGE = 4096
DATA_START = 132
#: Neware step types (the readers' ``Status``) the emulator produces
STATUS = {"CC_Chg": 1, "CC_DChg": 2, "CV_Chg": 3, "Rest": 4, "CV_DChg": 19}

_MAIN = np.dtype([("v", "<f4"), ("i", "<f4")])
_RUNINFO = np.dtype(
    {
        "names": ["ms", "qc", "qd", "ec", "ed", "dt", "unix", "step", "index", "unix_ms"],
        "formats": ["<u4", "<f4", "<f4", "<f4", "<f4", "<i4", "<u4", "<u4", "<u4", "<u2"],
        "offsets": [0, 5, 9, 13, 17, 29, 33, 37, 41, 45],
        "itemsize": 100,
    }
)
_STEP = np.dtype(
    {
        "names": ["cycle", "step_index", "status", "index"],
        "formats": ["<u4", "<u4", "u1", "<u4"],
        "offsets": [0, 4, 24, 33],
        "itemsize": 100,
    }
)
#: rows per page as the readers slice a page (NewareNDA: bytes 132..-4 resp. 132..-64)
_ROWS = {1: 495, 18: 39, 7: 39}


@dataclass(frozen=True)
class NdaxTest:
    """What a BTS records about a test besides its rows (``TestInfo.xml``, ``Step.xml``)."""

    devtype: int
    devid: int
    subdevid: int
    chlid: int
    testid: int
    barcode: str
    step_name: str
    step_xml: str
    remark: str
    start_unix: float


def _ndc(filetype: int, rows: np.ndarray) -> bytes:
    """One ``.ndc`` member: the header page and the rows, ``_ROWS[filetype]`` a page."""
    per = _ROWS[filetype]
    n = len(rows)
    pages = max(1, -(-n // per))
    buf = np.zeros((pages + 1, PAGE), dtype=np.uint8)
    buf[0, 0], buf[0, 2], buf[0, 4] = filetype, NDC_VERSION, 1
    size = rows.dtype.itemsize
    flat = np.zeros(pages * per, dtype=rows.dtype)
    flat[:n] = rows
    body = flat.view(np.uint8).reshape(pages, per * size)
    buf[1:, DATA_START : DATA_START + per * size] = body
    counts = np.full(pages, per, dtype=np.int64)
    counts[-1] = n - per * (pages - 1)
    buf[1:, 0] = filetype + 1
    buf[1:, 2] = counts & 0xFF
    buf[1:, 3] = counts >> 8
    used = np.arange(per)[None, :] < counts[:, None]
    mask = np.packbits(used, axis=1, bitorder="little")
    buf[1:, 4 : 4 + mask.shape[1]] = mask
    crc = np.array([zlib.crc32(buf[p, : PAGE - 4].tobytes()) for p in range(1, pages + 1)], dtype="<u4")
    buf[1:, PAGE - 4 :] = crc.view(np.uint8).reshape(pages, 4)
    return buf.tobytes()


def _xml_attr(s: object) -> str:
    return str(s).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _test_info(test: NdaxTest) -> str:
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(test.start_unix))
    sn = start.replace(":", "-")
    return (
        '<?xml version="1.0" encoding="GB2312"?>\n<root>\n'
        '  <config type="Test Info File" version="1" SortVersion="labctl Neware emulator">\n'
        f'    <TestInfo SvrIP="127.0.0.1" DevType="{test.devtype}" DevID="{test.devid}" UnitID="{test.subdevid}" '
        f'ChlID="{test.chlid}" TestID="{test.testid}" SN="{sn}" StepName="{_xml_attr(test.step_name)}" '
        f'StartTime="{start}" Barcode="{_xml_attr(test.barcode)}" Remark="{_xml_attr(test.remark)}" '
        'AuxCount="0" />\n  </config>\n</root>\n'
    )


_VERSION_INFO = (
    '<?xml version="1.0" encoding="GB2312"?>\n<root>\n'
    '  <config type="Version Info File" version="1" SortVersion="labctl Neware emulator">\n'
    '    <ZwjVersion SvrVer="labctl Neware emulator" CurrSvrVer="labctl Neware emulator" '
    'CurrClientVer="labctl Neware emulator" ZwjVersion="emulated" MainXwjVer="emulated" AuxXwjCount="0" />\n'
    "  </config>\n</root>\n"
)


def write_ndax(
    path: str | Path,
    test: NdaxTest,
    *,
    step_seq: np.ndarray,
    step_id: np.ndarray,
    cycle: np.ndarray,
    status: np.ndarray,
    step_time: np.ndarray,
    test_time: np.ndarray,
    voltage: np.ndarray,
    current_ma: np.ndarray,
    charge_mah: np.ndarray,
    discharge_mah: np.ndarray,
    charge_mwh: np.ndarray,
    discharge_mwh: np.ndarray,
    compresslevel: int = 1,
) -> Path:
    """Write the rows of one test as an ``.ndax`` at ``path`` (atomically: a ``.part`` file renamed).

    Rows: ``step_seq`` the how-many-th step of the test (1, 1, 2, ...), ``step_id`` the step's
    number in the step file, ``cycle`` 1-based, ``status`` a :data:`STATUS` code per row, times
    in s (test time, time in step), voltage V, current mA, capacities mAh, energies mWh (each
    counter reset at every step, unsigned)."""
    path = Path(path)
    n = len(voltage)
    idx = np.arange(1, n + 1, dtype=np.uint32)
    main = np.empty(n, dtype=_MAIN)
    main["v"] = voltage
    main["i"] = np.asarray(current_ma, dtype=np.float64) * 1e-3

    unix = test.start_unix + np.asarray(test_time, dtype=np.float64)
    unix_ms = np.rint(unix * 1000.0).astype(np.int64)
    ri = np.zeros(n, dtype=_RUNINFO)
    ri["ms"] = np.rint(np.asarray(step_time, dtype=np.float64) * 1000.0).astype(np.int64)
    ri["qc"] = np.asarray(charge_mah, dtype=np.float64) * 1e-3
    ri["qd"] = np.asarray(discharge_mah, dtype=np.float64) * 1e-3
    ri["ec"] = np.asarray(charge_mwh, dtype=np.float64) * 1e-3
    ri["ed"] = np.asarray(discharge_mwh, dtype=np.float64) * 1e-3
    tt_ms = np.rint(np.asarray(test_time, dtype=np.float64) * 1000.0).astype(np.int64)
    ri["dt"] = np.diff(tt_ms, prepend=tt_ms[:1]) if n else tt_ms
    ri["unix"] = unix_ms // 1000
    ri["unix_ms"] = unix_ms % 1000
    seq = np.asarray(step_seq, dtype=np.int64)
    ri["step"] = seq
    ri["index"] = idx

    first = np.flatnonzero(np.diff(seq, prepend=seq[:1] - 1)) if n else np.zeros(0, dtype=np.int64)
    st = np.zeros(len(first), dtype=_STEP)
    st["cycle"] = np.asarray(cycle, dtype=np.int64)[first] - 1
    st["step_index"] = np.asarray(step_id, dtype=np.int64)[first]
    st["status"] = np.asarray(status, dtype=np.int64)[first]
    st["index"] = idx[first]

    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as z:
        z.writestr("VersionInfo.xml", _VERSION_INFO.encode("gb2312", errors="replace"))
        z.writestr("TestInfo.xml", _test_info(test).encode("gb2312", errors="replace"))
        z.writestr("Step.xml", test.step_xml.encode("utf-8"))
        z.writestr("data.ndc", _ndc(1, main))
        z.writestr("data_step.ndc", _ndc(7, st))
        z.writestr("data_runInfo.ndc", _ndc(18, ri))
    os.replace(part, path)
    return path
