"""Protocol models: resolution to SI floats, defaults, for_each, use from Python."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from labctl.protocols import (
    CvStep,
    EisStep,
    GalvanostaticStep,
    GroupStep,
    LsvStep,
    PotentiostaticStep,
    Protocol,
    ProtocolError,
    RepeatStep,
    RestStep,
    Safety,
    TemperatureStep,
    load_protocol_text,
)

CELL = "cell: {kind: symmetric, id: S1, working: Mg, area: 1.267 cm2}\n"


def proto(steps: str, *, cell: str = CELL, safety: str = "") -> Protocol:
    return load_protocol_text("name: t\n" + cell + safety + "steps:\n" + steps, "m.yaml")


def test_defaults() -> None:
    p = proto("  - rest: {duration: 1 h}\n  - eis: {}\n  - tafel: {}\n  - temperature: {setpoint: 30 degC}\n")
    assert (
        p.safety.voltage_min,
        p.safety.voltage_max,
        p.safety.current_max,
        p.safety.temperature_max,
        p.safety.max_duration,
    ) == (-5.0, 5.0, 0.1, None, None)
    rest, eis, tafel, temp = p.steps
    assert rest.record_every == 10.0 and rest.label is None
    assert (eis.f_start, eis.f_end, eis.points_per_decade, eis.amplitude, eis.e_dc, eis.vs_ocp) == (
        1e6,
        0.1,
        10,
        0.01,
        None,
        True,
    )
    assert (tafel.rest, tafel.span, tafel.scan_rate, tafel.step) == (600, 0.2, 1e-3, 1e-3)
    assert (temp.band, temp.hold, temp.timeout, temp.record_every) == (0.2, 600, 7200, 10)
    assert p.description == ""
    assert [s.kind for s in p.steps] == ["rest", "eis", "tafel", "temperature"]


def test_cell_geometry_and_cathode() -> None:
    p = proto(
        "  - rest: {duration: 1 h}\n",
        cell="cell: {kind: full, working: Mo6S8, counter: Mg, diameter: 12.7 mm, cathode_loading: 2 mg/cm2}\n",
    )
    assert p.cell.area_cm2 == pytest.approx(1.2668, abs=1e-4)
    assert p.cell.cathode_mass_g == pytest.approx(2e-3 * p.cell.area_cm2)
    assert p.cell.specific_capacity_mAh_g == 128.8
    p = proto(
        "  - rest: {duration: 1 h}\n",
        cell="cell: {kind: full, working: X, counter: Mg, area: 1 cm2, cathode_mass: 3 mg, theoretical_capacity: 100 mAh/g}\n",
    )
    assert p.cell.cathode_mass_g == pytest.approx(3e-3) and p.cell.specific_capacity_mAh_g == pytest.approx(100)


@pytest.mark.parametrize(
    "text, expected", [("0.1", 0.1), ("-0.1", -0.1), ("C/10", 0.1), ("-C/5", -0.2), ("0.5C", 0.5), ('"-0.1 C"', -0.1)]
)
def test_c_rate_spellings(text: str, expected: float) -> None:
    p = proto(
        f"  - galvanostatic: {{c_rate: {text}, duration: 1 h}}\n",
        cell="cell: {kind: full, working: X, counter: Mg, area: 1 cm2, cathode_mass: 1 mg}\n",
    )
    assert p.steps[0].c_rate == pytest.approx(expected)
    assert p.steps[0].current == pytest.approx(expected * 1e-3 * 128.8 / 1000)


def test_capacity_absolute_or_areal() -> None:
    p = proto(
        "  - galvanostatic: {current: 1 mA, capacity: 0.5 mAh}\n  - galvanostatic: {current: 1 mA, capacity: 0.5 mAh/cm2}\n"
    )
    assert p.steps[0].capacity == pytest.approx(1.8)
    assert p.steps[1].capacity == pytest.approx(1.8 * 1.267)


def test_record_every_forms() -> None:
    p = proto(
        "  - galvanostatic: {current: 1 mA, duration: 1 h}\n"
        "  - galvanostatic: {current: 1 mA, duration: 1 h, record_every: 30 s}\n"
        "  - galvanostatic: {current: 1 mA, duration: 1 h, record_every: 5 mV}\n"
        "  - galvanostatic: {current: 1 mA, duration: 1 h, record_every: {time: 10 s, voltage: 5 mV}}\n"
    )
    assert [(s.record_every_s, s.record_dv) for s in p.steps] == [
        (10.0, None),
        (30.0, None),
        (None, 0.005),
        (10.0, 0.005),
    ]


def test_safety_forms() -> None:
    p = proto(
        "  - rest: {duration: 1 h}\n",
        safety="safety: {voltage: 2 V, current: 5 mA, temperature: 60 degC, max_duration: 10 h}\n",
    )
    assert (
        p.safety.voltage_min,
        p.safety.voltage_max,
        p.safety.current_max,
        p.safety.temperature_max,
        p.safety.max_duration,
    ) == (-2.0, 2.0, 0.005, 60.0, 36000.0)
    with pytest.raises(ProtocolError) as exc:
        proto("  - rest: {duration: 1 h}\n", safety="safety: {voltage: [2 V, -2 V]}\n")
    assert "upside down" in str(exc.value) and exc.value.issues[0].field == "safety.voltage"


def test_sweeps_and_holds() -> None:
    p = proto(
        "  - lsv: {start: 0 V, end: 1 V, scan_rate: 1 mV/s}\n"
        "  - cv: {start: 0 V, vertex1: 1 V, vertex2: -1 V, scan_rate: 10 mV/s, cycles: 3}\n"
        "  - potentiostatic: {potential: 100 mV, vs_ocp: true, duration: 10 min, current_below: 1 uA}\n"
    )
    lsv, cv, pot = p.steps
    assert isinstance(lsv, LsvStep) and (lsv.start, lsv.end, lsv.scan_rate, lsv.step, lsv.vs_ocp) == (
        0,
        1,
        1e-3,
        1e-3,
        False,
    )
    assert isinstance(cv, CvStep) and (cv.vertex1, cv.vertex2, cv.cycles) == (1, -1, 3)
    assert isinstance(pot, PotentiostaticStep) and (pot.potential, pot.vs_ocp, pot.duration) == (0.1, True, 600)
    assert pot.current_below == pytest.approx(1e-6)


def test_sweep_outside_window_unless_vs_ocp() -> None:
    with pytest.raises(ProtocolError) as exc:
        proto("  - lsv: {start: 0 V, end: 6 V, scan_rate: 1 mV/s}\n")
    assert "end 6 V is outside the safety voltage window [-5 V, 5 V]" in str(exc.value)
    proto("  - lsv: {start: 0 V, end: 0.2 V, scan_rate: 1 mV/s, vs_ocp: true}\n")


def test_repeat_variants() -> None:
    p = proto(
        "  - repeat:\n      until: short_circuit\n      max_duration: 10 h\n      short_circuit: {below: 5 mV, hold: 2 min}\n"
        "      steps: [{rest: {duration: 1 h}}]\n"
        "  - repeat: {times: 2, max_duration: 1 h, steps: [{rest: {duration: 1 min}}]}\n"
    )
    a, b = p.steps
    assert (a.max_cycles, a.max_duration, a.short_below, a.short_hold) == (None, 36000, 0.005, 120)
    assert (b.times, b.max_duration, b.short_below) == (2, 3600, 0.010)
    with pytest.raises(ProtocolError, match="short_circuit settings only apply"):
        proto("  - repeat: {times: 2, short_circuit: {below: 5 mV}, steps: [{rest: {duration: 1 min}}]}\n")


def test_for_each_with_mapping_values_nesting_and_types() -> None:
    p = proto(
        "  - for_each:\n"
        "      values: [{n: 2, j: 1 mA/cm2}, {n: 3, j: 2 mA/cm2}]\n"
        '      label: "{n} x {j}"\n'
        "      steps:\n"
        "        - repeat:\n"
        '            times: "{n}"\n'
        "            steps:\n"
        "              - for_each:\n"
        "                  as: d\n"
        "                  values: [1 h, 2 h]\n"
        "                  steps:\n"
        '                    - galvanostatic: {current_density: "-{j}", duration: {d}}\n'
    )
    g1, g2 = p.steps
    assert (g1.label, g2.label) == ("2 x 1 mA/cm2", "3 x 2 mA/cm2")
    rep = g1.steps[0]
    assert isinstance(rep, RepeatStep) and rep.times == 2 and g2.steps[0].times == 3
    inner = rep.steps
    assert [g.label for g in inner] == ["d=1 h", "d=2 h"]
    assert inner[1].steps[0].duration == 7200 and inner[1].steps[0].current == pytest.approx(-1e-3 * 1.267)
    assert inner[1].steps[0].line == 15 and inner[1].steps[0].col == 23


def test_nested_for_each_error_names_both_values() -> None:
    with pytest.raises(ProtocolError) as exc:
        proto(
            "  - for_each:\n"
            "      as: j\n"
            "      values: [1 mA/cm2]\n"
            "      steps:\n"
            "        - for_each:\n"
            "            as: d\n"
            "            values: [1 h, 2 V]\n"
            "            steps:\n"
            '              - galvanostatic: {current_density: "{j}", duration: "{d}"}\n'
        )
    (issue,) = exc.value.issues
    assert (issue.line, issue.col) == (12, 67)
    assert issue.field == "steps[0].for_each.steps[0].for_each.steps[0].galvanostatic.duration"
    assert issue.message.endswith("[in for_each value j=1 mA/cm2 / d=2 V]")


def test_index_shift_after_for_each_keeps_positions() -> None:
    with pytest.raises(ProtocolError) as exc:
        proto(
            '  - for_each: {as: x, values: [1 h, 2 h, 3 h], steps: [{rest: {duration: "{x}"}}]}\n  - rest: {duration: 0 s}\n'
        )
    (issue,) = exc.value.issues
    assert (issue.line, issue.col, issue.field) == (5, 22, "steps[1].rest.duration")


def test_group_step_written_directly() -> None:
    p = proto("  - group: {label: conditioning, steps: [{rest: {duration: 1 h}}]}\n")
    assert isinstance(p.steps[0], GroupStep) and p.steps[0].label == "conditioning"


def test_python_use_without_a_file() -> None:
    data = {
        "name": "py",
        "cell": {"kind": "symmetric", "working": "Mg", "area": "1 cm2"},
        "steps": [{"galvanostatic": {"current_density": "1 mA/cm2", "duration": "1 h"}}],
    }
    p = Protocol.model_validate(data)
    assert p.steps[0].current == pytest.approx(1e-3)
    assert p.safety == Safety()
    # steps can be built directly when they need no cell context
    r = RestStep(duration="2 h")
    assert r.duration == 7200 and r.kind == "rest"
    g = GroupStep(steps=[r, {"rest": {"duration": "1 h"}}])
    assert g.steps[1].duration == 3600
    with pytest.raises(ValidationError, match="needs the cell area"):
        GalvanostaticStep.model_validate({"current_density": "1 mA/cm2", "duration": "1 h"})


def test_model_is_json_serialisable() -> None:
    p = proto("  - galvanostatic: {current: 1 mA, duration: 1 h}\n")
    dumped = p.model_dump()
    assert "line" not in dumped["steps"][0] and "text" not in dumped
    assert dumped["steps"][0]["current"] == 0.001


def test_temperature_timeout_must_exceed_hold() -> None:
    with pytest.raises(ProtocolError, match="timeout 10 min is not longer than hold 20 min"):
        proto("  - temperature: {setpoint: 30 degC, hold: 20 min, timeout: 10 min}\n")
    t = proto("  - temperature: {setpoint: 300 K}\n").steps[0]
    assert isinstance(t, TemperatureStep) and t.setpoint == pytest.approx(26.85)


def test_eis_with_dc_bias() -> None:
    e = proto("  - eis: {e_dc: 100 mV, vs_ocp: false, f_start: 100 kHz, f_end: 10 mHz, points_per_decade: 5}\n").steps[
        0
    ]
    assert isinstance(e, EisStep) and (e.e_dc, e.vs_ocp, e.f_start, e.f_end, e.points_per_decade) == (
        0.1,
        False,
        1e5,
        0.01,
        5,
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    j=st.floats(min_value=0.01, max_value=15, allow_nan=False),
    area=st.floats(min_value=0.1, max_value=2, allow_nan=False),
)
def test_current_density_resolution(j: float, area: float) -> None:
    p = load_protocol_text(
        f"name: t\ncell: {{kind: symmetric, working: Mg, area: {area!r} cm2}}\nsteps:\n"
        f"  - galvanostatic: {{current_density: -{j!r} mA/cm2, capacity: {j!r} mAh/cm2}}\n",
        "h.yaml",
    )
    s = p.steps[0]
    assert s.current == pytest.approx(-j * 1e-3 * area)
    assert s.capacity == pytest.approx(j * 3.6 * area)
