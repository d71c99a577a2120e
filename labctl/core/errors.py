"""Errors that name the file, line, column and field, with a hint to fix them.

Every problem found in a protocol (or any YAML file labctl validates) becomes an
:class:`Issue`; a :class:`ProtocolError` carries all of them, so a user sees every
mistake at once.  ``str(err)`` is one line per issue::

    symmetric.yaml:12:34: steps[2].galvanostatic.current_density: '5 mA' is a current, not a current density (hint: ...)

:func:`validate_with_positions` runs a pydantic model on data from
:func:`labctl.core.yamlio.load_yaml` and maps each validation error back to the
line and column where the user wrote it.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

__all__ = [
    "Issue",
    "ProtocolError",
    "validate_with_positions",
    "custom_error",
    "issues_error",
    "format_path",
    "did_you_mean",
    "PathAlias",
    "input_keys",
]

Path = tuple[Any, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Issue:
    """One problem: where (``source:line:col``), which ``field``, what, and how to fix it.

    ``line``/``col`` are 1-based, or ``None`` when there is no position (e.g. a
    missing file).  ``field`` is the path as the user wrote it
    (``steps[2].galvanostatic.current_density``), ``""`` for the whole file.
    """

    source: str
    line: int | None
    col: int | None
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.col if self.col is not None else 1}"
        text = f"{where}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ProtocolError(Exception):
    """A protocol (or other labctl YAML file) that cannot be used; ``issues`` lists why."""

    def __init__(self, issues: Iterable[Issue] | Issue) -> None:
        if isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)

    @classmethod
    def single(
        cls,
        source: str,
        message: str,
        hint: str = "",
        *,
        line: int | None = None,
        col: int | None = None,
        field: str = "",
    ) -> "ProtocolError":
        return cls([Issue(source, line, col, field, message, hint)])


# --------------------------------------------------------------------------- helpers for validators


def custom_error(
    message: str, hint: str = "", field: str | Path | None = None, *, suppress: bool = False, at_key: bool = False
) -> PydanticCustomError:
    """An error to raise inside a pydantic validator that carries a hint.

    ``field`` (a key or a path relative to the model being validated) points the
    error at a particular field when raised from a model-level validator.
    ``suppress`` marks an error that only follows from another one already
    reported (it fails validation but is not shown).
    """
    ctx: dict[str, Any] = {"message": message, "hint": hint}
    if suppress:
        ctx["suppress"] = True
    if at_key:
        ctx["at_key"] = True  # point at the key rather than its value
    if field is not None:
        ctx["field"] = (field,) if isinstance(field, (str, int)) else tuple(field)
    return PydanticCustomError("labctl", "{message}", ctx)


def issues_error(issues: Sequence[tuple[str | Path | None, str, str]]) -> PydanticCustomError:
    """Several problems of one model at once: ``[(field, message, hint), ...]``."""
    items = [((f,) if isinstance(f, (str, int)) else (tuple(f) if f is not None else None), m, h) for f, m, h in issues]
    return PydanticCustomError("labctl", "{message}", {"message": items[0][1], "hint": items[0][2], "issues": items})


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"did you mean 'duration'?"`` or ``""``."""
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(word), opts, n=1, cutoff=0.6)
    if not close:
        lower = {o.lower(): o for o in opts}
        close = difflib.get_close_matches(str(word).lower(), list(lower), n=1, cutoff=0.6)
        close = [lower[c] for c in close]
    return f"did you mean '{close[0]}'?" if close else ""


