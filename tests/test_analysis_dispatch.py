"""analyze_run on synthetic runs: EIS (+ Arrhenius), Tafel, Aurbach CE, cycling."""

import math

import numpy as np
import pytest

from labctl.analysis import AnalysisError, analyze_run, parse_circuit
from labctl.analysis.tafel import FARADAY, GAS_CONSTANT

AREA = 1.267
COLS = ("t", "voltage", "current", "charge", "cycle", "step_index", "temperature", "frequency", "z_re", "z_im")


class Run:
    def __init__(self):
        self.steps, self.parts, self.t = [], [], 0.0

    def add(self, kind, label="", params=None, cycle=0, end_reason="complete", **cols):
        n = len(next(iter(cols.values())))
        idx = len(self.steps)
        part = {k: np.full(n, np.nan) for k in COLS}
        part["t"] = self.t + np.arange(1, n + 1, dtype=float)
        part["cycle"] = np.full(n, cycle)
        part["step_index"] = np.full(n, idx)
        for k, v in cols.items():
            part[k] = np.asarray(v, float) * np.ones(n)
        for k in ("voltage", "current", "charge"):
            if k not in cols:
                part[k] = np.zeros(n)
        self.parts.append(part)
        self.steps.append(
            {
                "step_index": idx,
                "kind": kind,
                "cycle": cycle,
                "label": label,
                "params": params or {},
                "t_start": self.t,
                "t_end": self.t + n,
                "end_reason": end_reason,
            }
        )
        self.t += n
        return idx

    @property
    def samples(self):
        return {k: np.concatenate([p[k] for p in self.parts]) for k in COLS}


def spectrum(circuit, p, seed):
    f = np.logspace(6, -1, 71)
    rng = np.random.default_rng(seed)
    z = parse_circuit(circuit).impedance(p, f)
    z = z + 0.005 * np.abs(z) * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
    return f, z


def rct_at(t_c, rct25, ea_kj):
    return rct25 * math.exp(ea_kj * 1e3 / GAS_CONSTANT * (1 / (t_c + 273.15) - 1 / 298.15))


def eis_temperature_run(anode, temps=(25, 30, 40, 50, 60), with_temperature_column=True):
    run = Run()
    for k, tc in enumerate(temps):
        run.add("temperature", params={"target": tc}, temperature=np.full(5, tc))
        if anode == "br-mg":
            p = [5.56, 2.16, 1e-6, 0.95, rct_at(tc, 3.34e5, 36.65), 3e-6, 0.95]
            f, z = spectrum("R0-p(R1,CPE1)-p(R2,CPE2)", p, k)
        else:
            p = [46.55, rct_at(tc, 8.40e5, 49.20), 1e-7, 0.9]
            f, z = spectrum("R0-p(R1,CPE1)", p, k)
        # one inductive point, which the analysis must drop
        z = np.r_[0.5 + 0.1j, z]
        f = np.r_[2e6, f]
        temp = np.full(f.size, tc + 0.05) if with_temperature_column else np.full(f.size, np.nan)
        run.add("eis", frequency=f, z_re=z.real, z_im=z.imag, temperature=temp)
    return run


def named(results, name):
    return [r for r in results if r.name == name]


def test_eis_series_br_mg_gives_rs_rsei_rct_and_ea():
    run = eis_temperature_run("br-mg")
    res = analyze_run(run.steps, run.samples, {"eis_model": "R0-p(R1,CPE1)-p(R2,CPE2)", "area_cm2": AREA})
    assert not named(res, "analysis_error")
    rct = named(res, "Rct")
    assert len(rct) == 5
    assert rct[0].value == pytest.approx(3.34e5, rel=0.05)
    assert rct[0].details["temperature_C"] == pytest.approx(25.05)
    assert rct[0].details["step_index"] == 1
    assert rct[0].details["circuit"] == "R0-p(R1,CPE1)-p(R2,CPE2)"
    assert named(res, "Rs")[0].value == pytest.approx(5.56, rel=0.05)
    assert named(res, "R_SEI")[0].value == pytest.approx(2.16, rel=0.05)
    assert len(named(res, "linkk_residual_rms")) == 5
    ea = named(res, "Ea")[0]
    assert ea.value == pytest.approx(36.65, rel=0.03)
    assert ea.uncertainty is not None and ea.details["step_indices"] == [1, 3, 5, 7, 9]


