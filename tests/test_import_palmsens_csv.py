"""`labctl import` of PalmSens PSTrace "Export to CSV" curve files.

No real PSTrace CSV export with a permissive licence was found; the layout (title line, the
'Date and time measurement:' line, a units line of x/y pairs, empty cells below a shorter curve,
UTF-16 with a BOM) is that of the real PSTrace 5 exports in matkrin/proespm-py3
(tests/testdata/palm_sens, GPL-3.0: read to learn the layout, not copied). The files here are
written by the tests with their own numbers.
"""

from __future__ import annotations

import json
from datetime import datetime
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

runner = CliRunner()


def _pstrace(curves, *, sep=",", decimal=".", measured="2024-11-07 14:48:29") -> str:
    """A PSTrace CSV: curves = [(title, x_unit, y_unit, xs, ys)]."""
    n = max(len(c[3]) for c in curves)

    def num(v: float) -> str:
        return repr(float(v)).replace(".", decimal)

    lines = [
        f"Date and time:{sep}2024-11-07 14:56:00",
        "Notes:",
        sep * (2 * len(curves) - 1),
        sep.join(x for c in curves for x in (c[0], "")),
        sep.join(x for _ in curves for x in ("Date and time measurement:", measured)),
        sep.join(x for c in curves for x in (c[1], c[2])),
    ]
    for k in range(n):
        row = []
        for c in curves:
            row += [num(c[3][k]), num(c[4][k])] if k < len(c[3]) else ["", ""]
        lines.append(sep.join(row))
    return "\r\n".join(lines) + "\r\n"


E1 = np.round(np.concatenate([np.linspace(0.25, -0.5, 16), np.linspace(-0.45, 0.25, 15)]), 6)
I1 = np.round(np.sin(np.arange(E1.size) / 3.0) * 12.5, 6)  # µA


def _cv_file(tmp_path: Path, **kw) -> Path:
    f = tmp_path / "cv.csv"
    text = _pstrace(
        [
            ("Cyclic Voltammetry: CV i vs E Scan 1", "V", "µA", E1, I1),
            ("Cyclic Voltammetry: CV i vs E Scan 2", "V", "µA", E1[:25], I1[:25] * 0.5),
        ],
        **kw,
    )
    f.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))  # as PSTrace writes it
    return f


def test_cv_scans_are_cycles_in_a_and_v(tmp_path):
    d = read_file(_cv_file(tmp_path))
    assert d.format == "palmsens-csv" and d.mapping["encoding"] == "utf-16"
    assert [(s.kind, s.cycle, s.stop - s.start) for s in d.steps] == [("cv", 1, 31), ("cv", 2, 25)]
    assert d.steps[0].label == "CV: CV i vs E Scan 1"
    np.testing.assert_allclose(d.voltage[:31], E1, rtol=0, atol=0)
    np.testing.assert_allclose(d.current[:31], I1 * 1e-6, rtol=1e-15)
    np.testing.assert_allclose(d.current[31:], I1[:25] * 0.5e-6, rtol=1e-15)
    assert np.all(np.diff(d.t) > 0) and any("t is the point number" in n for n in d.notes)
    assert d.started_unix == datetime(2024, 11, 7, 14, 48, 29).timestamp()


def test_semicolons_and_decimal_commas_lsv_in_ma(tmp_path):
    e = np.linspace(-0.8, 0.2, 41)
    i = np.round(np.exp(e / 0.1), 6)
    f = tmp_path / "lsv.csv"
    f.write_text(
        _pstrace([("Linear Sweep Voltammetry: LSV i vs E", "V", "mA", e, i)], sep=";", decimal=","), encoding="utf-8"
    )
    d = read_file(f)
    assert [s.kind for s in d.steps] == ["lsv"]
    np.testing.assert_allclose(d.voltage, e, rtol=1e-15)
    np.testing.assert_allclose(d.current, i * 1e-3, rtol=1e-15)


