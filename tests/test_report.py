"""labctl.reports on an in-memory database with synthetic runs: which plots, the HTML, downsampling."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from labctl.analysis.circuit import parse_circuit
from labctl.cli.report import parse_cycles
from labctl.reports import (
    Envelope,
    RunView,
    build_comparison,
    build_report,
    compare_runs,
    display_value,
    plot_voltage_time,
    write_report,
)
from labctl.reports.voltage_time import default_zoom as _default_zoom

COLUMNS = ("step_index", "cycle", "t", "voltage", "current", "charge", "temperature", "frequency", "z_re", "z_im")
AREA = 1.267


class MemoryDB:
    """The read API of db.Database over arrays in memory; records which samples were asked for."""

    url = "memory://"

    def __init__(self) -> None:
        self._runs: dict[int, dict] = {}
        self._steps: dict[int, list[dict]] = {}
        self._samples: dict[int, dict[str, np.ndarray]] = {}
        self._results: dict[int, list[dict]] = {}
        self._events: dict[int, list[dict]] = {}
        self.calls: list[tuple] = []

    def add_run(self, run: dict, steps: list[dict], samples: dict[str, np.ndarray], results=(), events=()) -> int:
        rid = len(self._runs) + 1
        n = len(samples["t"])
        full = {c: np.asarray(samples.get(c, np.full(n, np.nan)), float) for c in COLUMNS}
        full["step_index"] = full["step_index"].astype(np.int64)
        full["cycle"] = full["cycle"].astype(np.int64)
        for s in steps:
            s["n_samples"] = int(np.sum(full["step_index"] == s["step_index"]))
        self._runs[rid] = {
            "id": rid,
            "status": "completed",
            "protocol": "synthetic",
            "protocol_text": None,
            "channel": "mem",
            "simulated": True,
            "seed": 0,
            "started": 1.0e9,
            "ended": 1.0e9 + float(full["t"].max() if n else 0),
            "end_reason": "protocol completed",
            "meta": {},
            "n_samples": n,
            **run,
        }
        self._steps[rid] = steps
        self._samples[rid] = full
        self._results[rid] = [dict(r) for r in results]
        self._events[rid] = list(events)
        return rid

    def run(self, run_id: int) -> dict:
        return dict(self._runs[run_id])

    def steps(self, run_id: int) -> list[dict]:
        return [dict(s) for s in self._steps[run_id]]

    def results(self, run_id: int) -> list[dict]:
        return [dict(r) for r in self._results[run_id]]

    def events(self, run_id: int) -> list[dict]:
        return list(self._events[run_id])

    def samples(self, run_id: int, step_index: int | None = None, columns=None) -> dict[str, np.ndarray]:
        self._runs[run_id]  # KeyError like the real one
        cols = list(columns or COLUMNS)
        self.calls.append(("samples", step_index, tuple(cols)))
        d = self._samples[run_id]
        if step_index is None:
            return {c: d[c].copy() for c in cols}
        sel = d["step_index"] == int(step_index)
        return {c: d[c][sel] for c in cols}

    def iter_samples(self, run_id: int, chunk_rows: int = 200_000, columns=None):
        cols = list(columns or COLUMNS)
        self.calls.append(("iter_samples", None, tuple(cols)))
        d = self._samples[run_id]
        n = len(d["t"])
        for lo in range(0, n, chunk_rows):
            yield {c: d[c][lo : lo + chunk_rows] for c in cols}


# --------------------------------------------------------------------------- synthetic runs
def _step(idx, kind, cycle, t0, t1, label=None, end_reason="duration", **params):
    return {
        "step_index": idx,
        "path": str(idx),
        "kind": kind,
        "label": label,
        "cycle": cycle,
        "params": params,
        "t_start": t0,
        "t_end": t1,
        "end_reason": end_reason,
        "end_detail": "",
        "charge": 0.0,
    }


def symmetric_run(
    n_cycles: int = 12, dt: float = 10.0, half: float = 3600.0, short: bool = True, hyst: float = 0.07, seed: int = 0
):
    """Rest, then plate/strip at 0.5 mA/cm2; the last strip collapses to ~0 V (short circuit)."""
    rng = np.random.default_rng(seed)
    i0 = 0.5e-3 * AREA
    steps, cols = [], {c: [] for c in ("step_index", "cycle", "t", "voltage", "current", "charge")}
    t = 0.0
    idx = 1
    tt = np.arange(dt, 600 + dt / 2, dt)
    steps.append(_step(idx, "rest", 0, 0.0, 600.0))
    for k, v in zip(
        ("step_index", "cycle", "t", "voltage", "current", "charge"),
        (
            np.full(tt.size, idx),
            np.zeros(tt.size),
            tt,
            1e-4 * rng.standard_normal(tt.size),
            np.zeros(tt.size),
            np.zeros(tt.size),
        ),
    ):
        cols[k].append(v)
    t = 600.0
    for c in range(1, n_cycles + 1):
        for sign, label in ((-1, "plate"), (1, "strip")):
            idx += 1
            rel = np.arange(dt, half + dt / 2, dt)
            h = hyst * (1 + 0.002 * c)
            v = sign * (h + 0.02 * np.exp(-rel / 15.0)) + 5e-4 * rng.standard_normal(rel.size)
            reason = "duration"
            if short and c == n_cycles and sign > 0:
                v[rel > half / 2] = 1e-3 * rng.standard_normal(int(np.sum(rel > half / 2)))
                reason = "short_circuit"
            steps.append(
                _step(idx, "galvanostatic", c, t, t + rel[-1], label=label, end_reason=reason, current=sign * i0)
            )
            for k, a in zip(
                ("step_index", "cycle", "t", "voltage", "current", "charge"),
                (
                    np.full(rel.size, idx),
                    np.full(rel.size, c),
                    t + rel,
                    v,
                    np.full(rel.size, sign * i0),
                    sign * i0 * rel,
                ),
            ):
                cols[k].append(a)
            t += rel[-1]
    samples = {k: np.concatenate(v) for k, v in cols.items()}
    run = {
        "cell": "S1",
        "cell_kind": "symmetric",
        "preset": "br-mg",
        "cell_attrs": {"kind": "symmetric", "id": "S1", "working": "Br-Mg", "counter": "Br-Mg", "area_cm2": AREA},
    }
    return run, steps, samples


def eis_temperature_run(temps=(25.0, 40.0, 60.0), ea=36.65e3):
    """Temperature steps and EIS spectra of Rs + (R_SEI || CPE) + (Rct || CPE), Rct from Arrhenius."""
    circ = parse_circuit("R0-p(R1,CPE1)-p(R2,CPE2)")
    f = np.logspace(6, -1, 71)
    steps, parts = [], []
    t = 0.0
    idx = 0
    for T in temps:
        idx += 1
        tt = t + np.arange(1, 61) * 10.0
        steps.append(_step(idx, "temperature", 0, t, tt[-1], setpoint=T, band=0.2, hold=600))
        parts.append(
            {
                "step_index": np.full(tt.size, idx),
                "t": tt,
                "temperature": T + 0.05 * np.sin(tt),
                "voltage": np.full(tt.size, np.nan),
            }
        )
        t = tt[-1]
        idx += 1
        rct = 3.34e5 * math.exp(ea / 8.314462618 * (1 / (T + 273.15) - 1 / 298.15))
        z = circ.impedance([5.56, 2.2, 2e-5, 0.8, rct, 5e-7, 0.9], f)
        tt = t + np.arange(1, f.size + 1) * 1.0
        steps.append(_step(idx, "eis", 0, t, tt[-1], end_reason="complete"))
        parts.append(
            {
                "step_index": np.full(f.size, idx),
                "t": tt,
                "temperature": np.full(f.size, T),
                "frequency": f,
                "z_re": z.real,
                "z_im": z.imag,
                "voltage": np.zeros(f.size),
            }
        )
        t = tt[-1]
    n = sum(len(p["t"]) for p in parts)
    samples = {
        c: np.concatenate([p.get(c, np.full(len(p["t"]), np.nan)) for p in parts])
        for c in COLUMNS
        if c not in ("cycle", "current", "charge")
    }
    samples["cycle"] = np.zeros(n)
    samples["current"] = np.zeros(n)
    samples["charge"] = np.zeros(n)
    # the circuit to fit is stored with the cell (the report guesses nothing from the preset or electrode names)
    run = {
        "cell": "T1",
        "cell_kind": "symmetric",
        "preset": "br-mg",
        "cell_attrs": {
            "kind": "symmetric",
            "id": "T1",
            "working": "Br-Mg",
            "counter": "Br-Mg",
            "area_cm2": AREA,
            "eis_model": "R0-p(R1,CPE1)-p(R2,CPE2)",
            "sei": True,
        },
    }
    return run, steps, samples


# --------------------------------------------------------------------------- checks
def _png_ok(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
    assert 600 <= w <= 2500 and 400 <= h <= 2000, (path.name, w, h)
    return w, h


def _html_pngs(index: Path) -> set[str]:
    return set(re.findall(r'<img src="([^"]+\.png)"', index.read_text()))


def _check_report(index: Path) -> set[str]:
    assert index.name == "index.html" and index.exists()
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert _html_pngs(index) == pngs
    for p in pngs:
        _png_ok(index.parent / p)
    return pngs


# --------------------------------------------------------------------------- tests
def test_symmetric_run_report_computes_results_and_plots(tmp_path):
    db = MemoryDB()
    rid = db.add_run(*symmetric_run())
    index = write_report(db, rid, tmp_path / "r")
    pngs = _check_report(index)
    assert pngs == {"voltage_time.png", "hysteresis.png"}
    html = index.read_text()
    assert "computed for this report (not stored)" in html
    assert "<td>hysteresis</td>" in html and "<td>t_short</td>" in html
    assert "symmetric" in html and "S1" in html and "protocol completed" in html
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    hyst = next(r for r in res if r["name"] == "hysteresis")
    assert hyst["value"] == pytest.approx(0.0707, abs=0.002)
    assert db.results(rid) == []  # nothing stored


def test_stored_results_are_used_not_recomputed(tmp_path):
    db = MemoryDB()
    run, steps, samples = symmetric_run(n_cycles=4, short=False)
    stored = [
        {
            "name": "hysteresis",
            "value": 0.1234,
            "unit": "V",
            "uncertainty": None,
            "method": "stored",
            "step_index": None,
            "data": {"per_cycle": {"cycle": [1, 2, 3, 4], "hysteresis_V": [0.12, 0.12, 0.13, 0.13]}},
            "analysis_version": "x",
        }
    ]
    rid = db.add_run(run, steps, samples, results=stored)
    r = build_report(db, rid, tmp_path)
    html = r.index.read_text()
    assert "Source: database" in html and "123.4" in html  # shown in mV
    assert "hysteresis.png" in _html_pngs(r.index)


def test_eis_temperature_report_has_nyquist_bode_arrhenius(tmp_path):
    db = MemoryDB()
    rid = db.add_run(*eis_temperature_run())
    r = build_report(db, rid, tmp_path)
    pngs = _check_report(r.index)
    assert {"nyquist.png", "bode.png", "arrhenius.png", "temperature.png"} <= pngs
    assert "voltage_time.png" not in pngs
    view = RunView(db, rid)
    assert all(sp.circuit == "R0-p(R1,CPE1)-p(R2,CPE2)" for sp in view.spectra)
    assert [round(sp.temperature) for sp in view.spectra] == [25, 40, 60]
    ea = view.result_value("Ea")
    assert ea["value"] == pytest.approx(36.65, rel=0.02)
    html = r.index.read_text()
    assert "<td>Ea</td>" in html and "<td>Rct</td>" in html
    # the fitted curve is drawn over the data: it passes through the measured points
    sp = view.spectra[0]
    zf = parse_circuit(sp.circuit).impedance(sp.params, sp.frequency)
    assert np.max(np.abs(zf - sp.z) / np.abs(sp.z)) < 0.02


def test_zoom_cycles_and_missing_cycles(tmp_path):
    db = MemoryDB()
    rid = db.add_run(*symmetric_run(n_cycles=10))
    r = build_report(db, rid, tmp_path, zoom_cycles=[2, 3, 9, 99])
    assert any("no cycle 99" in n for n in r.notes)
    assert (tmp_path / "voltage_time.png").exists()
    assert _default_zoom(list(range(1, 11)), None) == [[1, 2, 3], [8, 9, 10]]
    assert _default_zoom(list(range(1, 11)), 7) == [[1, 2, 3], [5, 6, 7]]
    assert _default_zoom([1, 2, 3, 4], None) == [[1, 2, 3, 4]]


def test_missing_run_raises_keyerror(tmp_path):
    with pytest.raises(KeyError):
        write_report(MemoryDB(), 5, tmp_path)


def test_compare_runs_overlays(tmp_path):
    db = MemoryDB()
    a = db.add_run(*symmetric_run(n_cycles=6, hyst=0.07, seed=1))
    run, steps, samples = symmetric_run(n_cycles=5, hyst=0.145, seed=2)
    run = {
        **run,
        "preset": "bare-mg",
        "cell": "S2",
        "cell_attrs": {**run["cell_attrs"], "id": "S2", "working": "Mg", "counter": "Mg"},
    }
    b = db.add_run(run, steps, samples)
    e = db.add_run(*eis_temperature_run(temps=(25.0, 50.0)))
    index = compare_runs(db, [a, b, e], tmp_path)
    pngs = _check_report(index)
    assert {
        "voltage_time.png",
        "voltage_profiles.png",
        "hysteresis.png",
        "nyquist.png",
        "bode.png",
        "arrhenius.png",
    } <= pngs
    html = index.read_text()
    # default labels: preset / cell, made unique with the run id
    assert "br-mg / S1" in html and "bare-mg / S2" in html and "br-mg / T1" in html
    r = build_comparison(db, [a, b], tmp_path / "l", labels=["Br-Mg", "bare Mg"])
    assert "Br-Mg" in r.index.read_text()
    with pytest.raises(ValueError):
        build_comparison(db, [a, b], tmp_path / "x", labels=["only one"])


def test_envelope_downsamples_huge_run_without_loading_it_whole(tmp_path):
    """2.4 M samples: drawn as a per-pixel envelope from streamed chunks of two columns, in seconds."""
    db = MemoryDB()
    stored = [
        {
            "name": "cycles_completed",
            "value": 339,
            "unit": "cycles",
            "uncertainty": None,
            "method": "count",
            "step_index": None,
            "data": {},
        }
    ]  # stored results: the analysis is not re-run here
    rid = db.add_run(*symmetric_run(n_cycles=340, dt=1.0, short=True), results=stored)
    assert db.run(rid)["n_samples"] > 2_400_000
    view = RunView(db, rid)
    db.calls.clear()
    t0 = time.perf_counter()
    p = plot_voltage_time(view, tmp_path / "vt.png")
    elapsed = time.perf_counter() - t0
    assert p is not None and _png_ok(p)
    whole = [c for c in db.calls if c[0] == "samples" and c[1] is None]
    assert not whole  # never the whole run at once
    streamed = [c for c in db.calls if c[0] == "iter_samples"]
    assert streamed and all(set(c[2]) <= {"t", "voltage", "step_index"} for c in streamed)
    assert elapsed < 30, elapsed


def test_envelope_matches_brute_force():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 100, 50_000))
    y = np.sin(x) + 0.1 * rng.standard_normal(x.size)
    env = Envelope(0.0, 100.0, 500)
    for part in np.array_split(np.arange(x.size), 7)[::-1]:  # chunks out of order
        env.add(x[part], y[part])
    b = np.clip((x / 100.0 * 500).astype(int), 0, 499)
    for k in (0, 17, 250, 499):
        assert env.lo[k] == y[b == k].min() and env.hi[k] == y[b == k].max()
    px, py = env.polyline()
    assert px.size == py.size == 1000
    assert np.nanmin(py) == y.min() and np.nanmax(py) == y.max()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 110), st.floats(-5, 5)), min_size=1, max_size=200), st.integers(1, 50))
def test_envelope_property(points, bins):
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    env = Envelope(0.0, 100.0, bins)
    env.add(x, y)
    b = np.clip(((x - 0.0) * (bins / 100.0)).astype(np.int64), 0, bins - 1)
    for k in range(bins):
        sel = b == k
        if sel.any():
            assert env.lo[k] == y[sel].min() and env.hi[k] == y[sel].max()
        else:
            assert math.isnan(env.lo[k]) and math.isnan(env.hi[k])
    assert env.count.sum() == len(points)


def test_envelope_ignores_nan():
    env = Envelope(0, 10, 10)
    env.add(np.array([0.5, 1.5, np.nan, 2.5]), np.array([np.nan, 1.0, 2.0, 3.0]))
    assert math.isnan(env.lo[0]) and env.lo[1] == 1.0 and env.hi[2] == 3.0 and env.n == 2


def test_display_units():
    assert display_value({"name": "j0", "value": 6.6e-7, "unit": "A/cm2", "uncertainty": 1e-8}) == (
        "0.66",
        "0.01",
        "µA/cm2",
    )
    assert display_value({"name": "ce_mean", "value": 0.995, "unit": "", "uncertainty": None})[0::2] == ("99.5", "%")
    assert display_value({"name": "hysteresis", "value": 0.068, "unit": "V", "uncertainty": None})[0::2] == ("68", "mV")
    assert display_value({"name": "t_short", "value": 1610 * 3600.0, "unit": "s", "uncertainty": None})[0::2] == (
        "1610",
        "h",
    )
    assert display_value({"name": "Rs", "value": float("nan"), "unit": "ohm", "uncertainty": None})[0] == "-"


def test_parse_cycles():
    assert parse_cycles("1,2,3") == [1, 2, 3]
    assert parse_cycles(" 1-3, 98-100 ") == [1, 2, 3, 98, 99, 100]
    assert parse_cycles("5,5,2") == [2, 5]
    assert parse_cycles(None) is None and parse_cycles("") is None
    for bad in ("a", "0", "3-1", "1-", "-2", "1.5"):
        with pytest.raises(ValueError):
            parse_cycles(bad)


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=30))
def test_parse_cycles_roundtrip(cycles):
    assert parse_cycles(",".join(map(str, cycles))) == sorted(set(cycles))


def test_empty_and_running_runs(tmp_path):
    db = MemoryDB()
    empty = db.add_run({"status": "running", "end_reason": None, "cell": None}, [], {"t": np.zeros(0)})
    r = build_report(db, empty, tmp_path / "e")
    assert _check_report(r.index) == set()
    assert "Nothing to plot" in r.index.read_text() and "running" in r.index.read_text()
    run, steps, samples = symmetric_run(n_cycles=3, short=False)
    rid = db.add_run({**run, "status": "running", "ended": None}, steps, samples)
    db._steps[rid][-1].update(t_end=None, n_samples=None, end_reason=None)  # the step still running
    r = build_report(db, rid, tmp_path / "r")
    assert "voltage_time.png" in _check_report(r.index)


def test_analysis_errors_are_listed_not_fatal(tmp_path):
    db = MemoryDB()
    run, steps, samples = eis_temperature_run(temps=(25.0,))
    samples["z_re"][:] = np.nan  # a spectrum that cannot be fitted
    samples["z_im"][:] = np.nan
    rid = db.add_run(run, steps, samples)
    r = build_report(db, rid, tmp_path)
    html = r.index.read_text()
    assert "Analyses that gave no result" in html and "eis (step 2)" in html
    assert "nyquist.png" not in _check_report(r.index)


def test_reusing_an_output_directory_leaves_no_stale_plots(tmp_path):
    db = MemoryDB()
    cyc = db.add_run(*symmetric_run(n_cycles=4))
    eis = db.add_run(*eis_temperature_run(temps=(25.0, 40.0)))
    (tmp_path / "notes.txt").write_text("mine")
    write_report(db, cyc, tmp_path)
    assert (tmp_path / "hysteresis.png").exists()
    index = write_report(db, eis, tmp_path)
    pngs = _check_report(index)  # every PNG in the directory is this run's
    assert "hysteresis.png" not in pngs and "nyquist.png" in pngs
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_import_does_not_load_matplotlib():
    """``import labctl.reports`` stays light (the CLI imports it for every command); plots load matplotlib."""
    import subprocess
    import sys

    code = (
        "import labctl.reports, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "labctl.reports.plot_voltage_time; assert 'matplotlib' in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_analysis_gets_the_stored_cell_unchanged(monkeypatch):
    """The cell handed to the dispatcher is the one stored with the run: nothing guessed from preset or electrode
    names; ``eis_model`` / ``sei`` pass through; the run's own record (meta['cell']) wins over the cell's attributes."""
    import labctl.analysis

    seen: list[dict] = []
    monkeypatch.setattr(labctl.analysis, "analyze_run", lambda steps, samples, cell: seen.append(dict(cell)) or [])
    db = MemoryDB()
    run, steps, samples = eis_temperature_run(temps=(25.0,))
    attrs = {"kind": "symmetric", "id": "T1", "working": "Br-Mg", "counter": "Br-Mg", "area_cm2": AREA}
    rid = db.add_run({**run, "cell_attrs": dict(attrs)}, steps, samples)
    assert RunView(db, rid).results == []
    assert seen[-1] == attrs  # no 'anode', no 'sei', no model invented from "br-mg" / "Br-Mg"
    one_arc = "R0-p(R1,CPE1)"
    rid = db.add_run(
        {
            **run,
            "preset": "bare-mg",
            "cell_attrs": {**attrs, "eis_model": "R0-p(R1,CPE1)-p(R2,CPE2)", "sei": True},
            "meta": {"cell": {**attrs, "working": "Mg", "counter": "Mg", "eis_model": one_arc, "sei": False}},
        },
        steps,
        samples,
    )
    assert RunView(db, rid).results == []
    assert seen[-1] == {**attrs, "working": "Mg", "counter": "Mg", "eis_model": one_arc, "sei": False}


def test_stored_one_arc_model_is_fitted_even_to_two_arc_data(tmp_path):
    """The report's analysis fits the circuit stored with the run, whatever the names say."""
    db = MemoryDB()
    run, steps, samples = eis_temperature_run(temps=(25.0,))
    run["cell_attrs"] = {**run["cell_attrs"], "eis_model": "R0-p(R1,CPE1)", "sei": False}
    rid = db.add_run(run, steps, samples)
    view = RunView(db, rid)
    assert [sp.circuit for sp in view.spectra] == ["R0-p(R1,CPE1)"]


def test_reports_source_has_no_anode_names():
    """Legends and circuit choice come from what the run stores; the package names no study anode."""
    src = Path(__file__).resolve().parents[1] / "labctl" / "reports"
    files = sorted(src.glob("*.py"))
    assert len(files) > 5
    for p in files:
        text = p.read_text(encoding="utf-8").lower()
        for word in ("br-mg", "bare-mg", "bare mg", "brmg", "baremg"):
            assert word not in text, (p.name, word)
