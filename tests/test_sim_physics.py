"""Direct arithmetic on simulated data lands on the reference study's numbers (shared/docs/domain.md).

Each test runs the experiment as a protocol would (techniques on one cell, virtual
clock), computes the observable from the recorded samples, and compares it with the
paper within the stated tolerance; bare Mg must come out worse than Br-Mg each time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit, least_squares

from labctl.drivers.techniques import ConstantCurrent, EndReason, Impedance, Limits, LinearSweep, OpenCircuit, Recording
from labctl.core.clock import VirtualClock
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.stage import SimulatedTemperatureStage

A = 1.267
MAH = 3.6
F, R = 96485.33212, 8.314462618


def pstat(**kw) -> SimulatedPotentiostat:
    kw.setdefault("preset", "br-mg")
    p = SimulatedPotentiostat(kw.pop("clock", None) or VirtualClock(0.0), **kw)
    p.connect()
    return p


def cp(p, current, limits, rec=Recording(dt=60.0)):
    """Run one galvanostatic step: (charge passed C, end info, t, v)."""
    t0 = p.clock.now()
    blocks = list(p.run(ConstantCurrent(current, limits, rec)))
    end = blocks[-1].end
    t = np.concatenate([b.t for b in blocks])
    v = np.concatenate([b.voltage for b in blocks])
    return abs(current) * (end.t - t0), end, t - t0, v


# --------------------------------------------------------------------------- symmetric


@pytest.mark.parametrize(
    "preset,j,paper", [("bare-mg", 0.5, 0.145), ("bare-mg", 5.0, 0.225), ("br-mg", 0.5, 0.068), ("br-mg", 5.0, 0.170)]
)
def test_hysteresis_mid_half_cycle(preset, j, paper):
    p = pstat(preset=preset, seed=1)
    i = j * 1e-3 * A
    hyst = []
    for _ in range(3):
        _, _, t, v_pos = cp(p, i, Limits(duration=3600.0))
        _, _, t, v_neg = cp(p, -i, Limits(duration=3600.0))
        mid = len(t) // 2
        hyst.append(0.5 * (np.median(v_pos[mid - 2 : mid + 3]) - np.median(v_neg[mid - 2 : mid + 3])))
    assert np.mean(hyst) == pytest.approx(paper, rel=0.05)


def test_nucleation_spike_at_each_reversal_decays_within_a_minute():
    p = pstat(preset="bare-mg", noise=False)
    i = 0.5e-3 * A
    _, _, t, v = cp(p, i, Limits(duration=600.0), Recording(dt=1.0))
    assert v[0] > 1.3 * 0.145 and v[0] > 0
    assert v[np.searchsorted(t, 90.0)] == pytest.approx(0.145, rel=0.01)
    _, _, t, v = cp(p, -i, Limits(duration=600.0), Recording(dt=1.0))
    assert v[0] < -1.3 * 0.145


def time_to_short(preset, j, seed=0, replicate=0, rec=Recording(dt=60.0)):
    p = pstat(preset=preset, seed=seed, replicate=replicate)
    i = j * 1e-3 * A
    half = 3600.0  # 1 h each way: j mAh/cm2 at j mA/cm2
    sign = 1
    while True:
        _, end, _, _ = cp(p, sign * i, Limits(duration=half, short_circuit=0.01, short_hold=60.0), rec)
        if end.reason == EndReason.SHORT_CIRCUIT:
            return (end.t - 60.0) / 3600.0, p
        sign = -sign


@pytest.mark.parametrize(
    "preset,j,paper", [("bare-mg", 0.5, 796.0), ("br-mg", 0.5, 1610.0), ("bare-mg", 5.0, 194.0), ("br-mg", 5.0, 263.0)]
)
def test_time_to_short(preset, j, paper):
    hours, p = time_to_short(preset, j)
    assert hours == pytest.approx(paper, rel=0.10)
    assert p.cell.shorted


def test_replicates_spread_by_a_few_percent():
    hours = [time_to_short("br-mg", 5.0, seed=11, replicate=r)[0] for r in range(4)]
    spread = np.std(hours) / np.mean(hours)
    assert 0.005 < spread < 0.10
    assert len(set(np.round(hours, 3))) == 4


def test_rate_test_bare_fails_at_5_br_mg_cycles_to_15():
    def rate_test(preset):
        p = pstat(preset=preset)
        for j in (0.5, 1.0, 2.0, 5.0, 10.0, 15.0):
            i = j * 1e-3 * A
            for _ in range(5):
                for s in (1, -1):
                    _, end, _, _ = cp(p, s * i, Limits(duration=3600.0, short_circuit=0.01, short_hold=30.0))
                    if end.reason == EndReason.SHORT_CIRCUIT:
                        return j
        return None

    assert rate_test("bare-mg") == 5.0
    assert rate_test("br-mg") is None


# --------------------------------------------------------------------------- asymmetric


def aurbach(preset, replicate=0):
    p = pstat(preset=preset, cell_kind="asymmetric", replicate=replicate)
    i = 0.5e-3 * A
    qt, _, _, _ = cp(p, -i, Limits(charge=5 * MAH * A))
    qc = 0.0
    for _ in range(20):
        q, _, _, _ = cp(p, i, Limits(charge=0.5 * MAH * A, voltage_above=1.0))
        qc += q
        cp(p, -i, Limits(charge=0.5 * MAH * A))
    qs, end, _, v = cp(p, i, Limits(voltage_above=1.0, duration=50 * 3600.0))
    assert end.reason == EndReason.VOLTAGE_ABOVE and v[-1] == 1.0
    return (qc + qs) / (qc + qt)


@pytest.mark.parametrize("preset,paper", [("bare-mg", 0.9481), ("br-mg", 0.9813)])
def test_aurbach_ce_by_formula(preset, paper):
    assert aurbach(preset) == pytest.approx(paper, abs=0.003)


def long_term(preset, j=0.5, cycles=200, replicate=0):
    p = pstat(preset=preset, cell_kind="asymmetric", replicate=replicate)
    i = j * 1e-3 * A
    ces = []
    for _ in range(cycles):
        qp, _, t, v = cp(p, -i, Limits(duration=3600.0))
        qs, end, _, vs = cp(p, i, Limits(voltage_above=1.2, duration=10 * 3600.0))
        ces.append(qs / qp)
    return np.array(ces), p


@pytest.mark.parametrize("preset,paper", [("bare-mg", 0.9647), ("br-mg", 0.9950)])
def test_long_term_mean_ce(preset, paper):
    ces, _ = long_term(preset, cycles=150)
    assert ces.mean() == pytest.approx(paper, abs=0.003)
    assert 0.0003 < ces.std() < 0.005  # a seeded cycle-to-cycle spread


def test_ce_depends_on_current_density():
    ces, _ = long_term("bare-mg", j=3.0, cycles=40)
    assert ces.mean() == pytest.approx(0.9852, abs=0.003)


def test_asymmetric_voltages_plating_dip_and_strip_rise():
    p = pstat(preset="br-mg", cell_kind="asymmetric", noise=False)
    i = 0.5e-3 * A
    _, _, t, v = cp(p, -i, Limits(duration=3600.0), Recording(dt=1.0))
    assert v[0] < -0.2 and -0.2 < v[-1] < -0.08 and v.min() == v[0]
    _, end, t, v = cp(p, i, Limits(voltage_above=1.2, duration=36000.0), Recording(dt=1.0))
    assert 0.08 < v[len(v) // 2] < 0.2
    rise = t[-1] - t[np.argmax(v > v[len(v) // 2] + 0.05)]
    assert rise < 0.02 * t[-1]  # the rise happens over the last ~1-2 % of the inventory


def test_cycle_life_is_where_the_ce_collapses():
    """The first cycle with CE < 80 % is the cell's stochastic life (cycle_life x replicate factor)."""
    for preset, nominal in (("bare-mg", 380), ("br-mg", 1630)):
        p = pstat(preset=preset, cell_kind="asymmetric", replicate=3)
        cell = p.cell
        expected = math.ceil(nominal * cell.life_multiplier)
        cell.life_used = (expected - 5) / nominal  # skip ahead: 5 cycles of life left
        i = 0.5e-3 * A
        ces = []
        for _ in range(10):
            qp, _, _, _ = cp(p, -i, Limits(duration=3600.0))
            qs, _, _, _ = cp(p, i, Limits(voltage_above=1.2, duration=36000.0))
            ces.append(qs / qp)
        first_bad = int(np.argmax(np.array(ces) < 0.8))
        assert first_bad == 5 or first_bad == 6
        assert max(ces[first_bad:]) < 0.6
        assert 0.5 < cell.life_multiplier < 2.0


