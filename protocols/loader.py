"""Loading protocol files: YAML -> for_each expansion -> validated :class:`Protocol`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labctl.core.errors import Issue, ProtocolError, did_you_mean, validate_with_positions
from labctl.core.folders import FolderRegistry
from labctl.core.limits import ResourceLimits
from labctl.core.yamlio import Positions, load_yaml

from .base import StepBase
from .cell import circuit_syntax_error
from .expand import expand_for_each
from .limits import count_expanded_steps, prescan_text
from .protocol import Protocol
from .steps import INPUT_STEP_KINDS, STEP_TYPES
from .structure import GroupStep, RepeatStep

__all__ = [
    "ENTRY_POINT_GROUP",
    "json_schema",
    "library",
    "library_dirs",
    "load_protocol",
    "load_protocol_text",
    "register_library_dir",
    "unregister_library_dir",
]

ENTRY_POINT_GROUP = "labctl.protocol_libraries"
_FOLDERS = FolderRegistry(ENTRY_POINT_GROUP, "protocol library")


def register_library_dir(folder: str | Path) -> Path:
    """Make the protocols of ``folder`` (``NAME.yaml``) loadable by name; searched first."""
    return _FOLDERS.register(folder)


def unregister_library_dir(folder: str | Path) -> None:
    """Undo :func:`register_library_dir`."""
    _FOLDERS.unregister(folder)


def library_dirs() -> list[Path]:
    """The protocol library folders (entry-point group ``labctl.protocol_libraries`` and registered ones)."""
    return _FOLDERS.folders()


def library() -> dict[str, Path]:
    """The protocols of every registered library: name (file stem) -> path."""
    return _FOLDERS.files()


def load_protocol_text(text: str, source: str = "<string>", *, max_steps: int | None = None) -> Protocol:
    """Validate protocol ``text``; errors name ``source``, line, column and field.

    Raises :class:`ProtocolError` listing every problem found.  A protocol of more than
    ``max_steps`` steps (default :class:`labctl.core.limits.ResourceLimits`, ``$LABCTL_MAX_STEPS``)
    is refused before it is parsed or expanded (:mod:`.limits`).
    """
    if not isinstance(text, str):
        raise TypeError("load_protocol_text expects the file's text (str)")
    if max_steps is None:
        max_steps = ResourceLimits.from_env().max_steps
    prescan_text(text, source, max_steps)
    data, positions = load_yaml(text, source)
    if data is None:
        raise ProtocolError.single(
            source,
            "the file is empty",
            "a protocol needs at least name, cell and steps (see docs/protocols.md)",
            line=1,
            col=1,
        )
    if not isinstance(data, dict):
        line, col = positions.get((), (1, 1))
        raise ProtocolError.single(
            source,
            f"a protocol is a mapping of keys (name, cell, steps, ...), got {type(data).__name__}",
            "start the file with 'name: ...'",
            line=line,
            col=col,
        )
    count_expanded_steps(data, positions, source, max_steps)
    expanded, new_positions, aliases, pre_issues = expand_for_each(data, positions, source)
    pre_issues = [*pre_issues, *_circuit_issues(data, positions, text, source)]
    protocol = validate_with_positions(
        Protocol, expanded, new_positions, source, context={"from_file": True}, aliases=aliases, extra_issues=pre_issues
    )
    _set_positions(protocol.steps, ("steps",), new_positions)
    protocol.text = text
    protocol.source = source
    return protocol


def _circuit_issues(data: dict[Any, Any], positions: Positions, text: str, source: str) -> list[Issue]:
    """A malformed ``cell.eis_model``, pointed at the offending character of the file.

    (The model refuses it too, without a position: this is the error shown.)
    """
    cell = data.get("cell")
    value = cell.get("eis_model") if isinstance(cell, dict) else None
    if not isinstance(value, str) or not value.strip():
        return []  # absent, or not text: the model reports it
    problem = circuit_syntax_error(value)
    if problem is None:
        return []
    at, message, hint = problem
    line, col = positions.get(("cell", "eis_model")) or positions.nearest(("cell", "eis_model"))
    if line is not None and col is not None:
        lines = text.splitlines()
        row = lines[line - 1] if 0 < line <= len(lines) else ""
        start = col - 1
        if row[start : start + 1] in ("'", '"'):
            start += 1  # the value begins after its opening quote
        found = row.find(value, start) if value else -1
        if found >= 0:  # the value as written on this line: point at the character
            col = found + at + 1
    return [Issue(source, line, col, "cell.eis_model", message, hint)]


def _set_positions(steps: Sequence[StepBase], path: tuple[Any, ...], positions: Positions) -> None:
    for i, step in enumerate(steps):
        p = path + (i,)
        line, col = positions.key_positions.get(p) or positions.get(p) or positions.nearest(p)
        step.line = line or 0
        step.col = col or 0
        if isinstance(step, (RepeatStep, GroupStep)):
            _set_positions(step.steps, p + (step.kind, "steps"), positions)


def load_protocol(path: str | Path, *, max_steps: int | None = None) -> Protocol:
    """Load and validate a protocol file.

    ``path`` may also be the name of a protocol in the library
    (``load_protocol("symmetric-0.5mA")``) when no such file exists.  ``max_steps``: see
    :func:`load_protocol_text`.
    """
    p = Path(path)
    if not p.exists():
        lib = library()
        name = p.name[:-5] if p.name.endswith(".yaml") else p.name
        if p.parent == Path(".") and name in lib:
            p = lib[name]
        else:
            dym = did_you_mean(name, list(lib))
            hint = "check the path"
            if dym:
                hint += f"; the library has '{dym.split(chr(39))[1]}'"
            hint += f"; library protocols: {_FOLDERS.describe()}"
            raise ProtocolError([Issue(str(path), None, None, "", "no such file", hint)])
    if p.is_dir():
        raise ProtocolError(
            [Issue(str(path), None, None, "", "is a directory, not a protocol file", "give the path of a .yaml file")]
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ProtocolError(
            [Issue(str(path), None, None, "", f"cannot read the file: {exc.strerror or exc}", "check the permissions")]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ProtocolError(
            [
                Issue(
                    str(path),
                    line,
                    col,
                    "",
                    "the file is not UTF-8 text",
                    "save it as UTF-8 (the text editor's encoding setting)",
                )
            ]
        ) from None
    return load_protocol_text(text, str(path), max_steps=max_steps)


# --------------------------------------------------------------------------- JSON schema

_STEP_NAMES = {cls.__name__: kind for kind, cls in STEP_TYPES.items()}

_FOR_EACH_SCHEMA: dict[str, Any] = {
    "title": "ForEach",
    "description": (
        'Run the same steps once per value, substituting the placeholder "{name}" in the steps\' text. '
        "Expanded at load time into one group per value (labelled e.g. 'T=25 degC')."
    ),
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "as": {
            "type": "string",
            "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
            "description": 'placeholder name for plain values (write "{T}" in the steps)',
            "examples": ["T"],
        },
        "values": {
            "type": "array",
            "minItems": 1,
            "description": "the values to loop over: plain values, or mappings whose keys are the placeholders",
            "items": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "object"}]},
            "examples": [["25 degC", "30 degC"], [{"j": "1 mA/cm2", "q": "1 mAh/cm2"}]],
        },
        "label": {
            "type": "string",
            "description": "label of each group, may use placeholders (default 'T=25 degC')",
            "examples": ["T={T}"],
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/Step"},
            "description": "the steps run for each value",
        },
    },
    "required": ["values", "steps"],
}


def _replace_step_unions(node: Any) -> Any:
    if isinstance(node, dict):
        for key in ("oneOf", "anyOf"):
            alts = node.get(key)
            if (
                isinstance(alts, list)
                and alts
                and all(isinstance(a, dict) and a.get("$ref", "").rsplit("/", 1)[-1] in _STEP_NAMES for a in alts)
            ):
                rest = {k: v for k, v in node.items() if k not in (key, "discriminator")}
                rest["$ref"] = "#/$defs/Step"
                return rest
        return {k: _replace_step_unions(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_step_unions(v) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the protocol *file* format, for editors.

    Quantities are strings with units (``pattern`` plus ``examples``); steps are
    one-key mappings (``- rest: {duration: 6 h}``).
    """
    schema = copy.deepcopy(Protocol.model_json_schema(by_alias=True, mode="validation"))
    schema = _replace_step_unions(schema)
    defs = schema.setdefault("$defs", {})
    wrapped = []
    for cls_name, kind in _STEP_NAMES.items():
        if cls_name not in defs:
            continue
        defs[cls_name].pop("title", None)
        wrapped.append(
            {
                "type": "object",
                "title": kind,
                "description": defs[cls_name].get("description", ""),
                "properties": {kind: {"anyOf": [{"$ref": f"#/$defs/{cls_name}"}, {"type": "null"}]}},
                "required": [kind],
                "additionalProperties": False,
            }
        )
    defs["ForEach"] = copy.deepcopy(_FOR_EACH_SCHEMA)
    wrapped.append(
        {
            "type": "object",
            "title": "for_each",
            "description": _FOR_EACH_SCHEMA["description"],
            "properties": {"for_each": {"$ref": "#/$defs/ForEach"}},
            "required": ["for_each"],
            "additionalProperties": False,
        }
    )
    defs["Step"] = {
        "description": "one step: a mapping with a single key, the step kind (" + ", ".join(INPUT_STEP_KINDS) + ")",
        "oneOf": wrapped,
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "labctl protocol"
    schema["description"] = (
        "A labctl protocol file. Quantities are written with units (0.5 mA/cm2, 1 h, 1.2 V). "
        "Current sign: positive = anodic at the working electrode (stripping), negative = cathodic (plating)."
    )
    return schema
