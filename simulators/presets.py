"""Simulator presets: the numbers a simulated cell reproduces, read from YAML with units.

``load_preset(NAME)`` (a preset in a registered preset folder) or ``load_preset(PATH)``
(a user file) returns a validated :class:`Preset` whose fields are plain floats in
labctl's internal units (A/cm2, V, s, ohm, C/g, J/mol, F, fractions).  A user file may
start with ``base: NAME`` and give only the fields it changes.  Every problem becomes a
:class:`labctl.core.errors.ProtocolError` naming ``file:line:col: field: message (hint)``.

Preset folders come from the entry-point group ``labctl.presets`` (a study registers its
folder in its pyproject) and from :func:`register_preset_dir`; :func:`available_presets`
lists them.  A preset's ``cell:`` section says what the simulated cell is (label, anode,
the EIS model its spectra are fitted with, whether it has an SEI arc).

What each field means and which observable it reproduces: docs/presets.md.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from labctl.core.errors import ProtocolError, custom_error, did_you_mean, validate_with_positions
from labctl.core.folders import FolderRegistry
from labctl.core.units import UnitError, parse_quantity, ureg
from labctl.core.yamlio import decode_text, load_yaml

__all__ = [
    "ENTRY_POINT_GROUP",
    "CellInfo",
    "Preset",
    "Table",
    "available_presets",
    "load_preset",
    "load_preset_text",
    "preset_dirs",
    "preset_json_schema",
    "register_preset_dir",
    "unregister_preset_dir",
]

ENTRY_POINT_GROUP = "labctl.presets"
_FOLDERS = FolderRegistry(ENTRY_POINT_GROUP, "preset folder")


def register_preset_dir(folder: str | Path) -> Path:
    """Make the presets of ``folder`` (``NAME.yaml`` files) loadable by name; searched first."""
    p = _FOLDERS.register(folder)
    _BUILTIN_CACHE.clear()
    return p


def unregister_preset_dir(folder: str | Path) -> None:
    """Undo :func:`register_preset_dir`."""
    _FOLDERS.unregister(folder)
    _BUILTIN_CACHE.clear()


def preset_dirs() -> list[Path]:
    """The folders searched for presets by name, in order."""
    return _FOLDERS.folders()


def available_presets() -> dict[str, Path]:
    """Every preset loadable by name: name -> file."""
    return _FOLDERS.files()


def _available_hint() -> str:
    return f"available presets: {_FOLDERS.describe()}"


Table = tuple[tuple[float, float], ...]
"""A sorted table of ``(x, y)`` points (x ascending)."""


# --------------------------------------------------------------------------- field types


def _parse(value: Any, dimension: str) -> float:
    try:
        return parse_quantity(value, dimension)
    except UnitError as e:
        raise custom_error(e.message, e.hint) from None


def _check_sign(x: float, sign: str, value: Any) -> float:
    if sign == "positive" and not x > 0:
        raise custom_error(f"must be positive, got {value!r}", "write a value above zero")
    if sign == "nonneg" and x < 0:
        raise custom_error(f"must not be negative, got {value!r}", "write zero or a positive value")
    return x


def _qty(dimension: str, description: str, example: str, sign: str = "positive", maximum: float | None = None):
    def parse(v: Any) -> float:
        x = _check_sign(_parse(v, dimension), sign, v)
        if maximum is not None and x > maximum:
            raise custom_error(
                f"must be at most {maximum:g}{' (100 %)' if maximum == 1 else ''}, got {v!r}", f"e.g. {example}"
            )
        return x

    return Annotated[
        float,
        BeforeValidator(parse),
        WithJsonSchema({"type": ["string", "number"], "description": description, "examples": [example]}),
        Field(description=description, json_schema_extra={"examples": [example]}),
    ]


_SPECIAL = {
    # key: (pint unit of the returned float, noun, example)
    "molar_energy": ("J/mol", "an energy per mole", "36.65 kJ/mol"),
    "cpe_q": ("F", "a CPE coefficient Q (written as a capacitance, meaning F s^(alpha-1))", "0.5 uF"),
}
_NUM = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")


def _parse_special(value: Any, key: str) -> float:
    """Units the shared parser has no dimension for (kJ/mol, uF)."""
    unit, noun, example = _SPECIAL[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise custom_error(f"expected {noun} like '{example}', got {value!r}", f"write e.g. '{example}'")
    if isinstance(value, (int, float)):
        raise custom_error(f"{value} has no unit; expected {noun}", f"write the unit, e.g. '{example}'")
    m = _NUM.match(value.replace("\u2212", "-"))
    if not m or not m.group(2):
        raise custom_error(f"cannot read {value!r} as {noun}", f"write a number then a unit, e.g. '{example}'")
    u = m.group(2).replace("\u00b5", "u").replace("\u03bc", "u").replace("\u00b7", "*").replace("^", "**")
    try:
        q = ureg.Quantity(float(m.group(1)), ureg.parse_units(u))
        return float(q.to(unit).magnitude)
    except Exception:  # pint raises assorted errors for unknown units and wrong dimensions
        raise custom_error(f"'{value}' is not {noun}", f"write e.g. '{example}'") from None


def _special(key: str, description: str):
    example = _SPECIAL[key][2]

    def parse(v: Any) -> float:
        return _check_sign(_parse_special(v, key), "positive", v)

    return Annotated[
        float,
        BeforeValidator(parse),
        WithJsonSchema({"type": "string", "description": description, "examples": [example]}),
        Field(description=description, json_schema_extra={"examples": [example]}),
    ]


def _table(
    xdim: str, ydim: str, description: str, example: str, *, y_sign: str = "positive", y_max: float | None = None
):
    """A mapping ``{x quantity: y quantity}`` with at least one entry, e.g. ``{0.5 mA/cm2: 68 mV}``."""

    def parse(v: Any) -> Table:
        if not isinstance(v, dict) or not v:
            raise custom_error(
                f"expected a mapping of at least one entry like {example}, got {v!r}", f"write e.g. {example}"
            )
        pts: list[tuple[float, float]] = []
        for k, val in v.items():
            if xdim == "cycles":
                if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                    raise custom_error(
                        f"key {k!r} is not a cycle number", "keys are whole cycle numbers, e.g. 0, 10, 200", field=k
                    )
                x = float(k)
            else:
                try:
                    x = parse_quantity(k, xdim)
                except UnitError as e:
                    raise custom_error(f"key {k!r}: {e.message}", e.hint, field=k) from None
                if not x > 0:
                    raise custom_error(f"key {k!r} must be positive", "use a positive value", field=k)
            try:
                y = parse_quantity(val, ydim)
            except UnitError as e:
                raise custom_error(e.message, e.hint, field=k) from None
            if y_sign == "positive" and not y > 0:
                raise custom_error(f"must be positive, got {val!r}", "write a value above zero", field=k)
            if y_sign == "nonneg" and y < 0:
                raise custom_error(f"must not be negative, got {val!r}", "write zero or a positive value", field=k)
            if y_max is not None and y > y_max:
                raise custom_error(f"must be at most {y_max:g}, got {val!r}", f"e.g. {example}", field=k)
            pts.append((x, y))
        pts.sort()
        for (a, _), (b, _) in zip(pts, pts[1:]):
            if b == a:
                raise custom_error(f"two entries for the same key {a:g}", "give each key once")
        return tuple(pts)

    return Annotated[
        Table,
        BeforeValidator(parse),
        WithJsonSchema(
            {
                "type": "object",
                "additionalProperties": {"type": ["string", "number"]},
                "description": description,
                "examples": [example],
            }
        ),
        Field(description=description, json_schema_extra={"examples": [example]}),
    ]


def _fraction(description: str, example: str, maximum: float | None = 1.0, sign: str = "nonneg"):
    return _qty("dimensionless", description, example, sign=sign, maximum=maximum)


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sections


class Kinetics(_M):
    j0: _qty("current_density", "exchange current density of one Mg electrode (Tafel observable)", "0.66 uA/cm2")
    j0_temperature: _qty(
        "temperature", "temperature at which j0 applies (room temperature of the Tafel test)", "22 degC", sign="any"
    )
    alpha: _fraction("anodic transfer coefficient", "0.5", sign="positive")
    electrons: int = Field(2, ge=1, le=4, description="electrons transferred, n (2 for Mg)")


class Cpe(_M):
    q: _special("cpe_q", "CPE coefficient Q in F s^(alpha-1), written as a capacitance")
    alpha: _fraction("CPE exponent (1 = ideal capacitor)", "0.9", sign="positive")


class Film(_M):
    resistance: _table(
        "cycles",
        "resistance",
        "film (SEI) resistance vs completed cycles, piecewise linear",
        "{0: 2.12 ohm, 10: 2.16 ohm, 200: 2.96 ohm}",
        y_sign="nonneg",
    )
    cpe: Cpe


class Impedance(_M):
    reference_temperature: _qty(
        "temperature", "temperature of rs, rct and the film values (T0 of Arrhenius)", "25 degC", sign="any"
    )
    rs: _qty("resistance", "series (electrolyte) resistance", "5.56 ohm")
    rct: _qty(
        "resistance", "charge-transfer resistance of the symmetric cell at the reference temperature", "3.34e5 ohm"
    )
    activation_energy: _special("molar_energy", "activation energy of 1/Rct (Arrhenius)")
    double_layer: Cpe
    film: Film


class Nucleation(_M):
    amplitude: _fraction("spike height as a fraction of the plateau", "30 %", maximum=None)
    decay: _qty("time", "decay time constant of the spike", "15 s")


class Symmetric(_M):
    hysteresis: _table(
        "current_density",
        "voltage",
        "plateau |V| vs current density (power law between points)",
        "{0.5 mA/cm2: 68 mV, 5 mA/cm2: 170 mV}",
    )
    hysteresis_growth: _fraction("relative plateau growth per completed cycle", "0.01 %", maximum=None)
    nucleation: Nucleation
    life: _table(
        "current_density",
        "time",
        "hours under current until the short (power law in j)",
        "{0.5 mA/cm2: 1610 h, 5 mA/cm2: 263 h}",
    )
    life_spread: _fraction("replicate spread of the life (log-normal sigma)", "4 %", maximum=None)
    rate_step_damage: _fraction(
        "life fraction used per e-fold step-up of current density above the highest current so far", "0.1", maximum=None
    )
    rate_step_window: _qty("time", "time over which a step-up's damage accrues", "10 min")
    short_resistance: _qty("resistance", "resistance of the cell once shorted", "1 ohm")
    ocp_spread: _qty("voltage", "replicate spread of the open-circuit offset", "0.3 mV", sign="nonneg")
    relaxation: _qty("time", "time constant of the voltage relaxation at open circuit after current", "30 s")


class CeTest(_M):
    plating_time: _qty("time", "plating time per cycle of the long-term CE test (capacity = j x time)", "1 h")
    cutoff: _qty("voltage", "strip cut-off of the long-term CE test", "1.2 V")


class Aurbach(_M):
    ce: _fraction("Aurbach average CE, (n Q_C + Q_S)/(n Q_C + Q_T)", "98.13 %", sign="positive")
    reservoir: _qty("areal_charge", "reservoir Q_T plated first", "5 mAh/cm2")
    cycles: int = Field(..., ge=1, description="number of cycles n")
    cycle_capacity: _qty("areal_charge", "capacity Q_C of each cycle", "0.5 mAh/cm2")
    current_density: _qty("current_density", "current density of the test", "0.5 mA/cm2")
    cutoff: _qty("voltage", "strip cut-off of the final strip", "1.0 V")


class AsymNucleation(_M):
    overpotential: _qty(
        "voltage", "extra plating overpotential at the start of plating on a bare substrate", "150 mV", sign="nonneg"
    )
    decay: _qty("time", "decay time constant of the nucleation dip", "20 s")
    capacity: _qty(
        "areal_charge", "plated capacity above which no nucleation dip appears (e-fold scale)", "0.05 mAh/cm2"
    )


class StripEnd(_M):
    width: _fraction(
        "fraction of the inventory over which the voltage rises at the end of a strip", "0.5 %", sign="positive"
    )
    potential: _qty("voltage", "potential the working electrode reaches when the plated Mg is exhausted", "2.0 V")


class Asymmetric(_M):
    ce: _table(
        "current_density",
        "dimensionless",
        "mean per-cycle CE of the long-term test vs current density",
        "{0.5 mA/cm2: 99.50 %, 3 mA/cm2: 99.20 %}",
        y_max=1.0,
    )
    ce_test: CeTest
    aurbach: Aurbach
    ce_cell_sd: _fraction("between-cell sd of the CE level", "0.088 %")
    ce_cycle_sd: _fraction("cycle-to-cycle sd of the CE", "0.1 %")
    cycle_life: _table(
        "current_density",
        "dimensionless",
        "cycles (of 1-h platings) until the CE collapses, power law in j",
        "{0.5 mA/cm2: 1630, 3 mA/cm2: 234}",
    )
    cycle_life_spread: _fraction("replicate spread of the cycle life (log-normal sigma)", "14 %", maximum=None)
    ce_after_life: _fraction("CE of a cell past its cycle life", "30 %")
    overpotential: _table(
        "current_density",
        "voltage",
        "overpotential of the Al/C working electrode",
        "{0.5 mA/cm2: 60 mV, 5 mA/cm2: 120 mV}",
    )
    nucleation: AsymNucleation
    strip_end: StripEnd
    substrate_ocv: _qty("voltage", "open-circuit voltage of Al/C without plated Mg", "1.5 V")

    @model_validator(mode="after")
    def _aurbach_below_long_term(self) -> "Asymmetric":
        from labctl.simulators.cells import interp_table

        ce_lt = float(interp_table(self.ce, self.aurbach.current_density, extrapolate=False))
        if self.aurbach.ce >= ce_lt:
            raise custom_error(
                f"aurbach.ce {self.aurbach.ce:.2%} must be below the long-term ce at the same current density "
                f"({ce_lt:.2%})",
                "the model attributes the lower Aurbach CE to corrosion of the reservoir; see docs/presets.md",
                field=("aurbach", "ce"),
            )
        return self


class Polarisation(_M):
    value: _qty("voltage", "charge/discharge voltage gap at 50 % capacity (dE)", "0.15 V")
    cycle: int = Field(..., ge=1, description="cycle at which value applies")
    c_rate: _fraction("C-rate at which value applies", "0.1", maximum=None, sign="positive")


class Plateaus(_M):
    upper: _qty("voltage", "upper Mo6S8 equilibrium plateau (first Mg site)", "1.15 V")
    lower: _qty("voltage", "lower Mo6S8 equilibrium plateau (second Mg site)", "1.00 V")
    split: _fraction("fraction of the capacity on the upper plateau", "40 %", sign="positive")


class FullCell(_M):
    first_capacity: _qty("specific_capacity", "first discharge capacity per gram of cathode", "54.01 mAh/g")
    best_capacity: _qty("specific_capacity", "best (activated) discharge capacity per gram of cathode", "98.40 mAh/g")
    activation_cycles: float = Field(..., gt=0, description="e-fold number of cycles of the capacity activation")
    capacity_spread: _fraction("replicate spread of the capacity (log-normal sigma)", "2 %", maximum=None)
    ce: _fraction("charge/discharge CE of each cycle", "99 %", sign="positive")
    ce_sd: _fraction("cycle-to-cycle sd of the CE", "0.2 %")
    polarisation: Polarisation
    cathode_polarisation: _qty("voltage", "the Mo6S8 electrode's own share of dE", "0.10 V", sign="nonneg")
    polarisation_growth: _fraction("relative growth per cycle of the anode share of dE", "0.2 %", maximum=None)
    polarisation_rate_exponent: _fraction("dE scales as (C-rate)^exponent", "0.5", maximum=None)
    plateaus: Plateaus
    theoretical_capacity: _qty("specific_capacity", "Mo6S8 theoretical capacity (defines 1C)", "128.8 mAh/g")
    cathode_mass: _qty("mass", "active cathode mass used when the potentiostat is given none", "2.534 mg")

    @model_validator(mode="after")
    def _checks(self) -> "FullCell":
        if self.best_capacity < self.first_capacity:
            raise custom_error(
                "best_capacity must not be below first_capacity",
                "the capacity activates from first to best",
                field="best_capacity",
            )
        if self.cathode_polarisation >= self.polarisation.value:
            raise custom_error(
                "cathode_polarisation must be below polarisation.value",
                "the anode's share is polarisation.value - cathode_polarisation",
                field="cathode_polarisation",
            )
        if self.plateaus.lower >= self.plateaus.upper:
            raise custom_error(
                "plateaus.lower must be below plateaus.upper", "e.g. {upper: 1.15 V, lower: 1.00 V}", field="plateaus"
            )
        return self


class Noise(_M):
    voltage: _qty("voltage", "sd of the voltage noise", "1 mV", sign="nonneg")
    current: _fraction("sd of the current noise, proportional", "0.02 %")
    current_floor: _qty("current", "sd of the current noise floor", "0.2 nA", sign="nonneg")
    impedance: _fraction("sd of the impedance noise, proportional (each of Z' and Z'')", "0.4 %")


_CIRCUIT_TEXT = re.compile(r"^[A-Za-z0-9_(),\-]+$")
_EIS_MODEL_EXAMPLE = "R0-p(R1,CPE1)-p(R2,CPE2)"


def _circuit_text(value: Any, field: Any = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise custom_error(
            f"an EIS model is a circuit string, got {value!r}", f"e.g. '{_EIS_MODEL_EXAMPLE}'", field=field
        )
    text = "".join(value.split())
    if not _CIRCUIT_TEXT.match(text) or text.count("(") != text.count(")"):
        raise custom_error(
            f"{value!r} is not a circuit string",
            f"elements joined by '-' (series) and p(a,b) (parallel), e.g. '{_EIS_MODEL_EXAMPLE}'",
            field=field,
        )
    return text


def _parse_eis_model(value: Any) -> str | tuple[tuple[int, str], ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        out: dict[int, str] = {}
        for k, v in value.items():
            if isinstance(k, bool) or (not isinstance(k, int) and not (isinstance(k, str) and k.strip().isdigit())):
                raise custom_error(f"key {k!r} is not a cycle number", "write {0: MODEL, 10: MODEL, ...}", field=k)
            out[int(k)] = _circuit_text(v, field=k)
        if 0 not in out:
            raise custom_error(
                "the models by cycle must start at cycle 0",
                "add the model of the fresh cell, e.g. {0: 'R0-p(R1,CPE1)', 1: ...}",
            )
        return tuple(sorted(out.items()))
    return _circuit_text(value)


EisModel = Annotated[
    str | tuple[tuple[int, str], ...] | None,
    BeforeValidator(_parse_eis_model),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}],
            "description": "circuit the cell's spectra are fitted with (impedance.py syntax), or a mapping "
            "completed cycles -> circuit (each applies from that cycle on)",
            "examples": [_EIS_MODEL_EXAMPLE, {0: "R0-p(R1,CPE1)", 1: _EIS_MODEL_EXAMPLE}],
        }
    ),
]


class CellInfo(_M):
    """What the simulated cell is: merged into the cell attributes of every run on this preset."""

    label: str | None = Field(None, min_length=1, description="short name of the cell in tables and plots")
    anode: str | None = Field(None, min_length=1, description="the anode (material, treatment) the preset simulates")
    eis_model: EisModel = Field(
        None,
        description="circuit the spectra are fitted with (impedance.py "
        "syntax), or {cycle: circuit}; without it the analysis chooses by F-test",
    )
    sei: bool | None = Field(
        None, description="whether the cell has an SEI (film) arc; used for the EIS model when eis_model is not given"
    )

    def attributes(self) -> dict[str, Any]:
        """The fields given, as cell attributes (``eis_model`` by cycle as a ``{cycle: circuit}`` dict)."""
        out: dict[str, Any] = {}
        for k in ("label", "anode", "eis_model", "sei"):
            v = getattr(self, k)
            if v is None:
                continue
            out[k] = dict(v) if isinstance(v, tuple) else v
        return out


class Preset(_M):
    """A simulator preset (all values SI floats after validation)."""

    name: str = Field(..., min_length=1, description="preset name")
    description: str = Field("", description="what cell this preset describes")
    kinetics: Kinetics
    impedance: Impedance
    symmetric: Symmetric
    asymmetric: Asymmetric
    full_cell: FullCell
    noise: Noise
    cell: CellInfo = Field(
        default_factory=CellInfo,
        description="what the simulated cell is (label, anode, EIS "
        "model, SEI): merged into the cell attributes of every run on this preset",
    )

    __input_keys__ = ("base",)


# --------------------------------------------------------------------------- loading


_TABLES = {
    ("symmetric", "hysteresis"),
    ("symmetric", "life"),
    ("asymmetric", "ce"),
    ("asymmetric", "cycle_life"),
    ("asymmetric", "overpotential"),
    ("impedance", "film", "resistance"),
    ("cell", "eis_model"),
}


def _merge(base: Any, over: Any, path: tuple = ()) -> Any:
    """Deep-merge ``over`` into ``base``; a table (``{x: y}`` field) is replaced whole."""
    if isinstance(base, dict) and isinstance(over, dict) and path not in _TABLES:
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v, path + (k,)) if k in base else v
        return out
    return over


def _named_path(name: str) -> Path | None:
    return available_presets().get(name)


def _read(path: Path, source: str) -> str:
    try:
        return decode_text(path.read_bytes(), source)
    except FileNotFoundError:
        raise ProtocolError.single(
            source, "preset file not found", f"{_available_hint()}; or give the path of a YAML file"
        ) from None
    except OSError as e:
        raise ProtocolError.single(source, f"cannot read the preset file: {e.strerror or e}") from None


def load_preset_text(text: str, source: str = "<preset>", _depth: int = 0) -> Preset:
    """Validate preset YAML ``text`` (``source`` names it in errors)."""
    data, positions = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ProtocolError.single(
            source,
            "a preset is a mapping of sections (kinetics:, impedance:, ...)",
            "start from a copy of an available preset (labctl schema --preset documents every field)",
            line=1,
            col=1,
        )
    if "base" in data:
        base = data.pop("base")
        names = available_presets()
        base_path = names.get(base) if isinstance(base, str) else None
        if base_path is None:
            line, col = positions.get(("base",), (None, None))
            hint = did_you_mean(str(base), names)
            raise ProtocolError.single(
                source,
                f"unknown base preset {base!r}",
                (hint + " " if hint else "") + _available_hint(),
                line=line,
                col=col,
                field="base",
            )
        base_data, _ = load_yaml(_read(base_path, str(base_path)), f"{base}.yaml")
        if "name" not in data:
            data["name"] = f"{base} (modified)"
        data = _merge(base_data, data)
    return validate_with_positions(Preset, data, positions, source)


def load_preset(name_or_path: "str | Path | Preset") -> Preset:
    """A preset by name (in a registered preset folder), by path to a YAML file, or as given."""
    if isinstance(name_or_path, Preset):
        return name_or_path
    s = str(name_or_path)
    named = _named_path(s) if isinstance(name_or_path, str) else None
    if named is not None:
        return _cached_named(s, named)
    p = Path(s).expanduser()
    if not p.exists() and p.suffix.lower() not in (".yaml", ".yml") and "/" not in s and "\\" not in s:
        hint = did_you_mean(s, available_presets())
        raise ProtocolError.single(
            s,
            f"unknown preset {s!r}",
            (hint + " " if hint else "") + f"{_available_hint()}; or give the path of a YAML file",
        )
    return load_preset_text(_read(p, s), s)


_BUILTIN_CACHE: dict[tuple[str, Path], Preset] = {}


def _cached_named(name: str, path: Path) -> Preset:
    key = (name, path)
    if key not in _BUILTIN_CACHE:
        _BUILTIN_CACHE[key] = load_preset_text(_read(path, str(path)), f"{name}.yaml")
    return _BUILTIN_CACHE[key]


def preset_json_schema() -> dict:
    """JSON schema of a preset file (for docs and editors)."""
    schema = copy.deepcopy(Preset.model_json_schema())
    schema.setdefault("properties", {})["base"] = {
        "type": "string",
        "examples": sorted(available_presets()),
        "description": "start from this preset (a name from a registered preset folder) and override only the "
        "fields given",
    }
    schema["title"] = "labctl simulator preset"
    return schema
