"""Simulator presets: loading, error messages with positions, and user presets moving the observables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.drivers.techniques import ConstantCurrent, EndReason, Limits, Recording
from labctl.core.clock import VirtualClock
from labctl.core.errors import ProtocolError
from labctl.simulators.cells import calibrate_asymmetric
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.presets import Preset, available_presets, load_preset, load_preset_text, preset_json_schema
from labctl.studies.mg_anode import PRESET_DIR

A = 1.267


def test_builtin_presets_load_with_si_values():
    bare, br = load_preset("bare-mg"), load_preset("br-mg")
    assert bare.kinetics.j0 == pytest.approx(0.08e-6) and br.kinetics.j0 == pytest.approx(0.66e-6)
    assert br.impedance.activation_energy == pytest.approx(36650.0)
    assert br.impedance.double_layer.q == pytest.approx(0.5e-6)
    assert br.symmetric.hysteresis == ((0.5e-3, pytest.approx(0.068)), (5e-3, pytest.approx(0.170)))
    assert bare.symmetric.life[0] == (0.5e-3, pytest.approx(796 * 3600.0))
    assert br.asymmetric.aurbach.ce == pytest.approx(0.9813)
    assert br.full_cell.best_capacity == pytest.approx(98.40 * 3.6)
    assert bare.impedance.film.resistance[0] == (0.0, 0.0)
    assert load_preset(bare) is bare
    assert load_preset(PRESET_DIR / "br-mg.yaml") == br
    assert set(available_presets()) == {p.stem for p in PRESET_DIR.glob("*.yaml")} == {"bare-mg", "br-mg"}


def test_json_schema_documents_every_field():
    schema = preset_json_schema()
    json.dumps(schema)
    assert "base" in schema["properties"]
    defs = schema["$defs"]
    assert "j0" in defs["Kinetics"]["properties"]
    assert defs["Kinetics"]["properties"]["j0"]["description"]


def errors(text: str, source: str = "user.yaml") -> str:
    with pytest.raises(ProtocolError) as e:
        load_preset_text(text, source)
    return str(e.value)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ProtocolError, match="preset file not found"):
        load_preset(tmp_path / "nope.yaml")
    with pytest.raises(ProtocolError, match="did you mean 'br-mg'"):
        load_preset("br_mg")


def test_missing_field_names_it():
    msg = errors("name: x\nkinetics: {j0: 0.5 uA/cm2, j0_temperature: 22 degC}\n")
    assert "user.yaml:2:1: kinetics.alpha: missing required field 'alpha' (hint: anodic transfer coefficient" in msg
    assert "missing required field 'impedance'" in msg


def test_negative_value_with_position():
    msg = errors("base: br-mg\nimpedance:\n  rs: -5 ohm\n")
    assert msg == "user.yaml:3:7: impedance.rs: must be positive, got '-5 ohm' (hint: write a value above zero)"


def test_wrong_units_in_a_table_and_a_key():
    msg = errors("base: bare-mg\nsymmetric:\n  hysteresis: {0.5 mA/cm2: 145 mA, 5 mA/cm2: 225 mV}\n")
    assert msg.startswith("user.yaml:3:28: symmetric.hysteresis.0.5 mA/cm2: '145 mA' is a current, not a voltage")
    msg = errors("base: bare-mg\nsymmetric:\n  life: {0.5 mA: 796 h}\n")
    assert "user.yaml:3:18:" in msg and "not a current density" in msg
    msg = errors("base: bare-mg\nimpedance:\n  activation_energy: 49 kJ\n")
    assert "impedance.activation_energy: '49 kJ' is not an energy per mole" in msg
    msg = errors("base: bare-mg\nimpedance:\n  rs: 46\n")
    assert "has no unit" in msg and "46 ohm" in msg


def test_unknown_key_and_bad_base():
    msg = errors("base: br-mg\nsymmetric:\n  lifetime: {0.5 mA/cm2: 1 h}\n")
    assert "user.yaml:3:3: symmetric.lifetime: unknown key 'lifetime'" in msg
    msg = errors("base: br-mgg\n")
    assert "user.yaml:1:7: base: unknown base preset 'br-mgg' (hint: did you mean 'br-mg'?" in msg


def test_model_consistency_checks():
    msg = errors("base: br-mg\nasymmetric:\n  aurbach: {ce: 99.8 %}\n")
    assert "asymmetric.aurbach.ce" in msg and "must be below the long-term ce" in msg
    msg = errors("base: br-mg\nfull_cell:\n  best_capacity: 10 mAh/g\n")
    assert "full_cell.best_capacity" in msg


def test_base_override_replaces_tables_and_keeps_the_rest(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: br-mg\nname: slow-br\nsymmetric:\n  life: {1 mA/cm2: 100 h}\n")
    p = load_preset(path)
    assert p.name == "slow-br"
    assert p.symmetric.life == ((1e-3, pytest.approx(360000.0)),)
    assert p.symmetric.hysteresis == load_preset("br-mg").symmetric.hysteresis


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.text(max_size=12))
def test_any_rs_text_is_either_valid_or_a_protocol_error(value):
    text = "base: br-mg\nimpedance:\n  rs: " + json.dumps(value) + "\n"
    try:
        p = load_preset_text(text, "fuzz.yaml")
    except ProtocolError as e:
        assert all(i.source == "fuzz.yaml" for i in e.issues)
    else:
        assert p.impedance.rs > 0


# --------------------------------------------------------------------------- user presets move the observables


def _short_hours(preset: Preset) -> float:
    p = SimulatedPotentiostat(VirtualClock(0.0), preset=preset, noise=False)
    p.connect()
    sign, i = 1, 0.5e-3 * A
    while True:
        blocks = list(
            p.run(
                ConstantCurrent(
                    sign * i, Limits(duration=12 * 3600.0, short_circuit=0.01, short_hold=60.0), Recording(dt=600.0)
                )
            )
        )
        if blocks[-1].end.reason == EndReason.SHORT_CIRCUIT:
            return p.cell.short_age / 3600.0
        sign = -sign


def _plateau(preset: Preset, j: float) -> float:
    p = SimulatedPotentiostat(VirtualClock(0.0), preset=preset, noise=False)
    p.connect()
    blocks = list(p.run(ConstantCurrent(j * 1e-3 * A, Limits(duration=3600.0), Recording(dt=60.0))))
    return float(blocks[0].voltage[30])


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    life=st.floats(200.0, 3000.0),
    life_hi=st.floats(50.0, 400.0),
    h1=st.floats(20.0, 300.0),
    h_ratio=st.floats(1.1, 3.0),
)
def test_user_preset_numbers_move_the_observables(life, life_hi, h1, h_ratio):
    life_hi = min(life_hi, life)
    text = (
        f"base: bare-mg\nname: user\nsymmetric:\n"
        f"  life: {{0.5 mA/cm2: {life} h, 5 mA/cm2: {life_hi} h}}\n"
        f"  hysteresis: {{0.5 mA/cm2: {h1} mV, 5 mA/cm2: {h1 * h_ratio} mV}}\n"
    )
    user = load_preset_text(text, "user.yaml")
    doubled = load_preset_text(text.replace(f"0.5 mA/cm2: {life} h", f"0.5 mA/cm2: {2 * life} h"), "user2.yaml")
    t1, t2 = _short_hours(user), _short_hours(doubled)
    # the replicate's life factor is the same for both; the life is the preset's to within its spread
    assert t1 == pytest.approx(life, rel=0.15)
    assert t2 / t1 == pytest.approx(2.0, rel=0.10)
    assert _plateau(user, 0.5) == pytest.approx(h1 * 1e-3, rel=0.01)
    assert _plateau(user, 5.0) == pytest.approx(h1 * h_ratio * 1e-3, rel=0.01)


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(ce=st.floats(0.90, 0.995), gap=st.floats(0.005, 0.04))
def test_user_ce_numbers_are_reproduced_by_the_calibration(ce, gap):
    text = (
        f"base: bare-mg\nasymmetric:\n  ce: {{0.5 mA/cm2: {ce * 100} %, 3 mA/cm2: {ce * 100} %}}\n"
        f"  aurbach: {{ce: {(ce - gap) * 100} %}}\n  ce_cell_sd: 0 %\n  ce_cycle_sd: 0 %\n"
    )
    preset = load_preset_text(text, "ce.yaml")
    k, losses = calibrate_asymmetric(preset)
    assert k > 0 and all(0 <= f < 1 for _, f in losses)
    p = SimulatedPotentiostat(VirtualClock(0.0), preset=preset, cell_kind="asymmetric", noise=False)
    p.connect()
    i = 0.5e-3 * A
    ces = []
    for _ in range(6):
        list(p.run(ConstantCurrent(-i, Limits(duration=3600.0), Recording(dt=300.0))))
        t0 = p.clock.now()
        blocks = list(p.run(ConstantCurrent(i, Limits(voltage_above=1.2, duration=36000.0), Recording(dt=300.0))))
        ces.append((blocks[-1].end.t - t0) / 3600.0)
    assert np.mean(ces[2:]) == pytest.approx(ce, abs=5e-4)
