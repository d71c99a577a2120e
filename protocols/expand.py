"""``for_each`` loops, expanded before validation into one ``group`` per value.

::

    - for_each:
        as: T
        values: [25 degC, 30 degC]
        steps:
          - temperature: {setpoint: "{T}"}
          - eis: {}

becomes two ``group`` steps labelled ``T=25 degC`` and ``T=30 degC`` whose steps
have ``{T}`` replaced.  Values may be mappings (``values: [{j: 0.5 mA/cm2, q:
0.5 mAh/cm2}]``); then each key is a placeholder (``{j}``, ``{q}``).  A string
that is exactly one placeholder takes the value as it is; inside a longer
string the value's text is substituted.  Positions of the expanded data point at
the template, and errors name the value they came from.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from labctl.core.errors import Issue, PathAlias, did_you_mean, format_path
from labctl.core.yamlio import Positions

__all__ = ["expand_for_each"]

Path = tuple[Any, ...]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTAINERS = ("repeat", "group")
_FOR_EACH_KEYS = ["as", "values", "steps", "label"]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


class _Expander:
    def __init__(self, positions: Positions, source: str) -> None:
        self.old = positions
        self.new = Positions()
        self.aliases: list[PathAlias] = []
        self.issues: list[Issue] = []
        self.source = source
        # index of old positions by their first-level prefixes for quick copies
        self._all_paths = sorted(set(positions) | set(positions.key_positions), key=len)

    # ---------------------------------------------------------------- positions
    def copy_positions(self, old: Path, new: Path, *, subtree: bool = True, skip: Path | None = None) -> None:
        n = len(old)
        for p in self._all_paths:
            if p[:n] != old or (not subtree and len(p) != n):
                continue
            if skip is not None and p[: len(skip)] == skip:
                continue
            q = new + p[n:]
            if p in self.old:
                self.new[q] = self.old[p]
            if p in self.old.key_positions:
                self.new.key_positions[q] = self.old.key_positions[p]

    def issue(self, path: Path, message: str, hint: str, *, key: bool = False) -> None:
        pos = (self.old.key_positions.get(path) if key else None) or self.old.nearest(path)
        self.issues.append(Issue(self.source, pos[0], pos[1], format_path(path), message, hint))

    # ---------------------------------------------------------------- walking
    def steps(self, items: Any, old: Path, new: Path, notes: tuple[str, ...]) -> Any:
        """Expand a step list found at ``old`` (original coordinates), placed at ``new``."""
        if not isinstance(items, list):
            self.copy_positions(old, new)
            return items
        out: list[Any] = []
        for i, item in enumerate(items):
            op = old + (i,)
            if isinstance(item, dict) and len(item) == 1 and "for_each" in item:
                expanded = self.for_each(item["for_each"], op, new, len(out), notes)
                if expanded is None:
                    np = new + (len(out),)
                    self.copy_positions(op, np)
                    self._alias(np, op, notes)
                    out.append({"for_each": None})  # reported; validation skips it
                else:
                    out.extend(expanded)
                continue
            np = new + (len(out),)
            self._alias(np, op, notes)
            if isinstance(item, dict) and len(item) == 1:
                kind = next(iter(item))
                inner = item[kind]
                if kind in _CONTAINERS and isinstance(inner, dict) and "steps" in inner:
                    self.copy_positions(op, np, skip=op + (kind, "steps"))
                    self._copy_list_positions(op + (kind, "steps"), np + (kind, "steps"))
                    inner = dict(inner)
                    inner["steps"] = self.steps(inner["steps"], op + (kind, "steps"), np + (kind, "steps"), notes)
                    out.append({kind: inner})
                    continue
            self.copy_positions(op, np)
            out.append(item)
        return out

    def _copy_list_positions(self, old: Path, new: Path) -> None:
        if old in self.old:
            self.new[new] = self.old[old]
        if old in self.old.key_positions:
            self.new.key_positions[new] = self.old.key_positions[old]

    def _alias(self, new: Path, old: Path, notes: tuple[str, ...]) -> None:
        if new != old or notes:
            self.aliases.append(PathAlias(new, old, " / ".join(notes)))

    def for_each(self, spec: Any, op: Path, new_list: Path, start: int, notes: tuple[str, ...]) -> list[Any] | None:
        base = op + ("for_each",)
        ok = True
        if not isinstance(spec, dict):
            self.issue(
                base,
                "for_each needs a mapping with as, values and steps",
                "write e.g. for_each: {as: T, values: [25 degC, 30 degC], steps: [...]}",
            )
            return None
        for k in spec:
            if k not in _FOR_EACH_KEYS:
                dym = did_you_mean(str(k), _FOR_EACH_KEYS)
                self.issue(
                    base + (k,),
                    f"unknown key '{k}'",
                    (dym + " " if dym else "") + "valid keys: " + ", ".join(_FOR_EACH_KEYS),
                    key=True,
                )
                ok = False
        values = spec.get("values")
        steps = spec.get("steps")
        name = spec.get("as")
        label_t = spec.get("label")
        if "values" not in spec:
            self.issue(
                base,
                "missing required field 'values'",
                "the values to loop over, e.g. values: [25 degC, 30 degC]",
                key=True,
            )
            ok = False
        elif not isinstance(values, list) or not values:
            self.issue(base + ("values",), "values must be a non-empty list", "write e.g. values: [25 degC, 30 degC]")
            ok = False
        if "steps" not in spec:
            self.issue(base, "missing required field 'steps'", "the steps to run for each value", key=True)
            ok = False
        elif not isinstance(steps, list) or not steps:
            self.issue(base + ("steps",), "the step list is empty", "add at least one step, e.g. '- eis: {}'")
            ok = False
        if label_t is not None and not isinstance(label_t, str):
            self.issue(base + ("label",), "label must be text", 'write e.g. label: "T={T}"')
            ok = False
        mappings = isinstance(values, list) and values and all(isinstance(v, dict) for v in values)
        if isinstance(values, list) and values and not mappings:
            if any(isinstance(v, (dict, list)) for v in values):
                self.issue(
                    base + ("values",),
                    "values must be all plain values or all mappings",
                    "write e.g. [25 degC, 30 degC] or [{j: 1 mA/cm2, q: 1 mAh/cm2}, ...]",
                )
                ok = False
            elif name is None:
                self.issue(
                    base,
                    "missing required field 'as'",
                    'the placeholder name, e.g. as: T (then write "{T}" in the steps)',
                    key=True,
                )
                ok = False
        if name is not None and (not isinstance(name, str) or not _IDENT.match(name)):
            self.issue(
                base + ("as",),
                f"'as' must be a simple name like T or j, got {name!r}",
                "use letters, digits and _, starting with a letter",
            )
            ok = False
        if mappings and isinstance(values, list):
            for k, v in enumerate(values):
                for key in v:
                    if not isinstance(key, str) or not _IDENT.match(key):
                        self.issue(
                            base + ("values", k, key),
                            f"placeholder name {key!r} is not a simple name",
                            "use letters, digits and _, starting with a letter",
                            key=True,
                        )
                        ok = False
            if name is not None:
                self.issue(
                    base + ("as",),
                    "'as' is not used when the values are mappings",
                    "the mapping keys are the placeholders: remove 'as'",
                    key=True,
                )
                ok = False
        if not ok or not isinstance(values, list):
            return None
        # here values is a non-empty list, and name a str unless the values are mappings
        defined: list[str] = sorted({k for v in values for k in v}) if mappings else [str(name)]
        self._check_placeholders(steps, base + ("steps",), defined)
        if label_t is not None:
            self._check_placeholders(label_t, base + ("label",), defined)

        out: list[Any] = []
        for k, value in enumerate(values):
            env: dict[str, Any] = dict(value) if mappings else {str(name): value}
            if label_t is not None:
                label = _substitute(label_t, env)
                label = _text(label)
            else:
                label = ", ".join(f"{n}={_text(v)}" for n, v in env.items())
            np = new_list + (start + len(out),)
            sub_notes = notes + (label,)
            self._alias(np, op, sub_notes)
            self._alias(np + ("group",), base, sub_notes)
            self._alias(np + ("group", "steps"), base + ("steps",), sub_notes)
            for src, dst in ((op, np), (base, np + ("group",))):
                if src in self.old:
                    self.new[dst] = self.old[src]
                if src in self.old.key_positions:
                    self.new.key_positions[dst] = self.old.key_positions[src]
            vpos = self.old.get(base + ("values", k))
            if vpos:
                self.new[np + ("group", "label")] = vpos
            self._copy_list_positions(base + ("steps",), np + ("group", "steps"))
            body = _substitute(copy.deepcopy(steps), env)
            body = self.steps(body, base + ("steps",), np + ("group", "steps"), sub_notes)
            out.append({"group": {"label": label, "steps": body}})
        return out

    def _check_placeholders(self, node: Any, path: Path, defined: list[str]) -> None:
        if isinstance(node, dict):
            if len(node) == 1:
                ((k, v),) = node.items()
                if v is None and isinstance(k, str) and _IDENT.match(k) and k in defined:
                    return  # {T} unquoted: YAML read a one-key mapping; accepted as the placeholder
            for k, v in node.items():
                self._check_placeholders(v, path + (k,), defined)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._check_placeholders(v, path + (i,), defined)
        elif isinstance(node, str):
            for m in _PLACEHOLDER.finditer(node):
                if m.group(1) not in defined:
                    dym = did_you_mean(m.group(1), defined)
                    # nested for_each placeholders are checked by the inner loop
                    if self._inner_defines(path, m.group(1)):
                        continue
                    self.issue(
                        path,
                        f"unknown placeholder '{{{m.group(1)}}}'",
                        (dym + " " if dym else "") + "defined here: " + ", ".join("{" + d + "}" for d in defined),
                    )

    def _inner_defines(self, path: Path, name: str) -> bool:
        """Whether a for_each nested inside the template (on ``path``) defines ``name``."""
        node: Any = None
        # walk the original data held via positions is not possible; use the template data
        root = self._template_root
        node = root
        for seg in path:
            if isinstance(node, dict) and "for_each" in node and isinstance(node["for_each"], dict):
                fe = node["for_each"]
                if fe.get("as") == name:
                    return True
                vals = fe.get("values")
                if isinstance(vals, list) and any(isinstance(v, dict) and name in v for v in vals):
                    return True
            try:
                node = node[seg]
            except (KeyError, IndexError, TypeError):
                return False
        return False

    _template_root: Any = None


def _substitute(node: Any, env: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if len(node) == 1:
            ((k, v),) = node.items()
            if v is None and isinstance(k, str) and k in env:
                return copy.deepcopy(env[k])
        return {k: _substitute(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env) for v in node]
    if isinstance(node, str):
        m = _PLACEHOLDER.fullmatch(node.strip())
        if m and m.group(1) in env:
            return copy.deepcopy(env[m.group(1)])
        return _PLACEHOLDER.sub(lambda mm: _text(env[mm.group(1)]) if mm.group(1) in env else mm.group(0), node)
    return node


def expand_for_each(
    data: Any, positions: Positions, source: str
) -> tuple[Any, Positions, list[PathAlias], list[Issue]]:
    """Expand every ``for_each`` in the protocol's step lists.

    Returns the new data, its positions (pointing into the original text), path
    aliases (new path -> path as written, with the for_each value) and the issues
    found in malformed for_each blocks.
    """
    ex = _Expander(positions, source)
    ex._template_root = data
    if not isinstance(data, dict) or "steps" not in data:
        return data, positions, [], []
    out = dict(data)
    for key in data:
        if key != "steps":
            ex.copy_positions((key,), (key,))
    ex.new[()] = positions.get((), (1, 1))
    ex._copy_list_positions(("steps",), ("steps",))
    out["steps"] = ex.steps(data["steps"], ("steps",), ("steps",), ())
    return out, ex.new, ex.aliases, ex.issues
