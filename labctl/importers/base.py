"""What every reader returns, the errors it raises, and text decoding.

A reader turns one instrument file into an :class:`ImportedData`: sample columns in
labctl's units and conventions (SI floats; current positive = anodic at the working
electrode; ``charge`` in C accumulated within each step), the instrument's steps mapped
onto labctl step kinds, and the mapping it applied (sign, cycle definition, steps, where
the charge came from), which :mod:`labctl.app.importing` writes into the run.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ImportFileError",
    "ImportedData",
    "ImportedStep",
    "decode_text",
    "file_sha256",
]


class ImportFileError(ValueError):
    """A file labctl cannot read: the message names the file, what it looks like and what is missing."""


@dataclass
class ImportedStep:
    """One labctl step made from the instrument's data (rows ``start:stop`` of the columns)."""

    kind: str  # a labctl StepKind value
    label: str
    cycle: int
    start: int
    stop: int
    params: dict = field(default_factory=dict)


@dataclass
class ImportedData:
    """One file's data in labctl's units and conventions, ready to be stored as a run."""

    source: str
    format: str  # e.g. "neware-nda", "gamry-dta"
    reader: str  # the library (or labctl module) and its version
    t: np.ndarray  # s, test time from the first sample
    voltage: np.ndarray  # V
    current: np.ndarray  # A, positive = anodic at the WE
    steps: list[ImportedStep]
    mapping: dict  # current_sign, cycle_definition, steps, charge_source, ...
    charge: np.ndarray | None = None  # C within each step (instrument counters), or None
    temperature: np.ndarray | None = None
    frequency: np.ndarray | None = None
    z_re: np.ndarray | None = None
    z_im: np.ndarray | None = None  # as measured (negative for capacitive points)
    area_cm2: float | None = None  # from the file
    started_unix: float | None = None
    notes: list[str] = field(default_factory=list)
    header: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.t.size)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path}: is a directory, not a data file") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read ({exc.strerror})") from None


def looks_binary(raw: bytes) -> bool:
    """True for bytes that are no text in UTF-8, UTF-16 (with BOM) or Latin-1."""
    head = raw[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    if b"\x00" in head:
        return True
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return ctrl > max(2, len(head) // 100)


def decode_text(path: Path, raw: bytes) -> tuple[str, str]:
    """(text, encoding) of a text export: UTF-8 (with or without BOM), UTF-16 with a BOM, else Latin-1."""
    if raw.startswith(codecs.BOM_UTF8):
        return raw[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 text ({exc})"
            ) from None
    if looks_binary(raw):
        raise ImportFileError(
            f"{path}: binary content, not a text export (a {path.suffix or 'text'} file must be text)"
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def segments(keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of the runs of equal consecutive values of ``keys`` (1-D, any dtype)."""
    n = keys.shape[0]
    if n == 0:
        return []
    change = np.nonzero(keys[1:] != keys[:-1])[0] + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [n]))
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def step_charge(counter: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Charge within each step from an instrument's counter (magnitude), reset at step starts.

    A counter that the instrument resets at each step starts near 0; one that runs on
    through a cycle (or the test) continues from the previous row: that value is
    subtracted.
    """
    out = np.empty_like(counter, dtype=float)
    for a, b in bounds:
        seg = np.abs(counter[a:b].astype(float))
        base = 0.0
        if a > 0:
            prev = abs(float(counter[a - 1]))
            if np.isfinite(prev) and prev <= seg[0] + 1e-12 * max(1.0, abs(prev)):
                base = prev
        out[a:b] = seg - base
    return out
