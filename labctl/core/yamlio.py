"""Load YAML safely, remembering where every key and value was written.

``load_yaml(text, source)`` returns ``(data, positions)``: ``data`` is plain Python
(dict, list, str, int, float, bool, None; nothing is ever constructed from tags
or executed) and ``positions`` maps a path such as
``('steps', 2, 'galvanostatic', 'current_density')`` to the 1-based
``(line, col)`` of its *value*.  ``positions.key_positions`` maps the same paths
to where the *key* was written (for list items: the item itself).  Syntax
errors, duplicate keys and tags become a :class:`~protocols.errors.ProtocolError`
that names the line and column.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import Issue, ProtocolError

__all__ = ["load_yaml", "Positions", "MAX_NODES"]

Path = tuple[Any, ...]

MAX_NODES = 200_000
#: Deepest nesting of mappings and lists accepted (a protocol nests 3 levels per group or repeat).
MAX_DEPTH = 64
"""Refuse documents that expand (through aliases) to more nodes than this."""


class Positions(dict):
    """``path -> (line, col)`` of values (1-based), plus ``key_positions`` for keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_positions: dict[Path, tuple[int, int]] = {}

    def key(self, path: Path) -> tuple[int, int] | None:
        """Where the key of ``path`` was written (falls back to the value)."""
        return self.key_positions.get(tuple(path)) or self.get(tuple(path))

    def nearest(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """Position of ``path`` or of its closest ancestor that has one."""
        p = tuple(path)
        while True:
            hit = (self.key_positions.get(p) if key else None) or self.get(p)
            if hit:
                return hit
            if not p:
                return (None, None)
            p = p[:-1]


_HINTS = [
    (
        "but got '['",
        "inside { } or [ ], text containing [ ] { } or ',' must be quoted, e.g. \"0.5 M Mg[B(hfip)4]2 in DME\"",
    ),
    ("but got '{'", "inside { } or [ ], text containing [ ] { } or ',' must be quoted"),
    ("found character '\\t'", "indent with spaces, not tabs"),
    (
        "mapping values are not allowed here",
        "a value containing ': ' must be quoted, or the indentation is off (check this line and the one above)",
    ),
    ("found duplicate key", "each key may appear once per mapping: remove or rename one"),
    ("expected ',' or ']'", "a '[' list is not closed: add the missing ']' (or a ',' between items)"),
    ("expected ',' or '}'", "a '{' mapping is not closed: add the missing '}' (or a ',' between entries)"),
    ("could not find expected ':'", "a key needs ': ' after it (colon and space), or a quote is not closed"),
    ("did not find expected key", "the indentation is off: keys of one mapping must line up"),
    ("did not find expected '-' indicator", "list items ('- ...') of one list must line up"),
    ("found unexpected end of stream", "a quote is not closed"),
    ("while scanning a quoted scalar", "a quote is not closed"),
    ("found undefined alias", "an '*alias' refers to an '&anchor' that is not defined above it"),
    ("expected <block end>", "the indentation is off: check that this line lines up with its siblings"),
]


def _syntax_issue(exc: MarkedYAMLError | YAMLError, source: str, text: str | None = None) -> Issue:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    position = getattr(exc, "position", None)  # a reader error (a character YAML refuses): an offset
    if mark is None and isinstance(position, int) and text is not None:
        at = min(max(position, 0), len(text))
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        character = getattr(exc, "character", None)
        if isinstance(character, int):
            return Issue(
                source,
                line,
                col,
                "",
                f"YAML syntax error: the character U+{character:04X} is not allowed in a YAML file",
                "remove it (a control character is invisible in most editors; retype the line)",
            )
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None) or ""
    text = f"{context} {problem}"
    hint = ""
    for needle, h in _HINTS:
        if needle in text:
            hint = h
            break
    cmark = getattr(exc, "context_mark", None)
    if cmark is not None and mark is not None and cmark.line != mark.line and "duplicate" not in text:
        extra = f"it started at line {cmark.line + 1}, col {cmark.column + 1}"
        hint = f"{hint}; {extra}" if hint else extra
    if "duplicate" in text and cmark is not None:
        hint += f" (first written at line {cmark.line + 1})"
    problem = problem.replace('"', "'")
    return Issue(source, line, col, "", f"YAML syntax error: {problem}", hint)


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.positions = Positions()
        self.issues: list[Issue] = []
        self.nodes = 0
        self.stack: set[int] = set()

    def fail(self, pos: tuple[int, int] | None, path: Path, message: str, hint: str) -> None:
        from .errors import format_path

        line, col = pos if pos else (None, None)
        self.issues.append(Issue(self.source, line, col, format_path(path), message, hint))

    def build(self, node: Any, path: Path) -> Any:
        if len(path) > MAX_DEPTH:
            line, col = self.positions.get(path) or self.positions.nearest(path)
            raise ProtocolError.single(
                self.source,
                f"the file nests more than {MAX_DEPTH} levels deep",
                "flatten it: no protocol, preset or station needs this much nesting",
                line=line or 1,
                col=col or 1,
            )
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ProtocolError.single(
                self.source,
                f"document too large (more than {MAX_NODES} values after expanding aliases)",
                "write the values out, or use fewer nested '*alias' references",
            )
        if isinstance(node, TaggedScalar):
            tag = str(getattr(node.tag, "value", node.tag) or "")
            std = tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else None
            text = str(node.value)
            try:
                if std == "str":
                    return text
                if std == "int":
                    return int(text.replace("_", ""), 0)
                if std == "float":
                    return float(text.replace("_", ""))
                if std == "bool":
                    return text.strip().lower() == "true"
                if std == "null":
                    return None
            except ValueError:
                self.fail(
                    self.positions.get(path),
                    path,
                    f"{text!r} is not a valid !!{std}",
                    "remove the tag or fix the value",
                )
                return None
        if isinstance(node, TaggedScalar) or (
            isinstance(node, (CommentedMap, CommentedSeq))
            and getattr(getattr(node, "tag", None), "value", None)
            and str(node.tag.value) not in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
        ):
            tag = node.tag.value if hasattr(node.tag, "value") else node.tag
            self.fail(
                self.positions.get(path),
                path,
                f"YAML tag '{tag}' is not allowed",
                "remove the '!' tag; labctl files hold plain values only",
            )
            return None
        if isinstance(node, CommentedMap):
            if id(node) in self.stack:
                self.fail(
                    self.positions.get(path),
                    path,
                    "a recursive alias refers to itself",
                    "remove the '*alias' that points back to its own '&anchor'",
                )
                return None
            self.stack.add(id(node))
            out: dict[Any, Any] = {}
            for k, v in node.items():
                key = self._scalar(k)
                try:
                    hash(key)
                except TypeError:
                    key = str(key)
                sub = path + (key,)
                try:
                    kl, kc, vl, vc = node.lc.data[k]
                    self.positions.key_positions[sub] = (kl + 1, kc + 1)
                    if v is None and vl != kl:
                        vl, vc = kl, kc  # 'key:' with nothing after it: ruamel points at the next token
                    self.positions[sub] = (vl + 1, vc + 1)
                except (KeyError, TypeError, ValueError):
                    # merged ('<<') keys: no own position; use the mapping's
                    if path in self.positions:
                        self.positions.setdefault(sub, self.positions[path])
                out[key] = self.build(v, sub)
            self.stack.discard(id(node))
            return out
        if isinstance(node, CommentedSeq):
            if id(node) in self.stack:
                self.fail(
                    self.positions.get(path),
                    path,
                    "a recursive alias refers to itself",
                    "remove the '*alias' that points back to its own '&anchor'",
                )
                return None
            self.stack.add(id(node))
            items = []
            for i, v in enumerate(node):
                sub = path + (i,)
                try:
                    line, col = node.lc.data[i]
                    self.positions[sub] = (line + 1, col + 1)
                    self.positions.key_positions[sub] = (line + 1, col + 1)
                except (KeyError, TypeError, ValueError, IndexError):
                    if path in self.positions:
                        self.positions.setdefault(sub, self.positions[path])
                items.append(self.build(v, sub))
            self.stack.discard(id(node))
            return items
        return self._scalar(node)

    @staticmethod
    def _scalar(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool):
            return bool(v)
        # ruamel's ScalarBoolean subclasses int; check before int
        if type(v).__name__ == "ScalarBoolean":
            return bool(v)
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return float(v)
        if isinstance(v, str):
            return str(v)
        if isinstance(v, (bytes, bytearray)):
            return v.decode("utf-8", "replace")
        return str(v)  # dates and other YAML 1.2 core scalars: keep the text form


