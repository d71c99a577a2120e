"""Run reports: PNG plots (matplotlib, Agg, no display) and an ``index.html`` per report.

:func:`write_report` plots what one run contains (voltage vs time with zooms on chosen
cycles, Nyquist and Bode plots with the fitted circuits, Tafel, Arrhenius, CE, capacity
and hysteresis per cycle, voltage vs capacity and dQ/dV of full cells) and writes the
run's summary and results table.  :func:`compare_runs` overlays several runs like the
panels of a paper figure (bare Mg vs Br-Mg).

Plots use :class:`matplotlib.figure.Figure` with the Agg canvas directly, never pyplot,
so a report changes no global matplotlib state (a notebook keeps its backend) and
leaks no figures.  Long runs are drawn as a min/max envelope per pixel column, built
chunk by chunk from the samples, so a run of millions of samples plots in seconds and
is never held in memory whole.  Numbers come from ``labctl.analysis``; this module
only draws them.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labctl.core.constants import FARADAY, GAS_CONSTANT, ZERO_CELSIUS_K
from labctl.core.formatting import fmt_duration as _fmt_duration

#: columns of the envelope of long traces (twice the pixel columns of the widest plot)
ENVELOPE_BINS = 2400
#: traces with fewer points than this are drawn point by point
RAW_POINT_LIMIT = 20000
DPI = 120
#: step kinds whose voltage is a time trace (not a spectrum, not a stage log)
TRACE_KINDS = ("rest", "galvanostatic", "potentiostatic", "tafel", "lsv", "cv")


# =========================================================================== small helpers
def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def _time_unit(span_s: float) -> tuple[str, float]:
    """Axis unit for a time span: (label, divisor)."""
    if span_s >= 3 * 3600:
        return "h", 3600.0
    if span_s >= 600:
        return "min", 60.0
    return "s", 1.0


def _new_figure(width: float = 9.0, height: float = 5.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()
    return path


def _cycle_groups(cycles: Sequence[int]) -> list[list[int]]:
    """Sorted cycles split into runs of consecutive numbers: [1,2,3,9,10] -> [[1,2,3],[9,10]]."""
    out: list[list[int]] = []
    for c in sorted(set(int(c) for c in cycles)):
        if out and c == out[-1][-1] + 1:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def _group_label(g: Sequence[int]) -> str:
    return f"cycle {g[0]}" if len(g) == 1 else f"cycles {g[0]}-{g[-1]}"


def _cycles_text(cycles: Sequence[int]) -> str:
    """[1, 2, 3, 10] -> 'cycles 1-3, 10'."""
    groups = _cycle_groups(cycles)
    parts = [str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups]
    return ("cycle " if len(groups) == 1 and len(groups[0]) == 1 else "cycles ") + ", ".join(parts)


# =========================================================================== envelope
class Envelope:
    """Min/max of y per column of a fixed x grid, filled chunk by chunk.

    ``add`` accepts chunks in any order; columns that got no point stay NaN, so gaps
    (EIS, temperature steps) show as gaps.  :meth:`polyline` returns the vertices of a
    line that visits the minimum and the maximum of every column, which looks like the
    full data at the figure's resolution.
    """

    def __init__(self, x0: float, x1: float, bins: int = ENVELOPE_BINS) -> None:
        if not (math.isfinite(x0) and math.isfinite(x1)) or x1 <= x0:
            x1 = x0 + 1.0
        self.x0, self.x1, self.bins = float(x0), float(x1), int(bins)
        self.lo = np.full(self.bins, np.nan)
        self.hi = np.full(self.bins, np.nan)
        self.count = np.zeros(self.bins, dtype=np.int64)
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.all():
            x, y = x[ok], y[ok]
        if x.size == 0:
            return
        self.n += x.size
        b = ((x - self.x0) * (self.bins / (self.x1 - self.x0))).astype(np.int64)
        np.clip(b, 0, self.bins - 1, out=b)
        if b.size > 1 and not np.all(b[1:] >= b[:-1]):
            order = np.argsort(b, kind="stable")
            b, y = b[order], y[order]
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        cols = b[starts]
        self.lo[cols] = np.fmin(self.lo[cols], np.minimum.reduceat(y, starts))
        self.hi[cols] = np.fmax(self.hi[cols], np.maximum.reduceat(y, starts))
        self.count[cols] += np.diff(np.r_[starts, b.size])

    def polyline(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y vertices (NaN-separated at empty columns) of the min/max zig-zag."""
        w = (self.x1 - self.x0) / self.bins
        xc = self.x0 + (np.arange(self.bins) + 0.5) * w
        x = np.repeat(xc, 2)
        y = np.empty(2 * self.bins)
        # alternate the order so the line between columns joins nearest ends
        flip = np.arange(self.bins) % 2 == 1
        y[0::2] = np.where(flip, self.hi, self.lo)
        y[1::2] = np.where(flip, self.lo, self.hi)
        return x, y


# =========================================================================== data access
def _as_dict(r: Any) -> dict:
    if isinstance(r, dict):
        return r
    if hasattr(r, "to_dict"):
        return r.to_dict()
    return dict(vars(r))


def _cell_info(run: dict) -> dict:
    """Kind, area, cathode mass... of the run's cell: from the run row, else from its protocol text."""
    info: dict[str, Any] = dict(run["cell_attrs"]) if isinstance(run.get("cell_attrs"), dict) else {}
    if run.get("cell"):
        info.setdefault("id", run["cell"])
    if run.get("cell_kind"):
        info.setdefault("kind", run["cell_kind"])
    if ("kind" not in info or "area_cm2" not in info) and run.get("protocol_text"):
        try:
            from labctl.protocols import load_protocol_text

            p = load_protocol_text(run["protocol_text"], source=f"run-{run.get('id')}")
            for k, v in p.cell.model_dump().items():
                if v is not None:
                    info.setdefault(k, v)
        except Exception:  # noqa: BLE001 - an old protocol text that no longer validates: plot without it
            pass
    return info


@dataclass
class Spectrum:
    """One EIS step: data, its temperature and, when fitted, the circuit and parameters."""

    step_index: int
    cycle: int
    temperature: float  # degC, NaN when unknown
    frequency: np.ndarray
    z: np.ndarray  # complex, ohm
    circuit: str | None = None
    params: np.ndarray | None = None
    fitted: dict = field(default_factory=dict)  # result name -> value (Rs, R_SEI, Rct)

    def fit_curve(self, n: int = 300) -> tuple[np.ndarray, np.ndarray] | None:
        if self.circuit is None or self.params is None or self.frequency.size == 0:
            return None
        from labctl.analysis.circuit import parse_circuit

        f = np.geomspace(self.frequency.min(), self.frequency.max(), n)
        return f, parse_circuit(self.circuit).impedance(self.params, f)


@dataclass
class TafelCurve:
    step_index: int
    eta: np.ndarray  # V
    j: np.ndarray  # A/cm2
    results: dict = field(default_factory=dict)  # name -> result dict (tafel-extrapolation)


@dataclass
class CycleSeries:
    """A per-cycle quantity for plotting: cycle numbers and values (NaN where missing)."""

    name: str
    unit: str
    cycles: np.ndarray
    values: np.ndarray
    label: str = ""


