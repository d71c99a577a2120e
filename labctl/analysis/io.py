"""Readers for measurements made outside labctl.

Plain text: columns separated by whitespace, commas, semicolons or tabs, with or
without a header line; lines starting with ``#`` or ``%`` and blank lines are
skipped.

* EIS: frequency (Hz), Z' (ohm), Z'' (ohm).  Z'' is taken as measured (negative for
  capacitive points).  With ``imag_sign='auto'`` a header naming the column
  ``-Z''``/``-Im(Z)``/``-Zim`` marks it as the negated imaginary part; without such a
  header a column that is positive at more than 80 % of the points is taken to be
  -Z'' (the common export) and negated back.  ``imag_sign`` 'as-measured' or
  'negated' says so explicitly.
* Tafel: potential (V), current (A).  A header naming mA/uA/mV units is honoured.

BioLogic EC-Lab files (``.mpt`` text, ``.mpr`` binary) are read with the optional
package ``galvani`` (``pip install 'labctl[biologic]'``).

Errors are AnalysisError naming the file and line: missing columns, non-numeric
values, too few points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._core import AnalysisError

_SPLIT = re.compile(r"[,;\t ]+")


@dataclass
class EISData:
    frequency: np.ndarray  # Hz
    z: np.ndarray  # complex, ohm, Z'' as measured
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass
class SweepData:
    potential: np.ndarray  # V
    current: np.ndarray  # A
    source: str
    notes: list[str] = field(default_factory=list)


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _read_table(path: Path, ncols: int, what: str) -> tuple[np.ndarray, list[str] | None, list[int]]:
    """Numeric rows (first ``ncols`` columns), header tokens (or None), line numbers."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror})") from None
    rows, lines = [], []
    header = None
    for ln, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#%":
            continue
        toks = [t for t in _SPLIT.split(line) if t]
        if not rows and header is None and not all(_is_number(t) for t in toks):
            header = [t for t in re.split(r"[,;\t]+|\s{2,}", line) if t.strip()] if re.search(r"[,;\t]|\s{2,}", line) else toks
            header = [h.strip() for h in header]
            continue
        if len(toks) < ncols:
            raise AnalysisError(
                f"{path}:{ln}: expected at least {ncols} columns ({what}), found {len(toks)}: {line!r}"
            )
        vals = []
        for k, tok in enumerate(toks[:ncols]):
            try:
                vals.append(float(tok))
            except ValueError:
                raise AnalysisError(
                    f"{path}:{ln}: column {k + 1} is not a number: {tok!r}"
                ) from None
        rows.append(vals)
        lines.append(ln)
    return np.array(rows, dtype=float).reshape(-1, ncols), header, lines


def _need(path, n, min_points, lines, what):
    if n < max(min_points, 1):
        where = f"lines {lines[0]}-{lines[-1]}" if lines else "no data lines"
        raise AnalysisError(f"{path}: only {n} data points ({where}); {what} needs at least {min_points}")


def _galvani(path: Path):
    try:
        from galvani import BioLogic  # optional dependency
    except ImportError:
        raise AnalysisError(
            f"{path}: reading BioLogic {path.suffix} files needs the optional package galvani "
            "(pip install 'labctl[biologic]'), or export the data as text columns"
        ) from None
    try:
        if path.suffix.lower() == ".mpr":
            data = BioLogic.MPRfile(str(path)).data
        else:
            data, _ = BioLogic.MPTfile(str(path), encoding="latin-1")
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except Exception as exc:  # galvani raises ValueError/KeyError/... on malformed files
        raise AnalysisError(f"{path}: not a readable BioLogic file ({exc})") from None
    return data


def _field(data, path, *names):
    for n in names:
        if n in data.dtype.names:
            return np.asarray(data[n], float), n
    raise AnalysisError(f"{path}: no column {' or '.join(names)} (columns: {', '.join(data.dtype.names)})")


def read_eis_file(path, *, imag_sign: str = "auto", min_points: int = 1) -> EISData:
    """Frequency (Hz) and complex Z (ohm, Z'' as measured) from a file."""
    path = Path(path)
    notes: list[str] = []
    if path.suffix.lower() in (".mpt", ".mpr"):
        data = _galvani(path)
        f, _ = _field(data, path, "freq/Hz")
        zr, _ = _field(data, path, "Re(Z)/Ohm")
        mzi, _ = _field(data, path, "-Im(Z)/Ohm")
        ok = f > 0
        _need(path, int(ok.sum()), min_points, [], "the analysis")
        return EISData(f[ok], zr[ok] - 1j * mzi[ok], str(path), ["BioLogic -Im(Z) column negated"])
    if imag_sign not in ("auto", "as-measured", "negated"):
        raise AnalysisError(f"imag_sign must be 'auto', 'as-measured' or 'negated', got {imag_sign!r}")
    arr, header, lines = _read_table(path, 3, "frequency, Z', Z''")
    _need(path, arr.shape[0], min_points, lines, "the analysis")
    f, zr, zi = arr[:, 0], arr[:, 1], arr[:, 2]
    bad = np.nonzero(~(f > 0))[0]
    if bad.size:
        raise AnalysisError(f"{path}:{lines[bad[0]]}: frequency must be positive, got {f[bad[0]]}")
    negated = imag_sign == "negated"
    if imag_sign == "auto":
        h = (header[2] if header and len(header) > 2 else "").replace(" ", "").lower()
        if header and len(header) > 2:
            negated = h.startswith("-")
            if negated:
                notes.append(f"column {header[2]!r} is -Z'': negated")
        elif np.mean(zi > 0) > 0.8:
            negated = True
            notes.append("Z'' column positive at most points: taken as -Z'' and negated")
    if negated:
        zi = -zi
    return EISData(f, zr + 1j * zi, str(path), notes)


def read_tafel_file(path, *, min_points: int = 1) -> SweepData:
    """Potential (V) and current (A) from a file (sweep data for Tafel analysis)."""
    path = Path(path)
    notes: list[str] = []
    if path.suffix.lower() in (".mpt", ".mpr"):
        data = _galvani(path)
        e, _ = _field(data, path, "Ewe/V", "Ecell/V", "<Ewe>/V")
        i, name = _field(data, path, "I/mA", "<I>/mA")
        _need(path, e.size, min_points, [], "the analysis")
        return SweepData(e, i * 1e-3, str(path), [f"{name} converted to A"])
    arr, header, lines = _read_table(path, 2, "potential V, current A")
    _need(path, arr.shape[0], min_points, lines, "the analysis")
    e, i = arr[:, 0].copy(), arr[:, 1].copy()
    if header and len(header) >= 2:
        for col, (scale_map, unit) in ((0, ({"mv": 1e-3, "uv": 1e-6}, "V")), (1, ({"ma": 1e-3, "ua": 1e-6, "µa": 1e-6, "na": 1e-9}, "A"))):
            h = header[col].lower()
            for key, scale in scale_map.items():
                if re.search(rf"(^|[/(\[\s_]){re.escape(key)}($|[)\]\s])", h):
                    if col == 0:
                        e *= scale
                    else:
                        i *= scale
                    notes.append(f"column {header[col]!r} converted to {unit}")
                    break
    return SweepData(e, i, str(path), notes)
