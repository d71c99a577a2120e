"""Corrosion reading of polarisation curves (labctl.analysis.corrosion, `labctl fit-corrosion`),
compared with PolCurveFit 1.2.1 on real curves where its method applies and on seeded synthetic ones."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from labctl.analysis._core import AnalysisError
from labctl.analysis.corrosion import activation_fit, corrosion_potential, prepare, tafel_line
from labctl.cli.application import app
from labctl.importers import read_file

DATA = Path(__file__).parent / "data" / "import"
runner = CliRunner()


def _pcf(e, i):
    from polcurvefit import polcurvefit as pcf

    warnings.filterwarnings("ignore", module="polcurvefit")
    return pcf(np.array(e, float), np.array(i, float), sample_surface=1.0)


def _by_name(results):
    return {r.name: r.value for r in results}


@pytest.mark.parametrize(
    ("name", "window"),
    [
        ("polcurvefit_example_gamry.DTA", (-1.30, -1.15)),  # cathodic, R^2 0.9998
        ("polcurvefit_example_nova.txt", (0.00, 0.15)),  # anodic, R^2 0.9987
    ],
)
def test_single_branch_line_matches_polcurvefit_on_real_curves(name, window):
    d = read_file(DATA / name)
    c = prepare(d.voltage, d.current, area_cm2=1.0)
    got = _by_name(tafel_line(c, window))
    ref = _pcf(c.e, c.i).linear_fit(window=list(window), E_corr=got["E_corr"])
    b_key = "b_c" if window[1] < got["E_corr"] else "b_a"
    assert got[b_key] == pytest.approx(ref[3], rel=0.02)
    assert got["i_corr"] == pytest.approx(ref[2], rel=0.02)


# PolCurveFit 1.2.1 linear_fit on the Gamry CYCPOL forward branch, window [-1.30, -1.15] V,
# E_corr -0.333193 V: b = -0.5258884874205028 V/decade, i_corr = 6.558281931330443e-06 A/cm2
def test_gamry_line_fit_recorded_reference():
    d = read_file(DATA / "polcurvefit_example_gamry.DTA")
    got = _by_name(tafel_line(prepare(d.voltage, d.current, area_cm2=d.area_cm2), (-1.30, -1.15)))
    assert got["E_corr"] == pytest.approx(-0.333193, abs=1e-6)
    assert got["b_c"] == pytest.approx(-0.5258884874205028, rel=1e-6)
    assert got["i_corr"] == pytest.approx(6.558281931330443e-06, rel=1e-6)


def _synthetic(seed=1, r_ohm=0.0):
    rng = np.random.default_rng(seed)
    e = np.arange(-0.45, 0.05, 0.002)
    ec, icorr, ba, bc = -0.2, 2e-5, 0.06, 0.12
    i = icorr * (10 ** ((e - ec) / ba) - 10 ** (-(e - ec) / bc))
    i = i * (1 + 0.01 * rng.standard_normal(i.size))
    return e + i * r_ohm, i, (ec, icorr, ba, bc)


def test_activation_fit_matches_polcurvefit_and_stern_geary():
    e, i, (_ec, icorr, ba, bc) = _synthetic()
    c = prepare(e, i, area_cm2=1.0)
    got = _by_name(activation_fit(c, (-0.15, 0.15)))
    ref = _pcf(e, i).active_pol_fit(window=[-0.15, 0.15])
    assert got["i_corr"] == pytest.approx(ref[2], rel=0.02)
    assert got["b_a"] == pytest.approx(ref[3], rel=0.02)
    assert got["b_c"] == pytest.approx(-ref[4], rel=0.02)
    b = ba * bc / (np.log(10) * (ba + bc))
    assert got["stern_geary_B"] == pytest.approx(b, rel=0.02)
    assert got["i_corr_stern_geary"] == pytest.approx(icorr, rel=0.05)


def test_ir_correction_recovers_the_slopes():
    e, i, (_, _icorr, ba, bc) = _synthetic(r_ohm=300.0)
    raw = _by_name(activation_fit(prepare(e, i, area_cm2=1.0), (-0.15, 0.15), min_r2=0.0))
    fixed = _by_name(activation_fit(prepare(e, i, area_cm2=1.0, r_ohm=300.0), (-0.15, 0.15)))
    assert fixed["b_a"] == pytest.approx(ba, rel=0.02)
    assert fixed["b_c"] == pytest.approx(bc, rel=0.02)
    assert abs(raw["b_a"] - ba) > abs(fixed["b_a"] - ba)


def test_not_tafel_shaped_is_refused_with_a_window_to_try():
    d = read_file(DATA / "polcurvefit_example_gamry.DTA")
    c = prepare(d.voltage, d.current, area_cm2=1.0)
    with pytest.raises(AnalysisError, match=r"not Tafel-shaped: .*try .* -?\d\.\d{3},-?\d\.\d{3} V"):
        activation_fit(c, (-0.1, 0.1))
    with pytest.raises(AnalysisError, match=r"not a straight line \(R\^2 = 0\.8\d+ < 0\.98\); try the window"):
        tafel_line(c, (-0.30, -0.15))


def test_no_sign_change_has_no_e_corr():
    e = np.linspace(0.1, 0.4, 50)
    with pytest.raises(AnalysisError, match="not a mixed-potential"):
        corrosion_potential(prepare(e, 1e-6 * np.exp(e / 0.05)))


def test_cli_fit_corrosion(tmp_path):
    f = str(DATA / "polcurvefit_example_gamry.DTA")
    r = runner.invoke(app, ["fit-corrosion", f, "--window=-1.3,-1.15", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["area_cm2"] == 1.0
    names = [x["name"] for x in out["results"]]
    assert names == ["E_corr", "b_c", "i_corr"]
    bad = runner.invoke(app, ["fit-corrosion", f, "--window=-0.1,0.1", "--method", "activation"])
    assert bad.exit_code == 2 and "not Tafel-shaped" in bad.stderr


def test_mixed_activation_diffusion_fit_matches_polcurvefit():
    from labctl.analysis.corrosion import mixed_fit

    # PolCurveFit's documentation curve: i_corr 2 mA, E_corr -0.2 V, b_a 80 mV, b_c 180 mV, i_L 0.3 A
    # on 10 cm2, with 1 % seeded noise
    e = np.arange(-1.0, 0.1, 0.002)
    ec, ic = -0.2, 0.002 * np.exp(2.3 * (-0.2 - e) / 0.18)
    i = 0.002 * np.exp(2.3 * (e - ec) / 0.08) - ((ic**3) / (1 + (ic / 0.3) ** 3)) ** (1 / 3)
    i = i * (1 + 0.01 * np.random.default_rng(2).standard_normal(i.size))
    got = _by_name(mixed_fit(prepare(e, i, area_cm2=10.0), (-0.8, 0.3)))
    from polcurvefit import polcurvefit as pcf

    ref = pcf(e.copy(), i.copy(), sample_surface=10.0).mixed_pol_fit(window=[-0.8, 0.3])
    assert got["i_corr"] == pytest.approx(ref[2], rel=0.02)
    assert got["b_a"] == pytest.approx(ref[3], rel=0.02)
    assert got["b_c"] == pytest.approx(-ref[4], rel=0.02)
    assert got["i_L"] == pytest.approx(ref[5], rel=0.02)
    assert got["i_L"] == pytest.approx(0.03, rel=0.02)  # A/cm2


def _analyze_imported(tmp_path, name, **kw):
    from labctl.app.importing import import_file
    from labctl.app.results import analyze_and_store
    from labctl.db import Database

    with Database(f"sqlite:///{tmp_path / 'lab.db'}") as db:
        res = import_file(db, DATA / name, **kw)
        rows = analyze_and_store(db, res.run_id)
    return {r["name"]: r for r in rows}


def test_analyze_reads_an_imported_nova_sweep_as_a_corrosion_curve(tmp_path):
    # both branches are Tafel lines 50-150 mV beyond E_corr: compared with PolCurveFit's linear_fit
    # in the windows labctl chose (the method applies on both branches of this curve)
    got = _analyze_imported(tmp_path, "polcurvefit_example_nova.txt", area_cm2=1.0)
    ec = got["E_corr"]["value"]
    assert ec == pytest.approx(-0.31782, abs=1e-5)
    br = got["b_a"]["data"]["branches"]
    d = read_file(DATA / "polcurvefit_example_nova.txt")
    c = prepare(d.voltage, d.current, area_cm2=1.0)
    lines = {}
    for name, key in (("anodic", "b_a"), ("cathodic", "b_c")):
        win = br[name]["window_V"]
        sgn = 1 if name == "anodic" else -1
        assert win == pytest.approx(sorted([ec + sgn * 0.05, ec + sgn * 0.15]))
        ref = _pcf(c.e, c.i).linear_fit(window=list(win), E_corr=ec)
        assert got[key]["value"] == pytest.approx(ref[3], rel=0.02)
        assert br[name]["i_at_e_corr"] == pytest.approx(ref[2], rel=0.02)
        lines[name] = (1 / ref[3], np.log10(ref[2]) - ec / ref[3])  # slope, intercept of log10|i| on E
    (sa, ia), (sc, ic) = lines["anodic"], lines["cathodic"]
    e_x = (ic - ia) / (sa - sc)
    assert got["i_corr"]["value"] == pytest.approx(10 ** (sa * e_x + ia), rel=0.02)
    assert got["i_corr"]["unit"] == "A/cm2" and "intersection" in got["i_corr"]["method"]
    ba, bc = abs(got["b_a"]["value"]), abs(got["b_c"]["value"])
    assert got["stern_geary_B"]["value"] == pytest.approx(ba * bc / (np.log(10) * (ba + bc)), rel=1e-9)
    assert got["i_corr_stern_geary"]["value"] == pytest.approx(got["stern_geary_B"]["value"] / got["R_p"]["value"])
    assert "analysis_error" not in got


def test_analyze_on_the_imported_gamry_cycpol_uses_the_cathodic_branch_and_says_why(tmp_path):
    got = _analyze_imported(tmp_path, "polcurvefit_example_gamry.DTA")  # AREA 1 cm2 from the file
    ec = got["E_corr"]["value"]
    assert ec == pytest.approx(-0.333193, abs=1e-6)  # as fit-corrosion and PolCurveFit
    assert "b_a" not in got and "stern_geary_B" not in got
    d = read_file(DATA / "polcurvefit_example_gamry.DTA")
    c = prepare(d.voltage, d.current, area_cm2=1.0)
    ref = _pcf(c.e, c.i).linear_fit(window=[ec - 0.15, ec - 0.05], E_corr=ec)
    assert got["b_c"]["value"] == pytest.approx(ref[3], rel=0.02)
    assert got["i_corr"]["value"] == pytest.approx(ref[2], rel=0.02)
    assert (
        "the anodic branch: log|i| against E" in got["i_corr"]["method"]
        and "not a straight line" in (got["i_corr"]["method"])
    )


def test_auto_window_refuses_a_curve_that_is_not_tafel_shaped():
    from labctl.analysis.corrosion import auto_corrosion

    # both reactions diffusion-limited 50 mV from E_corr: no Tafel line on either branch
    e = np.arange(-0.5, 0.1, 0.002)
    ia = 1e-5 * 10 ** ((e + 0.2) / 0.06)
    ic = 1e-5 * 10 ** (-(e + 0.2) / 0.12)
    i = ia / (1 + ia / 3e-5) - ic / (1 + ic / 3e-5)
    with pytest.raises(
        AnalysisError, match=r"not Tafel-shaped in the automatic window: 50-150 mV.*anodic: .*cathodic:"
    ):
        auto_corrosion(prepare(e, i, area_cm2=1.0))


def test_fit_corrosion_keeps_its_window(tmp_path):
    # the command's explicit window is unchanged by the automatic reading of `analyze`
    f = str(DATA / "polcurvefit_example_gamry.DTA")
    r = runner.invoke(app, ["fit-corrosion", f, "--window=-1.3,-1.15", "--json"])
    got = {x["name"]: x["value"] for x in json.loads(r.stdout)["results"]}
    assert got["b_c"] == pytest.approx(-0.5258884874205028, rel=1e-6)
