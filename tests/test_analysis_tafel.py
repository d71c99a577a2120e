"""Tafel extrapolation and micro-polarisation on synthetic Butler-Volmer sweeps."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.analysis import AnalysisError, analyze_tafel, estimate_e_eq, fit_micropolarisation, fit_tafel
from labctl.analysis.tafel import FARADAY, GAS_CONSTANT

AREA = 1.267
T_C = 22.0
N = 2
F_RT = FARADAY / (GAS_CONSTANT * (T_C + 273.15))


def sweep(j0, aa, ac, noise, seed, e_eq=0.0, span=0.2, step=0.001, floor=1e-3):
    """A 1 mV-step sweep e_eq-span .. e_eq+span (V) and its current (A) with multiplicative noise."""
    rng = np.random.default_rng(seed)
    e = e_eq + np.arange(-span, span + step / 2, step)
    eta = e - e_eq
    j = j0 * (np.exp(aa * N * F_RT * eta) - np.exp(-ac * N * F_RT * eta))
    i = j * AREA * (1 + noise * rng.standard_normal(e.size)) + floor * j0 * AREA * rng.standard_normal(e.size)
    return e, i


def slope_mv(alpha):
    return 1e3 * math.log(10) / (alpha * N * F_RT)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    log_j0=st.floats(-8, -4),
    aa=st.floats(0.3, 0.7),
    ac=st.floats(0.3, 0.7),
    noise=st.floats(0.0, 0.02),
    e_eq=st.floats(-0.5, 0.5),
    seed=st.integers(0, 2**31),
)
def test_tafel_extrapolation_recovers_j0_and_slopes(log_j0, aa, ac, noise, e_eq, seed):
    j0 = 10**log_j0
    e, i = sweep(j0, aa, ac, noise, seed, e_eq=e_eq)
    fit = fit_tafel(e, i, area_cm2=AREA, temperature_c=T_C)  # E_eq from the zero crossing
    assert fit.values["j0"] == pytest.approx(j0, rel=0.02)
    assert fit.values["b_a"] == pytest.approx(slope_mv(aa), rel=0.02)
    assert fit.values["b_c"] == pytest.approx(slope_mv(ac), rel=0.02)
    assert fit.values["alpha_a"] == pytest.approx(aa, rel=0.02)
    assert fit.values["alpha_c"] == pytest.approx(ac, rel=0.02)
    assert fit.e_eq == pytest.approx(e_eq, abs=1e-3)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(log_j0=st.floats(-8, -4), aa=st.floats(0.3, 0.7), noise=st.floats(0.0, 0.005), seed=st.integers(0, 2**31))
def test_micropolarisation_recovers_j0(log_j0, aa, noise, seed):
    j0 = 10**log_j0
    e, i = sweep(j0, aa, 1 - aa, noise, seed)  # alpha_a + alpha_c = 1, as the method assumes
    fit = fit_micropolarisation(e, i, area_cm2=AREA, temperature_c=T_C)
    assert fit.values["j0"] == pytest.approx(j0, rel=0.02)
    assert fit.window == (0.0, 0.010)


def test_results_carry_method_window_and_residuals():
    e, i = sweep(0.66e-6, 0.5, 0.5, 0.01, 1)
    res = analyze_tafel(e, i, area_cm2=AREA, temperature_c=T_C)
    by = {r.name: r for r in res}
    assert set(by) == {"j0", "b_a", "b_c", "alpha_a", "alpha_c", "E_eq", "j0_micro"}
    assert by["j0"].method == "tafel-extrapolation" and by["j0"].unit == "A/cm2"
    assert by["b_a"].unit == "mV/dec"
    assert by["j0"].details["window_V"][0] == 0.06
    assert by["j0"].details["window_V"][1] == pytest.approx(0.2, abs=1e-3)
    assert by["j0"].details["residual"]["n_points"] > 200
    assert by["j0"].uncertainty > 0
    assert by["j0_micro"].method == "micro-polarisation"
    assert by["j0_micro"].details["window_V"] == [0.0, 0.01]
    assert by["E_eq"].method == "zero crossing"
    for r in res:
        r.to_dict()


def test_window_parameter_and_given_e_eq():
    e, i = sweep(1e-6, 0.4, 0.6, 0.005, 2, e_eq=0.1)
    fit = fit_tafel(e, i, area_cm2=AREA, e_eq=0.1, window=(0.08, 0.15))
    assert fit.window == (0.08, 0.15)
    assert fit.e_eq_source == "given"
    assert fit.details["n_points_anodic"] in (70, 71)  # 80..150 mV at 1 mV steps
    assert fit.values["j0"] == pytest.approx(1e-6, rel=0.02)


def test_symmetric_cell_form():
    # two identical electrodes, alpha = 0.5: j = 2 j0 sinh(n F V / 4RT)
    rng = np.random.default_rng(3)
    j0 = 0.66e-6
    v = np.arange(-0.2, 0.2005, 0.001)
    i = 2 * j0 * np.sinh(0.5 * N * F_RT * v / 2) * AREA * (1 + 0.01 * rng.standard_normal(v.size))
    fit = fit_tafel(v, i, area_cm2=AREA, symmetric=True)
    assert fit.values["j0"] == pytest.approx(j0, rel=0.02)
    assert fit.values["alpha"] == pytest.approx(0.5, rel=0.02)
    assert fit.values["b_cell"] == pytest.approx(1e3 * math.log(10) * 2 / (0.5 * N * F_RT), rel=0.02)
    names = {r.name for r in fit.results()}
    assert names == {"j0", "b_cell", "alpha", "E_eq"}
    micro = fit_micropolarisation(v, i, area_cm2=AREA, symmetric=True)
    assert micro.values["j0"] == pytest.approx(j0, rel=0.03)
    # read as one electrode the same curve gives the same j0 but half the alpha
    single = fit_tafel(v, i, area_cm2=AREA)
    assert single.values["j0"] == pytest.approx(j0, rel=0.02)
    assert single.values["alpha_a"] == pytest.approx(0.25, rel=0.02)


def test_temperature_and_n_enter_alpha():
    e, i = sweep(1e-6, 0.5, 0.5, 0.0, 0)
    fit = fit_tafel(e, i, area_cm2=AREA, temperature_c=T_C, n=1)
    assert fit.values["alpha_a"] == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(AnalysisError, match="absolute zero"):
        fit_tafel(e, i, area_cm2=AREA, temperature_c=-300)


def test_too_narrow_sweep_says_no_tafel_region():
    e, i = sweep(1e-6, 0.5, 0.5, 0.01, 4, span=0.04)
    with pytest.raises(AnalysisError, match="no Tafel region") as exc:
        fit_tafel(e, i, area_cm2=AREA)
    assert "60 mV" in str(exc.value) and "+40" in str(exc.value)
    e, i = sweep(1e-6, 0.5, 0.5, 0.01, 4, span=0.063)
    with pytest.raises(AnalysisError, match="no anodic Tafel region"):
        fit_tafel(e, i, area_cm2=AREA, e_eq=0.0)


def test_too_noisy_curve_is_refused():
    e, i = sweep(1e-6, 0.5, 0.5, 1.5, 5, floor=30.0)
    with pytest.raises(AnalysisError, match=r"too noisy|not Tafel-shaped"):
        fit_tafel(e, i, area_cm2=AREA, e_eq=0.0)
    e, i = sweep(1e-6, 0.5, 0.5, 0.3, 6, floor=3.0)
    with pytest.raises(AnalysisError, match="too noisy"):
        fit_micropolarisation(e, i, area_cm2=AREA, e_eq=0.0)


def test_coarse_sweep_has_no_micropolarisation_region():
    e, i = sweep(1e-6, 0.5, 0.5, 0.0, 0, step=0.02)
    with pytest.raises(AnalysisError, match="no micro-polarisation region"):
        fit_micropolarisation(e, i, area_cm2=AREA)
    # analyze_tafel leaves the micro result out instead
    names = {r.name for r in analyze_tafel(e, i, area_cm2=AREA, window=(0.06, None), min_points=3)}
    assert "j0" in names and "j0_micro" not in names


def test_e_eq_estimate_and_missing_crossing():
    e, i = sweep(1e-6, 0.5, 0.5, 0.0, 0, e_eq=-1.234)
    assert estimate_e_eq(e, i) == pytest.approx(-1.234, abs=1e-4)
    with pytest.raises(AnalysisError, match="give e_eq"):
        fit_tafel(e[e > -1.2], i[e > -1.2], area_cm2=AREA)


def test_bad_inputs():
    e, i = sweep(1e-6, 0.5, 0.5, 0.0, 0)
    with pytest.raises(AnalysisError, match="area"):
        fit_tafel(e, i, area_cm2=0)
    with pytest.raises(AnalysisError, match="values"):
        fit_tafel(e, i[:-1], area_cm2=AREA)
    with pytest.raises(AnalysisError, match="window"):
        fit_tafel(e, i, area_cm2=AREA, window=(0.1, 0.05))
    with pytest.raises(AnalysisError, match="method"):
        analyze_tafel(e, i, area_cm2=AREA, method="bogus")


def test_micro_polarisation_j0_agrees_with_tafel_j0_when_the_slopes_are_known():
    # an asymmetric Butler-Volmer curve: alpha_a = 0.3, alpha_c = 0.5 (sum 0.8, not the default 1)
    from labctl.analysis.tafel import FARADAY, GAS_CONSTANT, analyze_tafel

    f = 2 * FARADAY / (GAS_CONSTANT * (22.0 + 273.15))
    eta = np.linspace(-0.25, 0.25, 501)
    j0 = 1e-6
    j = j0 * (np.exp(0.3 * f * eta) - np.exp(-0.5 * f * eta))
    by = {r.name: r for r in analyze_tafel(eta, j, area_cm2=1.0, e_eq=0.0, window=(0.1, 0.25))}
    assert by["j0"].value == pytest.approx(j0, rel=0.02)
    assert by["j0_micro"].value == pytest.approx(by["j0"].value, rel=0.02)
    assert by["j0_micro"].details["alpha_sum"] == pytest.approx(0.8, rel=0.02)


def test_not_tafel_shaped_names_a_window_to_try():
    from pathlib import Path

    from labctl.analysis.io import read_tafel_file

    sw = read_tafel_file(Path(__file__).parent / "data" / "import" / "polcurvefit_example_gamry.DTA")
    with pytest.raises(AnalysisError, match=r"not Tafel-shaped: .* try --window \d\.\d{3},\d\.\d{3}"):
        fit_tafel(sw.potential, sw.current, area_cm2=1.0)
