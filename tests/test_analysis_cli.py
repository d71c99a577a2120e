"""fit-eis and fit-tafel commands, through a small Typer app that calls register()."""

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from labctl.cli.analysis import register
from labctl.analysis.tafel import FARADAY, GAS_CONSTANT

DATA = Path(__file__).parent / "data" / "eis_li_ion_pyDRTtools.txt"
GUESS = "0.11,0.01,1,0.8,0.02,100,0.7"


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    register(a)
    return a


runner = CliRunner()


def test_fit_eis_json(app):
    r = runner.invoke(
        app, ["fit-eis", str(DATA), "--circuit", "R0-p(R1,CPE1)-p(R2,CPE2)", "--initial", GUESS, "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    vals = {p["name"]: p for p in out["results"]}
    assert vals["R0"]["value"] == pytest.approx(0.114676, abs=2e-4)
    assert vals["R0"]["uncertainty"] == pytest.approx(2.0e-4, rel=0.05)
    assert out["residual"]["rel_rms"] <= 0.0078
    assert out["residual"]["n_points"] == 100  # inductive points dropped by default
    assert out["linkk"]["passed"] is True
    assert out["analysis_version"]


def test_fit_eis_table_and_automatic_guess(app):
    r = runner.invoke(app, ["fit-eis", str(DATA), "-c", "R0-p(R1,CPE1)-p(R2,CPE2)"])
    assert r.exit_code == 0, r.output
    assert "CPE2_alpha" in r.stdout and "automatic" in r.stdout and "Lin-KK" in r.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--circuit", "R0-p(R1,CPE1"], "unbalanced parentheses"),
        (["--circuit", "R0-p(R1,CPX1)"], "unknown element 'CPX1'"),
        (["--circuit", "R0-p(R1,CPE1)", "--initial", "1,2,x,4"], "'x' is not a number"),
        (["--circuit", "R0-p(R1,CPE1)", "--initial", "1,2,3"], "the initial guess has 3 values"),
        (["--circuit", "R0-p(R1,CPE1)", "--weighting", "odd"], "unknown weighting"),
    ],
)
def test_fit_eis_user_errors_exit_2_without_traceback(app, args, words):
    r = runner.invoke(app, ["fit-eis", str(DATA), *args])
    assert r.exit_code == 2
    assert words in r.stderr
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_fit_eis_bad_file(app, tmp_path):
    p = tmp_path / "few.txt"
    p.write_text("100 1 -1\n10 2 -2\n")
    r = runner.invoke(app, ["fit-eis", str(p), "--circuit", "R0-p(R1,CPE1)-p(R2,CPE2)"])
    assert r.exit_code == 2
    assert "few.txt: only 2 data points (lines 1-2)" in r.stderr
    r = runner.invoke(app, ["fit-eis", str(tmp_path / "nope.txt"), "--circuit", "R0"])
    assert r.exit_code == 2 and "no such file" in r.stderr


def _tafel_file(tmp_path, span=0.2):
    f_rt = FARADAY / (GAS_CONSTANT * 295.15)
    e = np.arange(-span, span + 0.0005, 0.001)
    i = 1.267 * 0.66e-6 * (np.exp(f_rt * e) - np.exp(-f_rt * e))
    p = tmp_path / "tafel.csv"
    p.write_text("E/V,I/A\n" + "\n".join(f"{a:.6f},{b:.6e}" for a, b in zip(e, i)) + "\n")
    return p


def test_fit_tafel(app, tmp_path):
    p = _tafel_file(tmp_path)
    r = runner.invoke(app, ["fit-tafel", str(p), "--area", "1.267", "--json"])
    assert r.exit_code == 0, r.output
    vals = {x["name"]: x for x in json.loads(r.stdout)["results"]}
    assert vals["j0"]["value"] == pytest.approx(0.66e-6, rel=0.02)
    assert vals["j0"]["method"] == "tafel-extrapolation"
    assert "j0_micro" in vals
    r = runner.invoke(app, ["fit-tafel", str(p), "--area", "1.267", "--window", "0.07,0.15"])
    assert r.exit_code == 0 and "b_a" in r.stdout and "mV/dec" in r.stdout


def test_fit_tafel_user_errors(app, tmp_path):
    p = _tafel_file(tmp_path, span=0.04)
    r = runner.invoke(app, ["fit-tafel", str(p), "--area", "1.267"])
    assert r.exit_code == 2 and "no Tafel region" in r.stderr
    r = runner.invoke(app, ["fit-tafel", str(p)])
    assert r.exit_code == 2 and "electrode area is not known: give --area" in r.stderr.replace("\n", " ")
    r = runner.invoke(app, ["fit-tafel", str(p), "--area", "1.267", "--window", "1,2,3"])
    assert r.exit_code == 2 and "--window" in r.stderr
    r = runner.invoke(app, ["fit-tafel", str(p), "--area", "0"])
    assert r.exit_code == 2 and "area" in r.stderr


def test_fit_eis_on_instrument_exports(app):
    data = Path(__file__).parent / "data"
    r = runner.invoke(app, ["fit-eis", str(data / "ipy_exampleDataBioLogic.mpt"), "-c", "R0-p(R1,CPE1)", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    vals = {p["name"]: p["value"] for p in out["results"]}
    assert vals["R1"] == pytest.approx(47.888, rel=0.01)  # impedance.py: 47.888 +- 0.62
    assert any("-Z''" in n for n in out["notes"])
    assert out["initial_guess"].startswith("automatic")
    # impedance.py's documented example with constants, named as impedance.py names them
    r = runner.invoke(
        app,
        [
            "fit-eis",
            str(data / "ipy_exampleData.csv"),
            "-c",
            "R_0-p(R_1,C_1)-p(R_2,C_2)-Wo_1",
            "--constant",
            "R_0=0.02",
            "--constant",
            "Wo_1_1=200",
            "-i",
            ".005,.1,.005,.1,.001",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    vals = {p["name"]: p for p in json.loads(r.stdout)["results"]}
    # as printed by impedance.py's docs (R_1 6.79e-3, R_2 3.91e-3); the two arcs start from the
    # same guess, so which label gets which is arbitrary: labctl puts the faster arc first
    assert vals["R_1"]["value"] == pytest.approx(3.91e-3, abs=1.09e-3)
    assert vals["R_2"]["value"] == pytest.approx(6.79e-3, abs=1.08e-3)
    assert vals["Wo_1_tau"]["value"] == 200 and vals["Wo_1_tau"]["details"]["fixed"] is True
    r = runner.invoke(
        app, ["fit-eis", str(data / "ipy_Circuit1_EIS_1.z"), "-c", "R0-p(R1,C1)", "--keep-inductive", "--strict"]
    )
    assert r.exit_code == 2 and "Lin-KK" in r.stderr
    r = runner.invoke(app, ["fit-eis", str(data / "ipy_Circuit1_EIS_1.z"), "-c", "R0-p(R1,C1)", "--keep-inductive"])
    assert r.exit_code == 0 and "systematic misfit" in r.stdout


def test_fit_eis_fmin_fmax(app):
    args = ["fit-eis", str(DATA), "--circuit", "R0-p(R1,CPE1)-p(R2,CPE2)", "--initial", GUESS, "--json"]
    r = runner.invoke(app, [*args, "--fmin", "0.1", "--fmax", "500"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    f = np.loadtxt(DATA)[:, 0]
    z_im = np.loadtxt(DATA)[:, 2]
    assert out["residual"]["n_points"] == int(np.sum((f >= 0.1) & (f <= 500) & (z_im <= 0)))
    bad = runner.invoke(app, [*args, "--fmin", "900", "--fmax", "999"])
    assert bad.exit_code == 2
    assert "free parameters" in bad.output and "spans" in bad.output


def test_fit_eis_reports_the_one_linkk_verdict(app):
    from labctl.analysis.eis import linkk_verdict
    from labctl.analysis.io import read_eis_file

    r = runner.invoke(
        app, ["fit-eis", str(DATA), "--circuit", "R0-p(R1,CPE1)-p(R2,CPE2)", "--initial", GUESS, "--json"]
    )
    out = json.loads(r.stdout)
    d = read_eis_file(DATA)
    keep = d.z.imag <= 0
    kk = linkk_verdict(d.frequency[keep], d.z[keep])
    assert out["linkk"]["statement"] == kk.statement
    assert out["linkk"]["statement"].startswith("with a series capacitance")  # the diffusion tail rises to 5 mHz