class RunView:
    """What a report needs from one run, read lazily from a :class:`db.Database`-like object."""

    def __init__(self, db: Any, run_id: int) -> None:
        self.db = db
        self.run_id = run_id
        self.run = db.run(run_id)  # KeyError for a missing run
        self.steps = db.steps(run_id)
        self.cell = _cell_info(self.run)
        self.notes: list[str] = []
        self._results: list[dict] | None = None
        self.results_source = "database"
        self._spectra: list[Spectrum] | None = None

    # ------------------------------------------------------------------ basics
    @property
    def kind(self) -> str | None:
        return self.cell.get("kind")

    @property
    def area_cm2(self) -> float | None:
        a = self.cell.get("area_cm2")
        return float(a) if a else None

    @property
    def cathode_mass_g(self) -> float | None:
        m = self.cell.get("cathode_mass_g")
        return float(m) if m else None

    def label(self) -> str:
        r = self.run
        parts = [str(r["preset"]) if r.get("preset") else None, str(self.cell.get("id") or r.get("cell") or "") or None]
        parts = [p for p in parts if p]
        if not parts:
            parts = [str(r.get("protocol") or "run")]
        return " / ".join(parts)

    @property
    def duration(self) -> float:
        ends = [s.get("t_end") for s in self.steps if s.get("t_end") is not None]
        if ends:
            return float(max(ends))
        r = self.run
        if r.get("ended") and r.get("started"):
            return float(r["ended"] - r["started"])
        return 0.0

    @property
    def n_samples(self) -> int:
        n = self.run.get("n_samples")
        if n is not None:
            return int(n)
        return int(sum(int(s.get("n_samples") or 0) for s in self.steps))

    def steps_of(self, *kinds: str) -> list[dict]:
        """Steps of these kinds that have samples (or may have: a step still running has no count yet)."""
        return [s for s in self.steps if s["kind"] in kinds and (s.get("n_samples") is None or s["n_samples"] > 0)]

    def samples(self, step_indices: Sequence[int] | int | None, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """Samples of one step, several steps (concatenated in step order) or the whole run (None),
        only the given columns."""
        cols = list(columns)
        if step_indices is None:
            return self.db.samples(self.run_id, columns=cols)
        if isinstance(step_indices, (int, np.integer)):
            return self.db.samples(self.run_id, step_index=int(step_indices), columns=cols)
        idx = sorted({int(i) for i in step_indices})
        parts = [self.db.samples(self.run_id, step_index=i, columns=cols) for i in idx]
        if not parts:
            return {c: np.zeros(0, np.int64 if c in ("step_index", "cycle") else float) for c in cols}
        if len(parts) == 1:
            return parts[0]
        return {c: np.concatenate([p[c] for p in parts]) for c in cols}

    def iter_step_chunks(self, steps: Sequence[dict], columns: Sequence[str], target: int = 500_000
                         ) -> Iterator[dict[str, np.ndarray]]:
        """Samples of ``steps`` in bounded chunks.  When the steps hold most of the run (a long cycling
        run), the run is streamed once and filtered; otherwise the steps are read one by one."""
        want = {int(s["step_index"]) for s in steps}
        n_want = sum(int(s.get("n_samples") or 0) for s in steps)
        n_all = max(sum(int(s.get("n_samples") or 0) for s in self.steps), 1)
        cols = list(columns)
        if hasattr(self.db, "iter_samples") and (len(want) > 64 and n_want > 0.5 * n_all):
            everything = all(int(s["step_index"]) in want for s in self.steps
                             if s.get("n_samples") is None or s["n_samples"] > 0)
            if everything:  # no filter needed: read only the columns asked for
                for chunk in self.db.iter_samples(self.run_id, chunk_rows=target, columns=cols):
                    yield chunk
                return
            read = cols if "step_index" in cols else cols + ["step_index"]
            keys = np.fromiter(want, np.int64)
            for chunk in self.db.iter_samples(self.run_id, chunk_rows=target, columns=read):
                sel = np.isin(chunk["step_index"], keys)
                if sel.all():
                    yield {c: chunk[c] for c in cols}
                elif sel.any():
                    yield {c: chunk[c][sel] for c in cols}
            return
        for s in sorted(steps, key=lambda s: s["step_index"]):
            d = self.samples(int(s["step_index"]), cols)
            if len(d[cols[0]]):
                yield d

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> list[dict]:
        if self._results is None:
            stored = [dict(r) for r in (self.db.results(self.run_id) or [])]
            if stored:
                self._results = stored
            else:
                self._results = self._compute_results()
        return self._results

    def _compute_results(self) -> list[dict]:
        """Run the analysis dispatcher without storing anything."""
        try:
            from labctl.analysis import analyze_run
        except ImportError:
            self.notes.append("no stored results and labctl.analysis has no analyze_run: results table empty")
            return []
        self.results_source = "computed for this report (not stored)"
        try:
            res = self._analyze_arrays(analyze_run)
        except Exception as e:  # noqa: BLE001 - a report shows the data even when an analysis fails
            self.notes.append(f"analysis failed: {type(e).__name__}: {e}")
            return []
        out = []
        for r in res:
            d = _as_dict(r)
            details = d.pop("details", None)
            if "data" not in d:
                d["data"] = details or {}
            if d.get("step_index") is None:
                d["step_index"] = (d["data"] or {}).get("step_index")
            out.append(d)
        return out

    def _analyze_arrays(self, analyze_run: Any) -> list:
        kinds = {s["kind"] for s in self.steps}
        cols = ["step_index", "cycle", "t", "voltage", "current", "charge"]
        if kinds & {"eis", "tafel", "lsv"}:
            cols.append("temperature")
        if "eis" in kinds:
            cols += ["frequency", "z_re", "z_im"]
        samples = self.db.samples(self.run_id, columns=cols)
        return analyze_run(self.steps, samples, self.analysis_cell())

    def results_for(self, step_index: int) -> list[dict]:
        return [r for r in self.results if r.get("step_index") == step_index]

    def result_value(self, name: str) -> dict | None:
        for r in self.results:
            if r.get("name") == name:
                return r
        return None

    # ------------------------------------------------------------------ EIS
    def step_temperature(self, step: dict, measured: np.ndarray | None = None) -> float:
        """Temperature of a step: measured during it, else the last stage set point before it."""
        if measured is not None:
            m = measured[np.isfinite(measured)]
            if m.size:
                return float(np.median(m))
        t = float("nan")
        for s in self.steps:
            if s["step_index"] >= step["step_index"]:
                break
            if s["kind"] == "temperature":
                sp = (s.get("params") or {}).get("setpoint")
                if sp is not None:
                    t = float(sp)
        return t

    @property
    def spectra(self) -> list[Spectrum]:
        if self._spectra is None:
            self._spectra = self._load_spectra()
        return self._spectra

    def _load_spectra(self) -> list[Spectrum]:
        eis = self.steps_of("eis")
        if not eis:
            return []
        data = self.samples([s["step_index"] for s in eis], ["step_index", "frequency", "z_re", "z_im", "temperature"])
        out = []
        for s in eis:
            sel = data["step_index"] == s["step_index"]
            f, zr, zi = data["frequency"][sel], data["z_re"][sel], data["z_im"][sel]
            ok = np.isfinite(f) & np.isfinite(zr) & np.isfinite(zi) & (f > 0)
            sp = Spectrum(int(s["step_index"]), int(s.get("cycle") or 0),
                          self.step_temperature(s, data["temperature"][sel]), f[ok], zr[ok] + 1j * zi[ok])
            self._attach_fit(sp)
            out.append(sp)
        return out

    def _attach_fit(self, sp: Spectrum) -> None:
        fits = [r for r in self.results_for(sp.step_index) if isinstance(r.get("data"), dict)
                and r["data"].get("circuit") and r["data"].get("parameter")]
        if not fits:
            return
        circuit = fits[0]["data"]["circuit"]
        by_param = {r["data"]["parameter"]: r["value"] for r in fits if r["data"]["circuit"] == circuit}
        try:
            from labctl.analysis.circuit import parse_circuit

            names = parse_circuit(circuit).param_names
        except Exception as e:  # noqa: BLE001
            self.notes.append(f"EIS step {sp.step_index}: stored circuit {circuit!r} cannot be drawn ({e})")
            return
        if any(n not in by_param or by_param[n] is None for n in names):
            return
        sp.circuit = circuit
        sp.params = np.array([float(by_param[n]) for n in names])
        sp.fitted = {r["name"]: float(r["value"]) for r in fits if r["data"]["circuit"] == circuit}

    # ------------------------------------------------------------------ Tafel
    def tafel_steps(self) -> list[dict]:
        """Tafel sweeps: ``tafel`` steps, and ``lsv`` steps labelled as Tafel scans (as the analysis takes them)."""
        return [s for s in self.steps_of("tafel", "lsv")
                if s["kind"] == "tafel" or "tafel" in str(s.get("label") or "").lower()]

    def tafel_curves(self) -> list[TafelCurve]:
        steps = self.tafel_steps()
        if not steps:
            return []
        area = self.area_cm2 or 1.0
        data = self.samples([s["step_index"] for s in steps], ["step_index", "voltage", "current"])
        out = []
        for s in steps:
            sel = data["step_index"] == s["step_index"]
            v, i = data["voltage"][sel], data["current"][sel]
            res = {r["name"]: r for r in self.results_for(s["step_index"])
                   if r.get("method") in ("tafel-extrapolation", "micro-polarisation", "zero crossing", "given")}
            e_eq = None
            for r in res.values():
                e_eq = (r.get("data") or {}).get("e_eq_V", e_eq)
            if e_eq is None:
                e_eq = _e_eq_without_fit(v, i)
            out.append(TafelCurve(int(s["step_index"]), v - e_eq, i / area, res))
        return out

    # ------------------------------------------------------------------ cycling
    def analysis_cell(self) -> dict:
        """The cell description for the analysis dispatcher, plus ``anode`` ('bare-mg' / 'br-mg', which picks
        the EIS circuit) from the simulator preset or the electrode materials when they name it."""
        cell = dict(self.cell)
        if "anode" in cell or "sei" in cell:
            return cell
        preset = str(self.run.get("preset") or "").lower()
        if preset in ("bare-mg", "br-mg"):
            cell["anode"] = preset
            return cell
        for m in (cell.get("working"), cell.get("counter")):
            key = str(m or "").lower().replace(" ", "").replace("_", "-")
            if key in ("br-mg", "brmg"):
                cell["anode"] = "br-mg"
                break
            if key in ("mg", "bare-mg", "baremg", "mgfoil"):
                cell["anode"] = "bare-mg"
                break
        return cell

    def cycling_steps(self) -> list[dict]:
        """The galvanostatic steps with samples, in order."""
        return self.steps_of("galvanostatic")

    def is_cycling(self) -> bool:
        """Galvanostatic steps inside cycles (a repeat or an Aurbach test)."""
        return bool(self.cycles()) and len(self.cycling_steps()) >= 2

    def cycles(self) -> list[int]:
        return sorted({int(s["cycle"]) for s in self.cycling_steps() if (s.get("cycle") or 0) > 0})

    def short_step(self) -> dict | None:
        for s in self.steps:
            if str(s.get("end_reason") or "") == "short_circuit":
                return s
        return None

    def per_cycle(self, result_name: str, key: str) -> CycleSeries | None:
        """A per-cycle array stored in a result's details (``per_cycle`` dict), if there is one."""
        for r in self.results:
            if r.get("name") != result_name:
                continue
            pc = (r.get("data") or {}).get("per_cycle")
            if isinstance(pc, dict) and key in pc and "cycle" in pc:
                cyc = np.asarray(pc["cycle"], float)
                val = np.asarray([np.nan if v is None else v for v in pc[key]], float)
                if cyc.size and cyc.size == val.size:
                    return CycleSeries(key, r.get("unit") or "", cyc, val)
        return None


def _e_eq_without_fit(v: np.ndarray, i: np.ndarray) -> float:
    """Open-circuit potential of a sweep that has no fit: the current's zero crossing, else the sweep middle."""
    from labctl.analysis import AnalysisError
    from labctl.analysis.tafel import estimate_e_eq

    try:
        return estimate_e_eq(v, i)
    except AnalysisError:
        return float(np.nanmedian(v)) if v.size else 0.0


# =========================================================================== plotting helpers
_RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]
_RUN_CMAPS = ["Blues", "Reds", "Greens", "Oranges", "Purples", "Greys", "YlOrBr", "PuRd"]


def _make_temperature_cmap() -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    # blue (cold) -> purple -> red (hot), no pale middle
    return LinearSegmentedColormap.from_list("labctl_temperature", ["#2166ac", "#7b3294", "#d7191c"])


_TEMPERATURE_CMAP = _make_temperature_cmap()


def _cell_title(view: RunView) -> str:
    c = view.cell
    parts = []
    if c.get("kind"):
        parts.append(f"{c['kind']} cell")
    if c.get("working"):
        parts.append(f"{c['working']} | {c.get('counter') or c['working']}")
    if c.get("id"):
        parts.append(str(c["id"]))
    return ", ".join(parts)


def _title(view: RunView, what: str) -> str:
    return f"Run {view.run_id} ({view.run.get('protocol') or ''}): {what}"


def _ohm_scale(zmax: float) -> tuple[float, str]:
    if zmax >= 1e6 * 2:
        return 1e6, "MΩ"
    if zmax >= 1e3 * 2:
        return 1e3, "kΩ"
    return 1.0, "Ω"


def _step_label(sp: Spectrum, mode: str) -> str:
    if mode == "temperature" and math.isfinite(sp.temperature):
        return f"{sp.temperature:.1f} °C"
    if mode == "cycle":
        return f"after cycle {sp.cycle}" if sp.cycle else "before cycling"
    if math.isfinite(sp.temperature):
        return f"step {sp.step_index}, {sp.temperature:.1f} °C"
    return f"step {sp.step_index}"


def _spectra_mode(spectra: Sequence[Spectrum]) -> str:
    temps = {round(s.temperature * 2) / 2 for s in spectra if math.isfinite(s.temperature)}
    if len(temps) > 1:
        return "temperature"
    if len({s.cycle for s in spectra}) > 1:
        return "cycle"
    return "step"


def _spectrum_colours(spectra: Sequence[Spectrum], mode: str, cmap_name: str | None = None) -> list:
    """Colours of spectra: by temperature (blue cold, red hot), else distinct colours; with ``cmap_name``
    (one run of several in a comparison) shades of that colour map."""
    import matplotlib

    n = len(spectra)
    if n == 0:
        return []
    if mode == "temperature":
        temps = np.array([s.temperature for s in spectra], float)
        lo, hi = float(np.nanmin(temps)), float(np.nanmax(temps))
        pos = [0.5 if not math.isfinite(t) or hi == lo else (t - lo) / (hi - lo) for t in temps]
        if cmap_name:
            return [matplotlib.colormaps[cmap_name](0.35 + 0.6 * p) for p in pos]
        return [_TEMPERATURE_CMAP(p) for p in pos]
    if cmap_name:
        cmap = matplotlib.colormaps[cmap_name]
        return [cmap(0.85 if n == 1 else 0.35 + 0.6 * k / (n - 1)) for k in range(n)]
    if n <= 10:
        return _RUN_COLOURS[:n]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(k / (n - 1)) for k in range(n)]


