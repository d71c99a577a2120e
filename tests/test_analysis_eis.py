"""EIS fitting and Lin-KK: real Li-ion spectrum against impedance.py's reference fit, synthetic Mg cells."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from labctl.analysis import AnalysisError, fit_circuit, linkk, parse_circuit
from labctl.analysis.eis import auto_initial_guesses

DATA = Path(__file__).parent / "data" / "eis_li_ion_pyDRTtools.txt"
CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)"
GUESS = [0.11, 0.01, 1, 0.8, 0.02, 100, 0.7]
# impedance.py 1.7.1 reference (tests/data/README.md): value, 1-sigma
REF = {
    "R0": (0.114676, 0.00020),
    "R1": (0.027787, 0.00058),
    "CPE1_Q": (9.3155, 0.35),
    "CPE1_alpha": (0.60591, 0.014),
    "R2": (0.027574, 0.0025),
    "CPE2_Q": (1348.9, 189),
    "CPE2_alpha": (0.98713, 0.038),
}


def real_spectrum():
    d = np.loadtxt(DATA)
    f, z = d[:, 0], d[:, 1] + 1j * d[:, 2]
    keep = z.imag <= 0  # drop inductive points, as the reference did
    return f[keep], z[keep]


def by_tau(params):
    """Arcs sorted by tau = (R Q)^(1/alpha), as the README says to compare."""
    arcs = [(params[f"R{k}"], params[f"CPE{k}_Q"], params[f"CPE{k}_alpha"]) for k in (1, 2)]
    arcs.sort(key=lambda a: (a[0] * a[1]) ** (1 / a[2]))
    out = {"R0": params["R0"]}
    for k, (r, q, a) in enumerate(arcs, start=1):
        out.update({f"R{k}": r, f"CPE{k}_Q": q, f"CPE{k}_alpha": a})
    return out


def assert_in_reference_bands(fit):
    p = by_tau(fit.params)
    for name, (v, s) in REF.items():
        assert abs(p[name] - v) <= s, f"{name} = {p[name]} outside {v} +- {s}"


def test_real_spectrum_lands_in_impedance_py_bands():
    f, z = real_spectrum()
    assert f.size == 100
    t0 = time.perf_counter()
    fit = fit_circuit(f, z, CIRCUIT, GUESS)
    elapsed = time.perf_counter() - t0
    assert_in_reference_bands(fit)
    assert fit.rel_rms <= 0.0078
    assert elapsed < 0.5  # typically ~0.01 s; impedance.py needs ~0.2 s
    # the uncertainties agree with curve_fit's (same covariance definition)
    p = by_tau(dict(zip(fit.names, fit.sigmas)))
    for name, (_, s) in REF.items():
        assert p[name] == pytest.approx(s, rel=0.05), name


def test_real_spectrum_drop_inductive_option_and_arcs_sorted():
    d = np.loadtxt(DATA)
    f, z = d[:, 0], d[:, 1] + 1j * d[:, 2]
    # the arcs given in the "wrong" order still come back with index 1 = faster arc
    swapped = [0.11, 0.02, 100, 0.7, 0.01, 1, 0.8]
    fit = fit_circuit(f, z, CIRCUIT, swapped, drop_inductive=True)
    assert fit.stats["n_points"] == 100
    assert fit.arc_taus[0] < fit.arc_taus[1]
    p = fit.params
    tau1 = (p["R1"] * p["CPE1_Q"]) ** (1 / p["CPE1_alpha"])
    tau2 = (p["R2"] * p["CPE2_Q"]) ** (1 / p["CPE2_alpha"])
    assert tau1 < tau2
    assert_in_reference_bands(fit)


def test_real_spectrum_automatic_guess():
    f, z = real_spectrum()
    fit = fit_circuit(f, z, CIRCUIT)
    assert fit.initial_source.startswith("automatic")
    assert_in_reference_bands(fit)
    assert fit.rel_rms <= 0.0078


def test_results_and_residual_statistics():
    f, z = real_spectrum()
    fit = fit_circuit(f, z, CIRCUIT, GUESS)
    res = fit.results()
    assert [r.name for r in res] == ["R0", "R1", "CPE1_Q", "CPE1_alpha", "R2", "CPE2_Q", "CPE2_alpha"]
    assert res[0].unit == "ohm" and res[3].unit == ""
    assert all(r.uncertainty > 0 for r in res)
    st = res[0].details["residual"]
    assert set(st) >= {"rel_rms", "rel_max", "ssr", "dof", "reduced_chi2", "aic", "n_points"}
    assert st["dof"] == 2 * 100 - 7
    json.dumps([r.to_dict() for r in res])
    json.dumps(fit.to_dict())
    np.testing.assert_allclose(fit.predict(f), fit.z_fit)


def test_weightings_all_fit_real_data():
    f, z = real_spectrum()
    for w in ("unit", "modulus", "proportional"):
        fit = fit_circuit(f, z, CIRCUIT, GUESS, weighting=w)
        assert fit.rel_rms < 0.01, w
        assert fit.weighting == w
    with pytest.raises(AnalysisError, match="weighting"):
        fit_circuit(f, z, CIRCUIT, GUESS, weighting="chi")


def _noisy(circuit, p, seed, f=None):
    f = np.logspace(6, -1, 71) if f is None else f  # 1 MHz .. 0.1 Hz, 10 per decade
    rng = np.random.default_rng(seed)
    z = parse_circuit(circuit).impedance(p, f)
    return f, z + 0.005 * np.abs(z) * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_bare_mg_automatic_guess(seed):
    true = [46.55, 8.40e5, 1e-7, 0.9]  # Rs, Rct, CPE Q, alpha
    f, z = _noisy("R0-p(R1,CPE1)", true, seed)
    fit = fit_circuit(f, z, "R0-p(R1,CPE1)", weighting="modulus")
    np.testing.assert_allclose(fit.values, true, rtol=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_br_mg_automatic_guess(seed):
    # Rs, R_SEI || CPE2 (fast arc, index 1 after sorting), Rct || CPE1 (slow arc)
    true = np.array([5.56, 2.16, 1e-6, 0.95, 3.34e5, 3e-6, 0.95])
    f, z = _noisy(CIRCUIT, true, seed)
    fit = fit_circuit(f, z, CIRCUIT, weighting="modulus")
    names = fit.names
    for k, name in enumerate(names):
        if name == "CPE1_Q":
            # Q of a small high-frequency CPE is strongly correlated with its alpha
            # (sigma ~ 20 %): check it against its own uncertainty instead.
            assert abs(fit.values[k] - true[k]) <= 3.5 * fit.sigmas[k]
        else:
            assert fit.values[k] == pytest.approx(true[k], rel=0.05), name


def test_synthetic_uncertainties_are_honest():
    true = np.array([5.56, 2.16, 1e-6, 0.95, 3.34e5, 3e-6, 0.95])
    zs = []
    for seed in range(10, 30):
        f, z = _noisy(CIRCUIT, true, seed)
        fit = fit_circuit(f, z, CIRCUIT, true, weighting="modulus")
        zs.append((fit.values - true) / fit.sigmas)
    zs = np.array(zs)
    # standardised errors: RMS about 1 for every parameter
    rms = np.sqrt(np.mean(zs**2, axis=0))
    assert np.all(rms > 0.5) and np.all(rms < 1.6), rms


def test_other_elements_recovered():
    f = np.logspace(5, -2, 50)
    cases = {
        "R0-p(R1,C1)-W1": [10.0, 100.0, 1e-5, 30.0],
        "R0-p(R1-Wo1,CPE1)": [5.0, 50.0, 80.0, 2.0, 2e-5, 0.9],
        "R0-p(R1-Ws1,CPE1)-L0": [5.0, 50.0, 80.0, 2.0, 2e-5, 0.9, 1e-6],
    }
    for circuit, true in cases.items():
        z = parse_circuit(circuit).impedance(true, f)
        start = np.array(true) * np.where(np.array(parse_circuit(circuit).param_kinds) == "pos", 1.5, 0.95)
        fit = fit_circuit(f, z, circuit, start)
        np.testing.assert_allclose(fit.values, true, rtol=1e-4, err_msg=circuit)
        assert fit.rel_rms < 1e-6


def test_automatic_guess_candidates_are_valid():
    f, z = real_spectrum()
    for circuit in ("R0-p(R1,CPE1)", CIRCUIT, "R0-p(R1-W1,CPE1)", "L0-R0-p(R1,C1)-Wo1", "R0-p(R1,CPE1)-Ws1-C1"):
        c = parse_circuit(circuit)
        for cand in auto_initial_guesses(c, f, z):
            assert cand.shape == (c.n_params,)
            assert np.all(np.isfinite(cand))
            kinds = np.array(c.param_kinds)
            assert np.all(cand[kinds == "pos"] > 0)
            assert np.all((cand[kinds == "frac"] > 0) & (cand[kinds == "frac"] <= 1))
        fit = fit_circuit(f, z, circuit)
        assert fit.rel_rms < 0.05, circuit


def test_fit_errors_are_explained():
    f, z = real_spectrum()
    with pytest.raises(AnalysisError, match="too few points"):
        fit_circuit(f[:3], z[:3], CIRCUIT, GUESS)
    with pytest.raises(AnalysisError, match="7 parameters"):
        fit_circuit(f, z, CIRCUIT, GUESS[:-1])
    with pytest.raises(AnalysisError, match="must be positive"):
        fit_circuit(f, z, CIRCUIT, [0.11, -0.01, 1, 0.8, 0.02, 100, 0.7])
    with pytest.raises(AnalysisError, match=r"\(0, 1\]"):
        fit_circuit(f, z, CIRCUIT, [0.11, 0.01, 1, 1.3, 0.02, 100, 0.7])
    with pytest.raises(AnalysisError, match="unknown element"):
        fit_circuit(f, z, "R0-p(R1,Q1)", GUESS)
    with pytest.raises(AnalysisError, match="frequencies must be positive"):
        fit_circuit(-f, z, CIRCUIT, GUESS)
    with pytest.raises(AnalysisError, match="values"):
        fit_circuit(f[:-1], z, CIRCUIT, GUESS)


def test_bounds_alpha_stays_in_range():
    # a pure capacitor arc: alpha wants to exceed 1 but is held at the bound
    f = np.logspace(4, -1, 40)
    z = parse_circuit("R0-p(R1,C1)").impedance([2.0, 30.0, 1e-4], f)
    fit = fit_circuit(f, z, "R0-p(R1,CPE1)", [1.0, 10.0, 1e-3, 0.7])
    assert 0 < fit.params["CPE1_alpha"] <= 1.0
    assert fit.params["CPE1_alpha"] == pytest.approx(1.0, abs=1e-6)
    assert fit.params["R1"] == pytest.approx(30.0, rel=1e-6)


def test_linkk_passes_real_and_synthetic_data():
    f, z = real_spectrum()
    kk = linkk(f, z)
    assert kk.passed, kk.statement
    assert kk.mu <= 0.85
    assert "consistent with Kramers-Kronig" in kk.statement
    assert kk.res_re.shape == f.shape and kk.res_im.shape == f.shape
    f2, z2 = _noisy(CIRCUIT, [5.56, 2.16, 1e-6, 0.95, 3.34e5, 3e-6, 0.95], 3)
    kk2 = linkk(f2, z2)
    assert kk2.passed, kk2.statement
    r = kk2.result()
    assert r.name == "linkk_residual_rms" and r.details["passed"] is True


def test_linkk_fails_drifting_spectrum():
    # the cell changes while it is measured (Rct grows 3x from the first to the last point)
    f = np.logspace(5, -1, 61)
    c = parse_circuit("R0-p(R1,CPE1)")
    drift = np.linspace(1.0, 3.0, f.size)
    z = np.array([c.impedance([10.0, 1000.0 * d, 1e-5, 0.9], [fi])[0] for fi, d in zip(f, drift)])
    kk = linkk(f, z)
    assert not kk.passed
    assert "NOT consistent" in kk.statement


def test_linkk_too_few_points():
    with pytest.raises(AnalysisError, match="too few points"):
        linkk([1.0, 2.0, 3.0], [1 - 1j, 1 - 1j, 1 - 1j])


def test_linkk_not_stopped_by_a_transient_mu_crossing():
    # a Br-Mg-like spectrum (|Z| from 7 to 4e5 ohm): mu dips below c at M = 10 while the
    # Voigt fit is still poor; the check must go on to a converged M and pass.
    f, z = _noisy(CIRCUIT, [5.56, 2.14, 1.9e-5, 0.8, 3.9e5, 5e-7, 0.9], 4)
    t0 = time.perf_counter()
    kk = linkk(f, z)
    assert time.perf_counter() - t0 < 1.0
    assert kk.passed, kk.statement
    assert kk.M > 12


def test_constants_hold_parameters_and_accept_impedance_py_names():
    f = np.logspace(4, -2, 50)
    true = [2.0, 30.0, 1e-4, 0.9, 40.0, 5.0]
    c = "R0-p(R1,CPE1)-Wo1"
    z = parse_circuit(c).impedance(true, f)
    fit = fit_circuit(f, z, c, [1.0, 10.0, 1e-3, 0.8, 10.0], constants={"Wo1_1": 5.0})
    assert fit.fixed == ["Wo1_tau"] and fit.params["Wo1_tau"] == 5.0 and fit.sigmas[5] == 0
    np.testing.assert_allclose(fit.values, true, rtol=1e-6)
    # a full-length guess works too (the constant's entry is ignored), so does no guess
    fit2 = fit_circuit(f, z, c, [1.0, 10.0, 1e-3, 0.8, 10.0, None], constants={"Wo1_tau": 5.0})
    np.testing.assert_allclose(fit2.values, true, rtol=1e-6)
    np.testing.assert_allclose(fit_circuit(f, z, c, constants={"Wo1_tau": 5.0}).values, true, rtol=1e-5)
    with pytest.raises(AnalysisError, match="no parameter 'Wo1_2'"):
        fit_circuit(f, z, c, constants={"Wo1_2": 5.0})
    with pytest.raises(AnalysisError, match="out of range"):
        fit_circuit(f, z, c, constants={"CPE1_alpha": 1.5})
    with pytest.raises(AnalysisError, match="5 without the constants"):
        fit_circuit(f, z, c, [1.0, 10.0], constants={"Wo1_tau": 5.0})
    with pytest.raises(AnalysisError, match="on_misfit"):
        fit_circuit(f, z, c, on_misfit="ignore")


def test_user_guess_that_collapses_an_arc_is_replaced_and_said_so():
    # two arcs, a guess that puts the first arc's R 12 decades off: the local fit runs it to
    # its limit, the automatic search finds the real minimum and initial_source says why
    f = np.logspace(5, -2, 71)
    true = [5.0, 20.0, 1e-5, 0.9, 200.0, 1e-3, 0.85]
    z = parse_circuit(CIRCUIT).impedance(true, f)
    fit = fit_circuit(f, z, CIRCUIT, [5.0, 1e-9, 1e3, 0.9, 200.0, 1e-3, 0.85])
    assert fit.initial_source.startswith("automatic") and "to the limit" in fit.initial_source
    np.testing.assert_allclose(fit.values, true, rtol=1e-5)


def test_one_linkk_verdict_with_series_capacitance_where_capacitive():
    from labctl.analysis.eis import capacitive_low_end, linkk_verdict

    # a blocking electrode: R0 + (R1 || C1) in series with a CPE (Q = 1e-5, a = 0.92): Z never returns to the real axis
    f = np.logspace(5, -2, 60)
    w = 2 * np.pi * f
    z = 10 + 50 / (1 + 1j * w * 50 * 1e-6) + 1 / (1e-5 * (1j * w) ** 0.92)
    assert capacitive_low_end(f, z)
    plain = linkk(f, z)
    kk = linkk_verdict(f, z)
    assert kk.series_capacitance and kk.statement.startswith("with a series capacitance")
    assert kk.passed and kk.rms < plain.rms
    assert kk.result().details["series_capacitance"] is True
    # an RC spectrum closes back to the real axis: no capacitance added
    z2 = 10 + 50 / (1 + 1j * w * 50 * 1e-6)
    assert not capacitive_low_end(f, z2)
    assert linkk_verdict(f, z2).series_capacitance is False
