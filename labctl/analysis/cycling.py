"""Galvanostatic cycling: charge per half-cycle, coulombic efficiency, hysteresis, life.

Inputs are the arrays labctl stores per sample: ``t`` (s), ``voltage`` (V, WE minus
counter), ``current`` (A), ``cycle`` (int), ``step_index`` (int) and optionally
``charge`` (C, accumulated within each step).

Definitions (the same everywhere in labctl):

* Current sign: negative = cathodic at the working electrode = plating onto the WE;
  positive = anodic = stripping from the WE.  For a full cell (WE = cathode),
  positive = charge, negative = discharge.
* A half-cycle is one step (one ``step_index``) whose mean current is not zero
  (|mean I| above ``min_current``, default 1 % of the largest |I|); rest steps are
  ignored.  Its charge is max |charge| within the step when a ``charge`` column is
  given, else the trapezoidal integral of |I| dt over the step's samples.
* A cycle is the ``cycle`` number stored with the samples.  Plated charge
  Q_plate = sum of the cycle's negative half-cycles, stripped Q_strip = sum of its
  positive ones; CE = Q_strip / Q_plate.
* Voltage hysteresis of a cycle: half the difference between the median voltages of
  the stripping and the plating half-cycle over the central part of each (25-75 % of
  its duration by default): the plateau, not the nucleation spike.  If a cycle has
  several half-cycles of one sign, the one with the largest charge is used.
* Cycle life: the number of complete cycles before the first cycle whose CE falls
  below ``ce_threshold`` (default 0.8; a strip that hits the cut-off too early shows
  as such a CE), else the number of complete cycles.
* Short circuit: the first moment from which |V| stays below a threshold while
  current flows, for at least ``hold`` s (or until the data end); the threshold is
  ``v_threshold`` V if given, else ``fraction`` (0.2) of the median |V| under current
  over the first 10 % of the cycling time.
* Aurbach CE: CE_avg = (n Q_C + Q_S) / (n Q_C + Q_T) with Q_T the reservoir,
  Q_C the charge plated per cycle (mean of the measured cycle-plate steps), n the
  number of cycles and Q_S the final strip to the cut-off.
* Full cell: capacity per gram of cathode active material (mAh/g) for charge (I > 0)
  and discharge (I < 0) per cycle; CE = the cycle's second half / its first half
  (what comes back / what went in); polarisation dE at 50 %: voltage of the charge
  half-cycle at half its capacity minus that of the discharge half-cycle at half its
  capacity.
* dQ/dV: the charge passed while V is within each bin (width ``bin_width`` V),
  divided by the bin width, smoothed with a Gaussian of ``smooth`` bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._core import AnalysisError, Result, as_1d


@dataclass
class HalfCycle:
    step_index: int
    cycle: int
    sign: int  # +1 stripping (charge of a full cell), -1 plating (discharge)
    t0: float
    t1: float
    charge: float  # C, magnitude
    current: float  # mean current, A
    v_mid: float  # median voltage over the central part, V
    sl: slice = field(repr=False, default_factory=lambda: slice(0, 0))


@dataclass
class CycleTable:
    """Per-cycle arrays (one entry per cycle number present)."""

    cycle: np.ndarray
    q_plate: np.ndarray
    q_strip: np.ndarray
    ce: np.ndarray
    v_plate: np.ndarray
    v_strip: np.ndarray
    hysteresis: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    complete: np.ndarray  # has both a plating and a stripping half-cycle


def _arrays(t, voltage, current, cycle, step_index, charge=None):
    t = as_1d("t", t)
    v = as_1d("voltage", voltage)
    i = as_1d("current", current)
    c = np.asarray(cycle).ravel()
    s = np.asarray(step_index).ravel()
    n = t.size
    for name, a in (("voltage", v), ("current", i), ("cycle", c), ("step_index", s)):
        if a.size != n:
            raise AnalysisError(f"{name} has {a.size} values but t has {n}")
    q = None
    if charge is not None:
        q = as_1d("charge", charge)
        if q.size != n:
            raise AnalysisError(f"charge has {q.size} values but t has {n}")
    if n == 0:
        raise AnalysisError("no samples")
    return t, v, i, c.astype(int), s.astype(int), q


def half_cycles(
    t,
    voltage,
    current,
    cycle,
    step_index,
    charge=None,
    *,
    min_current: float | None = None,
    central: tuple[float, float] = (0.25, 0.75),
) -> list[HalfCycle]:
    """The half-cycles of a run, in time order."""
    t, v, i, c, s, q = _arrays(t, voltage, current, cycle, step_index, charge)
    if min_current is None:
        min_current = 0.01 * float(np.nanmax(np.abs(i))) if np.any(np.isfinite(i)) else 0.0
    # contiguous runs of equal (step_index, cycle)
    edges = np.nonzero((np.diff(s) != 0) | (np.diff(c) != 0))[0] + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [s.size]))
    out = []
    for a, b in zip(starts, ends):
        ti, vi, ii = t[a:b], v[a:b], i[a:b]
        mean_i = float(np.nanmean(ii)) if b > a else 0.0
        if not abs(mean_i) > min_current:
            continue
        if q is not None:
            qq = float(np.nanmax(np.abs(q[a:b])))
        else:
            qq = float(_cumulative_q(ti, ii, None)[-1])
        t0, t1 = float(ti[0]), float(ti[-1])
        lo, hi = t0 + central[0] * (t1 - t0), t0 + central[1] * (t1 - t0)
        mid = (ti >= lo) & (ti <= hi)
        vm = float(np.nanmedian(vi[mid])) if np.any(mid) else float(np.nanmedian(vi))
        out.append(HalfCycle(int(s[a]), int(c[a]), 1 if mean_i > 0 else -1, t0, t1, qq, mean_i, vm, slice(a, b)))
    return out


def cycle_table(t, voltage, current, cycle, step_index, charge=None, **kw) -> CycleTable:
    """Per-cycle plated and stripped charge, CE and hysteresis (see module docstring)."""
    hcs = half_cycles(t, voltage, current, cycle, step_index, charge, **kw)
    if not hcs:
        raise AnalysisError("no half-cycles under current: nothing to analyse")
    cycles = sorted({h.cycle for h in hcs})
    rows = []
    for cy in cycles:
        hs = [h for h in hcs if h.cycle == cy]
        pl = [h for h in hs if h.sign < 0]
        st = [h for h in hs if h.sign > 0]
        qp = sum(h.charge for h in pl)
        qs = sum(h.charge for h in st)
        vp = max(pl, key=lambda h: h.charge).v_mid if pl else math.nan
        vs = max(st, key=lambda h: h.charge).v_mid if st else math.nan
        ce = qs / qp if pl and st and qp > 0 else math.nan
        rows.append(
            (cy, qp, qs, ce, vp, vs, 0.5 * (vs - vp), min(h.t0 for h in hs), max(h.t1 for h in hs), bool(pl and st))
        )
    a = list(zip(*rows))
    return CycleTable(*(np.array(x) for x in a))


def ce_results(table: CycleTable, *, ce_threshold: float = 0.8, skip_first: int = 0) -> list[Result]:
    """Mean CE (before failure) with its standard error, and the cycle life."""
    ok = table.complete
    cyc, ce = table.cycle[ok], table.ce[ok]
    if cyc.size == 0:
        raise AnalysisError("no complete cycle (a plating and a stripping half-cycle) to compute a CE")
    bad = np.nonzero(ce < ce_threshold)[0]
    if bad.size:
        life = int(bad[0])
        life_method = "ce-threshold"
        fail_cycle = int(cyc[bad[0]])
    else:
        life = int(cyc.size)
        life_method = "cycles-completed"
        fail_cycle = None
    use = ce[skip_first : life if bad.size else None]
    per_cycle = {
        "cycle": cyc.tolist(),
        "ce": ce.tolist(),
        "q_plate_C": table.q_plate[ok].tolist(),
        "q_strip_C": table.q_strip[ok].tolist(),
    }
    out = []
    if use.size:
        sd = float(np.std(use, ddof=1)) if use.size > 1 else math.nan
        se = sd / math.sqrt(use.size) if use.size > 1 else None
        out.append(
            Result(
                "ce_mean",
                float(np.mean(use)),
                "",
                se,
                "q_strip/q_plate",
                {
                    "n_cycles": int(use.size),
                    "sd": sd,
                    "skip_first": skip_first,
                    "ce_threshold": ce_threshold,
                    "per_cycle": per_cycle,
                },
            )
        )
    out.append(
        Result(
            "cycle_life",
            float(life),
            "cycles",
            None,
            life_method,
            {"ce_threshold": ce_threshold, "failed_cycle": fail_cycle, "n_complete_cycles": int(cyc.size)},
        )
    )
    return out


def hysteresis_results(table: CycleTable, *, until_t: float | None = None) -> list[Result]:
    """Median voltage hysteresis over the complete cycles (before ``until_t``, a short)."""
    ok = table.complete & np.isfinite(table.hysteresis)
    if until_t is not None:
        ok &= table.t_end <= until_t
    if not np.any(ok):
        raise AnalysisError("no complete cycle with both half-cycles to compute a voltage hysteresis")
    h = table.hysteresis[ok]
    return [
        Result(
            "hysteresis",
            float(np.median(h)),
            "V",
            None,
            "median-central-50%",
            {
                "first": float(h[0]),
                "last": float(h[-1]),
                "n_cycles": int(h.size),
                "per_cycle": {"cycle": table.cycle[ok].tolist(), "hysteresis_V": h.tolist()},
            },
        )
    ]


def short_circuit_time(
    t,
    voltage,
    current,
    *,
    v_threshold: float | None = None,
    fraction: float = 0.2,
    hold: float = 60.0,
    min_current: float | None = None,
    cycle=None,
) -> Result | None:
    """Onset of a sustained voltage collapse under current (see module docstring), or None."""
    t = as_1d("t", t)
    v = as_1d("voltage", voltage)
    i = as_1d("current", current)
    if not (t.size == v.size == i.size):
        raise AnalysisError("t, voltage and current must have the same length")
    if min_current is None:
        min_current = 0.01 * float(np.nanmax(np.abs(i))) if t.size else 0.0
    on = np.abs(i) > min_current
    if not np.any(on):
        raise AnalysisError("no samples under current: a short circuit cannot be detected")
    tt, vv = t[on], np.abs(v[on])
    t_ref = float(tt[0])
    if v_threshold is None:
        early = tt <= t_ref + 0.1 * (tt[-1] - t_ref)
        base = float(np.median(vv[early]))
        thr = fraction * base
        how = f"{fraction:g} x median |V| of the first 10 % ({1e3 * base:.1f} mV)"
    else:
        thr = float(v_threshold)
        how = "given"
    low = vv < thr
    k = 0
    n = low.size
    while k < n:
        if not low[k]:
            k += 1
            continue
        m = k
        while m + 1 < n and low[m + 1]:
            m += 1
        if tt[m] - tt[k] >= hold or m == n - 1:
            d = {
                "threshold_V": thr,
                "threshold_from": how,
                "hold_s": hold,
                "t_onset": float(tt[k]),
                "hours": (float(tt[k]) - t_ref) / 3600.0,
            }
            if cycle is not None:
                d["cycle"] = int(np.asarray(cycle).ravel()[on][k])
            return Result("t_short", float(tt[k]) - t_ref, "s", None, "voltage-collapse", d)
        k = m + 1
    return None


def aurbach_ce(
    q_reservoir: float, q_cycle: float, n_cycles: int, q_final_strip: float, details: dict | None = None
) -> Result:
    """CE_avg = (n Q_C + Q_S) / (n Q_C + Q_T) (charges in C)."""
    for name, val in (("reservoir charge Q_T", q_reservoir), ("cycle charge Q_C", q_cycle)):
        if not (val > 0):
            raise AnalysisError(f"Aurbach CE: {name} must be positive, got {val}")
    if n_cycles < 1:
        raise AnalysisError(f"Aurbach CE: needs at least one cycle, got {n_cycles}")
    if not q_final_strip >= 0:
        raise AnalysisError(f"Aurbach CE: final strip charge Q_S must be >= 0, got {q_final_strip}")
    ce = (n_cycles * q_cycle + q_final_strip) / (n_cycles * q_cycle + q_reservoir)
    d = {
        "q_reservoir_C": q_reservoir,
        "q_cycle_C": q_cycle,
        "n_cycles": int(n_cycles),
        "q_final_strip_C": q_final_strip,
        "formula": "(n Q_C + Q_S) / (n Q_C + Q_T)",
    }
    if details:
        d.update(details)
    return Result("ce_aurbach", float(ce), "", None, "aurbach", d)


def _cumulative_q(t, i, q):
    if q is not None:
        return np.abs(q)
    qq = np.concatenate(([0.0], np.cumsum(0.5 * (np.abs(i[1:]) + np.abs(i[:-1])) * np.diff(t))))
    return qq


@dataclass
class FullCellTable:
    cycle: np.ndarray
    capacity_charge: np.ndarray  # mAh/g
    capacity_discharge: np.ndarray  # mAh/g
    ce: np.ndarray
    de_50: np.ndarray  # V


def full_cell_table(
    t, voltage, current, cycle, step_index, charge=None, *, cathode_mass_g: float, **kw
) -> FullCellTable:
    """Per-cycle specific capacities, CE and polarisation at 50 % (see module docstring)."""
    if not (cathode_mass_g and cathode_mass_g > 0):
        raise AnalysisError(f"cathode mass must be positive (g), got {cathode_mass_g}")
    t, v, i, c, s, q = _arrays(t, voltage, current, cycle, step_index, charge)
    hcs = half_cycles(t, v, i, c, s, q, **kw)
    if not hcs:
        raise AnalysisError("no half-cycles under current: nothing to analyse")
    rows = []
    for cy in sorted({h.cycle for h in hcs}):
        hs = [h for h in hcs if h.cycle == cy]
        ch = [h for h in hs if h.sign > 0]
        dis = [h for h in hs if h.sign < 0]
        qc = sum(h.charge for h in ch)
        qd = sum(h.charge for h in dis)
        first, second = (qd, qc) if hs[0].sign < 0 else (qc, qd)
        ce = second / first if ch and dis and first > 0 else math.nan
        de = math.nan
        if ch and dis:
            vals = []
            for h in (max(ch, key=lambda h: h.charge), max(dis, key=lambda h: h.charge)):
                sl = h.sl
                qq = _cumulative_q(t[sl], i[sl], None if q is None else q[sl])
                qq = np.maximum.accumulate(qq)
                vals.append(float(np.interp(0.5 * qq[-1], qq, v[sl])))
            de = vals[0] - vals[1]
        rows.append((cy, qc / 3.6 / cathode_mass_g, qd / 3.6 / cathode_mass_g, ce, de))
    a = list(zip(*rows))
    return FullCellTable(*(np.array(x) for x in a))


def full_cell_results(table: FullCellTable) -> list[Result]:
    per = {
        "cycle": table.cycle.tolist(),
        "capacity_charge_mAh_g": table.capacity_charge.tolist(),
        "capacity_discharge_mAh_g": table.capacity_discharge.tolist(),
        "ce": table.ce.tolist(),
        "dE_50_V": table.de_50.tolist(),
    }
    out = []
    for key, arr in (("capacity_charge", table.capacity_charge), ("capacity_discharge", table.capacity_discharge)):
        pos = arr > 0
        if not np.any(pos):
            continue
        k = int(np.argmax(arr))
        first = int(np.nonzero(pos)[0][0])
        out.append(
            Result(
                f"{key}_first",
                float(arr[first]),
                "mAh/g",
                None,
                "galvanostatic",
                {"cycle": int(table.cycle[first]), "per_cycle": per},
            )
        )
        out.append(Result(f"{key}_best", float(arr[k]), "mAh/g", None, "galvanostatic", {"cycle": int(table.cycle[k])}))
    ce = table.ce[np.isfinite(table.ce)]
    if ce.size:
        se = float(np.std(ce, ddof=1) / math.sqrt(ce.size)) if ce.size > 1 else None
        out.append(Result("ce_mean", float(np.mean(ce)), "", se, "second-half/first-half", {"n_cycles": int(ce.size)}))
    de = np.isfinite(table.de_50)
    if np.any(de):
        k = int(np.nonzero(de)[0][-1])
        out.append(
            Result(
                "dE_50",
                float(table.de_50[k]),
                "V",
                None,
                "V_charge(Q/2) - V_discharge(Q/2)",
                {
                    "cycle": int(table.cycle[k]),
                    "per_cycle": {"cycle": table.cycle[de].tolist(), "dE_50_V": table.de_50[de].tolist()},
                },
            )
        )
    return out


def dqdv(
    voltage, current=None, t=None, *, charge=None, bin_width: float = 0.005, smooth: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """dQ/dV (C/V) of one half-cycle against bin-centre voltage (V).

    Give either ``charge`` (cumulative C within the half-cycle) or ``current`` and
    ``t`` to integrate.  The charge passed while V lies in each bin, over the bin
    width, smoothed with a Gaussian of ``smooth`` bins (0 = none).
    """
    v = as_1d("voltage", voltage)
    if charge is not None:
        q = np.abs(as_1d("charge", charge))
    else:
        if current is None or t is None:
            raise AnalysisError("dQ/dV needs either charge or current and t")
        q = _cumulative_q(as_1d("t", t), as_1d("current", current), None)
    if q.size != v.size or v.size < 3:
        raise AnalysisError("dQ/dV needs at least 3 samples with matching voltage and charge")
    if not bin_width > 0:
        raise AnalysisError("bin_width must be positive (V)")
    dq = np.abs(np.diff(q))
    vm = 0.5 * (v[1:] + v[:-1])
    lo = math.floor(np.nanmin(vm) / bin_width) * bin_width
    nb = max(int(math.ceil((np.nanmax(vm) - lo) / bin_width)), 1)
    idx = np.clip(((vm - lo) / bin_width).astype(int), 0, nb - 1)
    h = np.bincount(idx, weights=dq, minlength=nb) / bin_width
    if smooth and smooth > 0:
        half = int(math.ceil(4 * smooth))
        x = np.arange(-half, half + 1)
        k = np.exp(-0.5 * (x / smooth) ** 2)
        k /= k.sum()
        h = np.convolve(np.pad(h, half, mode="edge"), k, mode="valid")
    centers = lo + (np.arange(nb) + 0.5) * bin_width
    return centers, h


@dataclass
class CapacityTable:
    """Per-cycle charge and discharge of a cycler record (one entry per cycle number present)."""

    cycle: np.ndarray
    q_charge: np.ndarray  # C, sum of the cycle's charge steps (I > 0)
    q_discharge: np.ndarray  # C, sum of its discharge steps (I < 0)
    ce: np.ndarray  # q_discharge / q_charge, NaN without both
    charge_source: str  # 'instrument counters' or 'integrated current'


def capacity_table(t, voltage, current, cycle, step_index, charge=None, **kw) -> CapacityTable:
    """Charge, discharge and CE per cycle: each half-cycle's charge is its step's counter
    (max |charge|) when ``charge`` is given, else the integral of |I| dt; a cycle's charge
    is the sum of its charge steps (a CC then a CV step is one charge), likewise discharge."""
    hcs = half_cycles(t, voltage, current, cycle, step_index, charge, **kw)
    if not hcs:
        raise AnalysisError("no half-cycles under current: nothing to analyse")
    rows = []
    for cy in sorted({h.cycle for h in hcs}):
        hs = [h for h in hcs if h.cycle == cy]
        qc = sum(h.charge for h in hs if h.sign > 0)
        qd = sum(h.charge for h in hs if h.sign < 0)
        ce = qd / qc if qc > 0 and qd > 0 else math.nan
        rows.append((cy, qc, qd, ce))
    a = [np.array(x) for x in zip(*rows)]
    return CapacityTable(a[0], a[1], a[2], a[3], "instrument counters" if charge is not None else "integrated current")


def capacity_results(table: CapacityTable, *, cycle_definition: str | None = None) -> list[Result]:
    """The per-cycle table (always, whatever the values) and the mean CE over cycles that have both halves."""
    per = {
        "cycle": table.cycle.tolist(),
        "charge_mAh": (table.q_charge / 3.6).tolist(),
        "discharge_mAh": (table.q_discharge / 3.6).tolist(),
        "ce": [None if not np.isfinite(x) else float(x) for x in table.ce],
    }
    details = {
        "per_cycle": per,
        "charge_source": table.charge_source,
        "cycle_definition": cycle_definition or "the cycle numbers stored with the samples",
        "ce_definition": "discharge / charge of the same cycle",
    }
    out = [Result("cycles", float(table.cycle.size), "cycles", None, "per-cycle table", details)]
    ok = np.isfinite(table.ce)
    if np.any(ok):
        ce = table.ce[ok]
        se = float(np.std(ce, ddof=1) / math.sqrt(ce.size)) if ce.size > 1 else None
        out.append(
            Result(
                "ce_mean",
                float(np.mean(ce)),
                "",
                se,
                "discharge/charge",
                {"n_cycles": int(ce.size), "charge_source": table.charge_source},
            )
        )
    return out
