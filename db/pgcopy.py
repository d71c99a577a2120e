"""PostgreSQL binary COPY payloads for samples, built with numpy.

A binary COPY row is an int16 field count followed by, per field, an int32 byte
length (-1 for NULL) and the big-endian value.  Every row of a sample block has the
same layout, so a block is one structured numpy array whose ``tobytes()`` is the
payload: no per-row Python work.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from labctl.db.schema import FLOAT_SAMPLE_COLUMNS

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

#: Column order of the COPY statement.
COPY_COLUMNS = ("id", "run_id", "step_index", "cycle", *FLOAT_SAMPLE_COLUMNS)
COPY_SQL = f"COPY samples ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


@lru_cache(maxsize=64)
def row_dtype(present: tuple[bool, ...]) -> np.dtype:
    """Row layout; ``present[i]`` tells whether float column i has values (else NULL)."""
    fields: list[tuple[str, str]] = [
        ("nfields", ">i2"),
        ("len_id", ">i4"),
        ("id", ">i8"),
        ("len_run_id", ">i4"),
        ("run_id", ">i8"),
        ("len_step_index", ">i4"),
        ("step_index", ">i4"),
        ("len_cycle", ">i4"),
        ("cycle", ">i4"),
    ]
    for name, has in zip(FLOAT_SAMPLE_COLUMNS, present):
        fields.append((f"len_{name}", ">i4"))
        if has:
            fields.append((name, ">f8"))
    return np.dtype(fields)


def encode_block(id0: int, run_id: int, step_index: int, cycle: int, arrays: list[np.ndarray | None]) -> bytes:
    """COPY rows (without header/trailer) for samples ``id0, id0+1, ...`` of one block."""
    n = len(arrays[0])  # type: ignore[arg-type]  # column 0 (t) is always recorded
    present = tuple(a is not None for a in arrays)
    rows = np.empty(n, dtype=row_dtype(present))
    rows["nfields"] = len(COPY_COLUMNS)
    rows["len_id"] = 8
    rows["id"] = np.arange(id0, id0 + n, dtype=np.int64)
    rows["len_run_id"] = 8
    rows["run_id"] = run_id
    rows["len_step_index"] = 4
    rows["step_index"] = step_index
    rows["len_cycle"] = 4
    rows["cycle"] = cycle
    for name, a in zip(FLOAT_SAMPLE_COLUMNS, arrays):
        if a is None:
            rows[f"len_{name}"] = -1
        else:
            rows[f"len_{name}"] = 8
            rows[name] = a
    return rows.tobytes()
