"""Bad protocols: every problem as `file:line:col: field: message (hint: ...)`."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.protocols import ProtocolError, library, load_protocol, load_protocol_text

HEAD = """\
name: t
cell: {kind: symmetric, id: S1, working: Mg, area: 1.267 cm2}
safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA, temperature: 70 degC}
steps:
"""  # steps start on line 5


def errors(text: str, source: str = "p.yaml") -> list[str]:
    with pytest.raises(ProtocolError) as exc:
        load_protocol_text(text, source)
    lines = str(exc.value).splitlines()
    assert lines and len(lines) == len(exc.value.issues)
    for issue in exc.value.issues:
        assert issue.source == source
        assert issue.line is not None and issue.line >= 1 and issue.col >= 1
        assert issue.hint, f"no hint: {issue}"
    return lines


def one(text: str) -> str:
    lines = errors(text)
    assert len(lines) == 1, lines
    return lines[0]


def test_yaml_syntax_error_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(HEAD + "  - rest: {duration: 1 h\n")
    with pytest.raises(ProtocolError) as exc:
        load_protocol(f)
    (issue,) = exc.value.issues
    assert issue.source == str(f)
    assert (issue.line, issue.col) == (6, 1)
    assert "YAML syntax error" in issue.message and "started at line 5, col 11" in issue.hint


def test_unknown_step_with_did_you_mean() -> None:
    assert one(HEAD + "  - galvnostatic: {current: 1 mA, duration: 1 h}\n") == (
        "p.yaml:5:5: steps[0].galvnostatic: unknown step 'galvnostatic' (hint: did you mean 'galvanostatic'? "
        "step kinds: rest, galvanostatic, repeat, group, tafel, lsv, cv, eis, potentiostatic, temperature, "
        "aurbach_ce, dip_coat, for_each)"
    )


def test_unknown_key_with_did_you_mean() -> None:
    assert one(HEAD + "  - rest: {duraton: 1 h}\n") == (
        "p.yaml:5:12: steps[0].rest.duraton: unknown key 'duraton' "
        "(hint: did you mean 'duration'? valid keys: duration, record_every, label)"
    )


def test_unknown_top_level_key() -> None:
    line = one("name: t\ncel: {kind: symmetric, working: Mg, area: 1 cm2}\nsteps: [{rest: {duration: 1 h}}]\n")
    assert line.startswith("p.yaml:2:1: cel: unknown key 'cel' (hint: did you mean 'cell'?")


def test_missing_field_points_at_the_step() -> None:
    assert one(HEAD + "  - potentiostatic: {potential: 1 V}\n") == (
        "p.yaml:5:5: steps[0].potentiostatic.duration: missing required field 'duration' (hint: how long to hold, e.g. duration: 1 h)"
    )


def test_wrong_unit_dimension() -> None:
    assert one(HEAD + "  - galvanostatic: {current: 1 mA, voltage_above: 5 mA}\n") == (
        "p.yaml:5:51: steps[0].galvanostatic.voltage_above: '5 mA' is a current, not a voltage "
        "(hint: expected a voltage like '1.2 V', got a current ('5 mA'))"
    )


@pytest.mark.parametrize("value", ["0 h", "-1 h", "0"])
def test_zero_or_negative_duration(value: str) -> None:
    line = one(HEAD + f"  - rest: {{duration: {value}}}\n")
    assert line.startswith("p.yaml:5:22: steps[0].rest.duration: duration must be greater than zero")


def test_zero_capacity_and_scan_rate() -> None:
    lines = errors(
        HEAD
        + "  - galvanostatic: {current: 1 mA, capacity: 0 mAh}\n  - lsv: {start: 0 V, end: 1 V, scan_rate: -1 mV/s}\n"
    )
    assert lines[0].startswith("p.yaml:5:46: steps[0].galvanostatic.capacity: capacity must be greater than zero")
    assert lines[1].startswith("p.yaml:6:44: steps[1].lsv.scan_rate: scan_rate must be greater than zero")


def test_cutoff_outside_the_safety_window() -> None:
    assert one(HEAD + "  - galvanostatic: {current: 1 mA, voltage_above: 3 V}\n") == (
        "p.yaml:5:51: steps[0].galvanostatic.voltage_above: voltage_above 3 V is outside the safety voltage window "
        "[-2.5 V, 2.5 V] (hint: the safety limit would stop the run before this is reached: move it inside the "
        "window or widen safety.voltage)"
    )


def test_aurbach_cutoff_outside_the_window() -> None:
    line = one(
        HEAD + "  - aurbach_ce: {current_density: 0.5 mA/cm2, reservoir: 5 mAh/cm2, cycles: 20, "
        "cycle_capacity: 0.5 mAh/cm2, strip_cutoff: 3 V}\n"
    )
    assert (
        "steps[0].aurbach_ce.strip_cutoff: strip_cutoff 3 V is outside the safety voltage window [-2.5 V, 2.5 V]"
        in line
    )


def test_current_above_the_safety_limit() -> None:
    line = one(HEAD + "  - galvanostatic: {current_density: 30 mA/cm2, duration: 1 h}\n")
    assert line.startswith(
        "p.yaml:5:38: steps[0].galvanostatic.current_density: the current 38.01 mA (30 mA/cm2 x 1.267 cm2) "
        "exceeds the safety limit of 20 mA"
    )


def test_repeat_without_a_bound() -> None:
    text = HEAD + "  - repeat:\n      until: short_circuit\n      steps:\n        - rest: {duration: 1 h}\n"
    assert one(text) == (
        "p.yaml:6:14: steps[0].repeat.until: a repeat without a bound: 'until' needs max_cycles and/or max_duration "
        "(hint: add e.g. 'max_cycles: 5000' or 'max_duration: 2000 h')"
    )


def test_repeat_needs_times_or_until() -> None:
    line = one(HEAD + "  - repeat: {steps: [{rest: {duration: 1 h}}]}\n")
    assert "steps[0].repeat: a repeat needs 'times' or 'until'" in line


def test_empty_step_lists() -> None:
    assert one(HEAD + "  - repeat:\n      times: 3\n      steps: []\n") == (
        "p.yaml:7:14: steps[0].repeat.steps: the step list is empty (hint: add at least one step, e.g. '- rest: {duration: 1 h}')"
    )
    assert one(HEAD).startswith("p.yaml:4:1: steps: the step list is empty")
    assert one(HEAD.replace("steps:\n", "steps: []\n")).startswith("p.yaml:4:8: steps: the step list is empty")


def test_eis_frequency_range_upside_down() -> None:
    assert one(HEAD + "  - eis: {f_start: 0.1 Hz, f_end: 1 MHz}\n") == (
        "p.yaml:5:35: steps[0].eis.f_end: frequency range upside down: f_start 100 mHz is not above f_end 1 MHz "
        "(hint: EIS sweeps from high to low frequency: swap them, e.g. f_start: 1 MHz, f_end: 0.1 Hz)"
    )


def test_c_rate_without_cathode_mass() -> None:
    line = one(HEAD + "  - galvanostatic: {c_rate: 0.1, duration: 1 h}\n")
    assert line.startswith(
        "p.yaml:5:29: steps[0].galvanostatic.c_rate: c_rate needs the cathode mass, and the cell section has none"
    )
    assert "cathode_mass: 2.534 mg" in line


def test_dip_coat_without_a_cell_id() -> None:
    text = "name: t\ncell: {kind: symmetric, working: Mg, area: 1.267 cm2}\nsteps:\n  - dip_coat: {solution: x, concentration: 2 vol%, immersion: 1 h}\n"
    assert one(text) == (
        "p.yaml:4:15: steps[0].dip_coat: a dip-coat step needs the id of the cell(s) it coats "
        "(hint: add 'cells: [BrMg-S1]' to the step, or 'id: BrMg-S1' to the cell section)"
    )
    assert one(text.replace("solution", "cells: [], solution")).startswith(
        "p.yaml:4:23: steps[0].dip_coat.cells: a dip-coat step needs"
    )


def test_temperature_above_the_safety_limit() -> None:
    assert one(HEAD + "  - temperature: {setpoint: 80 degC}\n") == (
        "p.yaml:5:29: steps[0].temperature.setpoint: the set point 80 degC is above the safety limit 70 degC "
        "(hint: lower the set point or raise safety.temperature)"
    )


def test_bare_C_in_a_temperature_field() -> None:
    assert one(HEAD + "  - temperature: {setpoint: 25 C}\n") == (
        "p.yaml:5:29: steps[0].temperature.setpoint: '25 C' reads as coulombs, not a temperature (hint: write 25 degC (or 25 °C))"
    )


def test_for_each_template_error_names_the_value() -> None:
    text = HEAD + (
        "  - for_each:\n"
        "      as: T\n"
        "      values: [25 degC, 30 C]\n"
        "      steps:\n"
        '        - temperature: {setpoint: "{T}"}\n'
    )
    assert one(text) == (
        "p.yaml:9:35: steps[0].for_each.steps[0].temperature.setpoint: '30 C' reads as coulombs, not a temperature "
        "[in for_each value T=30 C] (hint: write 30 degC (or 30 °C))"
    )


def test_for_each_error_common_to_all_values_is_reported_once() -> None:
    text = HEAD + (
        "  - rest: {duration: 1 h}\n"
        "  - for_each:\n"
        "      as: T\n"
        "      values: [25 degC, 30 degC]\n"
        "      steps:\n"
        '        - temperature: {setpont: "{T}"}\n'
        "  - rest: {duraton: 1 h}\n"
    )
    lines = errors(text)
    assert lines == [
        "p.yaml:10:25: steps[1].for_each.steps[0].temperature.setpont: unknown key 'setpont' "
        "[in for_each values T=25 degC; T=30 degC] (hint: did you mean 'setpoint'? valid keys: setpoint, band, hold, timeout, record_every, label)",
        "p.yaml:11:12: steps[2].rest.duraton: unknown key 'duraton' (hint: did you mean 'duration'? valid keys: duration, record_every, label)",
    ]


def test_for_each_unknown_placeholder() -> None:
    text = (
        HEAD
        + '  - for_each:\n      as: T\n      values: [25 degC]\n      steps:\n        - temperature: {setpoint: "{t}"}\n'
    )
    assert one(text) == (
        "p.yaml:9:35: steps[0].for_each.steps[0].temperature.setpoint: unknown placeholder '{t}' "
        "(hint: did you mean 'T'? defined here: {T})"
    )


@pytest.mark.parametrize(
    "body, needle",
    [
        ("  - for_each: {values: [1 h], steps: [{rest: {duration: '{x}'}}]}\n", "missing required field 'as'"),
        ("  - for_each: {as: x, values: [], steps: [{rest: {duration: '{x}'}}]}\n", "values must be a non-empty list"),
        ("  - for_each: {as: x, values: [1 h], steps: []}\n", "the step list is empty"),
        ("  - for_each: {as: x, valeus: [1 h], steps: [{rest: {duration: '{x}'}}]}\n", "unknown key 'valeus'"),
        ("  - for_each: {as: 2x, values: [1 h], steps: [{rest: {duration: '{x}'}}]}\n", "'as' must be a simple name"),
        ("  - for_each: {as: x, values: [{a: 1 h}], steps: [{rest: {duration: '{a}'}}]}\n", "'as' is not used"),
    ],
)
def test_malformed_for_each(body: str, needle: str) -> None:
    lines = errors(HEAD + body)
    assert any(needle in line for line in lines), lines
    assert all(line.startswith("p.yaml:5:") for line in lines), lines


def test_step_settings_beside_the_kind() -> None:
    assert one(HEAD + "  - galvanostatic:\n    current: 1 mA\n").startswith(
        "p.yaml:6:5: steps[0].current: 'current' is beside the step kind 'galvanostatic' instead of inside it "
        "(hint: indent the settings under 'galvanostatic:'"
    )


def test_number_without_unit() -> None:
    assert one(HEAD + "  - rest: {duration: 5}\n") == (
        "p.yaml:5:22: steps[0].rest.duration: 5 has no unit; expected a time like '1 h' (hint: write the unit, e.g. '5 h')"
    )


def test_all_issues_reported_at_once() -> None:
    text = (
        "name: t\n"
        "cell: {kind: symmetric, working: Mg, area: 1.267 cm2}\n"
        "safety: {voltage: [-2.5 V, 2.5 V]}\n"
        "steps:\n"
        "  - rest: {duration: 0 s}\n"
        "  - eis: {f_start: 1 Hz, f_end: 1 MHz}\n"
        "  - galvanostatic: {current: 1 mA, voltage_below: -3 V}\n"
        "  - bogus: {}\n"
    )
    lines = errors(text)
    assert [line.split(": ")[0] for line in lines] == ["p.yaml:5:22", "p.yaml:6:33", "p.yaml:7:51", "p.yaml:8:5"]


def test_invalid_cell_does_not_cascade() -> None:
    text = (
        "name: t\n"
        "cell: {kind: symmetric, working: Mg, area: 1.267 mA}\n"
        "steps:\n"
        "  - galvanostatic: {current_density: 1 mA/cm2, duration: 1 h}\n"
        "  - dip_coat: {solution: x, concentration: 2 vol%, immersion: 1 h}\n"
    )
    assert one(text) == (
        "p.yaml:2:44: cell.area: '1.267 mA' is a current, not an area (hint: expected an area like '1.267 cm2', got a current ('1.267 mA'))"
    )


def test_cell_problems() -> None:
    assert one(
        "name: t\ncell: {kind: asymmetric, working: Al/C, area: 1 cm2}\nsteps: [{rest: {duration: 1 h}}]\n"
    ).startswith("p.yaml:2:7: cell: an asymmetric cell needs its counter electrode")
    assert one("name: t\ncell: {kind: symmetric, working: Mg}\nsteps: [{rest: {duration: 1 h}}]\n").startswith(
        "p.yaml:2:7: cell: the cell needs its electrode area (hint: add 'area: 1.267 cm2' or 'diameter: 12.7 mm')"
    )
    assert one("name: t\ncell: {kind: symetric, working: Mg, area: 1 cm2}\nsteps: [{rest: {duration: 1 h}}]\n") == (
        "p.yaml:2:14: cell.kind: 'symetric' is not allowed here (hint: did you mean 'symmetric'? use one of: symmetric, asymmetric, full)"
    )


def test_missing_file_and_library_hint(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as exc:
        load_protocol(tmp_path / "nope.yaml")
    names = ", ".join(sorted(library()))
    assert (
        str(exc.value) == f"{tmp_path / 'nope.yaml'}: no such file (hint: check the path; library protocols: {names})"
    )
    with pytest.raises(ProtocolError) as exc:
        load_protocol("symmetric-0.5mAA")
    assert "the library has 'symmetric-0.5mA'" in str(exc.value)


def test_empty_and_non_mapping_files() -> None:
    assert (
        one("# nothing\n")
        == "p.yaml:1:1: the file is empty (hint: a protocol needs at least name, cell and steps (see docs/protocols.md))"
    )
    assert one("- rest: {duration: 1 h}\n").startswith("p.yaml:1:1: a protocol is a mapping of keys")


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"name: t\ndescription: \xb5A\n")
    with pytest.raises(ProtocolError) as exc:
        load_protocol(f)
    assert (exc.value.issues[0].line, exc.value.issues[0].col) == (2, 14)


def test_internal_keys_are_not_input() -> None:
    assert "unknown key 'line'" in one(HEAD + "  - rest: {duration: 1 h, line: 3}\n")
    assert "unknown key 'text'" in one(HEAD + "  - rest: {duration: 1 h}\ntext: hi\n")


def test_empty_step_settings() -> None:
    assert (
        one(HEAD + "  - rest:\n")
        == "p.yaml:5:5: steps[0].rest.duration: missing required field 'duration' (hint: how long to rest, e.g. duration: 6 h)"
    )
    assert load_protocol_text(HEAD + "  - eis:\n", "p.yaml").steps[0].f_start == 1e6