def test_eis_bare_mg_one_arc_and_temperature_from_setpoint():
    run = eis_temperature_run("bare-mg", temps=(25, 40, 60), with_temperature_column=False)
    res = analyze_run(run.steps, run.samples, {"sei": False})
    assert not named(res, "R_SEI")
    rct = named(res, "Rct")
    assert [r.details["temperature_C"] for r in rct] == [25, 40, 60]
    assert rct[0].value == pytest.approx(8.40e5, rel=0.05)
    assert named(res, "Rs")[0].value == pytest.approx(46.55, rel=0.05)
    assert named(res, "Ea")[0].value == pytest.approx(49.20, rel=0.03)


def test_eis_circuit_chosen_by_f_test_when_cell_does_not_say():
    run = Run()
    f, z = spectrum("R0-p(R1,CPE1)-p(R2,CPE2)", [5.56, 2.16, 1e-6, 0.95, 3.34e5, 3e-6, 0.95], 0)
    run.add("eis", frequency=f, z_re=z.real, z_im=z.imag)
    f, z = spectrum("R0-p(R1,CPE1)", [46.55, 8.40e5, 1e-7, 0.9], 1)
    run.add("eis", frequency=f, z_re=z.real, z_im=z.imag)
    res = analyze_run(run.steps, run.samples, {})
    sei = named(res, "R_SEI")
    assert len(sei) == 1 and sei[0].details["step_index"] == 0
    assert "significant" in sei[0].details["circuit_choice"]
    rct = named(res, "Rct")
    assert rct[1].details["circuit"] == "R0-p(R1,CPE1)"
    assert "not significant" in rct[1].details["circuit_choice"]
    assert not named(res, "Ea")  # no temperatures


def _fresh_then_cycled_run():
    """A fresh one-arc spectrum (cycle 0) and, after cycling, a spectrum with a film arc (cycle 10)."""
    run = Run()
    f, z = spectrum("R0-p(R1,CPE1)", [46.55, 8.40e5, 1e-7, 0.9], 0)
    run.add("eis", frequency=f, z_re=z.real, z_im=z.imag, cycle=0)
    f, z = spectrum("R0-p(R1,CPE1)-p(R2,CPE2)", [46.55, 3.39, 1e-6, 0.95, 8.40e5, 1e-7, 0.9], 1)
    run.add("eis", frequency=f, z_re=z.real, z_im=z.imag, cycle=10)
    return run


@pytest.mark.parametrize(
    "model",
    [
        {0: "R0-p(R1,CPE1)", 1: "R0-p(R1,CPE1)-p(R2,CPE2)"},
        {"0": "R0-p(R1,CPE1)", "1": "R0-p(R1, CPE1) - p(R2, CPE2)"},  # as stored in JSON: string keys
        [[0, "R0-p(R1,CPE1)"], [1, "R0-p(R1,CPE1)-p(R2,CPE2)"]],
    ],
)
def test_eis_model_by_cycle_from_the_cell(model):
    run = _fresh_then_cycled_run()
    res = analyze_run(run.steps, run.samples, {"eis_model": model})
    assert not named(res, "analysis_error")
    rct = named(res, "Rct")
    assert [r.details["circuit_choice"] for r in rct] == ["from the cell description"] * 2
    assert "".join(rct[0].details["circuit"].split()) == "R0-p(R1,CPE1)"
    sei = named(res, "R_SEI")
    assert len(sei) == 1 and sei[0].details["cycle"] == 10
    assert sei[0].value == pytest.approx(3.39, rel=0.15)  # a small arc behind Rs = 46.55 ohm
    assert [r.value for r in rct] == [pytest.approx(8.40e5, rel=0.05)] * 2