_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> tuple[int, int] | None:
    """Where ``[`` / ``{`` first nest deeper than MAX_DEPTH, or None.

    Checked before parsing: the YAML scanner's cost grows with the square of the flow depth
    (2,000 nested brackets: 20 s), so such a file is refused by this linear scan instead.
    Brackets inside quotes count too, which can only refuse a file with 64 unclosed brackets in text.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    for m in _BRACKET.finditer(text):
        if m.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                i = m.start()
                return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1
        elif depth > 0:
            depth -= 1
    return None


def load_yaml(text: str, source: str) -> tuple[Any, Positions]:
    """Parse ``text`` (named ``source`` in errors) into plain data and positions.

    Never constructs Python objects from tags, refuses duplicate keys, and raises
    :class:`ProtocolError` with the line/column of a syntax error.
    """
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    deep = _too_deep(text)
    try:
        if deep is not None:
            raise RecursionError
        raw = yaml.load(text)
    except RecursionError:
        at_line, at_col = deep or (1, 1)
        raise ProtocolError.single(
            source,
            f"the file nests more than {MAX_DEPTH} levels deep",
            "flatten it: no protocol, preset or station needs this much nesting",
            line=at_line,
            col=at_col,
        ) from None
    except MarkedYAMLError as exc:
        raise ProtocolError([_syntax_issue(exc, source, text)]) from None
    except YAMLError as exc:
        raise ProtocolError([_syntax_issue(exc, source, text)]) from None
    builder = _Builder(source)
    positions = builder.positions
    positions[()] = (1, 1)
    # the document's first line with content
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#") and s != "---":
            positions[()] = (n, len(line) - len(line.lstrip()) + 1)
            break
    data = builder.build(raw, ())
    if builder.issues:
        raise ProtocolError(builder.issues)
    return data, positions


def decode_text(raw: bytes, source: str) -> str:
    """The text of a labctl YAML file read as bytes: UTF-8 (a BOM allowed), or a ProtocolError naming
    the line and column of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ProtocolError.single(
            source,
            "the file is not UTF-8 text",
            "save it as UTF-8 (the text editor's encoding setting)",
            line=line,
            col=col,
        ) from None