def test_cycle_life_spread_follows_the_preset():
    """Default 5 %; a preset with the paper's three-cell spread (14 %) reproduces it."""
    from labctl.simulators.cells import simulate_cell
    from labctl.simulators.presets import load_preset_text

    lives = [234 * simulate_cell("asymmetric", "br-mg", replicate=r).life_multiplier for r in range(40)]
    assert np.std(lives) / np.mean(lives) == pytest.approx(0.05, rel=0.35)
    paper = load_preset_text("base: br-mg\nasymmetric: {cycle_life_spread: 14 %}\n", "paper-spread.yaml")
    lives = [234 * simulate_cell("asymmetric", paper, replicate=r).life_multiplier for r in range(40)]
    assert np.std(lives) / np.mean(lives) == pytest.approx(28.71 / 202.3, rel=0.35)


# --------------------------------------------------------------------------- full cell


def full_cell(preset, cycles=25):
    p = pstat(preset=preset, cell_kind="full", cathode_mass_g=2.534e-3)
    i = 0.1 * p.cell.mass * 128.8 * MAH / 3600.0  # 0.1C
    rec = Recording(dt=60.0, dv=0.005)
    caps, ces, de = [], [], []
    for _ in range(cycles):
        qd, end_d, td, vd = cp(p, -i, Limits(voltage_below=0.25, duration=40 * 3600.0), rec)
        qc, end_c, tc, vc = cp(p, i, Limits(voltage_above=1.6, duration=40 * 3600.0), rec)
        assert end_d.reason == EndReason.VOLTAGE_BELOW and end_c.reason == EndReason.VOLTAGE_ABOVE
        caps.append(qd / MAH / p.cell.mass)
        ces.append(qc / qd)
        de.append(np.interp(qc / 2 / i, tc, vc) - np.interp(qd / 2 / i, td, vd))
    return np.array(caps), np.array(ces), np.array(de)


