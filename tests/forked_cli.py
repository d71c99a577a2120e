"""``labctl`` commands in processes of their own, forked from a server with labctl already imported.

multiprocessing's forkserver starts one clean interpreter per test session, imports labctl and
the libraries a simulated ``labctl run`` uses, and forks a child per command: a real process with
its own pid (SIGKILL it, it dies as the user's would) without the 2-3 s of interpreter start-up and
imports each ``python -m labctl.cli`` pays on this machine.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import sys

PRELOAD = [
    "tests.forked_cli",
    "labctl.cli.application",
    "labctl.app.controller",
    "labctl.db",
    "labctl.analysis",
    "labctl.simulators",
]
_CONTEXT = multiprocessing.get_context("forkserver")


def _main(argv: list[str], cwd: str) -> None:
    """What ``python -m labctl.cli ARGV`` runs (stdout to /dev/null)."""
    from labctl.cli.application import app

    os.chdir(cwd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.argv = ["labctl", *argv]
    app(argv, prog_name="labctl")


def start(argv: list[str], cwd: str) -> multiprocessing.process.BaseProcess:
    """Start ``labctl ARGV`` in a forked child; the caller kills or joins it."""
    _CONTEXT.set_forkserver_preload(PRELOAD)
    proc = _CONTEXT.Process(target=_main, args=(list(argv), cwd), daemon=True)
    proc.start()
    return proc
