"""`labctl import` on files it cannot read: a clear error, exit 2, nothing stored; encodings, decimal
commas and current densities."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl.cli.application import app
from labctl.db import Database
from labctl.db.schema import imports
from labctl.importers import read_file
from labctl.importers.table import density_to_a_per_cm2

DATA = Path(__file__).parent / "data" / "import"
ARBIN_RES = "cellpy_20160805_test001_45_cc_01.res"
runner = CliRunner()


def _nothing_stored(url: str) -> None:
    with Database(url) as d:
        assert d.runs() == []
        with d.transaction() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(imports)).scalar() == 0


def _import_fails(tmp_path: Path, f: Path, *extra: str) -> str:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = runner.invoke(app, ["import", str(f), "--db", url, *extra])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    _nothing_stored(url)
    return r.stderr.replace("\n", " ")


def test_truncated_neware_ndax(tmp_path):
    f = tmp_path / "cut.ndax"
    raw = (DATA / "neware_TESTCELL0001-B2.ndax").read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    msg = _import_fails(tmp_path, f)
    assert "Neware" in msg and "cut.ndax" in msg and "truncated" in msg


def test_truncated_text_export(tmp_path):
    lines = (DATA / "polcurvefit_example_nova.txt").read_text().splitlines()
    f = tmp_path / "cut.txt"
    f.write_text("\n".join(lines[:200]) + "\n" + lines[200][:12] + "\n")
    msg = _import_fails(tmp_path, f)
    assert "cut.txt:201" in msg and "truncated" in msg


def test_truncated_gamry_file(tmp_path):
    text = (DATA / "gamryparser_cv_data.dta").read_text(encoding="latin-1")
    f = tmp_path / "cut.DTA"
    f.write_text(text[: text.index("CURVE3") + 60], encoding="latin-1")
    msg = _import_fails(tmp_path, f)
    assert "cut.DTA:" in msg and "truncated" in msg


def test_damaged_gamry_table(tmp_path):
    msg = _import_fails(tmp_path, DATA / "gamryparser_eispot_data.dta")
    assert "eispot_data.dta:28" in msg and "not tab-separated" in msg


def test_wrong_extension(tmp_path):
    f = tmp_path / "sweep.nda"
    f.write_bytes((DATA / "polcurvefit_example_gamry.DTA").read_bytes())
    msg = _import_fails(tmp_path, f)
    assert "not a Neware record" in msg


def test_binary_named_csv(tmp_path):
    f = tmp_path / "data.csv"
    f.write_bytes((DATA / "neware_new_nda_file.nda").read_bytes())
    msg = _import_fails(tmp_path, f)
    assert "data.csv" in msg and "not a text export" in msg and "Neware .nda record" in msg


def test_binary_garbage_named_csv(tmp_path):
    f = tmp_path / "noise.csv"
    f.write_bytes(bytes(range(256)) * 20)
    msg = _import_fails(tmp_path, f)
    assert "binary" in msg and "named .csv" in msg


def test_unknown_column_layout(tmp_path):
    f = tmp_path / "odd.csv"
    f.write_text("alpha,beta,gamma\n1,2,3\n4,5,6\n")
    msg = _import_fails(tmp_path, f)
    assert "unknown column layout" in msg


def test_no_current_column(tmp_path):
    f = tmp_path / "v.csv"
    f.write_text("Test_Time(s),Voltage(V),Cycle_Index\n0,3.1,1\n1,3.2,1\n2,3.3,1\n")
    msg = _import_fails(tmp_path, f)
    assert "no current column" in msg and "v.csv:1" in msg


def test_arbin_res_header_only_is_truncated(tmp_path):
    f = tmp_path / "test.res"
    f.write_bytes(b"\x00\x01\x00\x00Standard Jet DB\x00" + b"\x00" * 200)
    msg = _import_fails(tmp_path, f)
    assert "MS Access" in msg and "Arbin .res" in msg and "truncated" in msg and "test.res" in msg


@pytest.fixture(params=["mdbtools", "access-parser"])
def arbin_reader(request, monkeypatch):
    import os
    import shutil

    if request.param == "mdbtools" and not shutil.which("mdb-export"):
        if os.environ.get("CI"):
            pytest.fail("mdbtools is not installed (apt-get install mdbtools; .ci/run does)")
        pytest.skip("mdbtools not installed (make test installs it)")
    monkeypatch.setenv("LABCTL_ARBIN_READER", request.param)
    return request.param


@pytest.mark.parametrize("keep", [4096, 100_000, 800_000, 1_600_000])
def test_truncated_arbin_res(tmp_path, keep, arbin_reader):
    f = tmp_path / "cut.res"
    f.write_bytes((DATA / ARBIN_RES).read_bytes()[:keep])
    msg = _import_fails(tmp_path, f)
    assert "cut.res" in msg and "Arbin .res" in msg
    assert "truncated" in msg or "damaged" in msg


def test_arbin_res_cut_at_a_page_boundary(tmp_path, arbin_reader):
    # a whole number of pages, the data pages missing: access-parser's error, named as an Arbin file
    f = tmp_path / "cut.res"
    f.write_bytes((DATA / ARBIN_RES).read_bytes()[: 30 * 4096])
    msg = _import_fails(tmp_path, f)
    assert "cut.res" in msg and "Arbin .res" in msg and ("truncated" in msg or "damaged" in msg)


def test_other_format_named_res(tmp_path):
    f = tmp_path / "gamry.res"
    f.write_bytes((DATA / "gamryparser_cv_data.dta").read_bytes())
    msg = _import_fails(tmp_path, f)
    assert "gamry.res" in msg and "named .res" in msg and "Standard Jet DB" in msg


def test_arbin_res_renamed_is_still_read_as_arbin(tmp_path):
    # the first bytes decide: an Access database named .mdb is read as the Arbin file it is
    f = tmp_path / "test.mdb"
    f.write_bytes((DATA / ARBIN_RES).read_bytes())
    d = read_file(f)
    assert d.format == "arbin-res"


def test_access_database_without_arbin_tables(tmp_path, monkeypatch):
    import access_parser

    monkeypatch.setenv("LABCTL_ARBIN_READER", "access-parser")

    class Fake:
        def __init__(self, path):
            self.catalog = {"Customers": 1, "MSysObjects": 2}

    monkeypatch.setattr(access_parser, "AccessParser", Fake)
    f = tmp_path / "shop.mdb"
    f.write_bytes(b"\x00\x01\x00\x00Standard Jet DB\x00" + b"\x00" * (4096 - 20))
    msg = _import_fails(tmp_path, f)
    assert "without the table Channel_Normal_Table" in msg and "Customers" in msg


def test_arbin_res_without_access_parser_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("LABCTL_ARBIN_READER", "access-parser")
    monkeypatch.setitem(sys.modules, "access_parser", None)  # import fails as if not installed
    msg = _import_fails(tmp_path, DATA / ARBIN_RES)
    assert "access-parser" in msg and "pip install 'labctl[arbin]'" in msg and "apt-get install mdbtools" in msg


def test_arbin_res_without_mdbtools_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_ARBIN_READER", "mdbtools")
    monkeypatch.setenv("PATH", str(tmp_path))  # no mdb-export on the PATH
    msg = _import_fails(tmp_path, DATA / ARBIN_RES)
    assert "mdbtools" in msg and "apt-get install mdbtools" in msg


def test_arbin_reader_setting_must_be_known(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_ARBIN_READER", "excel")
    msg = _import_fails(tmp_path, DATA / ARBIN_RES)
    assert "LABCTL_ARBIN_READER='excel'" in msg and "mdbtools" in msg and "access-parser" in msg


def test_one_bad_file_does_not_stop_the_others(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    bad = tmp_path / "odd.csv"
    bad.write_text("alpha,beta\n1,2\n")
    r = runner.invoke(app, ["import", str(bad), str(DATA / "gamryparser_cv_data.dta"), "--db", url, "--json"])
    assert r.exit_code == 2
    res = json.loads(r.stdout)
    assert [x["status"] for x in res] == ["error", "imported"]


# ------------------------------------------------------------------ encodings, decimal commas, densities
def _nova_rows():
    return (DATA / "polcurvefit_example_nova.txt").read_text().splitlines()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "latin-1"])
def test_encodings_and_decimal_commas(tmp_path, encoding):
    rows = _nova_rows()
    head = rows[0].lstrip("# ").replace("(A)", "(µA)") if encoding != "latin-1" else rows[0].lstrip("# ")
    body = [r.replace(".", ",") for r in rows[1:]]
    if encoding != "latin-1":  # current in uA, decimal commas
        body = []
        for r in rows[1:]:
            p = r.split(";")
            p[2] = repr(float(p[2]) * 1e6)
            body.append(";".join(x.replace(".", ",") for x in p))
    f = tmp_path / f"nova_{encoding}.txt"
    f.write_bytes(("\r\n".join([head, *body]) + "\r\n").encode(encoding))
    if encoding == "utf-16":
        assert f.read_bytes()[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    d = read_file(f)
    ref = read_file(DATA / "polcurvefit_example_nova.txt")
    np.testing.assert_allclose(d.voltage, ref.voltage, rtol=1e-12)
    np.testing.assert_allclose(d.current, ref.current, rtol=1e-9)
    assert d.format == "nova-ascii"


def test_current_density_needs_an_area(tmp_path):
    f = tmp_path / "j.csv"
    f.write_text("Potential (V),j (mA/cm2)\n-0.5,-1.0\n-0.4,-0.2\n-0.3,0.5\n")
    msg = _import_fails(tmp_path, f)
    assert "density" in msg and "--area" in msg
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    r = runner.invoke(app, ["import", str(f), "--db", url, "--area", "2.0", "--json"])
    assert r.exit_code == 0, r.output
    rid = json.loads(r.stdout)[0]["run_id"]
    with Database(url) as d:
        np.testing.assert_allclose(d.samples(rid)["current"], [-2e-3, -0.4e-3, 1e-3])
        assert d.run(rid)["meta"]["cell"]["area_cm2"] == 2.0
        assert "command line" in d.run(rid)["meta"]["imported"]["mapping"]["area"]


def test_area_from_a_cell_file(tmp_path):
    f = tmp_path / "j.csv"
    f.write_text("Potential (V),Current density (A/m2)\n-0.5,-10\n-0.4,2\n")
    cell = tmp_path / "cell.yaml"
    cell.write_text("label: steel-3\nkind: corrosion\narea_cm2: 0.5 cm2\n")
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    r = runner.invoke(app, ["import", str(f), "--db", url, "--cell", str(cell), "--json"])
    assert r.exit_code == 0, r.output
    rid = json.loads(r.stdout)[0]["run_id"]
    with Database(url) as d:
        np.testing.assert_allclose(d.samples(rid)["current"], [-10 * 1e-4 * 0.5, 2 * 1e-4 * 0.5])
        assert d.run(rid)["cell"] == "steel-3"


def test_bad_cell_file_names_line_and_field(tmp_path):
    cell = tmp_path / "cell.yaml"
    cell.write_text("label: x\narea_cm2: -3\n")
    r = runner.invoke(
        app,
        [
            "import",
            str(DATA / "gamryparser_cv_data.dta"),
            "--cell",
            str(cell),
            "--db",
            f"sqlite:///{tmp_path / 'a.db'}",
        ],
    )
    assert r.exit_code == 2
    assert "cell.yaml:2:1: area_cm2: must be a positive number" in r.stderr


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.sampled_from(["", "m", "u", "µ", "n"]),
    per=st.sampled_from(["cm2", "cm^2", "cm²", "m2", "m^2"]),
    value=st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
)
def test_density_units(prefix, per, value):
    f = density_to_a_per_cm2(Path("x.csv"), f"j ({prefix}A/{per})")
    scale = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9}[prefix]
    area = 1e-4 if per.startswith("m") else 1.0
    assert value * f == pytest.approx(value * scale * area, rel=1e-12, abs=1e-300)


def test_arbin_layout_csv_per_cycle_from_counters(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from import_1m import write_csv

    from labctl.app.importing import import_file
    from labctl.app.results import analyze_and_store

    f = tmp_path / "arbin.csv"
    write_csv(f, 9000 * 3)  # three cycles: CC charge 4000 s, rest, CC discharge 4000 s, rest at 2 mA
    with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        res = import_file(db, f)
        assert res.format == "arbin-csv"
        m = db.run(res.run_id)["meta"]["imported"]["mapping"]
        assert "Charge_Capacity(Ah)" in m["charge_source"]
        per = next(r for r in analyze_and_store(db, res.run_id) if r["name"] == "cycles")["data"]
        assert per["charge_source"] == "instrument counters"
        # counters: 2 mA for 4000 s = 2.2222 mAh per half-cycle (the last counter value)
        assert per["per_cycle"]["cycle"] == [1, 2, 3]
        np.testing.assert_allclose(per["per_cycle"]["charge_mAh"], 2.0 * 4000 / 3600, rtol=1e-6)
        np.testing.assert_allclose(per["per_cycle"]["ce"], 1.0, rtol=1e-9)


def test_biologic_mpt_peis_import(tmp_path):
    from labctl.app.importing import import_file

    f = Path(__file__).parent / "data" / "ipy_exampleDataBioLogic.mpt"
    with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        res = import_file(db, f)
        assert res.format == "biologic-mpt"
        s = db.samples(res.run_id)
        assert s["frequency"].size == 43 and s["frequency"][0] == pytest.approx(1.0003201e3)
        assert s["z_im"][0] == pytest.approx(-3.8998979e-1)  # -Im(Z) negated: Z'' as measured
        assert db.steps(res.run_id)[0]["kind"] == "eis"


def test_arbin_layout_xlsx_same_as_csv(tmp_path):
    import sys

    import openpyxl

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from import_1m import write_csv

    csv = tmp_path / "arbin.csv"
    write_csv(csv, 9000)
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    wb = openpyxl.Workbook()
    wb.active.title = "Info"
    wb.active.append(["Test Name", "arbin-demo"])
    ws = wb.create_sheet("Channel_1-006")
    ws.append(rows[0])
    for r in rows[1:]:
        ws.append([float(x) for x in r])
    x = tmp_path / "arbin.xlsx"
    wb.save(x)
    a, b = read_file(csv), read_file(x)
    assert b.format == "arbin-csv:xlsx" and b.mapping["sheet"] == "Channel_1-006"
    np.testing.assert_allclose(b.current, a.current)
    np.testing.assert_allclose(b.charge, a.charge)
    assert [(s.kind, s.cycle, s.start, s.stop) for s in b.steps] == [
        (s.kind, s.cycle, s.start, s.stop) for s in a.steps
    ]
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(x.read_bytes()[:2000])
    msg = _import_fails(tmp_path, cut)
    assert "XLSX" in msg and "cut.xlsx" in msg


# ------------------------------------------------------------------ PalmSens .pssession
PS_CV = "palmsens_cv_1scan.pssession"


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_pssession(tmp_path, keep):
    raw = (DATA / PS_CV).read_bytes()
    f = tmp_path / "cut.pssession"
    f.write_bytes(raw[: int(len(raw) * keep)])
    msg = _import_fails(tmp_path, f)
    assert "cut.pssession:1:" in msg and "PalmSens .pssession" in msg and "truncated" in msg


def test_pssession_trailing_junk_is_ignored_with_a_note(tmp_path):
    raw = (DATA / PS_CV).read_bytes()  # PSTrace 5.11 already ends with a second BOM
    f = tmp_path / "junk.pssession"
    f.write_bytes(raw + "\x00\x00garbage".encode("utf-16-le"))
    d = read_file(f)
    assert d.n == 41 and any("after the session's JSON ignored" in n for n in d.notes)


def test_arbin_res_named_pssession_is_read_as_arbin(tmp_path):
    f = tmp_path / "x.pssession"
    f.write_bytes((DATA / ARBIN_RES).read_bytes()[:8192])  # the first bytes decide: an Access file
    msg = _import_fails(tmp_path, f)
    assert "Arbin .res" in msg and "MS Access" in msg


def test_text_named_pssession(tmp_path):
    f = tmp_path / "x.pssession"
    f.write_bytes((DATA / "gamryparser_cv_data.dta").read_bytes())
    msg = _import_fails(tmp_path, f)
    assert "x.pssession" in msg and "UTF-16 JSON" in msg and "FF FE" in msg


def test_pssession_named_res(tmp_path):
    f = tmp_path / "x.res"
    f.write_bytes((DATA / PS_CV).read_bytes())
    assert read_file(f).format == "palmsens-pssession"  # recognised by its content


def test_pssession_json_of_another_kind(tmp_path):
    f = tmp_path / "m.pssession"
    f.write_bytes(codecs.BOM_UTF16_LE + json.dumps({"Type": "PalmSens.Method", "x": 1}).encode("utf-16-le"))
    msg = _import_fails(tmp_path, f)
    assert "not a PalmSens session" in msg and "PalmSens.Method" in msg


def test_pssession_impedance_is_refused_with_the_way_out(tmp_path):
    msg = _import_fails(tmp_path, DATA / "palmsens_eis_5freq.pssession")
    assert "impedance" in msg and "CSV" in msg and "Impedance Spectroscopy" in msg


def test_pssession_unknown_unit(tmp_path):
    text = (DATA / PS_CV).read_bytes().decode("utf-16")
    f = tmp_path / "u.pssession"
    f.write_bytes(
        codecs.BOM_UTF16_LE + text.replace("PalmSens.Units.MicroAmpere", "PalmSens.Units.Furlong").encode("utf-16-le")
    )
    msg = _import_fails(tmp_path, f)
    assert "PalmSens.Units.Furlong" in msg and "Ampere" in msg


_PS_RAW = (DATA / PS_CV).read_bytes()


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(_PS_RAW) - 1), junk=st.binary(max_size=8))
def test_pssession_any_cut_reads_or_is_refused_cleanly(tmp_path_factory, cut, junk):
    from labctl.importers import ImportFileError

    f = tmp_path_factory.mktemp("ps") / "c.pssession"
    f.write_bytes(_PS_RAW[:cut] + junk)
    try:
        d = read_file(f)
    except ImportFileError as exc:
        assert "c.pssession" in str(exc)
    else:  # only the whole JSON reads, whatever follows it
        assert d.n == 41


@settings(max_examples=6, deadline=None)
@given(pages=st.integers(min_value=1, max_value=(DATA / ARBIN_RES).stat().st_size // 4096 - 1))
def test_arbin_res_any_page_cut_is_refused_cleanly(tmp_path_factory, pages):
    import os
    import shutil

    from labctl.importers import ImportFileError
    from labctl.importers.arbin import read_res

    f = tmp_path_factory.mktemp("res") / "c.res"
    raw = (DATA / ARBIN_RES).read_bytes()[: pages * 4096]
    f.write_bytes(raw)
    readers = ["access-parser"] + (["mdbtools"] if shutil.which("mdb-export") or os.environ.get("CI") else [])
    for reader in readers:
        try:
            d = read_res(f, raw, backend=reader)
        except ImportFileError as exc:
            assert "c.res" in str(exc) and "Arbin" in str(exc)
        else:  # pages cut after the data pages: every sample is there, or the file is refused
            assert d.n == 10261


MACCOR = "beep_xTESLADIAG_000038con_head.078"


def _maccor_lines() -> list[str]:
    return (DATA / MACCOR).read_bytes().decode("latin-1").split("\r\n")


def test_truncated_maccor_export(tmp_path):
    lines = _maccor_lines()
    f = tmp_path / "cut.078"
    f.write_bytes(("\r\n".join(lines[:700]) + "\r\n" + lines[700][:40]).encode("latin-1"))
    msg = _import_fails(tmp_path, f)
    assert "cut.078:701" in msg and "truncated" in msg


def test_maccor_export_without_a_capacity_column_is_an_unknown_layout(tmp_path):
    lines = _maccor_lines()
    f = tmp_path / "odd.078"
    f.write_bytes("\r\n".join([lines[0], lines[1].replace("Amp-hr", "Capacity?"), *lines[2:50]]).encode("latin-1"))
    msg = _import_fails(tmp_path, f)
    assert "odd.078:2" in msg and "without the column(s) Amp-hr" in msg and "unknown layout" in msg


@pytest.mark.parametrize(
    ("column", "value", "expect"),
    [
        ("Volts", "3.9x", "field 'Volts': '3.9x' is not a number"),
        ("Test (Sec)", "soon", "field 'Test (Sec)': 'soon' is neither seconds nor a time"),
        ("State", " ", "field 'State': empty"),
    ],
)
def test_maccor_bad_field_names_line_and_field(tmp_path, column, value, expect):
    lines = _maccor_lines()
    k = lines[1].split("\t").index(column)
    row = lines[40].split("\t")
    row[k] = value
    lines[40] = "\t".join(row)
    f = tmp_path / "bad.078"
    f.write_bytes("\r\n".join(lines).encode("latin-1"))
    msg = _import_fails(tmp_path, f)
    assert "bad.078:41" in msg and expect in msg


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 599999))
@settings(max_examples=60, deadline=None)
def test_maccor_day_clock_time_round_trip(days, hours, minutes, centi):
    from labctl.importers.maccor import maccor_seconds

    sec = centi / 10000
    tok = f"  {days}d {hours:02d}:{minutes:02d}:{sec:07.4f}"
    want = days * 86400 + hours * 3600 + minutes * 60 + sec
    assert maccor_seconds(tok) == pytest.approx(want, abs=1e-9)
    assert maccor_seconds(f"{want:.4f}") == pytest.approx(want, abs=1e-4)
