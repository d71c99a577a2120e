"""Cycling analyses on synthetic runs laid out as labctl stores them."""

import numpy as np
import pytest

from labctl.analysis import (
    AnalysisError,
    aurbach_ce,
    ce_results,
    cycle_table,
    dqdv,
    full_cell_results,
    full_cell_table,
    half_cycles,
    hysteresis_results,
    short_circuit_time,
)

AREA = 1.267
I_05 = 0.5e-3 * AREA  # 0.5 mA/cm2 in A


class Run:
    """Accumulates steps and samples like the engine records them."""

    def __init__(self, dt=10.0):
        self.dt = dt
        self.t = 0.0
        self.steps = []
        self.cols = {k: [] for k in ("t", "voltage", "current", "charge", "cycle", "step_index")}

    def step(self, kind, current, duration, vfun, cycle=0, label="", params=None, end_reason="duration"):
        idx = len(self.steps)
        n = max(int(round(duration / self.dt)), 1)
        tt = self.t + np.linspace(0.0, duration, n + 1)[1:]
        tau = tt - self.t
        v = vfun(tau, tt)
        self.cols["t"].append(tt)
        self.cols["voltage"].append(np.asarray(v, float) * np.ones(tt.size))
        self.cols["current"].append(np.full(tt.size, current))
        self.cols["charge"].append(current * tau)  # signed, accumulated within the step
        self.cols["cycle"].append(np.full(tt.size, cycle))
        self.cols["step_index"].append(np.full(tt.size, idx))
        self.steps.append(
            {
                "step_index": idx,
                "kind": kind,
                "cycle": cycle,
                "label": label,
                "params": params or {},
                "t_start": self.t,
                "t_end": self.t + duration,
                "end_reason": end_reason,
            }
        )
        self.t += duration
        return idx

    @property
    def samples(self):
        return {k: np.concatenate(v) for k, v in self.cols.items()}


def symmetric_run(n_cycles=20, hyst=0.068, growth=0.0, t_short=None, half=3600.0, seed=0, dt=10.0):
    rng = np.random.default_rng(seed)
    run = Run(dt)
    run.step("rest", 0.0, 600.0, lambda tau, t: 0.001 * rng.standard_normal(tau.size))
    t0 = run.t

    def v(sign, cyc):
        def f(tau, t):
            plateau = sign * (hyst + growth * cyc) + sign * 0.08 * np.exp(-tau / 60.0)  # nucleation spike
            out = plateau + 0.001 * rng.standard_normal(tau.size)
            if t_short is not None:
                out = np.where(t - t0 >= t_short, sign * 0.002 + 0.0005 * rng.standard_normal(tau.size), out)
            return out

        return f

    for c in range(1, n_cycles + 1):
        run.step("galvanostatic", -I_05, half, v(-1, c), cycle=c, label="plate")
        run.step("galvanostatic", +I_05, half, v(+1, c), cycle=c, label="strip")
    return run


def asymmetric_run(ce, seed=0):
    """Mg || Al/C: plate 1 h, strip until the plated Mg (times CE) is gone, then V -> 1.2 V."""
    rng = np.random.default_rng(seed)
    run = Run(10.0)
    for c, e in enumerate(ce, start=1):
        run.step(
            "galvanostatic",
            -I_05,
            3600.0,
            lambda tau, t: -0.1 + 0.001 * rng.standard_normal(tau.size),
            cycle=c,
            label="plate",
        )
        d = 3600.0 * e
        run.step(
            "galvanostatic",
            I_05,
            d,
            lambda tau, t, d=d: np.where(tau > d - 20, 1.2, 0.05),
            cycle=c,
            label="strip",
            end_reason="voltage_above",
        )
    return run