def test_chronoamperometry_has_time_and_no_potential(tmp_path):
    t = np.arange(0.0, 5.0, 0.1)
    f = tmp_path / "ca.csv"
    f.write_text(_pstrace([("Chronoamperometry: CA i vs t", "s", "nA", t, 50 / (1 + t))]), encoding="utf-8")
    d = read_file(f)
    assert [s.kind for s in d.steps] == ["potentiostatic"]
    np.testing.assert_allclose(d.t, t - t[0])
    np.testing.assert_allclose(d.current, 50e-9 / (1 + t))
    assert np.all(np.isnan(d.voltage)) and any("no potential" in n for n in d.notes)


def test_cli_import_of_a_pstrace_csv(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = runner.invoke(app, ["import", str(_cv_file(tmp_path)), "--db", url, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)[0]
    assert out["format"] == "palmsens-csv" and out["n_samples"] == 56 and out["n_steps"] == 2


def _fails(tmp_path: Path, f: Path) -> str:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    r = runner.invoke(app, ["import", str(f), "--db", url])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    with Database(url) as d:
        assert d.runs() == []
        with d.transaction() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(imports)).scalar() == 0
    return r.stderr.replace("\n", " ")


def test_truncated_pstrace_csv(tmp_path):
    text = _cv_file(tmp_path).read_bytes().decode("utf-16")
    lines = text.split("\r\n")
    f = tmp_path / "cut.csv"
    f.write_text("\r\n".join(lines[:20]) + "\r\n" + lines[20][:12], encoding="utf-8")
    msg = _fails(tmp_path, f)
    assert "cut.csv:21" in msg and "truncated" in msg


@pytest.mark.parametrize(
    ("units", "expect"),
    [("V,furlong", "has the units 'V', 'furlong'"), ("V,µA,V", "expected pairs such as 'V,µA'")],
)
def test_unknown_pstrace_layout(tmp_path, units, expect):
    text = _pstrace([("Cyclic Voltammetry: CV i vs E Scan 1", "V", "µA", E1, I1)])
    lines = text.split("\r\n")
    lines[5] = units
    f = tmp_path / "odd.csv"
    f.write_text("\r\n".join(lines), encoding="utf-8")
    msg = _fails(tmp_path, f)
    assert "odd.csv:6" in msg and expect in msg


def test_pstrace_csv_bad_fields_and_a_second_measurement(tmp_path):
    base = _pstrace([("Cyclic Voltammetry: CV i vs E Scan 1", "V", "µA", E1, I1)]).split("\r\n")
    bad = list(base)
    bad[10] = bad[10].split(",")[0] + ",12.x"
    f = tmp_path / "bad.csv"
    f.write_text("\r\n".join(bad), encoding="utf-8")
    assert "bad.csv:11: field 2 ('µA'): '12.x' is not a number" in _fails(tmp_path, f)
    half = list(base)
    half[12] = half[12].split(",")[0] + ","
    f.write_text("\r\n".join(half), encoding="utf-8")
    assert "bad.csv:13: field 2 ('µA'" in _fails(tmp_path, f)
    two = [*base[:-1], "Measurement:,Impedance Spectroscopy", "freq / Hz,Z' / Ohm", "100,5", ""]
    f.write_text("\r\n".join(two), encoding="utf-8")
    msg = _fails(tmp_path, f)
    assert "another measurement follows" in msg and "own file" in msg


@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=30),
    st.sampled_from([(",", "."), (";", ","), ("\t", ",")]),
    st.sampled_from(["utf-8", "utf-16"]),
)
@settings(max_examples=25, deadline=None)
def test_pstrace_round_trip(tmp_path_factory, values, style, encoding):
    e = np.arange(len(values)) * 0.01
    f = tmp_path_factory.mktemp("ps") / "x.csv"
    text = _pstrace([("Linear Sweep Voltammetry: LSV i vs E", "V", "µA", e, values)], sep=style[0], decimal=style[1])
    f.write_bytes(text.encode("utf-16") if encoding == "utf-16" else text.encode())
    d = read_file(f)
    np.testing.assert_allclose(d.current, np.array(values) * 1e-6, rtol=1e-15, atol=0)
