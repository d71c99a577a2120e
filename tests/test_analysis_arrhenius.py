"""Arrhenius fit of Rct(T) and the common Result type."""

import json
import math

import numpy as np
import pytest

from labctl.analysis import ANALYSIS_VERSION, AnalysisError, Result, fit_arrhenius
from labctl.analysis._core import covariance_from_jacobian, linregress

R = 8.314462618


def rct_series(ea_kj, temps_c, rct25=3.34e5, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.asarray(temps_c, float) + 273.15
    r = rct25 * np.exp(ea_kj * 1e3 / R * (1 / t - 1 / 298.15))
    return r * np.exp(noise * rng.standard_normal(t.size))


@pytest.mark.parametrize("ea", [49.20, 36.65])
def test_exact_data_gives_ea(ea):
    temps = [25, 30, 40, 50, 60]
    res = fit_arrhenius(temps, rct_series(ea, temps))
    by = {r.name: r for r in res}
    assert by["Ea"].value == pytest.approx(ea, rel=1e-9)
    assert by["Ea"].unit == "kJ/mol"
    assert by["Ea"].details["r2"] == pytest.approx(1.0)
    assert by["arrhenius_A"].unit == "S"
    # Rct falls about 4.7x from 25 to 60 C for 36.65 kJ/mol (domain brief)
    if ea == 36.65:
        r = rct_series(ea, [25, 60])
        assert r[0] / r[1] == pytest.approx(4.7, rel=0.03)


def test_noisy_data_uncertainty_covers_truth():
    temps = [25, 30, 40, 50, 60]
    inside = 0
    for seed in range(200):
        ea = fit_arrhenius(temps, rct_series(36.65, temps, noise=0.05, seed=seed))[0]
        assert ea.uncertainty > 0
        inside += abs(ea.value - 36.65) <= ea.uncertainty
    assert 0.55 < inside / 200 < 0.80  # ~68 % for a 1-sigma interval (t with 3 dof: ~61 %)


def test_two_temperatures_no_uncertainty_and_one_is_an_error():
    res = fit_arrhenius([25, 60], rct_series(40.0, [25, 60]))
    assert res[0].value == pytest.approx(40.0)
    assert res[0].uncertainty is None
    assert "2 temperatures" in res[0].details["note"]
    with pytest.raises(AnalysisError, match="at least 2 different temperatures"):
        fit_arrhenius([25, 25], [1e5, 1.1e5])
    with pytest.raises(AnalysisError, match="positive"):
        fit_arrhenius([25, 40], [1e5, -1])
    with pytest.raises(AnalysisError, match="Rct values"):
        fit_arrhenius([25, 40, 50], [1e5, 2e5])


def test_result_to_dict_is_json_and_analysis_error_is_value_error():
    r = Result("x", np.float64(1.5), "V", float("nan"), "m", {"a": np.arange(3), "b": np.int64(2), "c": float("inf")})
    d = r.to_dict()
    json.dumps(d)
    assert d["value"] == 1.5 and d["uncertainty"] is None
    assert d["details"] == {"a": [0, 1, 2], "b": 2, "c": None}
    assert d["analysis_version"] == ANALYSIS_VERSION
    e = AnalysisError("too few points")
    assert isinstance(e, ValueError) and str(e) == "too few points"


def test_linregress_and_covariance_match_textbook():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.1, 3.9, 6.2, 7.8, 10.1])
    lr = linregress(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert lr["slope"] == pytest.approx(slope) and lr["intercept"] == pytest.approx(intercept)
    J = np.column_stack((np.ones_like(x), x))
    cov, s2 = covariance_from_jacobian(J, y - (intercept + slope * x))
    assert math.sqrt(cov[1, 1]) == pytest.approx(lr["se_slope"])
    assert math.sqrt(cov[0, 0]) == pytest.approx(lr["se_intercept"])
    with pytest.raises(AnalysisError, match="all x values are equal"):
        linregress([1.0, 1.0], [1.0, 2.0])