def test_half_cycles_and_charge_column_vs_integration():
    run = symmetric_run(3)
    s = run.samples
    hcs = half_cycles(s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"], s["charge"])
    assert len(hcs) == 6  # the rest step is ignored
    assert [h.sign for h in hcs] == [-1, 1] * 3
    for h in hcs:
        assert h.charge == pytest.approx(I_05 * 3600.0)
    # without a charge column: trapezoid of |I| over the step's samples (first interval missing)
    hcs2 = half_cycles(s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"])
    for h in hcs2:
        assert h.charge == pytest.approx(I_05 * 3590.0)


def test_hysteresis_is_the_plateau_not_the_spike():
    run = symmetric_run(10, hyst=0.068)
    s = run.samples
    table = cycle_table(s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"], s["charge"])
    np.testing.assert_allclose(table.hysteresis, 0.068, atol=0.001)
    np.testing.assert_allclose(table.ce, 1.0)
    res = hysteresis_results(table)[0]
    assert res.name == "hysteresis" and res.unit == "V"
    assert res.value == pytest.approx(0.068, abs=0.001)
    assert len(res.details["per_cycle"]["cycle"]) == 10


def test_hysteresis_growth_is_tracked_per_cycle():
    run = symmetric_run(10, hyst=0.068, growth=0.002)
    s = run.samples
    table = cycle_table(s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"], s["charge"])
    np.testing.assert_allclose(table.hysteresis, 0.068 + 0.002 * np.arange(1, 11), atol=0.001)


def test_short_circuit_detected_and_sustained():
    t_short = 7.5 * 3600.0
    run = symmetric_run(8, t_short=t_short)
    s = run.samples
    res = short_circuit_time(s["t"], s["voltage"], s["current"], cycle=s["cycle"])
    assert res.name == "t_short" and res.unit == "s"
    assert res.value == pytest.approx(t_short, abs=20.0)
    assert res.details["cycle"] == 4
    assert res.details["hours"] == pytest.approx(7.5, abs=0.01)
    # a brief dip (one sample) is not a short
    run2 = symmetric_run(4)
    s2 = run2.samples
    v = s2["voltage"].copy()
    k = np.nonzero(s2["current"] != 0)[0][500]
    v[k] = 0.0
    assert short_circuit_time(s2["t"], v, s2["current"]) is None
    # an absolute threshold can be given
    assert short_circuit_time(s["t"], s["voltage"], s["current"], v_threshold=0.005).value == pytest.approx(
        t_short, abs=20.0
    )


def test_coulombic_efficiency_and_cycle_life():
    ce = np.r_[np.full(30, 0.985), 0.6, np.full(5, 0.3)]
    run = asymmetric_run(ce)
    s = run.samples
    table = cycle_table(s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"], s["charge"])
    np.testing.assert_allclose(table.ce, ce, atol=1e-3)
    by = {r.name: r for r in ce_results(table)}
    assert by["ce_mean"].value == pytest.approx(0.985, abs=1e-3)
    assert by["ce_mean"].details["n_cycles"] == 30
    assert by["cycle_life"].value == 30
    assert by["cycle_life"].method == "ce-threshold"
    assert by["cycle_life"].details["failed_cycle"] == 31
    # no failure: life = cycles completed
    run2 = asymmetric_run(np.full(12, 0.99))
    s2 = run2.samples
    t2 = cycle_table(s2["t"], s2["voltage"], s2["current"], s2["cycle"], s2["step_index"], s2["charge"])
    by2 = {r.name: r for r in ce_results(t2)}
    assert by2["cycle_life"].value == 12 and by2["cycle_life"].method == "cycles-completed"
    assert by2["ce_mean"].uncertainty == pytest.approx(0.0, abs=1e-6)


def test_aurbach_formula_matches_paper_numbers():
    q_c = 0.5 * 3.6 * AREA  # 0.5 mAh/cm2 in C
    q_t = 5.0 * 3.6 * AREA
    for target in (0.9481, 0.9813):
        q_s = target * (20 * q_c + q_t) - 20 * q_c
        r = aurbach_ce(q_t, q_c, 20, q_s)
        assert r.value == pytest.approx(target)
        assert r.name == "ce_aurbach"
    with pytest.raises(AnalysisError, match="reservoir"):
        aurbach_ce(0.0, q_c, 20, 1.0)
    with pytest.raises(AnalysisError, match="at least one cycle"):
        aurbach_ce(q_t, q_c, 0, 1.0)


def full_cell_run(mass_g, caps_dis, caps_ch, seed=0):
    """Mo6S8 full cell at 0.1C, discharge first; plateaus 1.10 V (discharge), 1.25 V (charge)."""
    rng = np.random.default_rng(seed)
    i = 0.1 * 128.8e-3 * mass_g  # A (0.1C of 128.8 mAh/g)
    run = Run(30.0)
    for c, (qd, qc) in enumerate(zip(caps_dis, caps_ch), start=1):
        dd = qd * 3.6 * mass_g / i
        dc = qc * 3.6 * mass_g / i
        run.step(
            "galvanostatic",
            -i,
            dd,
            lambda tau, t, d=dd: 1.10 - 0.3 * (tau / d - 0.5) ** 3 * 8 + 0.0005 * rng.standard_normal(tau.size),
            cycle=c,
            label="discharge",
        )
        run.step(
            "galvanostatic",
            i,
            dc,
            lambda tau, t, d=dc: 1.25 + 0.3 * (tau / d - 0.5) ** 3 * 8 + 0.0005 * rng.standard_normal(tau.size),
            cycle=c,
            label="charge",
        )
    return run


def test_full_cell_capacity_ce_and_polarisation():
    mass = 2e-3 * AREA
    dis = [54.01, 80.0, 98.40, 97.0]
    ch = [50.0, 79.0, 98.0, 96.5]
    run = full_cell_run(mass, dis, ch)
    s = run.samples
    table = full_cell_table(
        s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"], s["charge"], cathode_mass_g=mass
    )
    np.testing.assert_allclose(table.capacity_discharge, dis, rtol=1e-3)
    np.testing.assert_allclose(table.capacity_charge, ch, rtol=1e-3)
    np.testing.assert_allclose(table.ce, np.array(ch) / np.array(dis), rtol=1e-3)  # back out / went in
    np.testing.assert_allclose(table.de_50, 0.15, atol=0.005)
    by = {r.name: r for r in full_cell_results(table)}
    assert by["capacity_discharge_first"].value == pytest.approx(54.01, rel=1e-3)
    assert by["capacity_discharge_best"].value == pytest.approx(98.40, rel=1e-3)
    assert by["capacity_discharge_best"].details["cycle"] == 3
    assert by["dE_50"].value == pytest.approx(0.15, abs=0.005) and by["dE_50"].unit == "V"
    assert by["capacity_charge_first"].unit == "mAh/g"
    with pytest.raises(AnalysisError, match="cathode mass"):
        full_cell_table(s["t"], s["voltage"], s["current"], s["cycle"], s["step_index"], cathode_mass_g=0)


def test_dqdv_peak_at_plateau_and_conserves_charge():
    # charge curve with a plateau at 1.20 V holding half the capacity
    q = np.linspace(0, 10.0, 2001)
    v = np.where(q < 2.5, 1.0 + 0.08 * q, np.where(q < 7.5, 1.2 + 0.002 * (q - 2.5), 1.21 + 0.08 * (q - 7.5)))
    centers, h = dqdv(v, charge=q, bin_width=0.005, smooth=1.0)
    assert centers[np.argmax(h)] == pytest.approx(1.2, abs=0.01)
    assert np.sum(h) * 0.005 == pytest.approx(10.0, rel=0.02)
    # from current and time instead of charge
    t = np.linspace(0, 1000, 2001)
    c2, h2 = dqdv(v, current=np.full(t.size, 0.01), t=t, smooth=0)
    assert np.sum(h2) * 0.005 == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(AnalysisError, match="charge or current"):
        dqdv(v)


def test_errors_for_empty_or_mismatched_input():
    with pytest.raises(AnalysisError, match="no samples"):
        cycle_table([], [], [], [], [])
    with pytest.raises(AnalysisError, match="voltage has 1 values"):
        cycle_table([0, 1], [0], [0, 0], [0, 0], [0, 0])
    with pytest.raises(AnalysisError, match="no half-cycles"):
        cycle_table([0, 1, 2], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0])
