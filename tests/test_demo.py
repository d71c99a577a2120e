"""`labctl demo` (what `make demo` runs): the study's table from simulated instruments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(900)  # the subprocess's own limit: 60 runs take ~100 s idle, >600 s on a loaded 2-core PC
def test_demo_reproduces_the_paper_table(tmp_path: Path):
    out = tmp_path / "demo"
    js = tmp_path / "table.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "labctl.cli",
            "demo",
            "--out",
            str(out),
            "--db",
            f"sqlite:///{tmp_path / 'demo.sqlite'}",
            "--json",
            str(js),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert str((out / "index.html").resolve()) in r.stdout.replace("\n", "")
    table = json.loads(js.read_text())
    rows = table["rows"]
    assert len(rows) == 36 and all(row["n"] == 3 for row in rows)
    bad = [(row["quantity"], row["anode"], row["paper"], row["mean"]) for row in rows if not row["within_tolerance"]]
    assert not bad, bad
    # bare Mg is worse than Br-Mg on every quantity of the table
    by = {}
    for row in rows:
        by.setdefault(row["quantity"], {})[row["preset"]] = row["mean"]
    from labctl.studies.mg_anode.demo import QUANTITIES

    for q in QUANTITIES:
        bare, br = by[q.label]["bare-mg"], by[q.label]["br-mg"]
        assert (bare < br) if q.higher_is_better else (bare > br), q.label
    html = (out / "index.html").read_text()
    assert "Aurbach CE" in html and "eis-temperature/" in html
    assert all(r["status"] == "completed" for r in table["runs"])
    # every number of the table is what milestone 1 computed for the same seeds
    golden = json.loads((ROOT / "tests" / "golden" / "demo_table.json").read_text())
    key = lambda row: (row["quantity"], row["preset"])  # noqa: E731
    want = {key(row): row for row in golden["rows"]}
    for row in rows:
        ref = want[key(row)]
        assert row["values"] == ref["values"], key(row)
        assert row["mean"] == ref["mean"] and row["sd"] == ref["sd"], key(row)