@pytest.mark.parametrize("preset,first,best,de20", [("bare-mg", 38.37, 74.91, 0.74), ("br-mg", 54.01, 98.40, 0.15)])
def test_full_cell_capacity_activation_and_polarisation(preset, first, best, de20):
    caps, ces, de = full_cell(preset)
    assert caps[0] == pytest.approx(first, rel=0.10)
    assert caps.max() == pytest.approx(best, rel=0.10)
    assert 8 <= int(np.argmax(caps > 0.9 * caps.max())) <= 20  # activates within ~10-20 cycles
    assert de[19] == pytest.approx(de20, rel=0.10)
    assert np.mean(ces) == pytest.approx(0.99, abs=0.005)


# --------------------------------------------------------------------------- EIS and Tafel


def fit_circuit(f, z, film):
    w = 2 * np.pi * f

    def model(x):
        rs, rct, lq1, a1 = x[:4]
        out = rs + rct / (1 + rct * 10**lq1 * (1j * w) ** a1)
        if film:
            r2, lq2, a2 = x[4:]
            out = out + r2 / (1 + r2 * 10**lq2 * (1j * w) ** a2)
        return out

    def res(x):
        d = (model(x) - z) / np.abs(z)
        return np.concatenate((d.real, d.imag))

    x0 = [z.real[0], z.real[-1], -6.0, 0.9] + ([2.0, -5.0, 0.8] if film else [])
    lo = [0, 0, -12, 0.3] + ([0, -12, 0.3] if film else [])
    hi = [1e4, 1e9, 0, 1] + ([1e3, 0, 1] if film else [])
    return least_squares(res, x0, bounds=(lo, hi)).x


def eis_at(p, stage, temp):
    stage.set_setpoint(temp)
    p.clock.sleep(stage.settling_time(0.2, 40.0) + 600.0)
    b = list(p.run(Impedance(1e6, 0.1, 10, 0.01)))[0]
    return b