def test_eis_model_wins_over_sei_and_names_are_never_read():
    run = _fresh_then_cycled_run()
    stated = analyze_run(run.steps, run.samples, {"eis_model": "R0-p(R1,CPE1)-p(R2,CPE2)", "sei": False})
    assert len(named(stated, "R_SEI")) == 2
    # what the cell is called does not choose the circuit: without eis_model / sei the F-test does
    for cell in (
        {"anode": "bare-mg"},
        {"anode": "br-mg", "working": "Br-Mg", "counter": "Br-Mg"},
        {"preset": "br-mg", "label": "bare Mg"},
    ):
        res = analyze_run(run.steps, run.samples, cell)
        assert all(r.details["circuit_choice"].startswith("F-test") for r in named(res, "Rct")), cell


def test_bad_eis_model_is_an_analysis_error_naming_it():
    run = _fresh_then_cycled_run()
    res = analyze_run(run.steps, run.samples, {"eis_model": "R0-p(R1,CPE1"})
    errs = named(res, "analysis_error")
    assert len(errs) == 2 and "R0-p(R1,CPE1" in errs[0].details["error"]
    res = analyze_run(run.steps, run.samples, {"eis_model": {5: "R0-p(R1,CPE1)"}})
    assert "no circuit for cycle 0" in named(res, "analysis_error")[0].details["error"]
    with pytest.raises(AnalysisError):
        analyze_run(run.steps, run.samples, {"eis_model": "R0-X(R1)"}, strict=True)


def test_other_stated_circuit_gives_its_parameters_and_no_arrhenius():
    run = eis_temperature_run("bare-mg", temps=(25, 40, 60))
    res = analyze_run(run.steps, run.samples, {"eis_model": "R0-p(R1,C1)"})
    assert not named(res, "analysis_error")
    assert len(named(res, "R1")) == 3 and len(named(res, "C1")) == 3
    assert not named(res, "Rct") and not named(res, "Ea")


def test_tafel_step():
    f_rt = FARADAY / (GAS_CONSTANT * 295.15)
    e = np.arange(-0.2, 0.2005, 0.001)
    j = 0.66e-6 * (np.exp(0.5 * 2 * f_rt * e) - np.exp(-0.5 * 2 * f_rt * e))
    run = Run()
    run.add("rest", voltage=np.zeros(10))
    run.add("tafel", voltage=e, current=j * AREA)
    res = analyze_run(run.steps, run.samples, {"area_cm2": AREA})
    j0 = named(res, "j0")[0]
    assert j0.value == pytest.approx(0.66e-6, rel=0.02)
    assert j0.details["step_index"] == 1
    assert named(res, "j0_micro")[0].value == pytest.approx(0.66e-6, rel=0.02)
    # symmetric form from the step params, or from the cell kind
    run.steps[1]["params"] = {"symmetric": True}
    res = analyze_run(run.steps, run.samples, {"area_cm2": AREA})
    assert named(res, "alpha")[0].value == pytest.approx(1.0, rel=0.02)
    run.steps[1]["params"] = {}
    res = analyze_run(run.steps, run.samples, {"area_cm2": AREA, "kind": "symmetric"})
    assert named(res, "b_cell") and named(res, "j0")[0].value == pytest.approx(0.66e-6, rel=0.02)
    res = analyze_run(run.steps, run.samples, {"area_cm2": AREA, "kind": "symmetric", "tafel_symmetric": False})
    assert named(res, "b_a") and not named(res, "b_cell")
    # no area: an error result, or a raise with strict=True
    res = analyze_run(run.steps, run.samples, {})
    err = named(res, "analysis_error")[0]
    assert math.isnan(err.value) and "area_cm2" in err.details["error"] and err.details["step_index"] == 1
    with pytest.raises(AnalysisError, match="area"):
        analyze_run(run.steps, run.samples, {}, strict=True)