def _valley_re(z: np.ndarray) -> float | None:
    """Z' at the first local minimum of -Z'' after it has risen (the end of the fastest arc), going from
    high to low frequency along a smooth (fitted) curve; None when there is no such valley."""
    y = -z.imag
    rising = False
    for i in range(1, y.size - 1):
        if y[i] > y[i - 1]:
            rising = True
        elif rising and y[i + 1] > y[i]:
            return float(z.real[i])
    return None


def _hf_zoom(spectra: Sequence[Spectrum]) -> tuple[float, float] | None:
    """Z' range of a high-frequency zoom when the high-frequency features (Rs intercept, interphase arc)
    are tiny next to the whole spectrum: up to the valley after the fastest arc when the data show one,
    else three times the sum of the fitted resistances other than the largest (Rs + R_SEI)."""
    his, full, lows = [], [], []
    for sp in spectra:
        if sp.z.size == 0:
            continue
        full.append(float(np.nanmax(sp.z.real)))
        lows.append(float(np.nanmin(sp.z.real)))
        fc = sp.fit_curve(600)
        if fc is not None:
            v = _valley_re(fc[1][np.argsort(fc[0])[::-1]])
            if v is not None:
                his.append(1.5 * v)
                continue
            from labctl.analysis.circuit import parse_circuit

            c = parse_circuit(sp.circuit)
            rs = sorted(float(sp.params[e.index]) for e in c.elements if e.type == "R")
            if len(rs) >= 2:
                his.append(3.0 * sum(rs[:-1]))
        else:
            his.append(20.0 * max(float(np.nanmin(sp.z.real)), 1e-12))
    if not his or not full:
        return None
    hi = max(his)
    if hi <= min(lows) or hi > 0.1 * max(full):
        return None
    return 0.0, hi


# =========================================================================== voltage vs time
def _trace(view: RunView, steps: Sequence[dict], div: float, x0: float, x1: float,
           bins: int = ENVELOPE_BINS) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voltage against time/div of ``steps``: every point when there are few, else the min/max
    envelope on a grid of ``bins`` columns between x0 and x1 (streamed in chunks).
    Returns x, y and whether it is an envelope."""
    if not steps:
        return np.array([]), np.array([]), False
    total = sum(int(s.get("n_samples") or 0) for s in steps)
    if total <= RAW_POINT_LIMIT:
        d = view.samples([s["step_index"] for s in steps], ["step_index", "t", "voltage"])
        t, v, si = d["t"], d["voltage"], d["step_index"]
        order = np.argsort(t, kind="stable")
        t, v, si = t[order], v[order], si[order]
        # break the line where steps that are not drawn (EIS, stage) lie in between
        all_idx = [int(s["step_index"]) for s in view.steps]
        prev_of = dict(zip(all_idx[1:], all_idx))
        cut = np.flatnonzero(si[1:] != si[:-1]) + 1
        breaks = [k for k in cut if prev_of.get(int(si[k])) != int(si[k - 1])]
        x = t / div
        if breaks:
            x = np.insert(x, breaks, np.nan)
            v = np.insert(v, breaks, np.nan)
        return x, v, False
    env = Envelope(x0, x1, bins)
    for chunk in view.iter_step_chunks(steps, ["t", "voltage"]):
        env.add(chunk["t"] / div, chunk["voltage"])
    x, y = env.polyline()
    return x, y, True


def _default_zoom(cycles: Sequence[int], short_cycle: int | None) -> list[list[int]]:
    if not cycles:
        return []
    last = short_cycle if short_cycle is not None and short_cycle in cycles else cycles[-1]
    upto = [c for c in cycles if c <= last]
    first = upto[:3]
    tail = upto[-3:]
    if len(upto) <= 6:
        return [upto]
    return [first, tail]


def _zoom_groups(view: RunView, zoom_cycles: Sequence[int] | None) -> list[list[int]]:
    cycles = view.cycles()
    if zoom_cycles:
        have = set(cycles)
        chosen = [int(c) for c in zoom_cycles if int(c) in have]
        missing = sorted(set(int(c) for c in zoom_cycles) - have)
        if missing:
            view.notes.append(f"zoom: run {view.run_id} has no cycle {', '.join(map(str, missing))} "
                              f"(cycles {cycles[0]}-{cycles[-1]})" if cycles else f"zoom: run {view.run_id} has no cycles")
        groups = _cycle_groups(chosen)
        if len(groups) > 4:
            view.notes.append(f"zoom: {len(groups)} separate cycle ranges asked; the first 4 are shown")
            groups = groups[:4]
        return groups
    sc = _short_time(view)
    return _default_zoom(cycles, int(sc[1]) if sc is not None and sc[1] else None)


def _short_time(view: RunView) -> tuple[float, int | None] | None:
    r = view.result_value("t_short")
    if r is not None and isinstance(r.get("data"), dict) and r["data"].get("t_onset") is not None:
        return float(r["data"]["t_onset"]), r["data"].get("cycle")
    s = view.short_step()
    if s is not None and s.get("t_end") is not None:
        return float(s["t_end"]), s.get("cycle")
    return None


def _current_steps(view: RunView) -> tuple[np.ndarray, np.ndarray] | None:
    """Step-wise current density (mA/cm2) from the steps' set currents, when it changes during the run."""
    xs, ys = [], []
    area = view.area_cm2 or 1.0
    for s in view.cycling_steps():
        i = (s.get("params") or {}).get("current")
        if i is None or s.get("t_end") is None:
            continue
        xs += [s["t_start"], s["t_end"]]
        ys += [1e3 * float(i) / area] * 2
    mags = {round(abs(y), 6) for y in ys}
    if len(mags) < 2:
        return None
    return np.asarray(xs, float), np.asarray(ys, float)


