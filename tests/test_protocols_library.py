"""The shipped protocol library: every file validates and means what the domain brief says."""

from __future__ import annotations

import math

import pytest

from labctl.protocols import (
    AurbachStep,
    DipCoatStep,
    EisStep,
    GalvanostaticStep,
    GroupStep,
    RepeatStep,
    RestStep,
    TafelStep,
    TemperatureStep,
    json_schema,
    library,
    load_protocol,
    load_yaml,
)

AREA = 1.267
MAH = 3.6

EXPECTED = {
    "dip-coat",
    "tafel",
    "eis-rt",
    "eis-temperature",
    "eis-cycling",
    "symmetric-0.5mA",
    "symmetric-5mA",
    "rate-stepped",
    "rate-high-current",
    "rate-current-capacity",
    "aurbach-ce",
    "ce-longterm-0.5mA",
    "ce-longterm-3mA",
    "ce-multi-current",
    "full-cell-0.1C",
}


def test_library_is_complete() -> None:
    assert set(library()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_library_file_validates(name: str) -> None:
    path = library()[name]
    p = load_protocol(path)
    assert p.name == name
    assert "Assumptions" in p.description
    assert p.text == path.read_text()
    assert p.source == str(path)
    for step in p.iter_steps():
        assert step.line >= 1 and step.col >= 1
    # every galvanostatic step in long tests records by time and voltage (10 s, 5 mV)
    for step in p.iter_steps():
        if isinstance(step, GalvanostaticStep):
            assert (step.record_every_s, step.record_dv) == (10.0, 0.005)
            assert step.current is not None and abs(step.current) <= p.safety.current_max


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_files_match_the_json_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    data, _ = load_yaml(library()[name].read_text(), name)
    jsonschema.Draft202012Validator(json_schema()).validate(data)


def test_library_name_loads_without_a_path() -> None:
    assert load_protocol("symmetric-0.5mA").name == "symmetric-0.5mA"


def test_symmetric_05() -> None:
    p = load_protocol("symmetric-0.5mA")
    rest, rep = p.steps
    assert isinstance(rest, RestStep) and rest.duration == 6 * 3600 and rest.record_every == 60
    assert isinstance(rep, RepeatStep)
    assert (rep.until, rep.times, rep.max_cycles, rep.max_duration) == ("short_circuit", None, 5000, 2000 * 3600)
    assert (rep.short_below, rep.short_hold) == (0.010, 60.0)
    plate, strip = rep.steps
    assert plate.current == pytest.approx(-0.5e-3 * AREA) and strip.current == pytest.approx(0.5e-3 * AREA)
    assert plate.duration == strip.duration == 3600
    assert plate.label == "plate" and strip.label == "strip"
    assert (p.safety.voltage_min, p.safety.voltage_max, p.safety.current_max) == (-2.5, 2.5, 0.020)
    assert p.cell.area_cm2 == AREA and p.cell.counter == "Br-Mg"
    assert rep.line == 22 and rep.col == 5 and plate.line == 28 and plate.col == 11


def test_symmetric_5() -> None:
    rep = load_protocol("symmetric-5mA").steps[1]
    assert rep.steps[0].current == pytest.approx(-5e-3 * AREA)
    assert rep.steps[0].duration == 3600  # 5 mAh/cm2 per half-cycle


def test_eis_temperature_expands_for_each() -> None:
    p = load_protocol("eis-temperature")
    groups = p.steps[1:]
    assert [g.label for g in groups] == ["T=25 degC", "T=30 degC", "T=40 degC", "T=50 degC", "T=60 degC"]
    for g, t in zip(groups, [25, 30, 40, 50, 60]):
        assert isinstance(g, GroupStep)
        temp, eis = g.steps
        assert isinstance(temp, TemperatureStep) and temp.setpoint == t
        assert (temp.band, temp.hold) == (0.2, 600)
        assert isinstance(eis, EisStep)
        assert (eis.f_start, eis.f_end, eis.points_per_decade, eis.amplitude, eis.e_dc, eis.vs_ocp) == (
            1e6,
            0.1,
            10,
            0.01,
            None,
            True,
        )
        assert temp.line == 25 and g.line == 21  # all point at the template
    assert p.safety.temperature_max == 70


def test_eis_cycling() -> None:
    p = load_protocol("eis-cycling")
    kinds = [s.kind for s in p.steps]
    assert kinds == ["rest", "eis", "repeat", "eis", "repeat", "eis"]
    assert p.steps[2].times == 10 and p.steps[4].times == 190
    assert p.steps[4].steps[0].current == pytest.approx(-0.5e-3 * AREA)


def test_tafel() -> None:
    t = load_protocol("tafel").steps[1]
    assert isinstance(t, TafelStep)
    assert (t.rest, t.span, t.scan_rate, t.step) == (600, 0.2, 0.001, 0.001)


def test_rate_tests() -> None:
    p = load_protocol("rate-stepped")
    groups = [s for s in p.steps if isinstance(s, GroupStep)]
    assert [g.label for g in groups] == ["j=0.5 mA/cm2", "j=1 mA/cm2", "j=2 mA/cm2", "j=5 mA/cm2"]
    assert [g.steps[0].steps[1].current for g in groups] == pytest.approx([j * 1e-3 * AREA for j in (0.5, 1, 2, 5)])
    assert all(g.steps[0].steps[0].capacity == pytest.approx(0.5 * MAH * AREA) for g in groups)
    assert p.steps[-1].until == "short_circuit"

    hc = load_protocol("rate-high-current")
    top = max(abs(s.current) for s in hc.iter_steps() if isinstance(s, GalvanostaticStep))
    assert top == pytest.approx(30e-3 * AREA)

    cc = load_protocol("rate-current-capacity")
    groups = cc.steps[1:]
    assert [g.label for g in groups] == [f"{n} mA/cm2 / {n} mAh/cm2" for n in (1, 2, 5, 10, 15)]
    for g, n in zip(groups, (1, 2, 5, 10, 15)):
        plate = g.steps[0].steps[0]
        assert plate.current == pytest.approx(-n * 1e-3 * AREA)
        assert plate.capacity == pytest.approx(n * MAH * AREA)


def test_aurbach() -> None:
    p = load_protocol("aurbach-ce")
    a = p.steps[1]
    assert isinstance(a, AurbachStep)
    assert p.cell.kind == "asymmetric" and p.cell.working == "Al/C"
    assert a.current == pytest.approx(0.5e-3 * AREA)
    assert a.reservoir == pytest.approx(5 * MAH * AREA)
    assert a.cycle_capacity == pytest.approx(0.5 * MAH * AREA)
    assert (a.cycles, a.strip_cutoff, a.max_strip_duration) == (20, 1.0, 20 * 3600)
    assert (a.record_every_s, a.record_dv) == (10.0, 0.005)


def test_ce_longterm() -> None:
    for name, j, times in (("ce-longterm-0.5mA", 0.5, 2000), ("ce-longterm-3mA", 3, 1000)):
        rep = load_protocol(name).steps[1]
        assert rep.times == times and rep.max_duration is not None
        plate, strip = rep.steps
        assert plate.current == pytest.approx(-j * 1e-3 * AREA) and plate.duration == 3600
        assert strip.current == pytest.approx(j * 1e-3 * AREA) and strip.voltage_above == 1.2 and strip.duration == 7200

    multi = load_protocol("ce-multi-current")
    js = [g.steps[0].steps[1].current / (1e-3 * AREA) for g in multi.steps[1:]]
    assert js == pytest.approx([0.5, 1, 2, 5, 2, 1, 0.5])


def test_full_cell_c_rate() -> None:
    p = load_protocol("full-cell-0.1C")
    assert p.cell.cathode_mass_g == pytest.approx(2.534e-3)
    assert p.cell.specific_capacity_mAh_g == pytest.approx(128.8)
    rep = p.steps[1]
    assert rep.times == 100
    discharge, charge = rep.steps
    one_c = 2.534e-3 * 128.8 / 1000  # A
    assert discharge.current == pytest.approx(-0.1 * one_c) and discharge.voltage_below == 0.25
    assert charge.current == pytest.approx(0.1 * one_c) and charge.voltage_above == 1.6
    assert discharge.c_rate == -0.1


def test_dip_coat() -> None:
    d = load_protocol("dip-coat").steps[0]
    assert isinstance(d, DipCoatStep)
    assert d.cells == ["BrMg-S1", "BrMg-S2", "BrMg-S3"]
    assert (d.solution, d.concentration, d.immersion, d.rinse, d.rinse_solution, d.mode, d.tolerance) == (
        "1-bromopropane in DME",
        "2 vol%",
        3600,
        60,
        "DME",
        "manual",
        60,
    )


def test_schema_documents_every_field() -> None:
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    missing = []

    def walk(node, path):
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for k, v in props.items():
                    if "description" not in v and not (
                        "$ref" in v or "anyOf" in v and any("$ref" in a for a in v["anyOf"])
                    ):
                        missing.append(path + (k,))
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + (i,))

    walk(schema, ())
    assert not missing
    defs = schema["$defs"]
    kinds = {alt["title"] for alt in defs["Step"]["oneOf"]}
    assert kinds == {
        "rest",
        "galvanostatic",
        "repeat",
        "group",
        "tafel",
        "lsv",
        "cv",
        "eis",
        "potentiostatic",
        "temperature",
        "aurbach_ce",
        "dip_coat",
        "for_each",
    }
    g = defs["GalvanostaticStep"]["properties"]
    assert "line" not in g and "col" not in g and "kind" not in g
    assert set(defs["CellSpec"]["properties"]) >= {"area", "diameter", "cathode_mass", "theoretical_capacity"}
    assert defs["Safety"]["properties"]["current"]["default"] == "100 mA"
    assert defs["RestStep"]["properties"]["duration"]["examples"] == ["6 h"]
    assert "text" not in schema["properties"] and "source" not in schema["properties"]


def test_areas_from_diameter_match() -> None:
    assert math.pi * 1.27**2 / 4 == pytest.approx(AREA, abs=1e-3)