def format_path(path: Sequence[Any]) -> str:
    """``('steps', 2, 'galvanostatic', 'x')`` -> ``steps[2].galvanostatic.x``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += ("." if out else "") + str(seg)
    return out


@dataclass(frozen=True)
class PathAlias:
    """Data produced from a template: paths under ``new`` were written under ``old``.

    ``note`` (e.g. ``"T=25 degC"``) says which template value produced them.
    """

    new: Path
    old: Path
    note: str = ""


# --------------------------------------------------------------------------- mapping pydantic errors


def _walk_data(data: Any, loc: Sequence[Any]) -> tuple[Path, bool]:
    """Turn a pydantic ``loc`` into a path in ``data``.

    Segments that are not in the data (union member tags, synthetic fields) are
    dropped, except a final key of a mapping (a missing or extra key).  Returns
    (path, complete) where ``complete`` means every segment was found.
    """
    node = data
    path: list[Any] = []
    complete = True
    for i, seg in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, Mapping):
            if seg in node:
                path.append(seg)
                node = node[seg]
                continue
            if isinstance(seg, int) and str(seg) in node:
                path.append(str(seg))
                node = node[str(seg)]
                continue
            if last:
                path.append(seg)
                complete = False
            continue  # a tag pydantic inserted, or a key the model computed
        if isinstance(node, list) and isinstance(seg, int):
            if 0 <= seg < len(node):
                path.append(seg)
                node = node[seg]
                continue
            complete = False
            continue
        if node is None and last:  # 'key:' left empty: treated as an empty mapping
            path.append(seg)
            complete = False
            break
        # a scalar: what follows is the model's own structure, not the user's
        complete = False
        break
    return tuple(path), complete


def _nearest(positions: Mapping[Path, tuple[int, int]], path: Path) -> tuple[int | None, int | None]:
    p = tuple(path)
    while True:
        if p in positions:
            return positions[p]
        if not p:
            return (None, None)
        p = p[:-1]


def _key_positions(positions: Any) -> Mapping[Path, tuple[int, int]]:
    return getattr(positions, "key_positions", None) or {}


def _apply_aliases(path: Path, aliases: Sequence[PathAlias]) -> tuple[Path, list[str]]:
    """Map a path in expanded data back to where the user wrote it (longest alias wins)."""
    best: PathAlias | None = None
    for a in aliases:
        if path[: len(a.new)] == a.new and (best is None or len(a.new) > len(best.new)):
            best = a
    if best is None:
        return path, []
    return best.old + path[len(best.new) :], ([best.note] if best.note else [])


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types a field annotation can hold (Annotated/Optional/Union/list stripped once)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for a in typing.get_args(tp):
            out.extend(_unwrap(a))
        return out
    return [tp]


def _input_keys(model: type[BaseModel]) -> list[str]:
    keys: list[str] = []
    for name, f in model.model_fields.items():
        if f.exclude or (
            f.json_schema_extra is not None
            and isinstance(f.json_schema_extra, dict)
            and f.json_schema_extra.get("internal")
        ):
            continue
        alias = f.validation_alias if isinstance(f.validation_alias, str) else (f.alias or name)
        keys.append(alias)
    extra = getattr(model, "__input_keys__", None)
    if extra:
        keys.extend(k for k in extra if k not in keys)
    hidden = getattr(model, "__hidden_keys__", ())
    keys = [k for k in keys if k not in hidden]
    if "label" in keys:  # the common optional key last
        keys.remove("label")
        keys.append("label")
    return keys


def input_keys(model: type[BaseModel]) -> list[str]:
    """The keys a file may write for ``model`` (aliases, not hidden ones), ``label`` last: for hints."""
    return _input_keys(model)


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (best effort)."""
    candidates: list[Any] = [model]
    for seg in path:
        nxt: list[Any] = []
        for c in candidates:
            for t in _unwrap(c):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    step_kinds = getattr(t, "__step_kind__", None)
                    f = None
                    for name, fi in t.model_fields.items():
                        alias = fi.validation_alias if isinstance(fi.validation_alias, str) else (fi.alias or name)
                        if alias == seg:
                            f = fi
                            break
                    if f is not None:
                        nxt.append(f.annotation)
                    elif step_kinds == seg:
                        nxt.append(t)
                elif typing.get_origin(t) in (dict, Mapping) and isinstance(seg, str):
                    args = typing.get_args(t)
                    if len(args) == 2:
                        nxt.append(args[1])  # a mapping of names to models (e.g. a station's channels)
                elif typing.get_origin(t) in (list, tuple, Sequence) and isinstance(seg, int):
                    args = typing.get_args(t)
                    if args:
                        nxt.append(
                            args[0]
                            if typing.get_origin(t) is not tuple or len(args) == 2 and args[1] is Ellipsis
                            else args[min(seg, len(args) - 1)]
                        )
        if not nxt:
            return None
        # a step: the key selects the union member
        chosen = []
        for c in nxt:
            for t in _unwrap(c):
                if isinstance(t, type) and issubclass(t, BaseModel) and getattr(t, "__step_kind__", None) == seg:
                    chosen.append(t)
        candidates = chosen or nxt
    for c in candidates:
        for t in _unwrap(c):
            if isinstance(t, type) and issubclass(t, BaseModel):
                return t
    return None


