"""One scheduler per job store, one worker per station: an exclusive lock held for the process's life.

The lock is an ``fcntl`` lock on a file: next to the SQLite database
(``labctl.sqlite.scheduler.lock``), or, for a server database, in labctl's data folder
under a name derived from the URL.  The kernel releases it when the process dies
(SIGKILL and power cuts included), so a crashed scheduler never blocks its successor.
On PostgreSQL a session advisory lock is taken as well, so schedulers (or workers of one
station) on *different* PCs exclude each other too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

from labctl.app.controller import UserError


class LockHeld(UserError):
    """Another process holds the lock."""


def lock_path(db: Any, name: str) -> Path:
    """Where the lock file of ``name`` (e.g. ``scheduler``, ``worker-bench1``) for ``db`` lives."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if db.sqlite_path:
        p = Path(db.sqlite_path).expanduser()
        return p.with_name(f"{p.name}.{safe}.lock")
    from labctl.db.url import default_path

    digest = hashlib.sha256(str(db.engine.url.render_as_string(hide_password=True)).encode()).hexdigest()[:16]
    folder = default_path().parent / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{digest}.{safe}.lock"


class StoreLock:
    """``with StoreLock(db, "scheduler"):`` - raises :class:`LockHeld` naming the holder."""

    def __init__(self, db: Any, name: str) -> None:
        self.db, self.name = db, name
        self._fd: int | None = None
        self._pg: Any = None

    def acquire(self) -> None:
        import fcntl

        path = lock_path(self.db, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeld(
                f"another {self.name.split('-')[0]} ({holder}) already uses {self.db.url} "
                f"(lock {path}); stop it first, or use another database"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd
        if self.db.dialect == "postgresql":
            self._pg_lock()

    def _pg_lock(self) -> None:
        import sqlalchemy as sa

        key = int.from_bytes(hashlib.sha256(f"labctl:{self.name}".encode()).digest()[:8], "big", signed=True)
        conn = self.db.engine.connect()
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            conn.close()
            self.release()
            raise LockHeld(f"another {self.name.split('-')[0]} holds the advisory lock of {self.db.url} (another PC?)")
        self._pg = conn

    def release(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None
        if self._fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