def test_aurbach_steps():
    i = 0.5e-3 * AREA
    q_c = 0.5 * 3.6 * AREA
    q_t = 5.0 * 3.6 * AREA
    q_s = 0.9813 * (20 * q_c + q_t) - 20 * q_c

    def galv(run, label, q, sign, cycle=0):
        n = 50
        tt = np.linspace(q / i / n, q / i, n)
        run.add(
            "galvanostatic",
            label=label,
            cycle=cycle,
            current=np.full(n, sign * i),
            charge=sign * i * tt,
            voltage=np.full(n, 0.05 * sign),
            end_reason="charge",
        )

    run = Run()
    run.add("rest", voltage=np.full(10, 0.5))
    galv(run, "aurbach:reservoir", q_t, -1)
    for c in range(1, 21):
        galv(run, "aurbach:cycle-plate", q_c, -1, c)
        galv(run, "aurbach:cycle-strip", q_c, +1, c)
    galv(run, "aurbach:final-strip", q_s, +1)
    res = analyze_run(run.steps, run.samples, {"area_cm2": AREA, "kind": "asymmetric"})
    ce = named(res, "ce_aurbach")
    assert len(ce) == 1
    assert ce[0].value == pytest.approx(0.9813, abs=1e-4)
    assert ce[0].details["n_cycles"] == 20
    assert not named(res, "ce_mean")  # Aurbach steps are not also read as cycling
    # an incomplete test says what is missing
    res = analyze_run(run.steps[:-1], run.samples, {"area_cm2": AREA})
    assert "aurbach:final-strip" in named(res, "analysis_error")[0].details["error"]


def test_cycling_symmetric_and_asymmetric():
    from tests.test_analysis_cycling import asymmetric_run, symmetric_run

    run = symmetric_run(8, t_short=7.5 * 3600)
    res = analyze_run(run.steps, run.samples, {"kind": "symmetric", "area_cm2": AREA})
    by = {r.name: r for r in res}
    assert by["t_short"].value == pytest.approx(7.5 * 3600, abs=30)
    assert by["hysteresis"].value == pytest.approx(0.068, abs=0.002)
    assert by["hysteresis"].details["n_cycles"] == 3  # cycles before the short
    run = symmetric_run(4)
    by = {r.name: r for r in analyze_run(run.steps, run.samples, {"kind": "symmetric"})}
    assert by["cycling_time"].details["short_circuit"] is False
    assert by["cycles_completed"].value == 4

    run = asymmetric_run(np.r_[np.full(10, 0.99), 0.5])
    by = {r.name: r for r in analyze_run(run.steps, run.samples, {"kind": "asymmetric"})}
    assert by["ce_mean"].value == pytest.approx(0.99, abs=1e-3)
    assert by["cycle_life"].value == 10
    assert "hysteresis" not in by


def test_full_cell_run():
    from tests.test_analysis_cycling import full_cell_run

    mass = 2e-3 * AREA
    run = full_cell_run(mass, [54.0, 98.4], [52.0, 98.0])
    by = {r.name: r for r in analyze_run(run.steps, run.samples, {"kind": "full", "cathode_mass_g": mass})}
    assert by["capacity_discharge_first"].value == pytest.approx(54.0, rel=1e-3)
    assert by["capacity_discharge_best"].value == pytest.approx(98.4, rel=1e-3)
    assert by["dE_50"].value == pytest.approx(0.15, abs=0.01)
    by = {r.name: r for r in analyze_run(run.steps, run.samples, {"kind": "full"})}
    assert "cathode_mass_g" in by["analysis_error"].details["error"]


def test_steps_without_analysis_give_nothing():
    run = Run()
    run.add("rest", voltage=np.zeros(5))
    run.add("dip_coat", voltage=np.zeros(3))
    run.add("cv", voltage=np.linspace(-1, 1, 20), current=np.linspace(-1, 1, 20) * 1e-3)
    assert analyze_run(run.steps, run.samples, {}) == []
