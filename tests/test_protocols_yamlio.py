"""Safe YAML loading with positions; syntax errors with line and column."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.errors import Issue, ProtocolError, format_path, validate_with_positions
from labctl.core.yamlio import load_yaml

TEXT = """\
# a comment
name: x
cell: {kind: symmetric, area: 1.267 cm2}
steps:
  - rest: {duration: 6 h}
  - repeat:
      times: 3
      steps:
        - galvanostatic:
            current: 5 mA
"""


def test_plain_data_and_positions() -> None:
    data, pos = load_yaml(TEXT, "f.yaml")
    assert data == {
        "name": "x",
        "cell": {"kind": "symmetric", "area": "1.267 cm2"},
        "steps": [
            {"rest": {"duration": "6 h"}},
            {"repeat": {"times": 3, "steps": [{"galvanostatic": {"current": "5 mA"}}]}},
        ],
    }
    assert type(data) is dict and type(data["steps"]) is list and type(data["steps"][1]["repeat"]["times"]) is int
    # values
    assert pos[("name",)] == (2, 7)
    assert pos[("cell", "area")] == (3, 31)
    assert pos[("steps", 0, "rest", "duration")] == (5, 22)
    assert pos[("steps", 1, "repeat", "steps", 0, "galvanostatic", "current")] == (10, 22)
    # keys
    assert pos.key_positions[("cell", "area")] == (3, 25)
    assert pos.key_positions[("steps", 1, "repeat", "times")] == (7, 7)
    assert pos.key(("steps", 1)) == (6, 5)
    assert pos.nearest(("steps", 1, "repeat", "nope", 3)) == pos[("steps", 1, "repeat")]


@pytest.mark.parametrize(
    "text, line, col, needle, hint",
    [
        ("a: 1\na: 2\n", 2, 1, "duplicate key 'a'", "once per mapping"),
        ("a: [1, 2\n", 2, 1, "expected ',' or ']'", "started at line 1, col 4"),
        ("a:\n\t- b\n", 2, 1, "'\\t'", "spaces, not tabs"),
        ("a: b: c\n", 1, 5, "mapping values are not allowed here", "quoted"),
        ("cell: {electrolyte: Mg[B(hfip)4]2}\n", 1, 23, "expected ',' or '}'", "must be quoted"),
        ("a: 1\n---\nb: 2\n", 2, 1, "another document", ""),
        ("a: *nothing\n", 1, 4, "undefined alias", "anchor"),
    ],
)
def test_syntax_errors(text: str, line: int, col: int, needle: str, hint: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        load_yaml(text, "s.yaml")
    (issue,) = exc.value.issues
    assert (issue.line, issue.col) == (line, col)
    assert needle in issue.message
    assert issue.message.startswith("YAML syntax error")
    assert hint in issue.hint
    assert str(exc.value).startswith(f"s.yaml:{line}:{col}: YAML syntax error")


@pytest.mark.parametrize(
    "text",
    ["x: !!python/object/apply:os.system [ls]\n", "x: !foo bar\n", "x: !m {a: 1}\n", "x: !!python/name:os.system ''\n"],
)
def test_tags_are_refused_never_constructed(text: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        load_yaml(text, "t.yaml")
    assert "tag" in str(exc.value)
    assert exc.value.issues[0].line == 1


def test_standard_tags_and_yaml12_scalars() -> None:
    data, _ = load_yaml("a: !!str 5\nb: no\nc: 1e-3\nd: 0x10\ne: true\nf: ~\n", "t.yaml")
    assert data == {"a": "5", "b": "no", "c": 0.001, "d": 16, "e": True, "f": None}


def test_anchors_are_copies() -> None:
    data, pos = load_yaml("a: &x {k: 1}\nb: *x\n", "t.yaml")
    assert data["a"] == data["b"] and data["a"] is not data["b"]
    assert pos[("b", "k")] == (1, 11)  # where the anchored text is


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(ProtocolError) as exc:
        load_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert "too large" in str(exc.value)


def test_empty_document() -> None:
    data, pos = load_yaml("# only a comment\n", "e.yaml")
    assert data is None


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.text(max_size=60))
def test_arbitrary_text_gives_data_or_protocol_error(text: str) -> None:
    try:
        load_yaml(text, "fuzz.yaml")
    except ProtocolError as exc:
        assert all(isinstance(i, Issue) for i in exc.issues)
        assert str(exc).startswith("fuzz.yaml")


def test_issue_and_error_format() -> None:
    i = Issue("f.yaml", 3, 7, "steps[2].rest.duration", "bad", "fix it")
    assert str(i) == "f.yaml:3:7: steps[2].rest.duration: bad (hint: fix it)"
    assert str(Issue("f.yaml", None, None, "", "no such file", "")) == "f.yaml: no such file"
    err = ProtocolError([i, Issue("f.yaml", 4, 1, "", "worse", "")])
    assert str(err).splitlines() == ["f.yaml:3:7: steps[2].rest.duration: bad (hint: fix it)", "f.yaml:4:1: worse"]
    assert format_path(("steps", 2, "galvanostatic", "current_density")) == "steps[2].galvanostatic.current_density"


def test_validate_with_positions_on_a_plain_model() -> None:
    """The helper works for any pydantic model (e.g. the simulator presets)."""
    from pydantic import BaseModel, ConfigDict, Field

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        resistance: float = Field(description="series resistance")
        capacitance: float = 1.0

    class Outer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        cells: list[Inner]

    text = "cells:\n  - {resistance: 5}\n  - {resistence: 5, capacitance: x}\n"
    data, pos = load_yaml(text, "p.yaml")
    with pytest.raises(ProtocolError) as exc:
        validate_with_positions(Outer, data, pos, "p.yaml")
    lines = str(exc.value).splitlines()
    assert lines[0].startswith(
        "p.yaml:3:6: cells[1].resistence: unknown key 'resistence' (hint: did you mean 'resistance'? valid keys: resistance, capacitance)"
    )
    assert lines[1] == "p.yaml:3:34: cells[1].capacitance: expected a number, got 'x' (hint: write e.g. 1.5)"
    assert len(lines) == 2  # the typo'd 'resistance' is not also reported missing
    ok = validate_with_positions(Outer, {"cells": [{"resistance": 1}]}, {}, "p.yaml")
    assert ok.cells[0].resistance == 1


def test_unit_error_raised_in_a_foreign_validator_keeps_its_hint() -> None:
    from pydantic import BaseModel, field_validator

    from labctl.core.units import parse_quantity

    class Preset(BaseModel):
        rs: float

        @field_validator("rs", mode="before")
        @classmethod
        def _rs(cls, v: object) -> float:
            return parse_quantity(v, "resistance")

    data, pos = load_yaml("rs: 5 mA\n", "preset.yaml")
    with pytest.raises(ProtocolError) as exc:
        validate_with_positions(Preset, data, pos, "preset.yaml")
    assert str(exc.value) == (
        "preset.yaml:1:5: rs: '5 mA' is a current, not a resistance (hint: expected a resistance like '10 ohm', got a current ('5 mA'))"
    )
