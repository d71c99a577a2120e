"""labctl storage: SQLite (embedded default, WAL) or PostgreSQL, via SQLAlchemy 2 + alembic.

::

    from labctl.db import Database
    db = Database()                      # $LABCTL_DB or ~/.local/share/labctl/labctl.sqlite
    rec = db.open_run(protocol_name=..., protocol_text=..., channel="ch1", simulated=True, ...)
    rec.step_started(0, path="0", kind="cp", label=None, cycle=0, params={}, t=0.0)
    rec.samples(0, 0, t, v, i, q)        # numpy arrays; never waits on SQL
    rec.step_ended(0, t=..., end_reason="duration", detail="", n_samples=len(t), charge=q[-1])
    rec.finish("completed", "complete", ended_unix)
    data = db.samples(rec.run_id)        # dict of numpy arrays
"""

from labctl.db.database import Database, ReadOnlyDatabase
from labctl.db.recorder import RunRecorder, StorageError
from labctl.db.schema import SAMPLE_COLUMNS
from labctl.db.url import default_url, normalize_url

__all__ = [
    "Database",
    "ReadOnlyDatabase",
    "RunRecorder",
    "StorageError",
    "SAMPLE_COLUMNS",
    "default_url",
    "normalize_url",
]
