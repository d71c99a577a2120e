"""Spill files: what a run's writer could not commit while the database was unreachable.

When a commit fails because the database is gone (PostgreSQL restarted, the network cut,
SQLite's file deleted or its disk full), the writer keeps the run going: every batch goes,
in order, to a local spill file, and the writer retries the database with backoff.  When
it answers again the file is replayed batch by batch, each in one transaction with the
run's sample counter, then deleted.  Each record carries the sample number it starts at,
so a replay skips what the database already holds: every sample is written exactly once,
even if a replay is cut short (``labctl spill replay FILE`` finishes one later).

Format: records of ``<8-byte big-endian length><pickle of (n_first, batch)>``; a torn
last record (a crash mid-append) is ignored.  A spill file is only ever read by labctl
on the machine that wrote it.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

_LEN = struct.Struct(">Q")


def default_spill_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "labctl" / "spill"


def is_outage(exc: BaseException) -> bool:
    """A failure of the storage itself (retry later), not of what was written."""
    if isinstance(exc, StorageOutage | OSError):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError)


class StorageOutage(RuntimeError):
    """The database cannot be written now (it may come back)."""


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab")  # noqa: SIM115 - kept open while the outage lasts
        self.records = 0
        self.samples = 0

    def append(self, n_first: int, batch: list[tuple], rows: int) -> None:
        blob = pickle.dumps((n_first, batch), protocol=pickle.HIGHEST_PROTOCOL)
        self._f.write(_LEN.pack(len(blob)) + blob)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records += 1
        self.samples += rows

    def close(self) -> None:
        self._f.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def read_spill(path: str | Path) -> Iterator[tuple[int, list[tuple]]]:
    with open(path, "rb") as f:
        while True:
            head = f.read(_LEN.size)
            if len(head) < _LEN.size:
                return
            (n,) = _LEN.unpack(head)
            blob = f.read(n)
            if len(blob) < n:
                return  # torn last record
            yield pickle.loads(blob)


def spill_run_id(path: str | Path) -> int:
    name = Path(path).name
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: not a labctl spill file (expected run-<id>-<pid>.spill)") from None


def replay_spill(db: Any, path: str | Path) -> int:
    """Write a spill file left by an earlier process into ``db``; the samples written.

    Records the database already holds (by sample number) are skipped; the file is removed
    once everything in it is committed.
    """
    from labctl.db.recorder import commit_batch, make_sink
    from labctl.db.schema import runs

    run_id = spill_run_id(path)
    with db.engine.connect() as conn:
        n = int(conn.execute(sa.select(runs.c.n_samples).where(runs.c.id == run_id)).scalar_one())
    sink = make_sink(db, run_id)
    written = 0
    for n_first, batch in read_spill(path):
        if n_first < n:
            continue
        n_new = commit_batch(db, run_id, sink, n, batch)
        written += n_new - n
        n = n_new
    Path(path).unlink()
    return written


__all__ = ["SpillFile", "StorageOutage", "default_spill_dir", "is_outage", "read_spill", "replay_spill"]
