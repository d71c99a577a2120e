"""``labctl`` command line (typer + rich).  Thin: every command calls the Python API.

One module per command group: :mod:`~labctl.cli.run` (validate, schema, run),
:mod:`~labctl.cli.data` (runs, show, export), :mod:`~labctl.cli.analysis` (analyze,
fit-eis, fit-tafel), :mod:`~labctl.cli.report` (report, compare), :mod:`~labctl.cli.demo`;
shared helpers in :mod:`~labctl.cli.common`.  User mistakes (bad protocol, unknown run,
missing file) print a clear message on stderr and exit with code 2, without a
traceback.  ``--json`` writes machine-readable output on stdout; progress and
messages go to stderr.
"""

from labctl.cli.application import app, main

__all__ = ["app", "main"]
