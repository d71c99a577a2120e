"""The cell section states what analysis needs: eis_model (a circuit string) and sei."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from labctl.protocols import (
    EIS_ELEMENTS,
    CellSpec,
    ProtocolError,
    circuit_syntax_error,
    json_schema,
    load_protocol_text,
)

CELL = "cell:\n  kind: symmetric\n  working: Br-Mg\n  diameter: 12.7 mm\n"
STEPS = "steps:\n  - eis: {}\n"


def proto(extra: str) -> str:
    return "name: t\n" + CELL + extra + STEPS


def error_of(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, "c.yaml")
    return info.value


@pytest.mark.parametrize(
    "circuit",
    [
        "R0-p(R1,CPE1)",
        "R0-p(R1,CPE1)-p(R2,CPE2)",
        "R0-p(R1-Wo1,CPE1)",
        " R_s - p( R_ct , CPE_dl ) ",
        "R0-p(R1,C1,L1)-Zarc1",
    ],
)
def test_valid_circuits_are_accepted_and_round_trip(circuit: str) -> None:
    p = load_protocol_text(proto(f"  eis_model: '{circuit}'\n  sei: true\n"), "c.yaml")
    assert p.cell.eis_model == circuit.strip()
    assert p.cell.sei is True
    dumped = p.cell.model_dump()
    assert dumped["eis_model"] == circuit.strip() and dumped["sei"] is True
    # the dump feeds CellSpec back (as the app stores cell attributes)
    rebuilt = CellSpec(
        kind="symmetric", working="Br-Mg", area="1.267 cm2", eis_model=dumped["eis_model"], sei=dumped["sei"]
    )
    assert (rebuilt.eis_model, rebuilt.sei) == (circuit.strip(), True)


def test_both_are_optional_and_default_to_none() -> None:
    p = load_protocol_text(proto(""), "c.yaml")
    assert (p.cell.eis_model, p.cell.sei) == (None, None)
    p = load_protocol_text(proto("  sei: false\n"), "c.yaml")
    assert p.cell.sei is False and p.cell.model_dump()["sei"] is False


@pytest.mark.parametrize(
    ("value", "col", "message", "hint"),
    [
        # value starts at column 14 ("  eis_model: " is 13 characters)
        ("R0-p(R1,CPE1-p(R2,CPE2)", 18, "unbalanced parentheses: this '(' is never closed", "add the missing ')'"),
        ("R0-p(R1,CEP1)", 22, "unknown circuit element 'CEP1'", "did you mean 'CPE'?"),
        ("'R0-p(R1,CEP1)'", 23, "unknown circuit element 'CEP1'", "did you mean 'CPE'?"),  # after the quote
        ("R0-p(R1)", 17, "p(...) needs at least two branches", "e.g. p(R1,CPE1)"),
        ("R0-p(R1,R0)", 22, "element 'R0' appears twice", "own label"),
        ("R0-", 16, "the circuit ends with '-'", "put an element after '-'"),
        ("R0-p(R1,CPE1))", 27, "unbalanced parentheses: ')' without a matching 'p('", "remove it"),
        ("R0(R1,CPE1)", 16, "'(' must follow 'p' (a parallel block is p(a,b))", "p(R1,CPE1)"),
        ("R0 R1", 17, "unexpected 'R'", "join elements with '-'"),
        ("R0-p(R1;CPE1)", 21, "expected ',' or ')' but found ';'", "separate parallel branches"),
    ],
)
def test_bad_circuit_is_rejected_with_position_and_hint(value: str, col: int, message: str, hint: str) -> None:
    err = error_of(proto(f"  eis_model: {value}\n"))
    assert len(err.issues) == 1, str(err)
    issue = err.issues[0]
    assert (issue.source, issue.line, issue.col, issue.field) == ("c.yaml", 6, col, "cell.eis_model")
    assert issue.message == message
    assert hint in issue.hint
    assert str(err).startswith(f"c.yaml:6:{col}: cell.eis_model: {message} (hint: ")


def test_bad_circuit_in_a_flow_mapping_points_at_the_character() -> None:
    text = "name: t\ncell: {kind: symmetric, working: Mg, area: 1 cm2, eis_model: 'R0-p(R1,Q1)'}\n" + STEPS
    issue = error_of(text).issues[0]
    line2 = text.splitlines()[1]
    assert (issue.line, issue.col) == (2, line2.index("Q1") + 1)
    assert "unknown circuit element 'Q1'" in issue.message


def test_bad_circuit_reported_with_other_errors() -> None:
    err = error_of(proto("  eis_model: R0-p(R1\n  sei: maybe\n"))
    fields = [(i.field, i.line) for i in err.issues]
    assert fields == [("cell.eis_model", 6), ("cell.sei", 7)]


def test_empty_or_non_text_circuit() -> None:
    assert error_of(proto("  eis_model: ''\n")).issues[0].message == "eis_model is empty"
    assert error_of(proto("  eis_model: [R0]\n")).issues[0].message.startswith("eis_model must be text")


def test_from_python_the_message_gives_the_character() -> None:
    with pytest.raises(ValidationError) as info:
        CellSpec(kind="symmetric", working="Mg", area="1 cm2", eis_model="R0-p(R1)")
    assert "p(...) needs at least two branches (at character 4)" in str(info.value)


def test_json_schema_lists_eis_model_and_sei() -> None:
    props = json_schema()["$defs"]["CellSpec"]["properties"]
    assert "R0-p(R1,CPE1)" in props["eis_model"]["examples"]
    assert "impedance.py" in props["eis_model"]["description"]
    assert {"type": "string"} in props["eis_model"]["anyOf"]
    assert {"type": "boolean"} in props["sei"]["anyOf"]
    assert "interphase" in props["sei"]["description"]


def test_library_file_with_both_validates_against_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from labctl.core.yamlio import load_yaml

    data, _ = load_yaml(proto("  eis_model: R0-p(R1,CPE1)-p(R2,CPE2)\n  sei: true\n"), "c.yaml")
    jsonschema.Draft202012Validator(json_schema()).validate(data)
    data["cell"]["sei"] = "yes"
    assert not jsonschema.Draft202012Validator(json_schema()).is_valid(data)


def test_element_types_are_those_the_analysis_fits() -> None:
    from labctl.analysis.circuit import ELEMENTS

    assert set(EIS_ELEMENTS) == set(ELEMENTS)


# --------------------------------------------------------------------------- the grammar, property-tested

_labels = st.sampled_from(["0", "1", "2", "12", "_dl", "_ct", "3a"])


@st.composite
def circuits(draw: st.DrawFn, depth: int = 0) -> str:
    n = draw(st.integers(1, 3))
    parts = []
    for _ in range(n):
        if depth < 2 and draw(st.booleans()):
            branches = [draw(circuits(depth + 1)) for _ in range(draw(st.integers(2, 3)))]
            parts.append("p(" + ",".join(branches) + ")")
        else:
            parts.append(draw(st.sampled_from(EIS_ELEMENTS)) + draw(_labels))
    return "-".join(parts)


def _unique(text: str) -> bool:
    import re

    names = re.findall(r"[A-Za-z]+(?:[0-9][0-9A-Za-z_]*|_[0-9A-Za-z_]+)?", text.replace("p(", "("))
    return len(names) == len(set(names))


@settings(max_examples=200, deadline=None)
@given(circuits())
def test_generated_circuits_are_accepted(text: str) -> None:
    problem = circuit_syntax_error(text)
    assert (problem is None) == _unique(text), (text, problem)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="RCPEWop(),-_ 01", max_size=24))
def test_agrees_with_the_analysis_parser(text: str) -> None:
    """Whatever the string, protocols refuses it exactly when the analysis parser does, at the same character."""
    from labctl.analysis._core import AnalysisError
    from labctl.analysis.circuit import parse_circuit

    problem = circuit_syntax_error(text)
    try:
        parse_circuit(text)
        analysis_ok = True
    except AnalysisError:
        analysis_ok = False
    assert (problem is None) == analysis_ok, (text, problem)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_never_crashes_and_offsets_are_inside(text: str) -> None:
    problem = circuit_syntax_error(text)
    if problem is not None:
        at, message, hint = problem
        assert 0 <= at <= len(text) and message and hint
