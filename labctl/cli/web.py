"""``labctl serve``: the live web dashboard over a labctl database."""

from __future__ import annotations

from pathlib import Path

import typer

from labctl.cli.common import fail, open_db, user_errors

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@user_errors
def serve(
    db: str | None = typer.Option(None, "--db", help="Database URL (default: the config's db.url, else $LABCTL_DB)."),
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: the config's, else 127.0.0.1: this PC only)."
    ),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="TCP port (default 8765)."),
    config: Path | None = typer.Option(
        None, "--config", help="labctl config file (dashboard.token enables pause/resume/cancel)."
    ),
) -> None:
    """Serve the live dashboard: channel grid, runs, campaigns; read-only unless a token is configured."""
    try:
        import uvicorn

        from labctl.web.app import create_app
    except ImportError as e:
        fail(f"the dashboard needs the web extra ({e.name} is missing)\n  hint: pip install 'labctl[web]'")
    from labctl.app.config import load_config

    cfg = load_config(config)
    database = open_db(db or cfg.db.url)
    bind = host or cfg.dashboard.host
    listen = port or cfg.dashboard.port
    token = cfg.dashboard.token
    app = create_app(database, token=token)
    where = f"http://{'[' + bind + ']' if ':' in bind else bind}:{listen}/"
    typer.echo(f"labctl dashboard on {where} over {database.url}", err=True)
    typer.echo(
        "control (pause/resume/cancel): " + ("enabled, token from the config" if token else "off (read-only)"), err=True
    )
    if bind not in LOOPBACK:
        typer.echo(f"warning: listening on {bind}: every PC that reaches it can read the runs", err=True)
    try:
        uvicorn.run(app, host=bind, port=listen, log_level="warning", access_log=False)
    except OSError as e:
        fail(f"cannot listen on {bind}:{listen}: {e.strerror or e}\n  hint: choose another --port or --host")
    finally:
        database.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
