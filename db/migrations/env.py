"""Alembic environment for labctl, run programmatically by :func:`labctl.db.migrate.upgrade`.

The caller passes an open connection (already inside the transaction that holds
the migration lock) in ``config.attributes["connection"]``.  For the developer
commands in ``python -m labctl.db.migrate`` a URL may be given instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from labctl.db.schema import metadata

config = context.config


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