def _pydantic_message(err: Mapping[str, Any]) -> tuple[str, str]:
    """A user-facing message and hint for a built-in pydantic error."""
    typ = err.get("type", "")
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx") or {}
    inp = err.get("input")
    if typ == "missing":
        return "missing required field", ""
    if typ in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        if exc is not None and hasattr(exc, "hint"):  # e.g. a UnitError raised in a validator
            return str(getattr(exc, "message", exc)), str(exc.hint or "")
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        return msg, ""
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        hint = ""
        opts = [o.strip().strip("'\"") for o in str(expected).replace(" or ", ", ").split(",") if o.strip()]
        if isinstance(inp, str):
            hint = did_you_mean(inp, opts)
        return f"{inp!r} is not allowed here", (hint + " " if hint else "") + f"use one of: {', '.join(opts)}"
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {inp!r}", "write e.g. 10"
    if typ == "invalid_key":
        return "keys must be names", "write keys as words, e.g. duration"
    if typ in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number, got {inp!r}", "write e.g. 1.5"
    if typ in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {inp!r}", "write true or false"
    if typ in ("string_type",):
        return f"expected text, got {inp!r}", 'quote it if YAML reads it as something else, e.g. "1.0"'
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return (
            f"expected a mapping (key: value pairs), got {inp!r}",
            "write e.g. {key: value} or indented key: value lines",
        )
    if typ in ("list_type", "tuple_type"):
        return f"expected a list, got {inp!r}", "write e.g. [a, b] or one '- item' per line"
    bounds = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
    if typ in bounds:
        bound = ctx.get(bounds[typ])
        words = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}[bounds[typ]]
        text = msg[0].lower() + msg[1:] if msg else msg
        return f"{text}, got {inp!r}", (f"write a value {words} {bound}" if bound is not None else "")
    if typ in ("too_short", "too_long"):
        return msg[0].lower() + msg[1:] if msg else msg, ("add items" if typ == "too_short" else "remove items")
    return (msg[0].lower() + msg[1:]) if msg else typ, ""


def issues_from_validation_error(
    exc: ValidationError,
    model_cls: type[BaseModel],
    data: Any,
    positions: Mapping[Path, tuple[int, int]],
    source: str,
    aliases: Sequence[PathAlias] = (),
) -> list[Issue]:
    """Map every error of ``exc`` to an :class:`Issue` with line, column and field."""
    out: list[Issue] = []
    keypos = _key_positions(positions)
    errors = exc.errors(include_url=False)
    # a typo'd key also shows up as the real key missing: report only the typo
    suggested: set[Path] = set()
    for err in errors:
        if err.get("type") == "extra_forbidden":
            path, _ = _walk_data(data, tuple(err.get("loc", ())))
            model = _model_at(model_cls, path[:-1])
            if model is not None and path:
                dym = did_you_mean(str(path[-1]), _input_keys(model))
                if dym:
                    suggested.add(path[:-1] + (dym.split("'")[1],))
    for err in errors:
        loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        typ = err.get("type", "")
        if typ == "labctl":
            if ctx.get("suppress"):
                continue  # a consequence of an error reported elsewhere
            items = ctx.get("issues") or [
                (ctx.get("field"), ctx.get("message", err.get("msg", "")), ctx.get("hint", ""))
            ]
            for fld, message, hint in items:
                full = loc + (tuple(fld) if fld else ())
                out.append(
                    _issue_at(
                        full,
                        message,
                        hint,
                        data,
                        positions,
                        keypos,
                        source,
                        aliases,
                        prefer_key=bool(ctx.get("at_key")),
                    )
                )
            continue
        if typ == "extra_forbidden":
            path, _ = _walk_data(data, loc)
            bad = path[-1] if path else loc[-1]
            parent_model = _model_at(model_cls, path[:-1])
            hint = ""
            if parent_model is not None:
                valid = _input_keys(parent_model)
                dym = did_you_mean(str(bad), valid)
                hint = (dym + " " if dym else "") + "valid keys: " + ", ".join(valid)
            out.append(
                _issue_at(loc, f"unknown key '{bad}'", hint, data, positions, keypos, source, aliases, prefer_key=True)
            )
            continue
        message, hint = _pydantic_message(err)
        if typ == "missing":
            path, _ = _walk_data(data, loc)
            if path in suggested:
                continue
            parent_model = _model_at(model_cls, path[:-1])
            field_name = path[-1] if path else (loc[-1] if loc else "")
            message = f"missing required field '{field_name}'"
            if parent_model is not None:
                f = _field_by_alias(parent_model, str(field_name))
                if f is not None and f.description:
                    hint = f.description.rstrip(".")
                    ex = _examples(f)
                    if ex:
                        hint += f", e.g. {field_name}: {ex[0]}"
            out.append(
                _issue_at(loc, message, hint, data, positions, keypos, source, aliases, prefer_key=True, missing=True)
            )
            continue
        out.append(_issue_at(loc, message, hint, data, positions, keypos, source, aliases, prefer_key=False))
    return out


