"""``labctl config show``, ``labctl config check`` and ``labctl config notify-test``.

The config file (``labctl.app.config``) is found through ``--config``, then
``LABCTL_CONFIG``, then ``$XDG_CONFIG_HOME/labctl/config.yaml``.  Nothing printed
here ever shows a secret: ``show`` prints the masked view.
"""

from __future__ import annotations

from pathlib import Path

import typer

from labctl.cli.common import EXIT_FAILED, EXIT_USER, print_error, print_json, user_errors

config_app = typer.Typer(
    help="The labctl config file: default database, dashboard, notifications.", no_args_is_help=True
)

_CONFIG_HELP = "Config file (default: $LABCTL_CONFIG, else $XDG_CONFIG_HOME/labctl/config.yaml)."


def _where(config: Path | None) -> tuple[Path, bool]:
    from labctl.app.config import config_path

    return config_path(config)


@user_errors
def show(
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the config as JSON."),
) -> None:
    """Print the config in effect, defaults filled in and secrets masked."""
    from ruamel.yaml import YAML

    from labctl.app.config import load_config, masked

    path, _ = _where(config)
    cfg = load_config(config)
    data = masked(cfg)
    if as_json:
        print_json({"source": cfg.source, "config": data})
        return
    print_error(f"# {path}" if cfg.source else f"# {path} does not exist: the defaults")
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.representer.sort_base_mapping_type_on_output = False  # the file's order: db, dashboard, notify
    import io

    buf = io.StringIO()
    y.dump(data, buf)
    typer.echo(buf.getvalue().rstrip())


@user_errors
def check(config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP)) -> None:
    """Validate the config file: every mistake as file:line:col, field and fix (exit code 2)."""
    from labctl.app.config import load_config

    path, _ = _where(config)
    cfg = load_config(config)
    if cfg.source is None:
        typer.echo(f"no config file at {path}: the defaults apply")
        return
    n = cfg.notify
    where = []
    if n.email is not None:
        where.append(f"e-mail to {len(n.email.to)} recipient(s) via {n.email.host}:{n.email.port}")
    if n.webhooks:
        where.append(f"{len(n.webhooks)} webhook(s)")
    notify = (
        f"notify on {', '.join(e.value for e in n.on)}: {'; '.join(where)}" if where else "no notifications configured"
    )
    typer.echo(f"{cfg.source}: ok ({notify})")


@user_errors
def notify_test(
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    timeout: float = typer.Option(60.0, help="Seconds to wait for every delivery."),
) -> None:
    """Send a test message to every e-mail recipient and webhook of the config."""
    from labctl.app.config import load_config
    from labctl.app.notify import notify_test as send_test

    path, _ = _where(config)
    cfg = load_config(config)
    if not cfg.notify.enabled:
        print_error(
            f"error: {cfg.source or path}: notify: no email: or webhooks: configured "
            "(hint: add a notify: section; docs/notifications.md shows one)"
        )
        raise typer.Exit(EXIT_USER)
    deliveries = send_test(cfg, timeout=timeout)
    failed = 0
    for d in deliveries:
        mark = "ok" if d.ok else "FAILED"
        text = f"{mark:6s} {d.channel} {d.target}: {d.detail} ({d.attempts} attempt{'s' if d.attempts != 1 else ''})"
        typer.echo(text)
        failed += not d.ok
    if failed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    config_app.command()(show)
    config_app.command()(check)
    config_app.command("notify-test")(notify_test)
    app.add_typer(config_app, name="config")
