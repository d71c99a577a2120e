"""Readers for measurements made outside labctl.

Text files (``.txt``, ``.csv``, ``.z``, ``.DTA``, ``.par``, ``.mpt``, ...): numeric
columns separated by tabs, semicolons, commas or spaces (a decimal comma is accepted
where the separator is not a comma).  Instrument preambles are skipped: the data are
the block of consecutive numeric lines whose header line (the nearest text line above
it, or up to three lines above it, as ZPlot's ``End Comments`` or Gamry's units line
sit in between) names a frequency column; without any such header, the longest
numeric block.  Blank lines and lines starting with ``#`` or ``%`` are skipped.
BioLogic EC-Lab ``.mpt`` text is read by its ``Nb header lines`` count.  Tested on
exports of BioLogic EC-Lab (.mpt), Gamry (.DTA), Scribner ZPlot (.z, Z60W .txt),
CH Instruments, Parstat, PowerSuite and VersaStudio (.par) and on plain three-column
files (tests/data).

* EIS: frequency (Hz), Z' (ohm), Z'' (ohm), picked by the header's names (``freq``,
  ``Frequency (Hz)``, ``Z'``, ``Zre``, ``Re(Z)/Ohm``, ``Z Real``, ``Z''``, ``Zim``,
  ``-Im(Z)/Ohm``, ``Zimg``, ...) wherever they stand, else the first three columns.
  Units in the names are converted (``kHz``, ``mHz``, ``MHz``; ``kOhm``, ``mOhm``,
  ``MOhm``).  Z'' is returned as measured (negative for capacitive points): a column
  named with a leading minus (``-Z''``, ``-Im(Z)``) is negated.  Without a header, a
  Z'' column positive at more than 80 % of the points is taken to be -Z''.
  ``imag_sign`` 'as-measured' or 'negated' overrides the names.  Rows with frequency
  0 and Z = 0 (the DC part of a Parstat table) are skipped, with a note.
* Tafel: potential (V), current (A); by names (``Ewe/V``, ``E (mV)``,
  ``Potential (V)``, ``<I>/mA``, ``I (uA)``, ``Current (A)``) or the first two columns.

BioLogic ``.mpr`` (binary) files are read with the optional package ``galvani``
(``pip install 'labctl[biologic]'``).

Errors are AnalysisError naming the file, the line and, where one is at fault, the
column: missing columns, non-numeric values, a header without the needed columns,
non-positive frequencies, too few points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._core import AnalysisError


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


# ------------------------------------------------------------------------------------------
# tokenising
# ------------------------------------------------------------------------------------------
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+(?:[eE][-+]?\d+)?$")


def _num(tok: str, comma_decimal: bool) -> float | None:
    try:
        return float(tok)
    except ValueError:
        if comma_decimal and _DECIMAL_COMMA.match(tok):
            return float(tok.replace(",", "."))
        return None


def _fields(line: str) -> tuple[list[str], bool]:
    """Fields of a stripped line and whether a decimal comma is possible (separator not ',')."""
    if len(line) > 1 and line[0] == line[-1] == '"' and line.count('"') == 2:
        line = line[1:-1].strip()  # a quoted header line (Z60W / ZPlot text exports)
    if "\t" in line:
        parts, comma_ok = line.split("\t"), True
    elif ";" in line:
        parts, comma_ok = line.split(";"), True
    elif "," in line:
        parts, comma_ok = line.split(","), False
    else:
        parts, comma_ok = (re.split(r"\s{2,}", line) if re.search(r"\s{2,}", line) else line.split()), True
    out = [p.strip().strip('"').strip() for p in parts]
    while out and out[-1] == "":
        out.pop()
    return out, comma_ok


def _numeric(line: str) -> tuple[list[float] | None, int, str]:
    """(values, -1, '') for an all-numeric line; (None, k, tok) when field k is not a number."""
    if "\t" not in line and ";" not in line and "," not in line:
        toks, comma_ok = line.split(), True
    else:
        toks, comma_ok = _fields(line)
    vals = []
    for k, t in enumerate(toks):
        v = _num(t, comma_ok)
        if v is None:
            return None, k, t
        vals.append(v)
    return vals, -1, ""


@dataclass
class _Block:
    rows: list[list[float]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad: tuple[int, int, str] | None = None  # first line with a non-number: (line, column, token)
    header: list[str] | None = None
    header_line: int | None = None
    fixed: bool = False  # header given by the file (BioLogic 'Nb header lines')


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnalysisError(f"{path}: is a directory, not a data file") from None
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror})") from None
    from labctl.importers.base import ImportFileError, decode_text

    try:
        return decode_text(path, raw)[0]  # UTF-8 (BOM or not), UTF-16 with a BOM, else Latin-1
    except ImportFileError as exc:
        raise AnalysisError(str(exc)) from None


def _blocks(path: Path, text: str, want) -> list[_Block]:
    """Numeric blocks of a text file, each with the header that ``want`` recognises (if any)."""
    lines = text.splitlines()
    start = 0
    if path.suffix.lower() == ".mpt" or (lines and lines[0].strip().startswith("EC-Lab ASCII FILE")):
        if not lines or not lines[0].strip().startswith("EC-Lab ASCII FILE"):
            raise AnalysisError(
                f"{path}:1: not a readable BioLogic file (.mpt text must start with 'EC-Lab ASCII FILE')"
            )
        m = re.search(r"Nb header lines\s*:\s*(\d+)", "\n".join(lines[:3]))
        if m:
            n_head = int(m.group(1))
            if not 1 <= n_head <= len(lines):
                raise AnalysisError(f"{path}:2: 'Nb header lines : {n_head}' but the file has {len(lines)} lines")
            blk = _Block(header=_fields(lines[n_head - 1].strip())[0], header_line=n_head, fixed=True)
            start = n_head
            blocks = [blk]
            _collect(path, lines, start, blocks, want, fixed_header=True)
            return blocks
    blocks: list[_Block] = []
    _collect(path, lines, start, blocks, want, fixed_header=False)
    return blocks


def _collect(path, lines, start, blocks, want, fixed_header):
    text_lines: list[tuple[int, str]] = []  # text lines since the last block, newest last
    cur = blocks[-1] if fixed_header else None
    for ln in range(start + 1, len(lines) + 1):
        line = lines[ln - 1].strip()
        if not line or line[0] in "#%":
            continue
        vals, k, tok = _numeric(line)
        first_numeric = vals is not None or (k > 0)
        if vals is None and fixed_header:
            # BioLogic: every line after the header is data; a non-number is an error in it
            cur.bad = cur.bad or (ln, k + 1, tok)
            continue
        if vals is None and not (first_numeric and cur is not None):
            cur = None
            text_lines.append((ln, line))
            continue
        if cur is None:
            cur = _Block()
            for back, (hl, hline) in enumerate(reversed(text_lines[-3:])):
                h = hline.split("=", 1)[1] if re.match(r"^[A-Za-z ]+=", hline) else hline  # VersaStudio 'Definition='
                fields = _fields(h.strip())[0]
                if want(fields):
                    cur.header, cur.header_line = fields, hl
                    break
            if cur.header is None and text_lines:
                # no recognised names: the line just above, if it has as many fields, is still a header
                hl, hline = text_lines[-1]
                fields = _fields(hline)[0]
                if vals is not None and len(fields) == len(vals) and len(fields) > 1:
                    cur.header, cur.header_line = fields, hl
            blocks.append(cur)
            text_lines = []
        if vals is None:
            cur.bad = cur.bad or (ln, k + 1, tok)
            continue
        cur.rows.append(vals)
        cur.lines.append(ln)


def _choose(path: Path, blocks: list[_Block], want, what: str) -> _Block:
    named = [b for b in blocks if b.header is not None and want(b.header)]
    pool = named or blocks
    if not pool:
        raise AnalysisError(f"{path}: only 0 data points (no data lines); {what}")
    best = max(pool, key=lambda b: len(b.rows))
    if best.bad is not None and not (best.fixed and not want(best.header)):  # a wrong header first
        ln, col, tok = best.bad
        raise AnalysisError(f"{path}:{ln}: column {col} is not a number: {tok!r}")
    return best


# ------------------------------------------------------------------------------------------
# column names and units
# ------------------------------------------------------------------------------------------
def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "", name.strip().strip('"')).lower()


_TAIL = r"(?:[/(\[,].*)?$"
_FREQ = re.compile(r"^(?:freq(?:uency)?|f|nu)" + _TAIL)
_ZRE = re.compile(r"^(?:z'|zre|zreal|re\(z\)|rez|real|re|zr)" + _TAIL)
_ZIM = re.compile(r"^(-)?(?:z''|z\"|z′′|zim|zimag|zimg|im\(z\)|imz|imag|im|zi)" + _TAIL)
_ZMOD = re.compile(r"^(?:\|z\||zmod|mod\(z\)|z|phase|phase\(z\)|zphz|phi)" + _TAIL)
_POT = re.compile(r"^(?:<?ewe>?|<?ecell>?|e|ewe-ece|potential|voltage|v|u|eapplied|e\(v\))" + _TAIL)
_CUR = re.compile(r"^(?:<?i>?|current|i|j)" + _TAIL)


def _find(header: list[str], pattern: re.Pattern) -> int | None:
    for k, h in enumerate(header):
        if pattern.match(_key(h)):
            return k
    return None


def _want_eis(header: list[str]) -> bool:
    return _find(header, _FREQ) is not None and (_find(header, _ZRE) is not None or _find(header, _ZIM) is not None)


def _want_sweep(header: list[str]) -> bool:
    return _find(header, _POT) is not None and _find(header, _CUR) is not None


def _freq_scale(name: str) -> float:
    m = re.search(r"(?<![A-Za-z])([kKMmG]?)(?:Hz|hz|HZ)(?![A-Za-z])", name)
    return {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "m": 1e-3, "G": 1e9}[m.group(1)] if m else 1.0


def _ohm_scale(name: str) -> float:
    m = re.search(r"(?<![A-Za-z])([kKMmµu]?)(?:ohms?|Ohms?|OHMS?|Ω)(?![A-Za-z])", name)
    return {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "m": 1e-3, "µ": 1e-6, "u": 1e-6}[m.group(1)] if m else 1.0


def _volt_scale(name: str) -> float:
    m = re.search(r"(?<![A-Za-z])([mµu]?)V(?![A-Za-z])", name)
    return {"": 1.0, "m": 1e-3, "µ": 1e-6, "u": 1e-6}[m.group(1)] if m else 1.0


def _amp_scale(name: str) -> float:
    m = re.search(r"(?<![A-Za-z])([mµunpk]?)A(?![A-Za-z])", name)
    if not m:
        low = name.lower()
        m2 = re.search(r"(?<![a-z])(ma|ua|µa|na)(?![a-z])", low)
        return {"ma": 1e-3, "ua": 1e-6, "µa": 1e-6, "na": 1e-9}[m2.group(1)] if m2 else 1.0
    return {"": 1.0, "m": 1e-3, "µ": 1e-6, "u": 1e-6, "n": 1e-9, "p": 1e-12, "k": 1e3}[m.group(1)]


def _need(path, n, min_points, lines, what):
    if n < max(min_points, 1):
        where = f"lines {lines[0]}-{lines[-1]}" if lines else "no data lines"
        raise AnalysisError(f"{path}: only {n} data points ({where}); {what} needs at least {min_points}")


def _columns(path: Path, blk: _Block, cols: list[int], names: list[str]) -> np.ndarray:
    """The given columns of a block; AnalysisError naming the first short row."""
    need = max(cols) + 1
    for vals, ln in zip(blk.rows, blk.lines):
        if len(vals) < need:
            raise AnalysisError(
                f"{path}:{ln}: expected at least {need} columns ({', '.join(names)}), found {len(vals)}"
            )
    return np.array([[r[c] for c in cols] for r in blk.rows], dtype=float).reshape(-1, len(cols))


# ------------------------------------------------------------------------------------------
# BioLogic binary
# ------------------------------------------------------------------------------------------
def _galvani(path: Path):
    try:
        from galvani import BioLogic  # optional dependency
    except ImportError:
        raise AnalysisError(
            f"{path}: reading BioLogic {path.suffix} files needs the optional package galvani "
            "(pip install 'labctl[biologic]'), or export the data as text (.mpt)"
        ) from None
    try:
        data = BioLogic.MPRfile(str(path)).data
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


# ------------------------------------------------------------------------------------------
# readers
# ------------------------------------------------------------------------------------------
def read_eis_file(path, *, imag_sign: str = "auto", min_points: int = 1) -> EISData:
    """Frequency (Hz) and complex Z (ohm, Z'' as measured) from a file."""
    path = Path(path)
    if imag_sign not in ("auto", "as-measured", "negated"):
        raise AnalysisError(f"imag_sign must be 'auto', 'as-measured' or 'negated', got {imag_sign!r}")
    notes: list[str] = []
    if path.suffix.lower() == ".mpr":
        data = _galvani(path)
        f, _ = _field(data, path, "freq/Hz")
        zr, _ = _field(data, path, "Re(Z)/Ohm")
        mzi, _ = _field(data, path, "-Im(Z)/Ohm")
        ok = f > 0
        _need(path, int(ok.sum()), min_points, [], "the analysis")
        zi = -mzi if imag_sign != "as-measured" else mzi
        return EISData(f[ok], zr[ok] + 1j * zi[ok], str(path), ["BioLogic -Im(Z) column negated"])
    blk = _choose(
        path, _blocks(path, _read_text(path), _want_eis), _want_eis, "the analysis needs frequency, Z' and Z'' columns"
    )
    header, hl = blk.header, blk.header_line
    if blk.fixed and not _want_eis(header):
        raise AnalysisError(
            f"{path}:{hl}: no column for the frequency and impedance (freq/Hz, Re(Z)/Ohm, -Im(Z)/Ohm) "
            f"among: {', '.join(header) or '(an empty line)'}"
        )
    cols = [0, 1, 2]
    names = ["frequency", "Z'", "Z''"]
    negated_by_name = False
    scales = [1.0, 1.0, 1.0]
    if header is not None and _want_eis(header):
        kf, kr, ki = _find(header, _FREQ), _find(header, _ZRE), _find(header, _ZIM)
        for k, what in (
            (kr, "Z' (real part: Z', Zre, Re(Z), Z Real)"),
            (ki, "Z'' (imaginary part: Z'', Zim, Im(Z), -Im(Z), Zimag)"),
        ):
            if k is None:
                raise AnalysisError(f"{path}:{hl}: no column for {what} among: {', '.join(header)}")
        cols = [kf, kr, ki]
        names = [header[kf], header[kr], header[ki]]
        negated_by_name = bool(_ZIM.match(_key(header[ki])).group(1))
        scales = [_freq_scale(header[kf]), _ohm_scale(header[kr]), _ohm_scale(header[ki])]
        if cols != [0, 1, 2]:
            notes.append(f"columns {', '.join(repr(n) for n in names)} (line {hl})")
    elif (
        header is not None
        and any(_ZMOD.match(_key(h)) for h in header[:3])
        and not any(_ZRE.match(_key(h)) or _ZIM.match(_key(h)) for h in header)
    ):
        raise AnalysisError(
            f"{path}:{hl}: the columns are {', '.join(header)}: |Z| and phase without Z' and Z''; "
            "export the real and imaginary parts"
        )
    arr = _columns(path, blk, cols, names)
    lines = blk.lines
    f, zr, zi = arr[:, 0] * scales[0], arr[:, 1] * scales[1], arr[:, 2] * scales[2]
    dc = (f == 0) & (zr == 0) & (zi == 0)
    if np.any(dc):
        keep = ~dc
        notes.append(f"{int(dc.sum())} rows with frequency 0 and Z = 0 (not impedance points) skipped")
        f, zr, zi = f[keep], zr[keep], zi[keep]
        lines = [ln for ln, k in zip(lines, keep) if k]
    _need(path, f.size, min_points, lines, "the analysis")
    bad = np.nonzero(~(f > 0))[0]
    if bad.size:
        raise AnalysisError(
            f"{path}:{lines[bad[0]]}: frequency must be positive, got {f[bad[0]]} (column {cols[0] + 1})"
        )
    for k, s in zip((0, 1), scales):
        if s != 1.0:
            notes.append(f"column {names[k]!r} converted to {'Hz' if k == 0 else 'ohm'}")
    if scales[2] != 1.0 and scales[2] != scales[1]:
        notes.append(f"column {names[2]!r} converted to ohm")
    if imag_sign == "negated":
        negated = True
    elif imag_sign == "as-measured":
        negated = False
    elif header is not None and _want_eis(header):
        negated = negated_by_name
        if negated:
            notes.append(f"column {names[2]!r} is -Z'': negated")
        elif np.mean(zi > 0) > 0.8:
            notes.append(
                f"column {names[2]!r} is positive at {100 * np.mean(zi > 0):.0f} % of the points: "
                "if it holds -Z'', read with imag_sign='negated'"
            )
    else:
        negated = bool(np.mean(zi > 0) > 0.8)
        if negated:
            notes.append("Z'' column positive at most points: taken as -Z'' and negated")
    if negated:
        zi = -zi
    return EISData(f, zr + 1j * zi, str(path), notes)


def read_tafel_file(path, *, min_points: int = 1) -> SweepData:
    """Potential (V) and current (A) from a file (sweep data for Tafel analysis)."""
    path = Path(path)
    notes: list[str] = []
    if path.suffix.lower() == ".mpr":
        data = _galvani(path)
        e, _ = _field(data, path, "Ewe/V", "Ecell/V", "<Ewe>/V")
        i, name = _field(data, path, "I/mA", "<I>/mA")
        _need(path, e.size, min_points, [], "the analysis")
        return SweepData(e, i * 1e-3, str(path), [f"{name} converted to A"])
    text = _read_text(path)
    if text.lstrip().startswith("EXPLAIN") or (path.suffix.lower() != ".mpt" and not _blocks_have(path, text)):
        return _sweep_via_importers(path, min_points)
    blocks = _blocks(path, text, _want_sweep)
    blk = _choose(path, blocks, _want_sweep, "the analysis needs potential and current columns")
    header, hl = blk.header, blk.header_line
    cols = [0, 1]
    if header is not None and _want_sweep(header):
        cols = [_find(header, _POT), _find(header, _CUR)]
    elif blk.fixed:
        raise AnalysisError(
            f"{path}:{hl}: no column for the potential (Ewe/V, Ecell/V) and current (I/mA, <I>/mA) "
            f"among: {', '.join(header)}"
        )
    names = (
        [header[c] for c in cols] if header is not None and max(cols) < len(header) else ["potential V", "current A"]
    )
    arr = _columns(path, blk, cols, names)
    _need(path, arr.shape[0], min_points, blk.lines, "the analysis")
    e, i = arr[:, 0].copy(), arr[:, 1].copy()
    if header is not None and max(cols) < len(header):
        se, si = _volt_scale(header[cols[0]]), _amp_scale(header[cols[1]])
        if se != 1.0:
            e *= se
            notes.append(f"column {header[cols[0]]!r} converted to V")
        if si != 1.0:
            i *= si
            notes.append(f"column {header[cols[1]]!r} converted to A")
    return SweepData(e, i, str(path), notes)


def _blocks_have(path: Path, text: str) -> bool:
    """Whether the generic block reader finds numeric rows under a potential/current header."""
    try:
        blocks = _blocks(path, text, _want_sweep)
    except AnalysisError:
        return False
    return any(b.rows and b.header is not None and _want_sweep(b.header) for b in blocks) or (
        any(b.rows for b in blocks) and not any(b.header is not None for b in blocks)
    )


def _sweep_via_importers(path: Path, min_points: int) -> SweepData:
    """A sweep from an instrument file (Gamry .DTA, Nova ASCII, ...) read by labctl.importers."""
    from labctl.importers import ImportFileError, read_file

    try:
        d = read_file(path)
    except ImportFileError as exc:
        raise AnalysisError(str(exc)) from None
    sweeps = [s for s in d.steps if s.kind in ("lsv", "cv", "tafel")]
    if not sweeps:
        kinds = ", ".join(sorted({s.kind for s in d.steps}))
        raise AnalysisError(f"{path}: a {d.format} file with no potential sweep (its steps: {kinds})")
    s = max(sweeps, key=lambda s: s.stop - s.start)
    e, i = d.voltage[s.start : s.stop], d.current[s.start : s.stop]
    _need(path, e.size, min_points, [], "the analysis")
    notes = [f"read as {d.format} by {d.reader}", *d.notes]
    if len(sweeps) > 1:
        notes.append(f"the longest of {len(sweeps)} sweeps ({s.label}, {s.stop - s.start} points)")
    return SweepData(np.asarray(e, float), np.asarray(i, float), str(path), notes)
