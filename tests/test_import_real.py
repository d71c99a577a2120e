"""`labctl import` on real instrument files from public repositories (tests/data/import/README.md).

Each file's values are compared with what the maintained third-party reader computes
(NewareNDA for Neware records, gamry-parser for Gamry .DTA files); the reference
numbers are in the README table and repeated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from labctl.app.importing import CellInfo, import_file
from labctl.app.results import analyze_and_store
from labctl.cli.application import app
from labctl.db import Database
from labctl.db.schema import imports
from labctl.importers import file_sha256, read_file

DATA = Path(__file__).parent / "data" / "import"
runner = CliRunner()

# NewareNDA 2026.6.11: per cycle, sum over the cycle's steps of each step's largest
# Charge_Capacity(mAh) / Discharge_Capacity(mAh) (the instrument's counters); CE = discharge / charge.
NEWARE_B2 = {
    2: (4760.662109, 4717.545410),
    3: (4722.765625, 4720.466797),
    4: (4724.951660, 4722.804688),
    5: (4726.562500, 4721.869141),
    6: (4725.231445, 4723.798828),
    7: (4726.938965, 4722.429688),
    8: (4724.846191, 4719.031250),
}
NEWARE_TESTFILE_CYCLE2 = (5655.087891 + 155.937119, 5806.645996)  # CC_Chg + CV_Chg, CC_DChg


@pytest.fixture
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'lab.db'}")
    yield d
    d.close()


def _per_cycle(results):
    table = next(r for r in results if r["name"] == "cycles")
    return table["data"]


def test_neware_ndax_per_cycle_capacity_and_ce_match_newarenda(db):
    res = import_file(db, DATA / "neware_TESTCELL0001-B2.ndax")
    assert not res.duplicate and res.n_samples == 77745
    rows = analyze_and_store(db, res.run_id)
    per = _per_cycle(rows)
    assert per["charge_source"] == "instrument counters"
    assert "cycle_mode='chg'" in per["cycle_definition"]
    table = dict(
        zip(
            per["per_cycle"]["cycle"],
            zip(per["per_cycle"]["charge_mAh"], per["per_cycle"]["discharge_mAh"], per["per_cycle"]["ce"], strict=True),
            strict=True,
        )
    )
    for cyc, (qc, qd) in NEWARE_B2.items():
        got_c, got_d, got_ce = table[cyc]
        assert got_c == pytest.approx(qc, rel=1e-6)
        assert got_d == pytest.approx(qd, rel=1e-6)
        assert 100 * got_ce == pytest.approx(100 * qd / qc, abs=0.01)  # CE to 0.01 percentage point
    # cycle 1 is a discharge only: reported, with no CE
    assert table[1][0] == 0 and table[1][2] is None


def test_neware_ndax_time_is_test_time_not_the_step_time(db):
    """BTS 8 .ndax files keep the time in the step (NewareNDA's Time restarts at 0 in every step);
    an imported run's t is the test time: never decreasing, equal to the Timestamps' span."""
    res = import_file(db, DATA / "neware_TESTCELL0001-B2.ndax")
    s = db.samples(res.run_id)
    assert np.all(np.diff(s["t"]) >= 0)
    assert s["t"][0] == 0
    # the record's first and last Timestamps are 2025-09-25 12:18:47.675 and its end: same span to 1 s
    from labctl.importers.neware import read_neware_rows

    r = read_neware_rows(DATA / "neware_TESTCELL0001-B2.ndax")
    assert s["t"][-1] == pytest.approx(r.unix[-1] - r.unix[0], abs=1.0)
    assert s["t"][-1] > 5 * r.step_time.max()


def test_neware_cc_then_cv_is_one_charge(db):
    res = import_file(db, DATA / "neware_TestFile.nda")
    steps = db.steps(res.run_id)
    c2 = [s for s in steps if s["cycle"] == 2]
    assert [s["kind"] for s in c2] == ["galvanostatic", "potentiostatic", "rest", "galvanostatic", "rest"]
    assert all(s["params"].get("cycling") for s in c2 if s["kind"] != "rest")
    per = _per_cycle(analyze_and_store(db, res.run_id))["per_cycle"]
    k = per["cycle"].index(2)
    assert per["charge_mAh"][k] == pytest.approx(NEWARE_TESTFILE_CYCLE2[0], rel=1e-6)
    assert per["discharge_mAh"][k] == pytest.approx(NEWARE_TESTFILE_CYCLE2[1], rel=1e-6)


def test_run_records_source_reader_and_mapping(db):
    path = DATA / "neware_new_nda_file.nda"
    res = import_file(db, path, cell=CellInfo(label="coin-7"))
    run = db.run(res.run_id)
    assert run["simulated"] is False or run["simulated"] == 0
    imp = run["meta"]["imported"]
    assert imp["source_file"] == path.name
    assert imp["sha256"] == file_sha256(path)
    assert imp["reader"].startswith("NewareNDA ")
    m = imp["mapping"]
    for k in ("current_sign", "cycle_definition", "steps", "charge_source", "labctl_current_sign"):
        assert m[k]
    assert m["steps"] == {"CC_DChg": "galvanostatic", "Rest": "rest", "CC_Chg": "galvanostatic"}
    assert db.n_samples(res.run_id) == 439
    s = db.samples(res.run_id)
    df_current = read_file(path).current
    np.testing.assert_allclose(s["current"], df_current)


def test_same_file_twice_is_refused_naming_the_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    f = str(DATA / "neware_new_nda_file.nda")
    r1 = runner.invoke(app, ["import", f, "--db", url, "--json"])
    assert r1.exit_code == 0, r1.output
    rid = json.loads(r1.stdout)[0]["run_id"]
    r2 = runner.invoke(app, ["import", f, "--db", url])
    assert r2.exit_code == 0
    assert f"already imported as run {rid}" in r2.stdout.replace("\n", " ")
    r3 = runner.invoke(app, ["import", f, "--db", url, "--json"])
    assert json.loads(r3.stdout) == [{**json.loads(r3.stdout)[0], "status": "duplicate", "run_id": rid}]
    with Database(url) as d:
        assert len(d.runs()) == 1
        with d.transaction() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(imports)).scalar() == 1


def test_gamry_sweep_matches_gamry_parser_and_fit_tafel_reads_it(db):
    path = DATA / "polcurvefit_example_gamry.DTA"
    d = read_file(path)
    # gamry-parser 0.4.6: curve 0 has 3277 rows, sum(Vf) = -2231.978378699, sum(Im) = -0.4540403290575
    assert d.n == 3277
    assert d.voltage.sum() == pytest.approx(-2231.978378699, rel=1e-12)
    assert d.current.sum() == pytest.approx(-0.4540403290575, rel=1e-12)
    assert d.area_cm2 == 1.0 and d.format == "gamry-dta:CYCPOL"
    assert any("announces 6507 rows" in n for n in d.notes)
    res = import_file(db, path)
    st = db.steps(res.run_id)
    assert [s["kind"] for s in st] == ["lsv"] and "tafel" in st[0]["label"]
    assert db.run(res.run_id)["meta"]["cell"]["area_cm2"] == 1.0


def test_gamry_cv_each_curve_is_a_cycle(db):
    d = read_file(DATA / "gamryparser_cv_data.dta")
    # gamry-parser 0.4.6, curves 0..4: sum(Vf) per curve
    ref = [4.948191, 8.935132, 8.933771, 8.934288, 8.934650]
    assert [s.cycle for s in d.steps] == [1, 2, 3, 4, 5]
    for s, r in zip(d.steps, ref, strict=True):
        assert d.voltage[s.start : s.stop].sum() == pytest.approx(r, rel=1e-9)
    res = import_file(db, DATA / "gamryparser_cv_data.dta")
    assert sorted({s["cycle"] for s in db.steps(res.run_id)}) == [1, 2, 3, 4, 5]


def test_gamry_eis_import_then_fit(db):
    path = Path(__file__).parent / "data" / "ipy_exampleDataGamry.DTA"
    res = import_file(db, path)
    steps = db.steps(res.run_id)
    assert [s["kind"] for s in steps] == ["rest", "eis"]
    s = db.samples(res.run_id)
    m = s["step_index"] == steps[1]["step_index"]
    assert int(m.sum()) == 72
    assert np.all(s["frequency"][m] > 0)
    rows = analyze_and_store(db, res.run_id)
    assert any(r["name"] == "Rs" for r in rows)


def test_nova_sweep_read_for_fit_tafel():
    from labctl.analysis.io import read_tafel_file

    sw = read_tafel_file(DATA / "polcurvefit_example_nova.txt")
    assert sw.potential.size == 1592
    assert sw.potential[0] == pytest.approx(-1.19888305664063)
    assert sw.current[0] == pytest.approx(-0.0062347412109375)
    sw2 = read_tafel_file(DATA / "polcurvefit_example_gamry.DTA")
    assert sw2.potential.size == 3277


def test_show_export_report_compare_work_on_an_imported_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = runner.invoke(
        app,
        ["import", str(DATA / "neware_new_nda_file.nda"), str(DATA / "gamryparser_cv_data.dta"), "--db", url, "--json"],
    )
    assert r.exit_code == 0, r.output
    ids = [x["run_id"] for x in json.loads(r.stdout)]
    assert runner.invoke(app, ["show", str(ids[0]), "--db", url]).exit_code == 0
    out = tmp_path / "x.csv"
    e = runner.invoke(app, ["export", str(ids[0]), "--db", url, "--out", str(out)])
    assert e.exit_code == 0, e.output
    assert len(out.read_text().splitlines()) > 439
    assert runner.invoke(app, ["analyze", str(ids[0]), "--db", url]).exit_code == 0
    rep = runner.invoke(app, ["report", str(ids[0]), "--db", url, "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    assert (tmp_path / "rep" / "index.html").exists()
    c = runner.invoke(app, ["compare", *map(str, ids), "--db", url, "--out", str(tmp_path / "cmp")])
    assert c.exit_code == 0, c.output


def test_report_shows_the_per_cycle_table_and_the_mapping(tmp_path):
    from labctl.reports.run_report import write_report

    with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        res = import_file(db, DATA / "neware_TestFile.nda")
        analyze_and_store(db, res.run_id)
        html = write_report(db, res.run_id, tmp_path / "rep").read_text()
    assert "<h2>Per cycle</h2>" in html and "cycle_mode=&#x27;chg&#x27;" in html
    assert "5811.0" in html.replace(",", "")  # cycle 2 charge, CC + CV, mAh
    assert "99.925" in html  # cycle 2 CE, %
    assert "<h2>Imported file</h2>" in html and file_sha256(DATA / "neware_TestFile.nda") in html


# impedance.py 1.7.1 CustomCircuit("R0-p(R1,CPE1)-p(R2,CPE2)", initial_guess=[100, 5000, 1e-8, 0.9, 20000, 1e-4,
# 0.7]).fit on the 72 ZCURVE points of ipy_exampleDataGamry.DTA (unweighted): values and 1-sigma (conf_),
# relative RMS |Z_fit - Z|/|Z| = 7.80 %
IPY_GAMRY = {
    "R0": (2.88602, 500.0),
    "R1": (4173.92, 516.0),
    "CPE1_Q": (1.12794e-08, 3.67e-09),
    "CPE1_alpha": (0.756535, 0.0336),
    "R2": (20056.4, 948.0),
    "CPE2_Q": (0.000171205, 4.07e-06),
    "CPE2_alpha": (0.662183, 0.0184),
}


def test_eis_fit_of_an_imported_gamry_spectrum_against_impedance_py(db):
    from labctl.analysis.eis import fit_circuit

    res = import_file(db, Path(__file__).parent / "data" / "ipy_exampleDataGamry.DTA")
    st = next(s for s in db.steps(res.run_id) if s["kind"] == "eis")
    s = db.samples(res.run_id)
    m = s["step_index"] == st["step_index"]
    fit = fit_circuit(s["frequency"][m], s["z_re"][m] + 1j * s["z_im"][m], "R0-p(R1,CPE1)-p(R2,CPE2)", weighting="unit")
    # a lower residual than the reference ...
    assert fit.stats["rel_rms"] < 0.0780
    # ... and the arcs' resistances and the slow arc inside the reference's 1-sigma bands
    vals = dict(zip(fit.circuit.param_names, fit.values, strict=True))
    for k in ("R1", "R2", "CPE2_Q", "CPE2_alpha"):
        v, sd = IPY_GAMRY[k]
        assert abs(vals[k] - v) <= sd, (k, vals[k], v, sd)


@pytest.mark.postgres
def test_import_on_postgres_once(pg_url):
    with Database(pg_url) as d:
        a = import_file(d, DATA / "neware_new_nda_file.nda")
        b = import_file(d, DATA / "neware_new_nda_file.nda")
        assert not a.duplicate and b.duplicate and b.run_id == a.run_id
        assert d.n_samples(a.run_id) == 439 and len(d.runs()) == 1


# Arbin .res (cellpy's test file): per cycle, the largest Charge_Capacity / Discharge_Capacity (Ah)
# of Channel_Normal_Table (the counters run on through a cycle), in mAh. Computed with cellpy 1.0.3
# (`cellpy.get(f, instrument='arbin_res')`, raw data grouped by cycle_index) and, independently,
# from `mdb-export f Channel_Normal_Table` (mdbtools 1.0.0); the two agree exactly.
ARBIN_RES = "cellpy_20160805_test001_45_cc_01.res"
ARBIN_RES_CYCLES = {
    1: (1.625405999, 1.755093529),
    2: (1.699563705, 1.567475110),
    3: (1.731507851, 1.585720948),
    4: (1.575977622, 1.517317964),
    5: (1.535303245, 1.471186144),
    10: (1.528125264, 1.463215585),
    11: (1.542494118, 1.477811254),
    17: (1.525362328, 1.464807818),
}


def _arbin_reader(monkeypatch, reader):
    """Pick the .res reader; mdbtools is installed by `make test` and .ci/run (Debian's mdbtools)."""
    import os
    import shutil

    if reader == "mdbtools" and not shutil.which("mdb-export"):
        if os.environ.get("CI"):
            pytest.fail("mdbtools is not installed (apt-get install mdbtools; .ci/run does)")
        pytest.skip("mdbtools not installed (make test installs it)")
    monkeypatch.setenv("LABCTL_ARBIN_READER", reader)


@pytest.mark.parametrize("reader", ["mdbtools", "access-parser"])
def test_arbin_res_per_cycle_capacity_and_ce_match_cellpy(db, monkeypatch, reader):
    _arbin_reader(monkeypatch, reader)
    res = import_file(db, DATA / ARBIN_RES)
    assert not res.duplicate and res.n_samples == 10261 and res.format == "arbin-res"
    per = _per_cycle(analyze_and_store(db, res.run_id))
    assert per["charge_source"] == "instrument counters"
    assert "Cycle_Index" in per["cycle_definition"]
    pc = per["per_cycle"]
    table = dict(zip(pc["cycle"], zip(pc["charge_mAh"], pc["discharge_mAh"], pc["ce"], strict=True), strict=True))
    assert sorted(table) == list(range(1, 19))
    for cyc, (qc, qd) in ARBIN_RES_CYCLES.items():
        got_c, got_d, got_ce = table[cyc]
        # labctl sums each step's counter increase; the counters' per-cycle maximum differs by <= 1.2e-6
        assert got_c == pytest.approx(qc, rel=2e-6)
        assert got_d == pytest.approx(qd, rel=2e-6)
        assert 100 * got_ce == pytest.approx(100 * qd / qc, abs=0.01)
    # cycle 18 is a discharge the test stopped in: reported, with no CE
    assert table[18][0] == 0 and table[18][1] == pytest.approx(0.239313156, rel=1e-6) and table[18][2] is None


@pytest.mark.parametrize("reader", ["mdbtools", "access-parser"])
def test_arbin_res_steps_time_and_header(monkeypatch, reader):
    _arbin_reader(monkeypatch, reader)
    d = read_file(DATA / ARBIN_RES)
    assert d.reader.startswith(reader)
    assert d.header["Test_Name"] == "20160805_sic006_45_cc_01-01-003"
    assert d.header["Start_DateTime"] == "2016-08-05T16:16:23"
    assert d.t[0] == 0 and np.all(np.diff(d.t) >= 0)
    # Test_Time of the last data point less that of the first (mdb-export: 858777.23 s)
    assert d.t[-1] == pytest.approx(858777.2301515853, rel=1e-12)
    # the first 24 h rest, then discharge (negative current) and charge steps, all Arbin step numbers
    first = d.steps[0]
    assert first.kind == "rest" and first.params["instrument_step"] == 1 and first.cycle == 1
    kinds = {s.kind for s in d.steps}
    assert kinds == {"rest", "galvanostatic"}
    assert all(s.params.get("cycling") for s in d.steps if s.kind == "galvanostatic")
    assert {s.params["instrument_step"] for s in d.steps if s.cycle >= 4} <= {10, 11, 12, 13, 14, 15}
    assert np.nanmin(d.voltage) > 0.0 and np.nanmax(d.voltage) < 3.2


def test_arbin_res_both_readers_agree(monkeypatch):
    _arbin_reader(monkeypatch, "mdbtools")
    a = read_file(DATA / ARBIN_RES)
    monkeypatch.setenv("LABCTL_ARBIN_READER", "access-parser")
    b = read_file(DATA / ARBIN_RES)
    assert a.reader.startswith("mdbtools") and b.reader.startswith("access-parser")
    np.testing.assert_allclose(a.t, b.t, rtol=1e-14)
    np.testing.assert_allclose(a.charge, b.charge, rtol=1e-12, atol=1e-15)
    # float32 columns (Voltage, Current): mdb-export prints them to 8 digits
    np.testing.assert_allclose(a.voltage, b.voltage, rtol=1e-7)
    np.testing.assert_allclose(a.current, b.current, rtol=1e-7, atol=1e-15)
    assert [(s.start, s.stop, s.kind, s.cycle) for s in a.steps] == [
        (s.start, s.stop, s.kind, s.cycle) for s in b.steps
    ]


def test_arbin_res_cli_import(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = runner.invoke(app, ["import", str(DATA / ARBIN_RES), "--db", url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out[0]["status"] == "imported" and out[0]["format"] == "arbin-res"


# PalmSens .pssession (PalmSens/palmsens-sdk python/tests/test_data). Reference values are those
# pypalmsens 2.2.0 (PalmSens' own SDK) asserts in its test suite for the same files
# (python/tests/test_curve.py, test_dataset.py, test_array.py at 39c885d); pypalmsens itself needs
# the .NET 10 runtime, which this machine cannot install.
def test_pssession_swv_curve_matches_pypalmsens():
    d = read_file(DATA / "palmsens_DPV_example.pssession")  # PSTrace 5.0: lower-case keys, curves only
    assert d.format == "palmsens-pssession" and d.n == 201  # curve_dpv.n_points == 201
    assert d.voltage.min() == -1.0 and d.voltage.max() == 0.0  # min_x, max_x
    assert d.current.min() == pytest.approx(1.93339e-6, rel=1e-12)  # min_y 1.93339 µA
    assert d.current.max() == pytest.approx(36.5019e-6, rel=1e-12)  # max_y 36.5019 µA
    assert [s.kind for s in d.steps] == ["lsv"] and "SWV" in d.steps[0].label
    assert "t is the point number" in d.mapping["measurements"][0]["time"]


def test_pssession_cv_charge_matches_pypalmsens():
    d = read_file(DATA / "palmsens_cv_1scan.pssession")
    assert d.n == 41 and [(s.kind, s.cycle) for s in d.steps] == [("cv", 1)]
    # pypalmsens: the Charge array of this scan has min -83.096866 and max 11.609434 (µC); the
    # trapezoidal integral of the current labctl read, over its t, gives the same
    q = np.concatenate(([0.0], np.cumsum(np.diff(d.t) * (d.current[1:] + d.current[:-1]) / 2))) * 1e6
    assert q.min() == pytest.approx(-83.096866, abs=1e-6) and q.max() == pytest.approx(11.609434, abs=1e-6)
    assert d.voltage.min() == pytest.approx(-0.999943) and d.voltage.max() == pytest.approx(0.999943)
    assert d.t[-1] == pytest.approx(3.9997758865356445, rel=1e-12)
    # UTCTimeStamp 638881791267491192 (.NET ticks) = 2025-07-15 12:25:26.749 UTC
    assert d.started_unix == pytest.approx(1752582326.749119, abs=1e-3)


def test_pssession_three_scans_are_three_cycles(db):
    res = import_file(db, DATA / "palmsens_cv_3scan.pssession")
    assert res.n_samples == 121 and res.n_steps == 3  # the JSON's scans have 40, 40 and 41 points
    steps = db.steps(res.run_id)
    assert [s["cycle"] for s in steps] == [1, 2, 3]
    assert {s["kind"] for s in steps} == {"cv"}
    d = read_file(DATA / "palmsens_cv_3scan.pssession")
    assert np.all(np.diff(d.t) > 0)
    assert [s.stop - s.start for s in d.steps] == [40, 40, 41]


def test_pssession_cli_import(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = runner.invoke(app, ["import", str(DATA / "palmsens_cv_1scan.pssession"), "--db", url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out[0]["status"] == "imported" and out[0]["format"] == "palmsens-pssession"


# Maccor raw text exports (TRI-AMDD/beep beep/tests/test_files, Apache-2.0; tests/data/import/README.md).
# beep cannot be installed here: the reference is computed in the test from the file's own counters with
# the csv module: per (Cyc#, Step) run of rows, Maccor's Amp-hr restarts at 0, so a run's capacity is its
# last Amp-hr; a cycle's charge is the sum over its State C runs, its discharge over its State D runs.
MACCOR = "beep_xTESLADIAG_000038con_head.078"
MACCOR_EIS = "beep_maccor_test_file_4267-66-6519.041"
MACCOR_REF_MAH = {0: (2757.753013, 4394.171786), 1: (4416.545031, 4411.195809), 2: (4418.491423, 4408.741629)}


def _maccor_reference(path):
    import csv

    with open(path, newline="", encoding="latin-1") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    head = rows[1]
    cyc, stp, st, ah = (head.index(k) for k in ("Cyc#", "Step", "State", "Amp-hr"))
    runs = []  # [cycle, step, state, last Amp-hr]
    for r in rows[2:]:
        k = (int(r[cyc]), int(r[stp]), r[st])
        if not runs or tuple(runs[-1][:3]) != k:
            runs.append([*k, 0.0])
        runs[-1][3] = float(r[ah])
    ref = {}
    for c, _s, state, last in runs:
        chg, dis = ref.get(c, (0.0, 0.0))
        ref[c] = (chg + (last if state == "C" else 0.0), dis + (last if state == "D" else 0.0))
    return {c: (1000 * a, 1000 * b) for c, (a, b) in ref.items()}


def test_maccor_per_cycle_capacity_and_ce_from_its_own_counters(db):
    res = import_file(db, DATA / MACCOR)
    assert res.format == "maccor-text" and res.n_samples == 1408
    ref = _maccor_reference(DATA / MACCOR)
    assert sorted(ref) == sorted(MACCOR_REF_MAH)
    for c, pair in MACCOR_REF_MAH.items():
        assert ref[c] == pytest.approx(pair, rel=1e-9)
    per = _per_cycle(analyze_and_store(db, res.run_id))["per_cycle"]
    imp = db.run(res.run_id)["meta"]["imported"]
    assert per["cycle"] == [0, 1, 2]
    for k, c in enumerate(per["cycle"]):
        chg, dis = ref[c]
        assert per["charge_mAh"][k] == pytest.approx(chg, rel=1e-9)
        assert per["discharge_mAh"][k] == pytest.approx(dis, rel=1e-9)
        assert 100 * per["ce"][k] == pytest.approx(100 * dis / chg, abs=0.01)
    m = imp["mapping"]
    assert "Amp-hr restarts at every step" in m["charge_source"]
    assert "signed (negative on discharge)" in m["current_sign"] and "State C" in m["current_sign"]
    assert m["cycle_definition"].startswith("Maccor Cyc#")
    assert m["steps"]["C (charge) CV"] == "potentiostatic"


def test_maccor_steps_sign_time_and_header():
    d = read_file(DATA / MACCOR)
    assert [(s.kind, s.cycle) for s in d.steps[:5]] == [
        ("rest", 0),
        ("galvanostatic", 0),
        ("potentiostatic", 0),  # step 5: the CV part of the CC-CV charge, voltage flat, current falling
        ("galvanostatic", 0),
        ("rest", 0),
    ]
    dis = d.steps[3]
    assert np.all(d.current[dis.start : dis.stop] < 0) and np.all(d.charge[dis.start : dis.stop] <= 0)
    chg = d.steps[1]
    assert np.all(d.current[chg.start : chg.stop] > 0)
    assert d.t[-1] == pytest.approx(23248.59)
    assert d.header["procedure"] == "xTESLADIAG_000038.000" and d.header["comment"] == "exp-con"
    from datetime import datetime

    assert d.started_unix == datetime(2019, 8, 15, 16, 37, 2).timestamp()


def test_maccor_unsigned_amps_read_the_same(tmp_path):
    # some Maccor exports write Amps unsigned: the State column alone gives the sign
    lines = (DATA / MACCOR).read_bytes().decode("latin-1").split("\r\n")
    k = lines[1].split("\t").index("Amps")
    out = lines[:2]
    for ln in lines[2:]:
        f = ln.split("\t")
        if len(f) > k:
            f[k] = f[k].lstrip("-")
        out.append("\t".join(f))
    p = tmp_path / "unsigned.078"
    p.write_bytes("\r\n".join(out).encode("latin-1"))
    a, b = read_file(DATA / MACCOR), read_file(p)
    assert "unsigned" in b.mapping["current_sign"]
    assert np.array_equal(a.current, b.current) and np.array_equal(a.charge, b.charge)


def test_maccor_day_clock_times_and_impedance_rows():
    d = read_file(DATA / MACCOR_EIS)  # TestTime written as '  0d 00:00:10.0000'
    assert d.format == "maccor-text" and d.n == 74
    assert d.t[:11].tolist() == [float(k) for k in range(11)]
    assert [s.label.split(" ")[0] for s in d.steps] == ["R", "FRA", "P", "O"]
    assert {s.kind for s in d.steps} == {"rest"} and not np.any(d.current)
    assert any(".EDA file" in n for n in d.notes)
    assert d.header["procedure"] == "EIS 1.000FRA default"