def _examples(f: Any) -> list[Any]:
    """Examples of a field: from its json_schema_extra or an annotated WithJsonSchema."""
    if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("examples"):
        return list(f.json_schema_extra["examples"])
    stack = list(f.metadata) + [f.annotation]
    while stack:
        m = stack.pop(0)
        js = getattr(m, "json_schema", None)
        if isinstance(js, dict) and js.get("examples"):
            return list(js["examples"])
        if typing.get_origin(m) is typing.Annotated:
            stack.extend(typing.get_args(m)[1:])
        elif typing.get_origin(m) in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(m))
    return []


def _field_by_alias(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, f in model.model_fields.items():
        alias = f.validation_alias if isinstance(f.validation_alias, str) else (f.alias or name)
        if alias == key:
            return f
    return None


def _issue_at(
    loc: Path,
    message: str,
    hint: str,
    data: Any,
    positions: Mapping[Path, tuple[int, int]],
    keypos: Mapping[Path, tuple[int, int]],
    source: str,
    aliases: Sequence[PathAlias],
    *,
    prefer_key: bool,
    missing: bool = False,
) -> Issue:
    path, _complete = _walk_data(data, loc)
    if missing:
        # point at the key that names the mapping lacking the field
        parent = path[:-1]
        line, col = keypos.get(parent) or _nearest(positions, parent)
    elif prefer_key and path in keypos:
        line, col = keypos[path]
    else:
        line, col = _nearest(positions, path)
        if line is None:
            line, col = _nearest(keypos, path)
    shown, notes = _apply_aliases(path, aliases)
    if notes:
        message = f"{message} [in for_each value {' / '.join(notes)}]"
    return Issue(source, line, col, format_path(shown), message, hint)


def merge_issues(issues: Iterable[Issue]) -> list[Issue]:
    """Drop duplicates; merge issues that differ only in the for_each value they came from."""
    out: list[Issue] = []
    index: dict[tuple, int] = {}
    notes: dict[int, list[str]] = {}
    for iss in issues:
        base, note = iss.message, None
        marker = " [in for_each value "
        if base.endswith("]") and marker in base:
            base, note = base[: base.rindex(marker)], base[base.rindex(marker) + len(marker) : -1]
        key = (iss.source, iss.line, iss.col, iss.field, base, iss.hint)
        if key in index:
            k = index[key]
            if note and note not in notes[k]:
                notes[k].append(note)
            continue
        index[key] = len(out)
        notes[len(out)] = [note] if note else []
        out.append(Issue(iss.source, iss.line, iss.col, iss.field, base, iss.hint))
    final = []
    for k, iss in enumerate(out):
        if notes[k]:
            label = "value" if len(notes[k]) == 1 else "values"
            iss = Issue(
                iss.source,
                iss.line,
                iss.col,
                iss.field,
                f"{iss.message} [in for_each {label} {'; '.join(notes[k])}]",
                iss.hint,
            )
        final.append(iss)
    return final


def sort_issues(issues: Iterable[Issue]) -> list[Issue]:
    return sorted(issues, key=lambda i: (i.line if i.line is not None else 0, i.col if i.col is not None else 0))


def validate_with_positions(
    model_cls: type[ModelT],
    data: Any,
    positions: Mapping[Path, tuple[int, int]],
    source: str,
    context: Any = None,
    *,
    aliases: Sequence[PathAlias] = (),
    extra_issues: Sequence[Issue] = (),
) -> ModelT:
    """``model_cls.model_validate(data)``; on failure a :class:`ProtocolError` with positions.

    ``positions`` comes from :func:`labctl.core.yamlio.load_yaml`.  Each pydantic
    error's ``loc`` is mapped to the nearest position the file has; unknown keys
    become ``unknown key 'x'`` with a did-you-mean hint listing the valid keys.
    ``extra_issues`` (found before validation) are reported together with these.
    """
    try:
        result = model_cls.model_validate(data, context=context)
    except ValidationError as exc:
        found = issues_from_validation_error(exc, model_cls, data, positions, source, aliases)
        # where an earlier pass already reported a problem, its consequences are noise
        taken = {(i.line, i.col) for i in extra_issues if i.line is not None}
        issues = list(extra_issues) + [i for i in found if (i.line, i.col) not in taken]
        raise ProtocolError(sort_issues(merge_issues(issues))) from None
    if extra_issues:
        raise ProtocolError(sort_issues(merge_issues(extra_issues)))
    return result
