"""analyze_run: pick the analyses that fit a run's steps and return their results.

``steps``: dicts with step_index, kind, cycle, label, params, t_start, t_end,
end_reason.  ``samples``: the run's sample columns as arrays (t, voltage, current,
cycle, step_index; optional charge, temperature, frequency, z_re, z_im).  ``cell``:
the cell description (area_cm2, cathode_mass_g, kind, eis_model, sei, ...).

What is computed, by step kind:

* ``eis``: each spectrum (points with Z'' > 0 and non-finite ones dropped) is fitted
  with 1/|Z| weighting ('modulus': |Z| of Mg cells spans 10..1e6 ohm) and the
  automatic initial guess.  Circuit: ``cell['eis_model']`` when the cell states it
  (a circuit string, or a mapping ``{cycle: circuit}`` whose entry with the highest
  cycle not above the spectrum's cycle applies; a spectrum without a cycle counts as
  cycle 0); else ``R0-p(R1,CPE1)`` when ``cell['sei']`` is False and
  ``R0-p(R1,CPE1)-p(R2,CPE2)`` when it is True; otherwise both are fitted and the
  two-arc circuit is kept only if an F-test says the second arc is significant
  (p < 0.01).  The cell's names (electrodes, anode, preset) are never read.
  Results: ``Rs`` (R0), ``Rct``, ``Q_ct``, ``alpha_ct``, and for two arcs ``R_SEI``,
  ``Q_SEI``, ``alpha_SEI``: the faster (high-frequency) arc is taken as the SEI, the
  slower one as charge transfer.  Another stated circuit gives its parameters under
  their circuit names (``R0``, ``CPE1_Q``, ...; no Arrhenius fit, which needs Rct).
  Each carries ``step_index``, ``cycle`` and
  ``temperature_C`` in its details; a Lin-KK check is added per spectrum
  (``linkk_residual_rms``).  When the spectra span two or more temperatures (at
  least 0.5 degC apart), Ea is fitted from all their Rct values (``Ea``,
  ``arrhenius_A``).  The temperature of a spectrum is the median of its temperature
  samples, else ``params['temperature']`` of the step, else the set point of the
  last ``temperature`` step before it.
* ``tafel`` (and ``lsv`` steps whose label contains 'tafel'): Tafel extrapolation and
  micro-polarisation (:func:`labctl.analysis.tafel.analyze_tafel`) with
  ``cell['area_cm2']``.  The symmetric-cell form (2 j0 sinh(alpha n F V / 2RT);
  results j0, b_cell, alpha, j0_micro) is used when the step's
  ``params['symmetric']`` says so, else ``cell['tafel_symmetric']``, else when
  ``cell['kind'] == 'symmetric'`` (the sweep is then of the cell voltage); otherwise
  the one-electrode Butler-Volmer reading (j0, b_a, b_c, alpha_a, alpha_c, j0_micro).
  The Tafel j0 is the same in both readings; alpha and the micro-polarisation j0
  differ by a factor 2.  E_eq from the zero crossing, else the last voltage of a
  preceding ``rest`` step.
* the same steps of an **imported** run (``end_reason == 'imported'``) whose current changes
  sign, unless the cell or step says the sweep is of a symmetric cell: a mixed-potential
  (corrosion) curve, read with :func:`labctl.analysis.corrosion.auto_corrosion` (E_corr,
  b_a / b_c, i_corr, Stern-Geary B, R_p, i_corr_stern_geary; the window 50-150 mV beyond
  E_corr on each branch, chosen automatically) in A/cm2 with ``cell['area_cm2']``, else in A.
* ``galvanostatic`` steps labelled ``aurbach:reservoir``, ``aurbach:cycle-plate``,
  ``aurbach:cycle-strip``, ``aurbach:final-strip``: the Aurbach CE from their charges.
* other ``galvanostatic`` steps (cycling): by ``cell['kind']``: 'full' (or a
  ``cathode_mass_g`` in the cell): capacities (mAh/g), CE and dE at 50 %;
  'symmetric': hysteresis and short-circuit time (or total cycling time); otherwise
  (asymmetric, unknown): mean CE and cycle life, plus hysteresis when the kind is
  unknown.

An analysis that fails does not stop the others: it gives a Result named
``analysis_error`` (value NaN, details: analysis, step_index, error message), or,
with ``strict=True``, raises the AnalysisError.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ._core import AnalysisError, Result
from .arrhenius import fit_arrhenius
from .circuit import parse_circuit
from .corrosion import auto_corrosion, prepare
from .cycling import (
    aurbach_ce,
    capacity_results,
    capacity_table,
    ce_results,
    cycle_table,
    full_cell_results,
    full_cell_table,
    half_cycles,
    hysteresis_results,
    short_circuit_time,
)
from .eis import fit_circuit, linkk_verdict, prepare_spectrum
from .tafel import analyze_tafel

ONE_ARC = "R0-p(R1,CPE1)"
TWO_ARCS = "R0-p(R1,CPE1)-p(R2,CPE2)"
_NAMES_1 = {"R0": "Rs", "R1": "Rct", "CPE1_Q": "Q_ct", "CPE1_alpha": "alpha_ct"}
_NAMES_2 = {
    "R0": "Rs",
    "R1": "R_SEI",
    "CPE1_Q": "Q_SEI",
    "CPE1_alpha": "alpha_SEI",
    "R2": "Rct",
    "CPE2_Q": "Q_ct",
    "CPE2_alpha": "alpha_ct",
}
AURBACH_LABELS = ("aurbach:reservoir", "aurbach:cycle-plate", "aurbach:cycle-strip", "aurbach:final-strip")


def _col(samples: dict, name: str, mask=None):
    a = samples.get(name)
    if a is None:
        return None
    a = np.asarray(a)
    return a[mask] if mask is not None else a


def _mask(samples: dict, step_indices) -> np.ndarray:
    si = np.asarray(samples["step_index"])
    return np.isin(si, list(step_indices))


def _number(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _temperature_of(step: dict, steps: list[dict], samples: dict, mask) -> float | None:
    temp = _col(samples, "temperature", mask)
    if temp is not None:
        temp = np.asarray(temp, float)
        temp = temp[np.isfinite(temp)]
        if temp.size:
            return float(np.median(temp))
    params = step.get("params") or {}
    v = _number(params.get("temperature"))
    if v is not None:
        return v
    for s in reversed([s for s in steps if s["step_index"] < step["step_index"]]):
        if s.get("kind") == "temperature":
            p = s.get("params") or {}
            for key in ("target", "setpoint", "set_point", "temperature", "value"):
                v = _number(p.get(key))
                if v is not None:
                    return v
    return None


def _stated_model(model, cycle: int | None) -> str:
    """The circuit of ``cell['eis_model']`` for a spectrum at ``cycle``: a string, or {cycle: circuit}."""
    if isinstance(model, str):
        return model
    items = model.items() if isinstance(model, dict) else model
    try:
        table = sorted((int(k), str(v)) for k, v in items)
    except (TypeError, ValueError):
        raise AnalysisError(f"cell['eis_model'] {model!r}: expected a circuit string or {{cycle: circuit}}") from None
    at = int(cycle or 0)
    usable = [m for c, m in table if c <= at]
    if not usable:
        raise AnalysisError(f"cell['eis_model'] {model!r} gives no circuit for cycle {at}")
    return usable[-1]


def _choose_circuit(cell: dict, cycle: int | None = None) -> str | None:
    """The circuit the cell states (``eis_model``, else ``sei``), or None: let the F-test choose."""
    model = cell.get("eis_model")
    if model is not None and model != "":
        return _stated_model(model, cycle)
    if cell.get("sei") is False:
        return ONE_ARC
    if cell.get("sei") is True:
        return TWO_ARCS
    return None


def _canonical(text: str) -> str:
    return "".join(text.split())


def _eis(step, steps, samples, cell) -> tuple[list[Result], float | None, float | None]:
    m = _mask(samples, [step["step_index"]])
    f = _col(samples, "frequency", m)
    zr, zi = _col(samples, "z_re", m), _col(samples, "z_im", m)
    if f is None or zr is None or zi is None:
        raise AnalysisError("EIS step without frequency/z_re/z_im samples")
    f, z = prepare_spectrum(np.asarray(f, float), np.asarray(zr, float), np.asarray(zi, float), drop_inductive=True)
    circuit = _choose_circuit(cell, step.get("cycle"))
    if circuit is not None:
        fit = fit_circuit(f, z, parse_circuit(circuit), weighting="modulus")
        choice = "from the cell description"
    else:
        f1 = fit_circuit(f, z, ONE_ARC, weighting="modulus")
        try:
            f2 = fit_circuit(f, z, TWO_ARCS, weighting="modulus")
        except AnalysisError:
            f2 = None
        fit, choice = f1, "F-test: second arc not significant"
        if f2 is not None and f2.stats["dof"] > 0:
            s1, s2 = f1.stats["ssr"], f2.stats["ssr"]
            dn = f1.stats["dof"] - f2.stats["dof"]
            F = ((s1 - s2) / dn) / (s2 / f2.stats["dof"]) if s2 > 0 else math.inf
            p = float(stats.f.sf(F, dn, f2.stats["dof"])) if math.isfinite(F) else 0.0
            if p < 0.01:
                fit, choice = f2, f"F-test: second arc significant (p = {p:.2g})"
            else:
                choice = f"F-test: second arc not significant (p = {p:.2g})"
    temp = _temperature_of(step, steps, samples, m)
    det = {
        "step_index": step["step_index"],
        "cycle": step.get("cycle"),
        "label": step.get("label"),
        "temperature_C": temp,
        "circuit_choice": choice,
    }
    shape = _canonical(fit.circuit.text)
    names = {ONE_ARC: _NAMES_1, TWO_ARCS: _NAMES_2}.get(shape, {})
    out = fit.results(rename=names, details=det)
    kk = linkk_verdict(f, z).result()
    kk.details.update(step_index=step["step_index"], cycle=step.get("cycle"))
    out.append(kk)
    rct = fit.params[{ONE_ARC: "R1", TWO_ARCS: "R2"}[shape]] if names else None
    return out, temp, rct


def _tafel(step, steps, samples, cell) -> list[Result]:
    area = _number(cell.get("area_cm2"))
    if area is None or area <= 0:
        raise AnalysisError("Tafel analysis needs the electrode area: cell['area_cm2'] is missing")
    m = _mask(samples, [step["step_index"]])
    e = np.asarray(_col(samples, "voltage", m), float)
    i = np.asarray(_col(samples, "current", m), float)
    sym = _symmetric(step, cell)
    temp = _temperature_of(step, steps, samples, m)
    kw = {"temperature_c": temp if temp is not None else 22.0, "symmetric": sym}
    s = np.sign(i[np.isfinite(i)])
    if not np.any(s[:-1] * s[1:] < 0):
        prev = [x for x in steps if x["step_index"] < step["step_index"]]
        if prev and prev[-1].get("kind") == "rest":
            pm = _mask(samples, [prev[-1]["step_index"]])
            v = np.asarray(_col(samples, "voltage", pm), float)
            if v.size:
                kw["e_eq"] = float(v[-1])
    out = analyze_tafel(e, i, area_cm2=area, **kw)
    for r in out:
        r.details.update(step_index=step["step_index"], cycle=step.get("cycle"))
    return out


def _symmetric(step: dict, cell: dict) -> bool:
    params = step.get("params") or {}
    return bool(params.get("symmetric", cell.get("tafel_symmetric", cell.get("kind") == "symmetric")))


def _is_corrosion_curve(step: dict, samples: dict, cell: dict) -> bool:
    """An imported sweep whose current changes sign (a mixed-potential curve), not of a symmetric cell."""
    if str(step.get("end_reason")) != "imported" or _symmetric(step, cell):
        return False
    i = np.asarray(_col(samples, "current", _mask(samples, [step["step_index"]])), float)
    s = np.sign(i[np.isfinite(i) & (i != 0)])
    return bool(np.any(s[:-1] * s[1:] < 0))


def _corrosion(step, samples, cell) -> list[Result]:
    m = _mask(samples, [step["step_index"]])
    e = np.asarray(_col(samples, "voltage", m), float)
    i = np.asarray(_col(samples, "current", m), float)
    area = _number(cell.get("area_cm2"))
    c = prepare(e, i, area_cm2=area if area is not None and area > 0 else None)
    if c.unit == "A":
        c.notes.append("no electrode area known: currents in A, i_corr is a current, not a density")
    out = auto_corrosion(c)
    for r in out:
        r.details.update(step_index=step["step_index"], cycle=step.get("cycle"))
    return out


def _aurbach(group: list[dict], samples: dict) -> Result:
    hcs = {}
    for st in group:
        m = _mask(samples, [st["step_index"]])
        q = _col(samples, "charge", m)
        t = np.asarray(_col(samples, "t", m), float)
        i = np.asarray(_col(samples, "current", m), float)
        if t.size == 0:
            raise AnalysisError(f"Aurbach step {st['step_index']} ({st.get('label')}) has no samples")
        if q is not None:
            charge = float(np.nanmax(np.abs(np.asarray(q, float))))
        else:
            charge = float(np.sum(0.5 * (np.abs(i[1:]) + np.abs(i[:-1])) * np.diff(t)))
        hcs.setdefault(st["label"], []).append(charge)
    missing = [lab for lab in ("aurbach:reservoir", "aurbach:cycle-plate", "aurbach:final-strip") if lab not in hcs]
    if missing:
        raise AnalysisError(f"Aurbach CE: the run has no step labelled {', '.join(missing)} (incomplete test)")
    plates = hcs["aurbach:cycle-plate"]
    strips = hcs.get("aurbach:cycle-strip", [])
    qc = float(np.mean(plates))
    early = [k + 1 for k, (p, s) in enumerate(zip(plates, strips)) if s < 0.95 * p]
    det = {"step_indices": [s["step_index"] for s in group], "q_cycle_plate_C": plates, "q_cycle_strip_C": strips}
    if early:
        det["warning"] = f"cycle strips {early} ended early (below 95 % of the plated charge)"
    return aurbach_ce(hcs["aurbach:reservoir"][0], qc, len(plates), hcs["aurbach:final-strip"][-1], det)


def _cycling(gsteps: list[dict], steps: list[dict], samples: dict, cell: dict) -> list[Result]:
    idx = [s["step_index"] for s in gsteps]
    m = _mask(samples, idx)
    t = np.asarray(_col(samples, "t", m), float)
    v = np.asarray(_col(samples, "voltage", m), float)
    i = np.asarray(_col(samples, "current", m), float)
    si = np.asarray(_col(samples, "step_index", m))
    cy = _col(samples, "cycle", m)
    if cy is None:
        cmap = {s["step_index"]: (s.get("cycle") or 0) for s in steps}
        cy = np.array([cmap.get(int(k), 0) for k in si])
    q = _col(samples, "charge", m)
    q = None if q is None else np.asarray(q, float)
    kind = cell.get("kind")
    mass = _number(cell.get("cathode_mass_g"))
    if any(s.get("params", {}).get("cycling") for s in gsteps) and not (kind == "full" and mass is not None):
        # an imported cycler record: the per-cycle table from the instrument's counters
        cdef = next(
            (s["params"].get("cycle_definition") for s in gsteps if s.get("params", {}).get("cycle_definition")), None
        )
        return capacity_results(capacity_table(t, v, i, cy, si, q), cycle_definition=cdef)
    if kind == "full" or (kind is None and mass is not None):
        if mass is None:
            raise AnalysisError("full-cell analysis needs cell['cathode_mass_g']")
        return full_cell_results(full_cell_table(t, v, i, cy, si, q, cathode_mass_g=mass))
    if len(half_cycles(t, v, i, cy, si, q)) < 2:
        return []
    table = cycle_table(t, v, i, cy, si, q)
    out: list[Result] = []
    if kind == "symmetric":
        sc = short_circuit_time(t, v, i, cycle=cy)
        if sc is None:
            for st in gsteps:
                if str(st.get("end_reason")) in ("short_circuit", "EndReason.SHORT_CIRCUIT"):
                    sc = Result(
                        "t_short",
                        float(st["t_end"]) - float(t[0]),
                        "s",
                        None,
                        "end-reason",
                        {"step_index": st["step_index"], "cycle": st.get("cycle")},
                    )
                    break
        if sc is not None:
            out.append(sc)
        else:
            out.append(
                Result(
                    "cycling_time",
                    float(t[-1] - t[0]),
                    "s",
                    None,
                    "no-short",
                    {"short_circuit": False, "hours": float(t[-1] - t[0]) / 3600.0},
                )
            )
        out += hysteresis_results(table, until_t=sc.details.get("t_onset") if sc is not None else None)
        out.append(Result("cycles_completed", float(np.sum(table.complete)), "cycles", None, "count", {}))
        return out
    out += ce_results(table)
    if kind is None:
        out += hysteresis_results(table)
    return out


def analyze_run(steps: list[dict], samples: dict[str, np.ndarray], cell: dict, *, strict: bool = False) -> list[Result]:
    """All analyses that fit the run's steps (see the module docstring)."""
    cell = cell or {}
    steps = sorted(steps, key=lambda s: s["step_index"])
    out: list[Result] = []

    def guard(what: str, step_index, fn):
        try:
            return fn()
        except AnalysisError as exc:
            if strict:
                raise
            out.append(
                Result(
                    "analysis_error",
                    float("nan"),
                    "",
                    None,
                    "error",
                    {"analysis": what, "step_index": step_index, "error": str(exc)},
                )
            )
            return None

    # EIS
    temps, rcts, idxs = [], [], []
    for st in (s for s in steps if s.get("kind") == "eis"):
        r = guard("eis", st["step_index"], lambda st=st: _eis(st, steps, samples, cell))
        if r is not None:
            res, temp, rct = r
            out += res
            if temp is not None and rct is not None:
                temps.append(temp)
                rcts.append(rct)
                idxs.append(st["step_index"])
    if temps and (max(temps) - min(temps)) >= 0.5:

        def arr():
            res = fit_arrhenius(temps, rcts)
            for x in res:
                x.details["step_indices"] = idxs
            return res

        out += guard("arrhenius", None, arr) or []

    # Tafel
    for st in steps:
        if st.get("kind") == "tafel" or (st.get("kind") == "lsv" and "tafel" in str(st.get("label") or "").lower()):
            if _is_corrosion_curve(st, samples, cell):
                out += guard("corrosion", st["step_index"], lambda st=st: _corrosion(st, samples, cell)) or []
            else:
                out += guard("tafel", st["step_index"], lambda st=st: _tafel(st, steps, samples, cell)) or []

    # galvanostatic: Aurbach groups and cycling
    galv = [s for s in steps if s.get("kind") == "galvanostatic"]
    aur = [s for s in galv if str(s.get("label") or "") in AURBACH_LABELS]
    groups: list[list[dict]] = []
    for s in aur:
        if s["label"] == "aurbach:reservoir" or not groups:
            groups.append([])
        groups[-1].append(s)
    for g in groups:
        r = guard("aurbach", g[0]["step_index"], lambda g=g: _aurbach(g, samples))
        if r is not None:
            out.append(r)
    cyc = [s for s in galv if s not in aur]
    # a cycler's CV (or other) charge/discharge steps belong to their cycle's charge (imported records)
    cyc += [s for s in steps if s.get("kind") != "galvanostatic" and (s.get("params") or {}).get("cycling")]
    cyc.sort(key=lambda s: s["step_index"])
    if cyc:
        out += guard("cycling", cyc[0]["step_index"], lambda: _cycling(cyc, steps, samples, cell)) or []
    return out