def plot_voltage_time(view: RunView, path: Path, zoom_cycles: Sequence[int] | None = None) -> Path | None:
    steps = view.steps_of(*TRACE_KINDS)
    if not any(s["kind"] != "rest" for s in steps):
        return None
    span = max(view.duration, 1.0)
    unit, div = _time_unit(span)
    cycling = view.is_cycling()
    groups = _zoom_groups(view, zoom_cycles) if cycling else []
    cur = _current_steps(view) if cycling else None
    ng = max(len(groups), 1)
    fig = _new_figure(10.0, 7.5 if groups else 5.0)
    rows = (2 if groups else 1) + (1 if cur is not None else 0)
    ratios = ([1.6] if groups else [1.0]) + ([0.45] if cur is not None else []) + ([1.25] if groups else [])
    gs = fig.add_gridspec(rows, ng, height_ratios=ratios)
    ax = fig.add_subplot(gs[0, :])
    x, y, env = _trace(view, steps, div, 0.0, span / div)
    ax.plot(x, y, lw=0.6 if env else 0.9, color="#1f4e79")
    ax.set_xlim(0, span / div)
    ax.set_ylabel("Voltage / V")
    ax.set_xlabel(f"Time / {unit}")
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    ax.grid(alpha=0.3)
    ax.set_title(_title(view, f"voltage vs time, {_cell_title(view)}"), fontsize=11)
    sc = _short_time(view)
    if sc is not None:
        ts, cyc = sc
        ax.axvline(ts / div, color="red", ls="--", lw=1.2,
                   label=f"short circuit at {ts / div:.4g} {unit}" + (f" (cycle {cyc})" if cyc else ""))
    by_cycle: dict[int, list[dict]] = {}
    for s in steps:
        by_cycle.setdefault(int(s.get("cycle") or 0), []).append(s)
    spans = []
    for k, g in enumerate(groups):
        gsteps = [s for c in g for s in by_cycle.get(c, [])]
        if not gsteps:
            continue
        t0 = min(s["t_start"] for s in gsteps)
        t1 = max(s.get("t_end") or s["t_start"] for s in gsteps)
        spans.append((g, gsteps, t0, t1))
        ax.axvspan(t0 / div, t1 / div, color="orange", alpha=0.25, lw=0)
        xm = min(max(0.5 * (t0 + t1) / div, 0.015 * span / div), 0.985 * span / div)
        ax.annotate(chr(ord("A") + k), (xm, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, -3), textcoords="offset points", ha="center", va="top", fontsize=9,
                    color="#b35900", fontweight="bold")
    aur = view.result_value("ce_aurbach")
    if aur is not None and aur.get("value") is not None:
        ax.text(0.01, 0.97, f"Aurbach CE$_{{avg}}$ = {100 * float(aur['value']):.2f} %", transform=ax.transAxes,
                ha="left", va="top", fontsize=9, bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    if sc is not None:
        ax.legend(loc="best", fontsize=8)
    if cur is not None:
        axc = fig.add_subplot(gs[1, :], sharex=ax)
        axc.plot(cur[0] / div, cur[1], color="#555555", lw=1.0, drawstyle="default")
        axc.set_ylabel("j / mA cm$^{-2}$", fontsize=9)
        axc.set_xlabel(f"Time / {unit}")
        axc.grid(alpha=0.3)
        ax.set_xlabel("")
    for k, (g, gsteps, t0, t1) in enumerate(spans):
        az = fig.add_subplot(gs[rows - 1, k])
        zu, zdiv = unit, div
        xz, yz, envz = _trace(view, gsteps, zdiv, t0 / zdiv, t1 / zdiv, bins=1200)
        az.plot(xz, yz, lw=0.8, color="#1f4e79")
        if sc is not None and t0 <= sc[0] <= t1:
            az.axvline(sc[0] / zdiv, color="red", ls="--", lw=1.0)
        az.set_xlim(t0 / zdiv, t1 / zdiv)
        az.set_title(f"{chr(ord('A') + k)}: {_group_label(g)}", fontsize=10)
        az.set_xlabel(f"Time / {zu}")
        if k == 0:
            az.set_ylabel("Voltage / V")
        az.axhline(0, color="0.6", lw=0.5, zorder=0)
        az.grid(alpha=0.3)
    return _save(fig, path)


# =========================================================================== EIS
@dataclass
class _SpecStyle:
    spectrum: Spectrum
    colour: Any
    label: str
    marker: str = "o"


def _eis_styles(spectra: Sequence[Spectrum]) -> tuple[list[_SpecStyle], str]:
    mode = _spectra_mode(spectra)
    cols = _spectrum_colours(spectra, mode)
    return [_SpecStyle(sp, c, _step_label(sp, mode)) for sp, c in zip(spectra, cols)], mode


def _draw_nyquist(ax: Any, styles: Sequence[_SpecStyle], scale: float, unit: str, legend: bool = True) -> None:
    for st in styles:
        sp = st.spectrum
        z = sp.z
        ax.plot(z.real / scale, -z.imag / scale, ls="none", marker=st.marker, ms=4, mfc="none", mew=0.9,
                color=st.colour)
        fc = sp.fit_curve(600)
        if fc is not None:
            zf = fc[1]
            ax.plot(zf.real / scale, -zf.imag / scale, "-", lw=1.3, color=st.colour)
    ax.set_xlabel(f"$Z'$ / {unit}")
    ax.set_ylabel(f"$-Z''$ / {unit}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    if legend:
        _fit_legend(ax, styles)


def _ohm_text(r: float) -> str:
    scale, unit = _ohm_scale(abs(r) / 2 if abs(r) >= 2e3 else abs(r))
    return f"{r / scale:.3g} {unit}"


def _fit_summary(sp: Spectrum) -> str:
    return ", ".join(f"{k} {_ohm_text(sp.fitted[k])}" for k in ("Rs", "R_SEI", "Rct") if k in sp.fitted)


def _fit_legend(ax: Any, styles: Sequence[_SpecStyle], fontsize: int = 8, below: float = 0.13) -> None:
    """One entry per spectrum (points = data, line = fit, with the fitted resistances when few)."""
    from matplotlib.lines import Line2D

    circuits = sorted({st.spectrum.circuit for st in styles if st.spectrum.circuit})
    title = ("points: data, lines: fit " + " / ".join(circuits)) if circuits else "points: data (no fit)"
    kw: dict[str, Any] = {}
    if len(styles) > 12:
        ax.legend([], [], title=title, title_fontsize=fontsize, fontsize=fontsize)
        return
    handles, labels = [], []
    for st in styles:
        fitted = st.spectrum.circuit is not None
        handles.append(Line2D([], [], color=st.colour, marker=st.marker, mfc="none", ms=4,
                              ls="-" if fitted else "none", lw=1.3))
        summary = _fit_summary(st.spectrum) if len(styles) <= 6 else ""
        labels.append(st.label + (f" ({summary})" if summary else ""))
    if len(handles) > 4:  # below the axes, not over the data
        kw = dict(loc="upper center", bbox_to_anchor=(0.5, -below), ncol=2 if len(handles) > 5 else 1)
    ax.legend(handles, labels, title=title, title_fontsize=fontsize, fontsize=fontsize, **kw)


def _colourbar_if_many(fig: Figure, ax: Any, styles: Sequence[_SpecStyle], mode: str) -> None:
    """With many spectra, a colour bar replaces the legend entries."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if len(styles) <= 12:
        return
    sps = [s.spectrum for s in styles]
    if mode == "temperature":
        vals = [s.temperature for s in sps]
        cmap, label = _TEMPERATURE_CMAP, "temperature / °C"
    else:
        vals = [s.cycle if mode == "cycle" else k for k, s in enumerate(sps)]
        cmap, label = matplotlib.colormaps["viridis"], "cycle" if mode == "cycle" else "spectrum"
    sm = ScalarMappable(norm=Normalize(np.nanmin(vals), np.nanmax(vals)), cmap=cmap)
    fig.colorbar(sm, ax=ax, label=label, shrink=0.8)


def plot_nyquist(view: RunView, path: Path) -> Path | None:
    spectra = [s for s in view.spectra if s.z.size]
    if not spectra:
        return None
    styles, mode = _eis_styles(spectra)
    return _nyquist_figure(styles, mode, path, _title(view, "Nyquist plot"))


def _nyquist_figure(styles: Sequence[_SpecStyle], mode: str, path: Path, title: str) -> Path:
    spectra = [s.spectrum for s in styles]
    zmax = max(float(np.nanmax(np.abs(s.z))) for s in spectra)
    scale, unit = _ohm_scale(zmax)
    zoom = _hf_zoom(spectra)
    fig = _new_figure(12.0 if zoom else 8.0, 5.8)
    if zoom:
        ax, az = fig.subplots(1, 2, width_ratios=[1.5, 1])
    else:
        ax, az = fig.add_subplot(), None
    _draw_nyquist(ax, styles, scale, unit)
    ax.set_title(title, fontsize=11)
    _colourbar_if_many(fig, ax, styles, mode)
    if az is not None:
        zs, zu = _ohm_scale(zoom[1])
        _draw_nyquist(az, styles, zs, zu, legend=False)
        w = (zoom[1] - zoom[0]) / zs
        az.set_aspect("equal", adjustable="box")
        az.set_xlim(zoom[0] / zs, zoom[1] / zs)
        az.set_ylim(-0.05 * w, 0.75 * w)
        az.set_title("high-frequency region", fontsize=10)
        ax.axvspan(zoom[0] / scale, zoom[1] / scale, color="orange", alpha=0.25, lw=0)
    return _save(fig, path)


def plot_bode(view: RunView, path: Path) -> Path | None:
    spectra = [s for s in view.spectra if s.z.size]
    if not spectra:
        return None
    styles, mode = _eis_styles(spectra)
    return _bode_figure(styles, mode, path, _title(view, "Bode plot"))


def _bode_figure(styles: Sequence[_SpecStyle], mode: str, path: Path, title: str) -> Path:
    fig = _new_figure(8.0, 6.5)
    am, ap = fig.subplots(2, 1, sharex=True)
    for st in styles:
        sp = st.spectrum
        am.loglog(sp.frequency, np.abs(sp.z), ls="none", marker=st.marker, ms=3.5, mfc="none", mew=0.8,
                  color=st.colour, label=st.label)
        ap.semilogx(sp.frequency, -np.degrees(np.angle(sp.z)), ls="none", marker=st.marker, ms=3.5, mfc="none",
                    mew=0.8, color=st.colour)
        fc = sp.fit_curve()
        if fc is not None:
            am.loglog(fc[0], np.abs(fc[1]), "-", lw=1.2, color=st.colour)
            ap.semilogx(fc[0], -np.degrees(np.angle(fc[1])), "-", lw=1.2, color=st.colour)
    am.set_ylabel("|Z| / Ω")
    ap.set_ylabel("−phase / °")
    ap.set_xlabel("Frequency / Hz")
    for a in (am, ap):
        a.grid(alpha=0.3, which="both")
    am.set_title(title, fontsize=11)
    _fit_legend(ap, styles, below=0.2)
    _colourbar_if_many(fig, am, styles, mode)
    return _save(fig, path)


# =========================================================================== Tafel
def _tafel_model(res: dict[str, dict]) -> tuple[Any, Any] | None:
    """(Butler-Volmer j(eta), Tafel line log10|j|(eta)) from the stored Tafel-extrapolation results."""
    j0r = res.get("j0")
    if j0r is None or j0r.get("value") is None:
        return None
    d = j0r.get("data") or {}
    j0 = float(j0r["value"])
    temp = float(d.get("temperature_C", 22.0) or 22.0)
    n = float(d.get("n", 2) or 2)
    f = FARADAY / (GAS_CONSTANT * (temp + ZERO_CELSIUS_K))
    if "b_cell" in res and "alpha" in res:
        a = float(res["alpha"]["value"])
        b = float(res["b_cell"]["value"]) / 1e3

        def bv(eta):
            return 2 * j0 * np.sinh(a * n * f * eta / 2)

        def line(eta):
            return math.log10(j0) + np.abs(eta) / b
        return bv, line
    if all(k in res for k in ("alpha_a", "alpha_c", "b_a", "b_c")):
        aa, ac = float(res["alpha_a"]["value"]), float(res["alpha_c"]["value"])
        ba, bc = float(res["b_a"]["value"]) / 1e3, float(res["b_c"]["value"]) / 1e3

        def bv(eta):
            return j0 * (np.exp(aa * n * f * eta) - np.exp(-ac * n * f * eta))

        def line(eta):
            return math.log10(j0) + np.where(eta >= 0, eta / ba, -eta / bc)
        return bv, line
    return None


def _fmt_j(j: float) -> str:
    a = abs(j)
    if a >= 1e-3:
        return f"{j * 1e3:.3g} mA cm$^{{-2}}$"
    if a >= 1e-8:
        return f"{j * 1e6:.3g} µA cm$^{{-2}}$"
    return f"{j * 1e9:.3g} nA cm$^{{-2}}$"


def _draw_tafel(ax: Any, curve: TafelCurve, colour: Any, label: str, mark_fit: bool = True,
                fit_colour: Any = None) -> None:
    ok = np.isfinite(curve.eta) & np.isfinite(curve.j) & (curve.j != 0)
    ax.semilogy(1e3 * curve.eta[ok], np.abs(curve.j[ok]), ".", ms=2.5, color=colour, alpha=0.5, label=label)
    fcol = colour if fit_colour is None else fit_colour
    model = _tafel_model(curve.results)
    if model is None:
        return
    bv, line = model
    d = curve.results["j0"].get("data") or {}
    win = d.get("window_V") or [0.06, float(np.nanmax(np.abs(curve.eta)))]
    lo, hi = float(win[0]), float(win[1])
    j0 = float(curve.results["j0"]["value"])
    for sgn in (1, -1):
        e = sgn * np.linspace(lo, hi, 100)
        ax.semilogy(1e3 * e, np.abs(bv(e)), "-", lw=1.8, color=fcol, zorder=3)
        el = sgn * np.linspace(0, hi, 50)
        ax.semilogy(1e3 * el, 10 ** line(el), "--", lw=1.0, color=fcol, alpha=0.9, zorder=3)
        if mark_fit:
            ax.axvspan(1e3 * min(sgn * lo, sgn * hi), 1e3 * max(sgn * lo, sgn * hi), color="green", alpha=0.06, lw=0)
    unc = curve.results["j0"].get("uncertainty")
    txt = f"j$_0$ = {_fmt_j(j0)}" + (f" ± {_fmt(100 * unc / j0, 2)} %" if unc else "")
    micro = curve.results.get("j0_micro")
    if micro is not None and micro.get("value") is not None:
        txt += f"\n(micro-polarisation: {_fmt_j(float(micro['value']))})"
    ax.semilogy([0], [j0], marker="*", ms=13, color=fcol, mec="black", mew=0.6, ls="none", label=txt, zorder=5)


def plot_tafel(view: RunView, path: Path) -> Path | None:
    curves = view.tafel_curves()
    if not curves:
        return None
    fig = _new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for k, c in enumerate(curves):
        lab = "data" if len(curves) == 1 else f"step {c.step_index}"
        _draw_tafel(ax, c, _RUN_COLOURS[k % 10], lab, fit_colour="#d62728" if len(curves) == 1 else None)
    _tafel_axes(ax)
    ax.set_title(_title(view, "Tafel plot"), fontsize=11)
    return _save(fig, path)


def _tafel_axes(ax: Any, shaded: bool = True) -> None:
    from matplotlib.lines import Line2D

    ax.set_xlabel("Overpotential η / mV")
    ax.set_ylabel("|j| / A cm$^{-2}$")
    ax.grid(alpha=0.3, which="both")
    ax.axvline(0, color="0.6", lw=0.6, zorder=0)
    h, lab = ax.get_legend_handles_labels()
    h += [Line2D([], [], color="0.3", lw=1.6), Line2D([], [], color="0.3", lw=1.0, ls="--")]
    lab += ["Butler-Volmer fit" + (" (shaded: fit window)" if shaded else ""), "Tafel lines to η = 0"]
    ax.legend(h, lab, fontsize=8, loc="lower right")


# =========================================================================== Arrhenius
@dataclass
class ArrheniusData:
    temperature_c: np.ndarray
    rct: np.ndarray
    rct_sigma: np.ndarray
    ea: float | None
    ea_sigma: float | None
    ln_a: float | None
    r2: float | None


def arrhenius_data(view: RunView) -> ArrheniusData | None:
    ea = view.result_value("Ea")
    rct_by_step = {r.get("step_index"): r for r in view.results if r.get("name") == "Rct"}
    if ea is not None and isinstance(ea.get("data"), dict) and ea["data"].get("temperatures_C"):
        d = ea["data"]
        t = np.asarray(d["temperatures_C"], float)
        r = np.asarray(d["rct_ohm"], float)
        idx = d.get("step_indices") or [None] * t.size
        sig = np.asarray([(rct_by_step.get(i) or {}).get("uncertainty") or np.nan for i in idx], float)
        a = view.result_value("arrhenius_A")
        ln_a = math.log(a["value"]) if a is not None and a.get("value") else None
        return ArrheniusData(t, r, sig, float(ea["value"]), ea.get("uncertainty"), ln_a, d.get("r2"))
    pts = [(s.temperature, rct_by_step[s.step_index]) for s in view.spectra
           if s.step_index in rct_by_step and math.isfinite(s.temperature)]
    if len({round(t * 2) for t, _ in pts}) < 2:
        return None
    t = np.array([p[0] for p in pts])
    r = np.array([float(p[1]["value"]) for p in pts])
    sig = np.array([p[1].get("uncertainty") or np.nan for p in pts], float)
    from labctl.analysis.arrhenius import fit_arrhenius

    res = {x.name: x for x in fit_arrhenius(t, r)}
    return ArrheniusData(t, r, sig, res["Ea"].value, res["Ea"].uncertainty, math.log(res["arrhenius_A"].value),
                         res["Ea"].details.get("r2"))


def _draw_arrhenius(ax: Any, a: ArrheniusData, colour: Any, label: str) -> None:
    x = 1000.0 / (a.temperature_c + ZERO_CELSIUS_K)
    y = np.log(1.0 / a.rct)
    yerr = np.where(np.isfinite(a.rct_sigma), a.rct_sigma / a.rct, 0.0)
    ax.errorbar(x, y, yerr=yerr if np.any(yerr > 0) else None, fmt="o", color=colour, ms=6, capsize=3,
                label=f"{label}1/R$_{{ct}}$ from EIS fits")
    if a.ea is not None and a.ln_a is not None:
        xx = np.linspace(x.min() - 0.03 * np.ptp(x), x.max() + 0.03 * np.ptp(x), 50)
        yy = a.ln_a - a.ea * 1e3 / GAS_CONSTANT * (xx / 1000.0)
        ea_txt = f"E$_a$ = {a.ea:.4g}" + (f" ± {a.ea_sigma:.2g}" if a.ea_sigma else "") + " kJ mol$^{-1}$"
        if a.r2 is not None:
            ea_txt += f" (R² = {a.r2:.4f})"
        ax.plot(xx, yy, "-", color=colour, lw=1.3, label=f"{label}fit: {ea_txt}")


def _arrhenius_axes(ax: Any) -> None:
    ax.set_xlabel("1000 / T / K$^{-1}$")
    ax.set_ylabel("ln(1/R$_{ct}$ / Ω$^{-1}$)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    sec = ax.secondary_xaxis("top", functions=(lambda x: 1000.0 / np.maximum(x, 1e-9) - ZERO_CELSIUS_K,
                                               lambda t: 1000.0 / np.maximum(t + ZERO_CELSIUS_K, 1e-9)))
    sec.set_xlabel("Temperature / °C")


def plot_arrhenius(view: RunView, path: Path) -> Path | None:
    a = arrhenius_data(view)
    if a is None:
        return None
    fig = _new_figure(7.5, 5.5)
    ax = fig.add_subplot()
    _draw_arrhenius(ax, a, "#1f4e79", "")
    _arrhenius_axes(ax)
    ax.set_title(_title(view, "Arrhenius plot of the charge-transfer resistance"), fontsize=11)
    return _save(fig, path)


# =========================================================================== cycling metrics
def _ce_series(view: RunView) -> CycleSeries | None:
    if view.kind == "full" or (view.kind is None and view.cathode_mass_g):
        s = view.per_cycle("capacity_charge_first", "ce") or view.per_cycle("capacity_discharge_first", "ce")
    else:
        s = view.per_cycle("ce_mean", "ce")
    if s is None:
        return None
    return CycleSeries("CE", "%", s.cycles, 100.0 * s.values)


def _hysteresis_series(view: RunView) -> CycleSeries | None:
    s = view.per_cycle("hysteresis", "hysteresis_V")
    return None if s is None else CycleSeries("hysteresis", "mV", s.cycles, 1e3 * s.values)


def _capacity_series(view: RunView) -> tuple[CycleSeries, CycleSeries] | None:
    """(charge, discharge) capacity per cycle: mAh/g for full cells, mAh/cm2 (stripped, plated) otherwise."""
    ch = view.per_cycle("capacity_charge_first", "capacity_charge_mAh_g")
    dis = view.per_cycle("capacity_discharge_first", "capacity_discharge_mAh_g")
    if ch is None:
        ch = view.per_cycle("capacity_discharge_first", "capacity_charge_mAh_g")
    if dis is None:
        dis = view.per_cycle("capacity_charge_first", "capacity_discharge_mAh_g")
    if ch is not None and dis is not None:
        return (CycleSeries("charge", "mAh/g", ch.cycles, ch.values, "charge"),
                CycleSeries("discharge", "mAh/g", dis.cycles, dis.values, "discharge"))
    qs = view.per_cycle("ce_mean", "q_strip_C")
    qp = view.per_cycle("ce_mean", "q_plate_C")
    if qs is None or qp is None:
        return None
    area = view.area_cm2 or 1.0
    unit = "mAh/cm2" if view.area_cm2 else "mAh"
    return (CycleSeries("stripped", unit, qs.cycles, qs.values / 3.6 / area, "stripped"),
            CycleSeries("plated", unit, qp.cycles, qp.values / 3.6 / area, "plated"))


def _de_series(view: RunView) -> CycleSeries | None:
    for r in view.results:
        if r.get("name") == "dE_50":
            pc = (r.get("data") or {}).get("per_cycle") or {}
            if pc.get("cycle"):
                return CycleSeries("dE", "V", np.asarray(pc["cycle"], float),
                                   np.asarray([np.nan if v is None else v for v in pc["dE_50_V"]], float))
    s = view.per_cycle("capacity_charge_first", "dE_50_V")
    return s


def _unit_tex(unit: str) -> str:
    return {"mAh/g": "mAh g$^{-1}$", "mAh/cm2": "mAh cm$^{-2}$"}.get(unit, unit)


def _marker_size(n: int) -> float:
    return 5.0 if n <= 60 else 3.0 if n <= 400 else 1.5


def _ce_window(series: Sequence[CycleSeries], fails: Sequence[int | None]) -> tuple[float, float]:
    """CE axis range (%) that shows the working cycles in detail: from the cycles before failure."""
    core = []
    for s, fail in zip(series, fails):
        ok = np.isfinite(s.values)
        if fail:
            ok &= s.cycles < fail
        core.append(s.values[ok])
    v = np.concatenate(core) if core else np.array([])
    if v.size == 0:
        allv = np.concatenate([s.values[np.isfinite(s.values)] for s in series]) if series else np.array([])
        v = allv if allv.size else np.array([90.0, 100.0])
    lo = max(min(float(np.percentile(v, 1)), 99.0) - 0.5, 0.0)
    hi = min(max(float(np.max(v)), 100.0) + 0.3, 110.0)
    return lo, hi


def _draw_ce(ax: Any, s: CycleSeries, colour: Any, label: str, window: tuple[float, float]) -> None:
    """CE points; points below the window (failed cycles) as triangles on the bottom edge."""
    ok = np.isfinite(s.values)
    n = int(ok.sum())
    inside = ok & (s.values >= window[0])
    ax.plot(s.cycles[inside], s.values[inside], "o-" if n < 400 else ".", ms=_marker_size(n), lw=0.6, color=colour,
            label=label)
    below = ok & (s.values < window[0])
    if below.any():
        y = window[0] + 0.015 * (window[1] - window[0])
        ax.plot(s.cycles[below], np.full(int(below.sum()), y), "v", ms=3.5, color=colour, alpha=0.7,
                label=f"{label}: {int(below.sum())} cycles below the axis (min {np.min(s.values[below]):.1f} %)")


def plot_ce(view: RunView, path: Path) -> Path | None:
    """CE and capacity per cycle (asymmetric and full cells)."""
    ce = _ce_series(view)
    cap = _capacity_series(view)
    if ce is None and cap is None:
        return None
    full = cap is not None and cap[0].unit == "mAh/g"
    fig = _new_figure(9.0, 6.8)
    a1, a2 = fig.subplots(2, 1, sharex=True)
    if cap is not None:
        for s, style in zip(cap, (dict(marker="o", mfc="none"), dict(marker="s"))):
            ms = _marker_size(s.cycles.size)
            a1.plot(s.cycles, s.values, ls="-" if s.cycles.size < 400 else "none", lw=0.6, ms=ms,
                    label=s.label, **style)
        a1.set_ylabel(f"{'Specific capacity' if full else 'Capacity'} / {_unit_tex(cap[0].unit)}")
        a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a1.set_title(_title(view, ("capacity" if full else "plated/stripped charge") + " and CE per cycle"), fontsize=11)
    if ce is not None:
        life = view.result_value("cycle_life")
        fc = (life or {}).get("data", {}) or {}
        fail = fc.get("failed_cycle")
        window = _ce_window([ce], [fail])
        _draw_ce(a2, ce, "#2a7f62", "CE per cycle", window)
        r = view.result_value("ce_mean")
        if r is not None and r.get("value") is not None:
            mean = 100 * float(r["value"])
            se = r.get("uncertainty")
            n = (r.get("data") or {}).get("n_cycles")
            a2.axhline(mean, color="black", ls="--", lw=0.9,
                       label=f"mean CE {mean:.2f} %" + (f" ± {_fmt(100 * se, 2)} % (s.e.)" if se else "")
                       + (f", {n} cycles" if n else ""))
        if fail:
            a2.axvline(fail, color="red", ls=":", lw=1.2,
                       label=f"failure (CE < {100 * fc.get('ce_threshold', 0.8):.0f} %) at cycle {fail}")
        a2.set_ylim(*window)
        a2.legend(fontsize=8, loc="lower left")
    a2.set_ylabel("Coulombic efficiency / %")
    a2.set_xlabel("Cycle")
    a2.grid(alpha=0.3)
    return _save(fig, path)


def plot_hysteresis(view: RunView, path: Path) -> Path | None:
    h = _hysteresis_series(view)
    if h is None or not np.any(np.isfinite(h.values)):
        return None
    fig = _new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    ax.plot(h.cycles, h.values, "o-" if h.cycles.size < 400 else ".", ms=_marker_size(h.cycles.size), lw=0.6,
            color="#8c2d04", label="± hysteresis per cycle (plateau, 25-75 % of each half-cycle)")
    r = view.result_value("hysteresis")
    if r is not None and r.get("value") is not None:
        ax.axhline(1e3 * r["value"], color="black", ls="--", lw=0.9, label=f"median ±{1e3 * r['value']:.1f} mV")
    sc = _short_time(view)
    if sc is not None and sc[1]:
        ax.axvline(sc[1], color="red", ls="--", lw=1.2, label=f"short circuit (cycle {sc[1]})")
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Voltage hysteresis / mV")
    ax.set_ylim(0, 1.15 * float(np.nanmax(h.values)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(view, f"voltage hysteresis per cycle, {_cell_title(view)}"), fontsize=11)
    return _save(fig, path)


def plot_polarisation(view: RunView, path: Path) -> Path | None:
    de = _de_series(view)
    if de is None or not np.any(np.isfinite(de.values)):
        return None
    fig = _new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    ax.plot(de.cycles, 1e3 * de.values, "o-", ms=_marker_size(de.cycles.size), lw=0.6, color="#6a3d9a",
            label="ΔE at 50 % capacity (charge − discharge)")
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Polarisation ΔE / mV")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(view, "polarisation per cycle"), fontsize=11)
    return _save(fig, path)


# =========================================================================== full cells
def _pick_cycles(cycles: Sequence[int], n: int = 5) -> list[int]:
    if not cycles:
        return []
    want = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    have = set(cycles)
    out = [c for c in want if c in have]
    last = max(cycles)
    out = sorted(set(out[: n - 1] + [last] + ([min(cycles)] if not out else [])))
    return out[-n:] if len(out) > n else out


def _full_cell_steps(view: RunView, cycles: Sequence[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for s in view.cycling_steps():
        c = int(s.get("cycle") or 0)
        if c in cycles:
            out.setdefault(c, []).append(s)
    return out


def _cycle_colours(cycles: Sequence[int]) -> dict[int, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    n = len(cycles)
    return {c: cmap(0.85 * k / max(n - 1, 1)) for k, c in enumerate(cycles)}


def plot_voltage_capacity(view: RunView, path: Path) -> Path | None:
    if view.kind != "full" or not view.cathode_mass_g or not view.is_cycling():
        return None
    cycles = _pick_cycles(view.cycles())
    by_cycle = _full_cell_steps(view, cycles)
    if not by_cycle:
        return None
    idx = [s["step_index"] for c in by_cycle for s in by_cycle[c]]
    d = view.samples(idx, ["step_index", "voltage", "charge"])
    mass = view.cathode_mass_g
    cols = _cycle_colours(sorted(by_cycle))
    fig = _new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for c in sorted(by_cycle):
        first = True
        for s in by_cycle[c]:
            sel = d["step_index"] == s["step_index"]
            q = np.abs(d["charge"][sel]) / 3.6 / mass
            cur = float((s.get("params") or {}).get("current") or 0.0)
            ax.plot(q, d["voltage"][sel], "-" if cur < 0 else "--", color=cols[c], lw=1.3,
                    label=f"cycle {c}" if first else None)
            first = False
    from matplotlib.lines import Line2D

    h, lab = ax.get_legend_handles_labels()
    h += [Line2D([], [], color="0.3", ls="-"), Line2D([], [], color="0.3", ls="--")]
    lab += ["discharge (I < 0)", "charge (I > 0)"]
    ax.legend(h, lab, fontsize=8)
    ax.set_xlabel("Specific capacity / mAh g$^{-1}$")
    ax.set_ylabel("Cell voltage / V")
    ax.grid(alpha=0.3)
    ax.set_title(_title(view, f"voltage vs capacity (cathode mass {mass * 1e3:.3g} mg)"), fontsize=11)
    return _save(fig, path)


def plot_dqdv(view: RunView, path: Path) -> Path | None:
    if view.kind != "full" or not view.cathode_mass_g or not view.is_cycling():
        return None
    from labctl.analysis.cycling import dqdv

    cycles = _pick_cycles(view.cycles(), 4)
    by_cycle = _full_cell_steps(view, cycles)
    if not by_cycle:
        return None
    idx = [s["step_index"] for c in by_cycle for s in by_cycle[c]]
    d = view.samples(idx, ["step_index", "voltage", "charge", "current"])
    mass = view.cathode_mass_g
    cols = _cycle_colours(sorted(by_cycle))
    fig = _new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    drawn = False
    for c in sorted(by_cycle):
        first = True
        for s in by_cycle[c]:
            sel = d["step_index"] == s["step_index"]
            v, q, i = d["voltage"][sel], d["charge"][sel], d["current"][sel]
            if v.size < 10:
                continue
            try:
                vc, h = dqdv(v, charge=q, bin_width=0.01, smooth=1.5)
            except Exception as e:  # noqa: BLE001
                view.notes.append(f"dQ/dV of step {s['step_index']}: {e}")
                continue
            sign = 1.0 if np.nanmean(i) > 0 else -1.0
            ax.plot(vc, sign * h / 3.6 / mass, color=cols[c], lw=1.2, label=f"cycle {c}" if first else None)
            first = False
            drawn = True
    if not drawn:
        return None
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("Cell voltage / V")
    ax.set_ylabel("dQ/dV / mAh g$^{-1}$ V$^{-1}$  (charge > 0, discharge < 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(view, "differential capacity dQ/dV"), fontsize=11)
    return _save(fig, path)


# =========================================================================== sweeps, stage
def plot_sweeps(view: RunView, path: Path) -> Path | None:
    tafel = {s["step_index"] for s in view.tafel_steps()}
    steps = [s for s in view.steps_of("lsv", "cv") if s["step_index"] not in tafel]
    if not steps:
        return None
    area = view.area_cm2 or 1.0
    d = view.samples([s["step_index"] for s in steps], ["step_index", "voltage", "current"])
    fig = _new_figure(8.0, 5.5)
    ax = fig.add_subplot()
    for k, s in enumerate(steps):
        sel = d["step_index"] == s["step_index"]
        ax.plot(d["voltage"][sel], 1e3 * d["current"][sel] / area, lw=1.0, color=_RUN_COLOURS[k % 10],
                label=f"step {s['step_index']} {s['kind']}" + (f" ({s['label']})" if s.get("label") else ""))
    ax.set_xlabel("Voltage / V")
    ax.set_ylabel("j / mA cm$^{-2}$" if view.area_cm2 else "I / mA")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(view, "sweeps"), fontsize=11)
    return _save(fig, path)


def plot_temperature(view: RunView, path: Path) -> Path | None:
    steps = view.steps_of("temperature")
    if not steps:
        return None
    d = view.samples([s["step_index"] for s in steps], ["t", "temperature"])
    span = max(view.duration, 1.0)
    unit, div = _time_unit(span)
    fig = _new_figure(8.5, 4.2)
    ax = fig.add_subplot()
    ok = np.isfinite(d["temperature"])
    ax.plot(d["t"][ok] / div, d["temperature"][ok], ".", ms=2, color="#b2182b", label="stage temperature")
    for k, s in enumerate(steps):
        sp = (s.get("params") or {}).get("setpoint")
        if sp is not None and s.get("t_end") is not None:
            ax.hlines(sp, s["t_start"] / div, s["t_end"] / div, color="black", lw=1.0, ls="--",
                      label="set point" if k == 0 else None)
    for k, sp in enumerate(view.spectra):
        st = next((s for s in view.steps if s["step_index"] == sp.step_index), None)
        if st is not None and math.isfinite(sp.temperature):
            ax.plot(st["t_start"] / div, sp.temperature, "v", color="#2166ac", ms=7, label="EIS" if k == 0 else None)
    ax.set_xlim(0, span / div)
    ax.set_xlabel(f"Time / {unit}")
    ax.set_ylabel("Temperature / °C")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(view, "temperature stage"), fontsize=11)
    return _save(fig, path)


# =========================================================================== results table
def display_value(r: dict) -> tuple[str, str, str]:
    """(value, uncertainty, unit) in the units a researcher reads: uA/cm2, %, mV, h."""
    name = str(r.get("name") or "")
    unit = r.get("unit") or ""
    v, u = r.get("value"), r.get("uncertainty")
    factor, shown = 1.0, unit
    if unit == "A/cm2" and v is not None and abs(float(v)) < 1e-3:
        factor, shown = 1e6, "µA/cm2"
    elif unit == "" and name.startswith("ce"):
        factor, shown = 100.0, "%"
    elif unit == "V" and name in ("hysteresis", "dE_50"):
        factor, shown = 1e3, "mV"
    elif unit == "s" and name in ("t_short", "cycling_time"):
        factor, shown = 1 / 3600.0, "h"
    vs = _fmt(None if v is None else float(v) * factor, 5)
    us = "" if u is None else _fmt(float(u) * factor, 2)
    return vs, us, shown


def _result_note(r: dict) -> str:
    d = r.get("data") or {}
    bits = []
    for key, fmt in (("temperature_C", "{:.1f} °C"), ("cycle", "cycle {}"), ("circuit", "{}"), ("n_cycles", "{} cycles"),
                     ("error", "{}"), ("warning", "{}")):
        if d.get(key) is not None and d.get(key) != "":
            try:
                bits.append(fmt.format(d[key]))
            except (ValueError, TypeError):
                bits.append(str(d[key]))
    if isinstance(d.get("residual"), dict) and d["residual"].get("rel_rms") is not None:
        bits.append(f"rel. rms {100 * d['residual']['rel_rms']:.2g} %")
    return "; ".join(bits)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:18px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#444;max-width:1000px}
.note{color:#8a5300} .small{font-size:0.85em;color:#555}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:0.85em}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _html_page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body)
            + f"\n<p class=\"small\">Written by labctl.reports on {time.strftime('%Y-%m-%d %H:%M:%S')}. "
              "Current sign: positive = anodic at the working electrode (stripping from the WE), negative = "
              "cathodic (plating onto the WE). Voltage = WE minus counter.</p>\n</body></html>\n")


def _results_table(results: Sequence[dict]) -> str:
    rows = [r for r in results if r.get("name") != "analysis_error"]
    if not rows:
        return "<p>No results.</p>"
    out = ["<table><tr><th>result</th><th>value</th><th>± (1σ)</th><th>unit</th><th>method</th><th>step</th>"
           "<th>notes</th></tr>"]
    for r in rows:
        v, u, unit = display_value(r)
        si = r.get("step_index")
        out.append(f"<tr><td>{_e(r.get('name'))}</td><td class=\"num\" title=\"{_e(r.get('value'))} {_e(r.get('unit'))}\">"
                   f"{_e(v)}</td><td class=\"num\">{_e(u)}</td><td>{_e(unit)}</td><td>{_e(r.get('method'))}</td>"
                   f"<td class=\"num\">{'' if si is None else _e(si)}</td><td class=\"small\">{_e(_result_note(r))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _analysis_errors(results: Sequence[dict]) -> list[str]:
    out = []
    for r in results:
        if r.get("name") == "analysis_error":
            d = r.get("data") or {}
            where = f" (step {d['step_index']})" if d.get("step_index") is not None else ""
            out.append(f"{d.get('analysis', 'analysis')}{where}: {d.get('error', '')}")
    return out


def _summary_rows(view: RunView) -> list[tuple[str, str]]:
    r = view.run
    c = view.cell
    cell_bits = [str(c.get("id") or r.get("cell"))] if (c.get("id") or r.get("cell")) else []
    if c.get("kind"):
        cell_bits.append(f"{c['kind']}")
    if c.get("working"):
        cell_bits.append(f"{c['working']} | {c.get('counter') or c['working']}")
    if c.get("electrolyte"):
        cell_bits.append(str(c["electrolyte"]))
    if c.get("area_cm2"):
        cell_bits.append(f"area {float(c['area_cm2']):.4g} cm2")
    if c.get("cathode_mass_g"):
        cell_bits.append(f"cathode {float(c['cathode_mass_g']) * 1e3:.4g} mg")
    started = r.get("started")
    kinds: dict[str, int] = {}
    for s in view.steps:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    cycles = view.cycles()
    rows = [
        ("protocol", str(r.get("protocol") or "-")),
        ("cell", ", ".join(cell_bits) or "-"),
        ("status", str(r.get("status") or "-")),
        ("end reason", str(r.get("end_reason") or "-")),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started))) if started else "-"),
        ("duration (test time)", _fmt_duration(view.duration)),
        ("samples", f"{view.n_samples:,}"),
        ("steps", f"{len(view.steps)} (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")"),
        ("cycles", f"{cycles[0]}-{cycles[-1]}" if cycles else "-"),
        ("channel", str(r.get("channel") or "-")),
        ("instrument", f"simulated (preset {r.get('preset')}, seed {r.get('seed')})" if r.get("simulated") else "hardware"),
    ]
    return rows


# =========================================================================== one run
@dataclass
class Report:
    """What a report wrote: ``index`` (index.html), ``files`` (index + PNGs), ``notes`` (what could not be shown)."""

    index: Path
    files: list[Path]
    notes: list[str]


_PLOTS = [
    ("voltage_time.png", plot_voltage_time,
     "Voltage against test time for the whole run (a min/max envelope per pixel column when the run is long); "
     "the shaded ranges are shown enlarged below."),
    ("nyquist.png", plot_nyquist,
     "Nyquist plot of every impedance spectrum (points) with the fitted equivalent circuit (lines); equal axes."),
    ("bode.png", plot_bode, "Bode plot: |Z| and phase against frequency, data (points) and fits (lines)."),
    ("tafel.png", plot_tafel,
     "Tafel plot: |j| against overpotential, with the Butler-Volmer fit over the fit window, the Tafel lines "
     "extrapolated to η = 0 and the exchange current density j0 (star)."),
    ("arrhenius.png", plot_arrhenius,
     "Arrhenius plot of 1/Rct (charge-transfer resistance from the EIS fits) against 1000/T, with the straight-line "
     "fit that gives the activation energy."),
    ("temperature.png", plot_temperature, "Temperature of the stage against time, with set points and EIS spectra."),
    ("ce_capacity.png", plot_ce, "Capacity (or plated/stripped charge) and coulombic efficiency per cycle."),
    ("hysteresis.png", plot_hysteresis,
     "Voltage hysteresis per cycle: half the difference of the plateau voltages (central 50 % of each half-cycle) "
     "of stripping and plating."),
    ("polarisation.png", plot_polarisation, "Polarisation ΔE at 50 % capacity per cycle."),
    ("voltage_capacity.png", plot_voltage_capacity, "Voltage against specific capacity for selected cycles."),
    ("dqdv.png", plot_dqdv, "Differential capacity dQ/dV for selected cycles (discharge negative)."),
    ("sweeps.png", plot_sweeps, "Current density against voltage of the linear and cyclic sweeps."),
]


def build_report(db: Any, run_id: int, out_dir: str | Path, *, zoom_cycles: Sequence[int] | None = None) -> Report:
    """Write the plots and index.html of run ``run_id`` into ``out_dir``; KeyError when there is no such run."""
    out = Path(out_dir)
    view = RunView(db, run_id)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[Path, str]] = []
    for name, fn, caption in _PLOTS:
        try:
            p = fn(view, out / name, zoom_cycles) if fn is plot_voltage_time else fn(view, out / name)
        except Exception as e:  # noqa: BLE001 - one plot failing must not lose the others
            view.notes.append(f"{name} could not be drawn: {type(e).__name__}: {e}")
            continue
        if p is not None:
            figures.append((p, caption))
    _remove_stale(out, [n for n, _, _ in _PLOTS], figures)
    results = view.results
    body = [f"<h1>Run {run_id}: {_e(view.run.get('protocol'))}</h1>",
            f"<p>{_e(_cell_title(view))}</p>",
            "<h2>Summary</h2><table>"]
    for k, v in _summary_rows(view):
        body.append(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
    body.append("</table>")
    body.append(f"<h2>Results</h2><p class=\"small\">Source: {_e(view.results_source)}; "
                "hover a value for the stored SI value.</p>")
    body.append(_results_table(results))
    errs = _analysis_errors(results)
    if errs:
        body.append("<p class=\"note\">Analyses that gave no result:</p><ul>"
                    + "".join(f"<li class=\"note\">{_e(x)}</li>" for x in errs) + "</ul>")
    body.append("<h2>Plots</h2>")
    if not figures:
        body.append("<p>Nothing to plot: the run has no samples of a plottable kind.</p>")
    for p, cap in figures:
        body.append(f"<figure><img src=\"{_e(p.name)}\" alt=\"{_e(p.stem)}\"><figcaption>{_e(cap)}</figcaption></figure>")
    if view.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li class=\"note\">{_e(n)}</li>" for n in view.notes) + "</ul>")
    events = view.db.events(run_id) if hasattr(view.db, "events") else []
    if events:
        body.append(f"<h2>Events</h2><details><summary>{len(events)} events</summary><table>"
                    "<tr><th>t</th><th>kind</th><th>message</th></tr>"
                    + "".join(f"<tr><td>{_e(_fmt_duration(e.get('t')))}</td><td>{_e(e.get('kind'))}</td>"
                              f"<td>{_e(e.get('message'))}</td></tr>" for e in events[-200:])
                    + "</table></details>")
    if view.run.get("protocol_text"):
        body.append(f"<h2>Protocol</h2><details><summary>protocol text</summary><pre>{_e(view.run['protocol_text'])}"
                    "</pre></details>")
    index = out / "index.html"
    index.write_text(_html_page(f"Run {run_id} report", body), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(_finite(results), indent=1, default=_json_default), encoding="utf-8")
    return Report(index, [index, out / "results.json"] + [p for p, _ in figures], list(view.notes))


def _remove_stale(out: Path, names: Sequence[str], figures: Sequence[tuple[Path, str]]) -> None:
    """Delete our own plot files left from an earlier report in the same directory that this one did not draw."""
    drawn = {p.name for p, _ in figures}
    for n in names:
        if n not in drawn and (out / n).is_file():
            (out / n).unlink()


def _finite(x: Any) -> Any:
    """A copy with NaN/inf replaced by None (strict JSON)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
        return None
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_report(db: Any, run_id: int, out_dir: str | Path, *, zoom_cycles: Sequence[int] | None = None) -> Path:
    """Plots (PNG) and ``index.html`` of one run in ``out_dir``; returns the path of index.html.

    Results come from ``db.results``; when the run has none they are computed by
    :func:`labctl.analysis.analyze_run` for the report (not stored).  ``zoom_cycles``
    chooses the cycles enlarged under the voltage-time plot (default: cycles 1-3 and
    the last 3 before the end or the short circuit).  KeyError for a missing run.
    """
    return build_report(db, run_id, out_dir, zoom_cycles=zoom_cycles).index


# =========================================================================== comparison of runs
def _labels(views: Sequence[RunView], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(views):
            raise ValueError(f"{len(labels)} labels for {len(views)} runs")
        return labels
    base = [v.label() for v in views]
    return [f"{b} (run {v.run_id})" if base.count(b) > 1 else b for b, v in zip(base, views)]


def _cmp_voltage_time(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    sel = [(v, lab, k) for k, (v, lab) in enumerate(zip(views, labels)) if v.is_cycling()]
    if not sel:
        return None
    span = max(v.duration for v, _, _ in sel)
    unit, div = _time_unit(span)
    fig = _new_figure(10.0, 1.2 + 2.3 * len(sel))
    axes = fig.subplots(len(sel), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (v, lab, k) in zip(axes, sel):
        x, y, env = _trace(v, v.steps_of(*TRACE_KINDS), div, 0.0, span / div)
        ax.plot(x, y, lw=0.6 if env else 0.9, color=_RUN_COLOURS[k % 10], label=lab)
        sc = _short_time(v)
        if sc is not None:
            ax.axvline(sc[0] / div, color="black", ls="--", lw=1.0, label=f"short circuit at {sc[0] / div:.4g} {unit}")
        ax.set_ylabel("Voltage / V")
        ax.grid(alpha=0.3)
        ax.axhline(0, color="0.6", lw=0.5, zorder=0)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"Time / {unit}")
    axes[-1].set_xlim(0, span / div)
    axes[0].set_title("Voltage vs time", fontsize=11)
    return _save(fig, path)


def _cmp_profiles(views: Sequence[RunView], labels: Sequence[str], path: Path,
                  cycles: Sequence[int] | None) -> Path | None:
    """Voltage of the same cycles of every run, against time since the first of them."""
    sel = [(v, lab, k) for k, (v, lab) in enumerate(zip(views, labels)) if v.is_cycling()]
    if not sel:
        return None
    want = list(cycles) if cycles else [1, 2, 3]
    fig = _new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    drawn = False
    spans = []
    for v, lab, k in sel:
        steps = [s for s in v.steps_of(*TRACE_KINDS) if int(s.get("cycle") or 0) in want]
        if not steps:
            continue
        spans.append(max(s.get("t_end") or s["t_start"] for s in steps) - min(s["t_start"] for s in steps))
    if not spans:
        return None
    unit, div = _time_unit(max(spans))
    for v, lab, k in sel:
        steps = [s for s in v.steps_of(*TRACE_KINDS) if int(s.get("cycle") or 0) in want]
        if not steps:
            continue
        t0 = min(s["t_start"] for s in steps)
        t1 = max(s.get("t_end") or s["t_start"] for s in steps)
        x, y, _ = _trace(v, steps, div, t0 / div, t1 / div, bins=1500)
        ax.plot(x - t0 / div, y, lw=1.0, color=_RUN_COLOURS[k % 10], label=lab)
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel(f"Time since the start of cycle {min(want)} / {unit}")
    ax.set_ylabel("Voltage / V")
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Voltage profiles, {_cycles_text(want)}", fontsize=11)
    return _save(fig, path)


def _cmp_styles(views: Sequence[RunView], labels: Sequence[str]) -> tuple[list[_SpecStyle], str]:
    styles: list[_SpecStyle] = []
    all_sp = [sp for v in views for sp in v.spectra if sp.z.size]
    mode = _spectra_mode(all_sp) if all_sp else "step"
    markers = "osD^v<>p"
    for k, (v, lab) in enumerate(zip(views, labels)):
        sps = [sp for sp in v.spectra if sp.z.size]
        if not sps:
            continue
        cols = _spectrum_colours(sps, mode if len(sps) > 1 else "step", _RUN_CMAPS[k % len(_RUN_CMAPS)])
        for j, (sp, c) in enumerate(zip(sps, cols)):
            suffix = "" if len(sps) == 1 else f", {_step_label(sp, mode)}"
            styles.append(_SpecStyle(sp, c if len(sps) > 1 else _RUN_COLOURS[k % 10], lab + suffix, markers[k % 8]))
    return styles, mode


def _cmp_series(views: Sequence[RunView], labels: Sequence[str], get: Any, path: Path, ylabel: str,
                title: str, scale: float = 1.0) -> Path | None:
    rows = [(get(v), lab, k) for k, (v, lab) in enumerate(zip(views, labels))]
    rows = [(s, lab, k) for s, lab, k in rows if s is not None and np.any(np.isfinite(s.values))]
    if not rows:
        return None
    fig = _new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for s, lab, k in rows:
        ok = np.isfinite(s.values)
        n = int(ok.sum())
        ax.plot(s.cycles[ok], scale * s.values[ok], "o-" if n < 400 else ".", ms=_marker_size(n), lw=0.6,
                color=_RUN_COLOURS[k % 10], label=lab)
    ax.set_xlabel("Cycle")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def _cmp_ce(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(_ce_series(v), v, lab, k) for k, (v, lab) in enumerate(zip(views, labels))]
    rows = [(s, v, lab, k) for s, v, lab, k in rows if s is not None and np.any(np.isfinite(s.values))]
    if not rows:
        return None
    fails = [((v.result_value("cycle_life") or {}).get("data") or {}).get("failed_cycle") for _, v, _, _ in rows]
    window = _ce_window([s for s, _, _, _ in rows], fails)
    fig = _new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for (s, v, lab, k), fail in zip(rows, fails):
        r = v.result_value("ce_mean")
        mean = f", mean {100 * float(r['value']):.2f} %" if r is not None and r.get("value") is not None else ""
        _draw_ce(ax, s, _RUN_COLOURS[k % 10], lab + mean, window)
        if fail:
            ax.axvline(fail, color=_RUN_COLOURS[k % 10], ls=":", lw=1.0)
    ax.set_ylim(*window)
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Coulombic efficiency / %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Coulombic efficiency per cycle (dotted: failure)", fontsize=11)
    return _save(fig, path)


def _cmp_capacity(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(_capacity_series(v), lab, k) for k, (v, lab) in enumerate(zip(views, labels))]
    rows = [(c, lab, k) for c, lab, k in rows if c is not None]
    if not rows:
        return None
    units = {c[0].unit for c, _, _ in rows}
    fig = _new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for (ch, dis), lab, k in rows:
        col = _RUN_COLOURS[k % 10]
        n = ch.cycles.size
        ax.plot(dis.cycles, dis.values, "s-" if n < 400 else ".", ms=_marker_size(n), lw=0.6, color=col,
                label=f"{lab}: {dis.label}")
        ax.plot(ch.cycles, ch.values, "o--" if n < 400 else ".", ms=_marker_size(n), mfc="none", lw=0.6, color=col,
                label=f"{lab}: {ch.label}")
    ax.set_xlabel("Cycle")
    ax.set_ylabel("Capacity / " + " or ".join(_unit_tex(u) for u in sorted(units)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Capacity per cycle", fontsize=11)
    return _save(fig, path)


def _cmp_tafel(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(v.tafel_curves(), lab, k) for k, (v, lab) in enumerate(zip(views, labels))]
    rows = [(c, lab, k) for c, lab, k in rows if c]
    if not rows:
        return None
    fig = _new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for curves, lab, k in rows:
        for j, c in enumerate(curves):
            _draw_tafel(ax, c, _RUN_COLOURS[k % 10], lab + ("" if len(curves) == 1 else f" step {c.step_index}"),
                        mark_fit=False)
    _tafel_axes(ax, shaded=False)
    ax.set_title("Tafel plots", fontsize=11)
    return _save(fig, path)


def _cmp_arrhenius(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = []
    for k, (v, lab) in enumerate(zip(views, labels)):
        a = arrhenius_data(v)
        if a is not None:
            rows.append((a, lab, k))
    if not rows:
        return None
    fig = _new_figure(7.5, 5.5)
    ax = fig.add_subplot()
    for a, lab, k in rows:
        _draw_arrhenius(ax, a, _RUN_COLOURS[k % 10], f"{lab}: ")
    _arrhenius_axes(ax)
    ax.set_title("Arrhenius plots of 1/Rct", fontsize=11)
    return _save(fig, path)


def _cmp_voltage_capacity(views: Sequence[RunView], labels: Sequence[str], path: Path) -> Path | None:
    rows = [(v, lab, k) for k, (v, lab) in enumerate(zip(views, labels))
            if v.kind == "full" and v.cathode_mass_g and v.is_cycling()]
    if not rows:
        return None
    common = set.intersection(*(set(v.cycles()) for v, _, _ in rows))
    cyc = 20 if 20 in common else (max(common) if common else None)
    fig = _new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for v, lab, k in rows:
        c = cyc if cyc is not None else v.cycles()[-1]
        steps = _full_cell_steps(v, [c]).get(c, [])
        if not steps:
            continue
        d = v.samples([s["step_index"] for s in steps], ["step_index", "voltage", "charge"])
        first = True
        for s in steps:
            sel = d["step_index"] == s["step_index"]
            ax.plot(np.abs(d["charge"][sel]) / 3.6 / v.cathode_mass_g, d["voltage"][sel],
                    "-" if float((s.get("params") or {}).get("current") or 0) < 0 else "--",
                    color=_RUN_COLOURS[k % 10], lw=1.3, label=f"{lab}, cycle {c}" if first else None)
            first = False
    ax.set_xlabel("Specific capacity / mAh g$^{-1}$")
    ax.set_ylabel("Cell voltage / V")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="solid: discharge, dashed: charge", title_fontsize=8)
    ax.set_title("Voltage vs capacity", fontsize=11)
    return _save(fig, path)


def _comparison_table(views: Sequence[RunView], labels: Sequence[str]) -> str:
    names: list[str] = []
    per_run: list[dict[str, dict]] = []
    for v in views:
        m: dict[str, dict] = {}
        for r in v.results:
            n = r.get("name")
            if n in ("analysis_error", "linkk_residual_rms") or n in m:
                continue
            m[n] = r
            if n not in names:
                names.append(n)
        per_run.append(m)
    if not names:
        return "<p>No results.</p>"
    out = ["<table><tr><th>result</th>" + "".join(f"<th>{_e(lab)}</th>" for lab in labels) + "</tr>"]
    for n in names:
        cells = []
        unit = ""
        for m in per_run:
            r = m.get(n)
            if r is None:
                cells.append("<td></td>")
                continue
            v, u, unit = display_value(r)
            cells.append(f"<td class=\"num\">{_e(v)}{' ± ' + _e(u) if u else ''}</td>")
        out.append(f"<tr><td>{_e(n)}{' / ' + _e(unit) if unit else ''}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


_COMPARISON_FILES = ("voltage_time.png", "voltage_profiles.png", "nyquist.png", "bode.png", "tafel.png", "arrhenius.png",
                     "ce.png", "capacity.png", "hysteresis.png", "voltage_capacity.png")


def build_comparison(db: Any, run_ids: Sequence[int], out_dir: str | Path, *, labels: Sequence[str] | None = None,
                     cycles: Sequence[int] | None = None) -> Report:
    """Overlay plots and index.html comparing ``run_ids``; KeyError when a run does not exist."""
    if not run_ids:
        raise ValueError("compare needs at least one run")
    views = [RunView(db, int(r)) for r in run_ids]
    labs = _labels(views, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    figures: list[tuple[Path, str]] = []

    def add(name: str, caption: str, fn: Any) -> None:
        try:
            p = fn(out / name)
        except Exception as e:  # noqa: BLE001 - one plot failing must not lose the others
            notes.append(f"{name} could not be drawn: {type(e).__name__}: {e}")
            return
        if p is not None:
            figures.append((p, caption))

    add("voltage_time.png", "Voltage against time of each run (one panel per run, same axes).",
        lambda p: _cmp_voltage_time(views, labs, p))
    add("voltage_profiles.png", "Voltage profiles of the same cycles of each run, overlaid.",
        lambda p: _cmp_profiles(views, labs, p, cycles))

    def nyq(p: Path) -> Path | None:
        styles, mode = _cmp_styles(views, labs)
        return _nyquist_figure(styles, mode, p, "Nyquist plots") if styles else None

    def bode(p: Path) -> Path | None:
        styles, mode = _cmp_styles(views, labs)
        return _bode_figure(styles, mode, p, "Bode plots") if styles else None

    add("nyquist.png", "Nyquist plots of the runs' spectra (points) with their fitted circuits (lines).", nyq)
    add("bode.png", "Bode plots of the runs' spectra with their fits.", bode)
    add("tafel.png", "Tafel plots with Butler-Volmer fits and j0 (stars).", lambda p: _cmp_tafel(views, labs, p))
    add("arrhenius.png", "Arrhenius plots of 1/Rct with the activation energies.",
        lambda p: _cmp_arrhenius(views, labs, p))
    add("ce.png", "Coulombic efficiency per cycle (failed cycles below the axis as triangles).",
        lambda p: _cmp_ce(views, labs, p))
    add("capacity.png", "Capacity per cycle (filled: discharge/plated, open: charge/stripped).",
        lambda p: _cmp_capacity(views, labs, p))
    add("hysteresis.png", "Voltage hysteresis (plateau) per cycle.",
        lambda p: _cmp_series(views, labs, _hysteresis_series, p, "Voltage hysteresis / mV",
                              "Voltage hysteresis per cycle"))
    add("voltage_capacity.png", "Voltage against specific capacity at the same cycle.",
        lambda p: _cmp_voltage_capacity(views, labs, p))
    _remove_stale(out, _COMPARISON_FILES, figures)
    for v in views:
        notes += [f"run {v.run_id}: {n}" for n in v.notes]
    body = [f"<h1>Comparison of runs {', '.join(str(v.run_id) for v in views)}</h1>", "<h2>Runs</h2>",
            "<table><tr><th>label</th><th>run</th><th>protocol</th><th>cell</th><th>status</th><th>end reason</th>"
            "<th>duration</th><th>samples</th></tr>"]
    for v, lab in zip(views, labs):
        body.append(f"<tr><td>{_e(lab)}</td><td>{v.run_id}</td><td>{_e(v.run.get('protocol'))}</td>"
                    f"<td>{_e(_cell_title(v))}</td><td>{_e(v.run.get('status'))}</td><td>{_e(v.run.get('end_reason'))}</td>"
                    f"<td>{_e(_fmt_duration(v.duration))}</td><td class=\"num\">{v.n_samples:,}</td></tr>")
    body.append("</table>")
    body.append("<h2>Results</h2><p class=\"small\">First value of each result per run (per-step results: the first "
                "step); the run reports list all.</p>")
    body.append(_comparison_table(views, labs))
    body.append("<h2>Plots</h2>")
    if not figures:
        body.append("<p>Nothing to overlay: the runs have no plottable data in common.</p>")
    for p, cap in figures:
        body.append(f"<figure><img src=\"{_e(p.name)}\" alt=\"{_e(p.stem)}\"><figcaption>{_e(cap)}</figcaption></figure>")
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li class=\"note\">{_e(n)}</li>" for n in notes) + "</ul>")
    index = out / "index.html"
    index.write_text(_html_page("Comparison of runs", body), encoding="utf-8")
    return Report(index, [index] + [p for p, _ in figures], notes)


def compare_runs(db: Any, run_ids: Sequence[int], out_dir: str | Path, *, labels: Sequence[str] | None = None,
                 cycles: Sequence[int] | None = None) -> Path:
    """Overlay several runs (voltage vs time, profiles of the same cycles, Nyquist/Bode, Tafel, Arrhenius,
    CE, capacity and hysteresis per cycle) and write ``index.html``; returns its path.

    Runs are labelled by preset / cell (``labels`` overrides); ``cycles`` chooses the overlaid voltage
    profiles (default 1-3).  KeyError for a missing run.
    """
    return build_comparison(db, run_ids, out_dir, labels=labels, cycles=cycles).index
