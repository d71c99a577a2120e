"""The cell section: what the cell is made of, its geometry, and what its analysis needs.

``eis_model`` and ``sei`` tell the analysis which equivalent circuit to fit
instead of it guessing from the electrode names.  ``eis_model`` is checked here
for syntax only (impedance.py's circuit strings, see :func:`circuit_syntax_error`);
the analysis layer builds and fits it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from labctl.core.constants import MO6S8_THEORETICAL_CAPACITY_MAH_G
from labctl.core.errors import custom_error, did_you_mean, issues_error

from .fields import Quantity, SpecificCapacity, StrictModel, Text, text_check
from .state import current_state

__all__ = ["EIS_ELEMENTS", "CellSpec", "circuit_syntax_error"]

EIS_ELEMENTS = ("R", "C", "L", "CPE", "W", "Wo", "Ws", "La", "G", "K", "Zarc")
"""Element types of an ``eis_model`` circuit (impedance.py's names; the analysis fits these)."""

CIRCUIT_EXAMPLE = "R0-p(R1,CPE1)-p(R2,CPE2)"
_SYNTAX = "series 'a-b', parallel 'p(a,b)', e.g. 'R0-p(R1,CPE1)'"
_PAREN = "'(' must follow 'p' (a parallel block is p(a,b))"
_PAREN_HINT = "write p(R1,CPE1) for R1 parallel to CPE1, and '-' between elements in series"
_ELEMENT = re.compile(r"([A-Za-z]+)([0-9][0-9A-Za-z_]*|_[0-9A-Za-z_]+)?")


def circuit_syntax_error(text: str) -> tuple[int, str, str] | None:
    """Check an impedance.py-style circuit string; ``None`` if it is well formed.

    Grammar (whitespace ignored)::

        circuit  := series
        series   := term ('-' term)*
        term     := element | 'p' '(' series (',' series)+ ')'
        element  := type label?      type: one of EIS_ELEMENTS, label: 1, 2, _sei, ...

    Element names must be unique.  On a problem returns ``(offset, message, hint)``,
    ``offset`` being the 0-based index of the offending character in ``text``.
    """
    n = len(text)
    seen: dict[str, int] = {}

    class Bad(Exception):
        def __init__(self, at: int, message: str, hint: str) -> None:
            self.at, self.message, self.hint = at, message, hint

    def skip(i: int) -> int:
        while i < n and text[i].isspace():
            i += 1
        return i

    def series(i: int) -> int:
        i = term(i)
        i = skip(i)
        while i < n and text[i] == "-":
            dash = i
            i = skip(i + 1)
            if i >= n:
                raise Bad(dash, "the circuit ends with '-'", "put an element after '-', or remove the '-'")
            i = term(i)
            i = skip(i)
        return i

    def term(i: int) -> int:
        i = skip(i)
        if i >= n:
            raise Bad(
                n, "the circuit ends where an element or p(...) is expected", f"complete it, e.g. '{CIRCUIT_EXAMPLE}'"
            )
        c = text[i]
        if c == "p" and text[skip(i + 1) : skip(i + 1) + 1] == "(":
            start = i
            open_at = skip(i + 1)
            i = series(open_at + 1)
            branches = 1
            while i < n and text[i] == ",":
                i = series(i + 1)
                branches += 1
            if i >= n:
                raise Bad(open_at, "unbalanced parentheses: this '(' is never closed", "add the missing ')'")
            if text[i] == "(":
                raise Bad(i, _PAREN, _PAREN_HINT)
            if text[i] != ")":
                raise Bad(
                    i,
                    f"expected ',' or ')' but found {text[i]!r}",
                    "separate parallel branches with ',' and close with ')'",
                )
            if branches < 2:
                raise Bad(
                    start,
                    "p(...) needs at least two branches",
                    "separate the parallel branches with ',', e.g. p(R1,CPE1)",
                )
            return i + 1
        if c == ")":
            raise Bad(
                i, "unbalanced parentheses: ')' without a matching 'p('", "remove it, or open the block with 'p('"
            )
        if c == "(":
            raise Bad(i, _PAREN, _PAREN_HINT)
        if c in ",-":
            raise Bad(i, f"expected an element but found {c!r}", _SYNTAX)
        m = _ELEMENT.match(text, i)
        if not m:
            raise Bad(i, f"unexpected character {c!r}", f"elements are letters and a label (R0, CPE1); {_SYNTAX}")
        typ, name = m.group(1), m.group(0)
        if typ not in EIS_ELEMENTS:
            dym = did_you_mean(typ, EIS_ELEMENTS)
            raise Bad(
                i,
                f"unknown circuit element {name!r}",
                (dym + " " if dym else "") + f"element types: {', '.join(EIS_ELEMENTS)}",
            )
        if name in seen:
            raise Bad(i, f"element {name!r} appears twice", f"give each element its own label, e.g. {typ}1 and {typ}2")
        seen[name] = i
        return m.end()

    if not text.strip():
        return (0, "the circuit is empty", f"write e.g. '{CIRCUIT_EXAMPLE}' ({_SYNTAX})")
    try:
        i = skip(series(0))
        if i < n:
            if text[i] == ")":
                raise Bad(
                    i, "unbalanced parentheses: ')' without a matching 'p('", "remove it, or open the block with 'p('"
                )
            if text[i] == "(":
                raise Bad(i, _PAREN, _PAREN_HINT)
            raise Bad(
                i,
                f"unexpected {text[i]!r}",
                f"join elements with '-' (series) or p(a,b) (parallel), e.g. '{CIRCUIT_EXAMPLE}'",
            )
    except Bad as bad:
        return (bad.at, bad.message, bad.hint)
    return None


_eis_text = text_check("eis_model", "R0-p(R1,CPE1)")


def _eis_model(value: Any) -> Any:
    value = _eis_text(value)
    if not isinstance(value, str):
        return value  # None; anything else fails as 'expected text'
    problem = circuit_syntax_error(value)
    if problem is not None:
        at, message, hint = problem
        st = current_state()
        if st is not None and st.from_file:
            # the loader reports it at the line and column of the character
            raise custom_error(message, hint, suppress=True)
        raise custom_error(f"eis_model {value!r}: {message} (at character {at + 1})", hint)
    return value


class CellSpec(StrictModel):
    """The cell under test: what it is made of, its geometry, and what its analysis needs."""

    kind: Literal["symmetric", "asymmetric", "full"] = Field(
        description="symmetric (same metal both sides), asymmetric (e.g. Mg || Al/C), or full (Mg || cathode)",
        json_schema_extra={"examples": ["symmetric"]},
    )
    id: Annotated[str | None, Text("id", "BrMg-S1")] = Field(
        None,
        description="the sample/cell id written on the cell (used by dip_coat and in the results)",
        json_schema_extra={"examples": ["BrMg-S1"]},
    )
    working: Annotated[str, Text("working", "Mg")] = Field(
        description="working electrode material, e.g. Mg, Al/C, Mo6S8", json_schema_extra={"examples": ["Mg"]}
    )
    counter: Annotated[str | None, Text("counter", "Mg")] = Field(
        None,
        description="counter electrode material; defaults to the working electrode for a symmetric cell",
        json_schema_extra={"examples": ["Mg"]},
    )
    electrolyte: Annotated[str | None, Text("electrolyte", "0.5 M Mg[B(hfip)4]2 in DME")] = Field(
        None, description="electrolyte, free text", json_schema_extra={"examples": ["0.5 M Mg[B(hfip)4]2 in DME"]}
    )
    area_cm2: Annotated[float, Quantity("area", "1.267 cm2", positive=True, what="area")] | None = Field(
        None, validation_alias="area", description="geometric electrode area (give area or diameter)"
    )
    diameter_m: Annotated[float, Quantity("length", "12.7 mm", positive=True, what="diameter")] | None = Field(
        None,
        validation_alias="diameter",
        description="electrode disc diameter; the area is pi d^2 / 4 (give area or diameter)",
    )
    cathode_mass_g: Annotated[float, Quantity("mass", "2.534 mg", positive=True, what="cathode_mass")] | None = Field(
        None,
        validation_alias="cathode_mass",
        description="active cathode mass of a full cell (for c_rate); or give cathode_loading",
    )
    cathode_loading_g_cm2: (
        Annotated[float, Quantity("areal_mass", "2 mg/cm2", positive=True, what="cathode_loading")] | None
    ) = Field(
        None,
        validation_alias="cathode_loading",
        description="active cathode loading per area; cathode_mass = loading x area",
    )
    specific_capacity_mAh_g: SpecificCapacity = Field(
        MO6S8_THEORETICAL_CAPACITY_MAH_G,
        validation_alias="theoretical_capacity",
        description=(
            "theoretical specific capacity of the cathode defining 1C "
            f"(Mo6S8: {MO6S8_THEORETICAL_CAPACITY_MAH_G:g} mAh/g)"
        ),
        json_schema_extra={"default": f"{MO6S8_THEORETICAL_CAPACITY_MAH_G:g} mAh/g"},
    )
    eis_model: Annotated[str | None, BeforeValidator(_eis_model)] = Field(
        None,
        description=(
            "equivalent circuit the EIS analysis fits, in impedance.py syntax: series a-b, parallel p(a,b); "
            f"elements {', '.join(EIS_ELEMENTS)} with a label (R0, CPE1). "
            "E.g. R0-p(R1,CPE1) (one arc) or R0-p(R1,CPE1)-p(R2,CPE2) (interphase + charge transfer); "
            "none: chosen from sei"
        ),
        json_schema_extra={"examples": ["R0-p(R1,CPE1)", "R0-p(R1,CPE1)-p(R2,CPE2)"]},
    )
    sei: bool | None = Field(
        None,
        description=(
            "whether the anode carries an interphase (SEI/coating) whose arc the EIS fit should include "
            "(true: R0-p(R1,CPE1)-p(R2,CPE2), false: R0-p(R1,CPE1)); none: the analysis decides"
        ),
        json_schema_extra={"examples": [True]},
    )

    @model_validator(mode="after")
    def _resolve(self) -> CellSpec:
        issues: list[tuple[str | None, str, str]] = []
        given = self.model_fields_set
        if "area_cm2" in given and "diameter_m" in given:
            issues.append(("diameter", "give either area or diameter, not both", "remove one of them"))
        elif "area_cm2" not in given and "diameter_m" not in given:
            issues.append((None, "the cell needs its electrode area", "add 'area: 1.267 cm2' or 'diameter: 12.7 mm'"))
        elif "diameter_m" in given and self.diameter_m is not None:
            self.area_cm2 = math.pi * (self.diameter_m * 100.0) ** 2 / 4.0
        if "cathode_mass_g" in given and "cathode_loading_g_cm2" in given:
            issues.append(
                ("cathode_loading", "give either cathode_mass or cathode_loading, not both", "remove one of them")
            )
        elif self.cathode_loading_g_cm2 is not None and self.area_cm2 is not None:
            self.cathode_mass_g = self.cathode_loading_g_cm2 * self.area_cm2
        if self.counter is None:
            if self.kind == "symmetric":
                self.counter = self.working
            else:
                issues.append((None, f"an {self.kind} cell needs its counter electrode", "add e.g. 'counter: Mg'"))
        elif self.kind == "symmetric" and self.counter != self.working:
            issues.append(
                (
                    "counter",
                    f"a symmetric cell has the same material on both sides, got working {self.working!r} and counter {self.counter!r}",
                    "use kind: asymmetric, or make counter the same as working",
                ),
            )
        if issues:
            raise issues_error(issues)
        return self