@pytest.mark.parametrize("preset,rs,rct", [("bare-mg", 46.55, 8.40e5), ("br-mg", 5.56, 3.34e5)])
def test_eis_rs_rct_at_room_temperature_and_arrhenius(preset, rs, rct):
    """The paper's Rs and Rct are room-temperature (22 degC) values; Ea sets the 25-60 C series."""
    clock = VirtualClock(0.0)
    stage = SimulatedTemperatureStage(clock, initial=22.0, seed=1)
    p = pstat(clock=clock, preset=preset, stage=stage)
    b22 = eis_at(p, stage, 22.0)
    x22 = fit_circuit(b22.frequency, b22.z_re + 1j * b22.z_im, film=preset == "br-mg")
    assert x22[0] == pytest.approx(rs, rel=0.02)
    assert x22[1] == pytest.approx(rct, rel=0.02)
    if preset == "br-mg":
        assert x22[4] == pytest.approx(2.12, rel=0.15)  # R_SEI of the fresh coating
    b25 = eis_at(p, stage, 25.0)
    x25 = fit_circuit(b25.frequency, b25.z_re + 1j * b25.z_im, film=preset == "br-mg")
    b60 = eis_at(p, stage, 60.0)
    x60 = fit_circuit(b60.frequency, b60.z_re + 1j * b60.z_im, film=preset == "br-mg")
    ea = p.preset.impedance.activation_energy
    ratio = x25[1] / x60[1]
    assert ratio == pytest.approx(math.exp(ea / R * (1 / 298.15 - 1 / 333.15)), rel=0.03)
    if preset == "br-mg":
        assert ratio == pytest.approx(4.7, rel=0.05)


def test_film_resistance_grows_with_cycles():
    """R_SEI (bare: the surface film) at cycles 0, 10 and 200, read back by a circuit fit."""
    for preset, values in (("bare-mg", (0.0, 3.39, 9.14)), ("br-mg", (2.12, 2.16, 2.96))):
        clock = VirtualClock(0.0)
        p = pstat(clock=clock, preset=preset, noise=False, stage=SimulatedTemperatureStage(clock, initial=22.0))
        cell = p.cell
        for n, r in zip((0, 10, 200), values):
            cell.half_cycles = 2 * n
            cell.cycles = n
            assert cell.film_resistance() == pytest.approx(r, abs=1e-9)
            b = list(p.run(Impedance(1e6, 0.1, 10, 0.01)))[0]
            x = fit_circuit(b.frequency, b.z_re + 1j * b.z_im, film=r > 0)
            assert x[1] == pytest.approx(p.preset.impedance.rct, rel=0.01)
            if r > 0:
                assert x[4] == pytest.approx(r, rel=0.02)


@pytest.mark.parametrize("preset,j0", [("bare-mg", 0.08e-6), ("br-mg", 0.66e-6)])
def test_tafel_j0(preset, j0):
    p = pstat(preset=preset)
    list(p.run(OpenCircuit(600.0, Recording(dt=60.0))))
    blocks = list(p.run(LinearSweep(-0.2, 0.2, 0.001, 0.001, vs_ocp=True)))
    v = np.concatenate([b.voltage for b in blocks])
    i = np.concatenate([b.current for b in blocks])
    ocv = p.cell.ocv()
    t = 22.0 + 273.15

    def model(eta, j):
        return 2 * j * A * np.sinh(2 * F * eta / (4 * R * t))

    (j_fit,), _ = curve_fit(model, v - ocv, i, p0=[1e-7])
    assert j_fit == pytest.approx(j0, rel=0.05)


def test_bare_worse_than_br_mg_everywhere():
    assert time_to_short("bare-mg", 5.0)[0] < time_to_short("br-mg", 5.0)[0]
    assert aurbach("bare-mg") < aurbach("br-mg")
    assert long_term("bare-mg", cycles=20)[0].mean() < long_term("br-mg", cycles=20)[0].mean()
    cb, _, db = full_cell("bare-mg", cycles=20)
    cr, _, dr = full_cell("br-mg", cycles=20)
    assert cb.max() < cr.max() and db[19] > dr[19]
