"""What a report reads from one run: :class:`RunView` over a :class:`db.Database`-like object.

Samples are read lazily (per step, or streamed in chunks for long runs); results come from
the database, else from the analysis dispatcher, run for the report without storing anything.
No matplotlib here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.reports.text import cell_title, run_title

#: step kinds whose voltage is a time trace (not a spectrum, not a stage log)
TRACE_KINDS = ("rest", "galvanostatic", "potentiostatic", "tafel", "lsv", "cv")

__all__ = ["TRACE_KINDS", "CycleSeries", "RunView", "Spectrum", "TafelCurve", "cell_info", "time_span"]


def _as_dict(r: Any) -> dict:
    if isinstance(r, dict):
        return r
    if hasattr(r, "to_dict"):
        return r.to_dict()
    return dict(vars(r))


def cell_info(run: dict) -> dict:
    """The run's cell as stored: the attributes recorded with the run (``meta['cell']``), else the cell's
    attributes (``cell_attrs``); id and kind from the run row; kind/area from the protocol text when missing.

    Keys are passed on as stored (``eis_model``, ``sei`` ... for the analysis); nothing is inferred
    from names.
    """
    meta_cell = (run.get("meta") or {}).get("cell") if isinstance(run.get("meta"), dict) else None
    if isinstance(meta_cell, dict) and meta_cell:
        info: dict[str, Any] = dict(meta_cell)
    elif isinstance(run.get("cell_attrs"), dict):
        info = dict(run["cell_attrs"])
    else:
        info = {}
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
        except Exception:
            pass
    return info


def time_span(steps: Sequence[dict]) -> tuple[float, float]:
    """(start of the first, end of the last) of ``steps``; a step still running ends at its start."""
    return (min(float(s["t_start"]) for s in steps), max(float(s.get("t_end") or s["t_start"]) for s in steps))


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
        self.cell = cell_info(self.run)
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
        """'preset / cell id' as stored with the run (the protocol name when it has neither)."""
        r = self.run
        parts = [str(x) for x in (r.get("preset"), self.cell.get("id") or r.get("cell")) if x]
        return " / ".join(parts) if parts else str(r.get("protocol") or "run")

    def cell_title(self) -> str:
        return cell_title(self.cell)

    def title(self, what: str) -> str:
        return run_title(self.run_id, self.run.get("protocol"), what)

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

    def iter_step_chunks(
        self, steps: Sequence[dict], columns: Sequence[str], target: int = 500_000
    ) -> Iterator[dict[str, np.ndarray]]:
        """Samples of ``steps`` in bounded chunks.  When the steps hold most of the run (a long cycling
        run), the run is streamed once and filtered; otherwise the steps are read one by one."""
        want = {int(s["step_index"]) for s in steps}
        n_want = sum(int(s.get("n_samples") or 0) for s in steps)
        n_all = max(sum(int(s.get("n_samples") or 0) for s in self.steps), 1)
        cols = list(columns)
        if hasattr(self.db, "iter_samples") and (len(want) > 64 and n_want > 0.5 * n_all):
            everything = all(
                int(s["step_index"]) in want for s in self.steps if s.get("n_samples") is None or s["n_samples"] > 0
            )
            if everything:  # no filter needed: read only the columns asked for
                yield from self.db.iter_samples(self.run_id, chunk_rows=target, columns=cols)
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
        except Exception as e:
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

    def analysis_cell(self) -> dict:
        """The cell description for the analysis dispatcher: the run's stored cell attributes unchanged
        (kind, area_cm2, cathode_mass_g, and ``eis_model`` / ``sei`` when the run carries them)."""
        return dict(self.cell)

    def results_for(self, step_index: int) -> list[dict]:
        return [r for r in self.results if r.get("step_index") == step_index]

    def result_value(self, name: str) -> dict | None:
        for r in self.results:
            if r.get("name") == name:
                return r
        return None

    def result_data(self, name: str) -> dict:
        """The details dict of the first result called ``name`` ({} when there is none)."""
        r = self.result_value(name)
        d = (r or {}).get("data")
        return d if isinstance(d, dict) else {}

    def failed_cycle(self) -> int | None:
        """The cycle where the CE fell under the failure threshold (from ``cycle_life``), if any."""
        return self.result_data("cycle_life").get("failed_cycle")

    def short_time(self) -> tuple[float, int | None] | None:
        """(test time, cycle) of the short circuit: the detected onset, else the end of the step that ended on it."""
        d = self.result_data("t_short")
        if d.get("t_onset") is not None:
            return float(d["t_onset"]), d.get("cycle")
        s = self.short_step()
        if s is not None and s.get("t_end") is not None:
            return float(s["t_end"]), s.get("cycle")
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
        """Every EIS step's spectrum (possibly empty), with its fit when the results have one."""
        if self._spectra is None:
            self._spectra = self._load_spectra()
        return self._spectra

    def nonempty_spectra(self) -> list[Spectrum]:
        return [s for s in self.spectra if s.z.size]

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
            sp = Spectrum(
                int(s["step_index"]),
                int(s.get("cycle") or 0),
                self.step_temperature(s, data["temperature"][sel]),
                f[ok],
                zr[ok] + 1j * zi[ok],
            )
            self._attach_fit(sp)
            out.append(sp)
        return out

    def _attach_fit(self, sp: Spectrum) -> None:
        fits = [
            r
            for r in self.results_for(sp.step_index)
            if isinstance(r.get("data"), dict) and r["data"].get("circuit") and r["data"].get("parameter")
        ]
        if not fits:
            return
        circuit = fits[0]["data"]["circuit"]
        by_param = {r["data"]["parameter"]: r["value"] for r in fits if r["data"]["circuit"] == circuit}
        try:
            from labctl.analysis.circuit import parse_circuit

            names = parse_circuit(circuit).param_names
        except Exception as e:
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
        return [
            s
            for s in self.steps_of("tafel", "lsv")
            if s["kind"] == "tafel" or "tafel" in str(s.get("label") or "").lower()
        ]

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
            res = {
                r["name"]: r
                for r in self.results_for(s["step_index"])
                if r.get("method") in ("tafel-extrapolation", "micro-polarisation", "zero crossing", "given")
            }
            e_eq = None
            for r in res.values():
                e_eq = (r.get("data") or {}).get("e_eq_V", e_eq)
            if e_eq is None:
                e_eq = _e_eq_without_fit(v, i)
            out.append(TafelCurve(int(s["step_index"]), v - e_eq, i / area, res))
        return out

    # ------------------------------------------------------------------ cycling
    def cycling_steps(self) -> list[dict]:
        """The galvanostatic steps with samples, in order."""
        return self.steps_of("galvanostatic")

    def is_cycling(self) -> bool:
        """Galvanostatic steps inside cycles (a repeat or an Aurbach test)."""
        return bool(self.cycles()) and len(self.cycling_steps()) >= 2

    def cycles(self) -> list[int]:
        return sorted({int(s["cycle"]) for s in self.cycling_steps() if (s.get("cycle") or 0) > 0})

    def cycling_steps_by_cycle(self, cycles: Sequence[int]) -> dict[int, list[dict]]:
        """The galvanostatic steps of the given cycles, grouped by cycle."""
        out: dict[int, list[dict]] = {}
        for s in self.cycling_steps():
            c = int(s.get("cycle") or 0)
            if c in cycles:
                out.setdefault(c, []).append(s)
        return out

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
