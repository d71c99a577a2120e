"""Schema migrations, run programmatically (no alembic.ini).

:func:`upgrade` brings a database to the newest revision; :class:`db.Database` calls
it on every open.  It is safe when several processes open the same database at
once: on SQLite the migration runs inside ``BEGIN IMMEDIATE`` (one writer at a
time, the others wait on the busy timeout and then find the schema current); on
PostgreSQL inside a transaction holding an advisory lock.

Developer commands::

    python -m db upgrade [URL]      # default: labctl's default database
    python -m db current [URL]
    python -m db revision -m "add a column" [--autogenerate-from URL]   # new file in migrations/versions
"""

from __future__ import annotations

import argparse
import threading
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key serialising labctl migrations ("labctl" as an integer).
PG_LOCK_KEY = int.from_bytes(b"labctl", "big")
# alembic's `context` is module-global: one migration at a time per process.
_process_lock = threading.Lock()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest revision this labctl knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _known(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for unknown ids
        return False


def upgrade(engine: Engine) -> None:
    """Migrate the database behind ``engine`` to :func:`head_revision` (no-op when current)."""
    head = head_revision()
    with engine.connect() as conn:
        current = current_revision(conn)
    if current == head:
        return
    with _process_lock, engine.connect() as conn:
        # The "begin" hook of labctl.db.database emits BEGIN IMMEDIATE for this option on SQLite.
        conn = conn.execution_options(labctl_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
            current = current_revision(conn)
            if current is not None and current != head:
                if not _known(current):
                    raise RuntimeError(
                        f"the database schema is at revision {current!r}, which this labctl "
                        f"does not know (newest here: {head!r}); upgrade labctl"
                    )
            if current != head:
                command.upgrade(alembic_config(conn), "head")


def main(argv: list[str] | None = None) -> None:
    from sqlalchemy import create_engine

    from labctl.db.url import default_url, masked, normalize_url

    p = argparse.ArgumentParser(prog="python -m db", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("upgrade", "current"):
        s = sub.add_parser(name)
        s.add_argument("url", nargs="?")
    r = sub.add_parser("revision")
    r.add_argument("-m", "--message", required=True)
    r.add_argument("--autogenerate-from", metavar="URL", help="compare labctl.db.schema with this database")
    args = p.parse_args(argv)
    if args.cmd == "revision":
        url = normalize_url(args.autogenerate_from) if args.autogenerate_from else None
        command.revision(alembic_config(url=url), message=args.message, autogenerate=url is not None)
        return
    url = normalize_url(args.url) if args.url else default_url()
    if args.cmd == "upgrade":
        from labctl.db.database import Database

        Database(url).close()
        print(f"{masked(url)}: at {head_revision()}")
    else:
        engine = create_engine(url)
        with engine.connect() as conn:
            print(f"{masked(url)}: at {current_revision(conn)} (newest known: {head_revision()})")
        engine.dispose()
