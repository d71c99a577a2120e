"""Malformed protocols, presets and stations, each refused with its own message (tests/data/malformed/).

The table is tests/data/malformed/manifest.yaml: for every file, where (line:col), the field, and
substrings of the message and of the hint.  Each file is given to the command a user would run:
exit code 2, the message on stderr with file:line:col, field and hint, no traceback, nothing written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from labctl.cli import app
from labctl.studies.mg_anode import LIBRARY_DIR

HERE = Path(__file__).resolve().parent / "data" / "malformed"
CASES = YAML(typ="safe").load((HERE / "manifest.yaml").read_text())
GOOD = str(LIBRARY_DIR / "eis-rt.yaml")


def test_the_table_covers_every_file_and_at_least_40() -> None:
    listed = {c["file"] for c in CASES}
    on_disk = {str(p.relative_to(HERE)) for p in HERE.rglob("*.yaml") if p.name != "manifest.yaml"}
    assert listed == on_disk
    assert len(listed) >= 40
    assert {f.split("/")[0] for f in listed} == {"protocols", "presets", "stations"}


def _commands(case: dict, db: Path) -> list[list[str]]:
    f = str(HERE / case["file"])
    url = f"sqlite:///{db}"
    kind = case["file"].split("/")[0]
    if kind == "protocols":
        return [["validate", f], ["run", f, "--sim", "--preset", "bare-mg", "--db", url]]
    if kind == "presets":
        return [["run", GOOD, "--sim", "--preset", f, "--db", url]]
    return [["run", GOOD, "--station", f, "--channel", "A", "--db", url]]


def _runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        try:
            return c.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_a_malformed_file_is_refused_with_its_message(case: dict, tmp_path: Path) -> None:
    db = tmp_path / "lab.sqlite"
    path = str(HERE / case["file"])
    for args in _commands(case, db):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        assert "Traceback" not in r.output
        line = next((ln for ln in r.stderr.splitlines() if ln.startswith(f"{path}:{case['where']}: ")), None)
        assert line is not None, (case, r.stderr)
        if case["field"]:
            assert f": {case['field']}: " in line, (case, line)
        assert case["message"] in line, (case, line)
        assert f"(hint: {case['hint']}" in line, (case, line)
        assert _runs(db) == 0  # no run row: nothing was written
