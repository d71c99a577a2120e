"""The ``labctl`` Typer app: every command group registered, ``--version``.

Importing this module imports typer, rich and the command modules, which import
nothing heavy at module level (tests/test_cli_startup.py keeps it so).
"""

from __future__ import annotations

import typer

from labctl.cli import analysis, campaign, config, data, demo, importing, lab, report, run, web

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run electrochemistry protocols on instruments or simulators, store every sample in SQL.",
)


def _print_version(value: bool) -> None:
    if value:
        from labctl import __version__

        typer.echo(f"labctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print labctl's version and exit."
    ),
) -> None:
    # No docstring: the app's help text above is what `labctl --help` shows.
    pass


for _group in (
    run,
    data,
    importing,
    analysis,
    report,
    lab,
    campaign,
    web,
    demo,
    config,
):  # the order of `labctl --help`
    _group.register(app)


def main() -> None:
    """The ``labctl`` console script."""
    app()
