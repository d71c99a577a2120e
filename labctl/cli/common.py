"""What every ``labctl`` command shares: consoles, exit codes, user errors, the database, JSON.

Nothing here imports more than typer and rich at module level: ``labctl --help`` and
``labctl validate`` must start fast, so each command imports what it needs inside
its body (see docs/performance.md, tests/test_cli_startup.py).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from labctl.core.formatting import fmt_duration

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line each: greppable file:line:col

EXIT_OK = 0
EXIT_FAILED = 1  # a run ended in error
EXIT_USER = 2  # the user's mistake: bad file, option, run id, database URL
EXIT_ABORTED = 130  # a run stopped by Ctrl-C (the shell's convention for SIGINT) or aborted
EXIT_INTERRUPTED = 143  # a run ended by SIGTERM/SIGHUP: resumable (`labctl resume RUN`)

#: The largest run id a database can hold (``labctl.db.schema.MAX_RUN_ID``, spelled out so that
#: option parsing imports no SQLAlchemy; tests/test_fuzz_inputs.py checks they agree).  Run-id
#: arguments are range-checked with it, so an absurd id is a usage error (exit 2), not an overflow.
RUN_ID_MAX = 2**23 - 1
#: Counts the user asks for (--limit, --steps): beyond this, no screen or query is the better for it.
COUNT_MAX = 10**9

__all__ = [
    "COUNT_MAX",
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USER",
    "RUN_ID_MAX",
    "err",
    "fail",
    "fmt_duration",
    "get_run",
    "open_db",
    "out",
    "print_error",
    "print_json",
    "user_errors",
]

F = TypeVar("F", bound=Callable[..., Any])

# Errors that are the user's to fix, by module and class name.  They are matched through
# sys.modules so that catching them imports nothing: an exception of a class from a module
# that was never imported cannot have been raised.
_USER_ERRORS: tuple[tuple[str, str, str], ...] = (
    ("labctl.core.errors", "ProtocolError", ""),  # file:line:col: field: message (hint: ...)
    ("labctl.app.controller", "UserError", "error: "),
    ("labctl.analysis._core", "AnalysisError", "error: "),
    ("labctl.db.database", "ReadOnlyDatabase", "error: "),
    ("labctl.importers.base", "ImportFileError", "error: "),
)


def user_error_prefix(exc: BaseException) -> str | None:
    """The prefix printed before a user error's message, or None when ``exc`` is a bug."""
    for module, name, prefix in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return prefix
    return None


def print_error(message: str) -> None:
    """One message on stderr, printed as written (no rich markup or highlighting)."""
    err.print(message, markup=False, highlight=False)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with code 2."""
    print_error(f"error: {message}")
    raise typer.Exit(EXIT_USER)


def user_errors(fn: F) -> F:
    """Turn the user's mistakes into a message and exit code 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            prefix = user_error_prefix(e)
            if prefix is None:
                raise
            print_error(f"{prefix}{e}")
            raise typer.Exit(EXIT_USER) from None

    return wrapper  # type: ignore[return-value]


def open_db(url: str | None) -> Any:
    """The database at ``url``; without one (no ``--db``, no ``LABCTL_DB``) the config file's
    ``db.url``, else the embedded SQLite database.  A bad URL is a user error."""
    from labctl.db import Database

    shown, hint = url, "check --db / LABCTL_DB"
    if url is None:
        from labctl.app.config import load_config, mask_url

        config = load_config()  # a bad config file: its ProtocolError (file:line:col), exit 2
        url = config.db.url
        if url is not None:
            shown, hint = mask_url(url), f"check db.url in {config.source} (or give --db / LABCTL_DB)"
    try:
        return Database(url)
    except Exception as e:  # a bad URL or an unreachable server is the user's to fix
        fail(f"cannot open database {shown or '(default)'}: {e}\n  hint: {hint}")


def get_run(db: Any, run_id: int) -> dict[str, Any]:
    """Run ``run_id`` of ``db``; an unknown id is a user error."""
    try:
        run: dict[str, Any] = db.run(run_id)
    except KeyError:
        fail(f"no run {run_id} in {db.url}; `labctl runs` lists them")
    return run


def print_json(obj: Any, *, indent: int | None = 2) -> None:
    """Machine-readable output on stdout (messages and progress go to stderr)."""
    print(json.dumps(obj, indent=indent, default=str))
