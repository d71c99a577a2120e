"""The quantity parser: spellings lab people use, prefixes, round trips, wrong dimensions."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.core.units import DIMENSIONS, UnitError, dimension_of, example, parse_quantity

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False).filter(
    lambda x: abs(x) > 1e-9 or x == 0
)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)

# (text unit, dimension, factor to the returned unit)
UNITS = [
    ("s", "time", 1.0),
    ("min", "time", 60.0),
    ("h", "time", 3600.0),
    ("ms", "time", 1e-3),
    ("V", "voltage", 1.0),
    ("mV", "voltage", 1e-3),
    ("uV", "voltage", 1e-6),
    ("A", "current", 1.0),
    ("mA", "current", 1e-3),
    ("uA", "current", 1e-6),
    ("µA", "current", 1e-6),
    ("μA", "current", 1e-6),
    ("nA", "current", 1e-9),
    ("mA/cm2", "current_density", 1e-3),
    ("uA/cm2", "current_density", 1e-6),
    ("A/m2", "current_density", 1e-4),
    ("C", "charge", 1.0),
    ("mAh", "charge", 3.6),
    ("uAh", "charge", 3.6e-3),
    ("Ah", "charge", 3600.0),
    ("mAh/cm2", "areal_charge", 3.6),
    ("C/cm2", "areal_charge", 1.0),
    ("cm2", "area", 1.0),
    ("mm2", "area", 0.01),
    ("mm", "length", 1e-3),
    ("Hz", "frequency", 1.0),
    ("kHz", "frequency", 1e3),
    ("MHz", "frequency", 1e6),
    ("mHz", "frequency", 1e-3),
    ("ohm", "resistance", 1.0),
    ("Ω", "resistance", 1.0),
    ("kohm", "resistance", 1e3),
    ("kΩ", "resistance", 1e3),
    ("mV/s", "scan_rate", 1e-3),
    ("V/s", "scan_rate", 1.0),
    ("g", "mass", 1.0),
    ("mg", "mass", 1e-3),
    ("mAh/g", "specific_capacity", 3.6),
    ("mg/cm2", "areal_mass", 1e-3),
]


@SETTINGS
@given(value=finite, unit=st.sampled_from(UNITS), space=st.sampled_from(["", " ", "  "]))
def test_round_trip(value: float, unit: tuple[str, str, float], space: str) -> None:
    text, dim, factor = unit
    got = parse_quantity(f"{value!r}{space}{text}", dim)
    assert got == pytest.approx(value * factor, rel=1e-9, abs=1e-300)


@SETTINGS
@given(value=positive, unit=st.sampled_from(UNITS))
def test_unicode_minus_and_plus_sign(value: float, unit: tuple[str, str, float]) -> None:
    text, dim, factor = unit
    assert parse_quantity(f"\u2212{value!r} {text}", dim) == pytest.approx(-value * factor, rel=1e-9)
    assert parse_quantity(f"+{value!r} {text}", dim) == pytest.approx(value * factor, rel=1e-9)


CM2_SPELLINGS = ["mA/cm2", "mA/cm^2", "mA/cm**2", "mA/cm²", "mA cm-2", "mA cm^-2", "mA*cm**-2", "mA·cm⁻²", "mA / cm2"]


@SETTINGS
@given(value=positive, spelling=st.sampled_from(CM2_SPELLINGS))
def test_per_area_spellings_agree(value: float, spelling: str) -> None:
    assert parse_quantity(f"{value} {spelling}", "current_density") == pytest.approx(value * 1e-3, rel=1e-12)
    areal = spelling.replace("mA", "mAh")
    assert parse_quantity(f"{value} {areal}", "areal_charge") == pytest.approx(value * 3.6, rel=1e-12)


@SETTINGS
@given(
    value=st.floats(min_value=-100, max_value=400, allow_nan=False),
    spelling=st.sampled_from(["degC", "°C", "℃", "deg C", "ºC"]),
)
def test_temperature_spellings(value: float, spelling: str) -> None:
    assert parse_quantity(f"{value!r} {spelling}", "temperature") == pytest.approx(value, abs=1e-9)


@SETTINGS
@given(value=st.floats(min_value=0, max_value=1000, allow_nan=False))
def test_kelvin_to_celsius(value: float) -> None:
    assert parse_quantity(f"{value!r} K", "temperature") == pytest.approx(value - 273.15, abs=1e-9)


@SETTINGS
@given(
    value=st.floats(min_value=0.001, max_value=100, allow_nan=False),
    spelling=st.sampled_from(["degC", "°C", "K", "delta_degC"]),
)
def test_temperature_difference(value: float, spelling: str) -> None:
    assert parse_quantity(f"{value!r} {spelling}", "temperature_difference") == pytest.approx(value, rel=1e-9)


@SETTINGS
@given(value=st.integers(min_value=-50, max_value=300))
def test_bare_C_is_not_a_temperature(value: int) -> None:
    with pytest.raises(UnitError) as exc:
        parse_quantity(f"{value} C", "temperature")
    assert f"write {value} degC" in exc.value.hint
    assert "coulomb" in exc.value.message


DISTINCT = [
    "time",
    "voltage",
    "current",
    "current_density",
    "charge",
    "areal_charge",
    "area",
    "length",
    "frequency",
    "resistance",
    "scan_rate",
    "mass",
    "specific_capacity",
]


@SETTINGS
@given(given_dim=st.sampled_from(DISTINCT), wanted=st.sampled_from(DISTINCT))
def test_wrong_dimension_names_both(given_dim: str, wanted: str) -> None:
    text = example(given_dim)
    if given_dim == wanted:
        parse_quantity(text, wanted)
        return
    with pytest.raises(UnitError) as exc:
        parse_quantity(text, wanted)
    hint = exc.value.hint
    assert f"expected {DIMENSIONS[wanted].noun} like '{example(wanted)}'" in hint
    assert f"got {DIMENSIONS[given_dim].noun} ('{text}')" in hint


def test_the_briefs_example_hint() -> None:
    with pytest.raises(UnitError) as exc:
        parse_quantity("5 mA", "voltage", field="voltage_above")
    assert exc.value.hint == "expected a voltage like '1.2 V', got a current ('5 mA')"


@SETTINGS
@given(
    value=st.one_of(st.integers(min_value=1, max_value=10**6), st.floats(min_value=1e-3, max_value=1e6)),
    dim=st.sampled_from(DISTINCT),
)
def test_numbers_without_units_are_refused(value: float, dim: str) -> None:
    for v in (value, str(value)):
        with pytest.raises(UnitError) as exc:
            parse_quantity(v, dim)
        assert "no unit" in exc.value.message
        assert exc.value.hint.startswith("write the unit")


@pytest.mark.parametrize("dim", DISTINCT)
def test_zero_needs_no_unit(dim: str) -> None:
    assert parse_quantity(0, dim) == 0.0
    assert parse_quantity("0", dim) == 0.0


def test_zero_temperature_needs_a_unit() -> None:
    with pytest.raises(UnitError):
        parse_quantity(0, "temperature")


def test_dimensionless() -> None:
    assert parse_quantity(0.1, "dimensionless") == 0.1
    assert parse_quantity("5 %", "dimensionless") == pytest.approx(0.05)


@SETTINGS
@given(text=st.text(max_size=30), dim=st.sampled_from(sorted(DIMENSIONS)))
def test_garbage_raises_only_unit_error(text: str, dim: str) -> None:
    try:
        out = parse_quantity(text, dim)
    except UnitError as exc:
        assert exc.message
        assert str(exc)
    else:
        assert isinstance(out, float) and math.isfinite(out)


@pytest.mark.parametrize("value", [None, True, [1, "V"], {"a": 1}, "nan V", "inf V", "1e999 V", "", "V", "1.2.3 V"])
def test_unreadable_values(value: object) -> None:
    with pytest.raises(UnitError):
        parse_quantity(value, "voltage")


def test_unknown_unit_hint() -> None:
    with pytest.raises(UnitError) as exc:
        parse_quantity("5 foo", "time")
    assert "unknown unit 'foo'" in exc.value.message
    assert "like '1 h'" in exc.value.hint


def test_lab_spellings_of_time() -> None:
    for text, seconds in [
        ("6 h", 21600),
        ("6 hr", 21600),
        ("6 hours", 21600),
        ("10 min", 600),
        ("60 s", 60),
        ("60 sec", 60),
        ("2 d", 172800),
    ]:
        assert parse_quantity(text, "time") == pytest.approx(seconds)


def test_dimension_of() -> None:
    assert dimension_of("5 mA") == "current"
    assert dimension_of("5 mAh/cm2") == "areal_charge"
    assert dimension_of("nonsense") is None


def test_unknown_dimension_key() -> None:
    with pytest.raises(KeyError):
        parse_quantity("1 V", "volts")
