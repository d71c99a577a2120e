"""End conditions and safety limits evaluated on sample blocks (vectorised).

The engine evaluates every technique's limits on each block even when the
instrument enforces them natively: a driver without native limits is then still
stopped at the right sample, and a driver with them is double-checked.  The
crossing time is interpolated between the two samples that straddle it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.drivers.techniques import EndReason, Limits, SampleBlock


@dataclass
class Hit:
    """A condition met inside a block: keep ``block[:index]`` then the interpolated point."""

    reason: EndReason
    index: int  # first sample index at/after the crossing
    t: float  # interpolated crossing time (clock seconds)
    detail: str = ""


def _interp_t(t: np.ndarray, y: np.ndarray, i: int, level: float, t_prev: float | None, y_prev: float | None) -> float:
    """Time at which ``y`` crosses ``level`` between sample i-1 (or the carried previous) and i."""
    if i > 0:
        t0, y0 = t[i - 1], y[i - 1]
    elif t_prev is not None and y_prev is not None:
        t0, y0 = t_prev, y_prev
    else:
        return float(t[i])
    t1, y1 = t[i], y[i]
    if y1 == y0 or not np.isfinite(y0):
        return float(t1)
    frac = (level - y0) / (y1 - y0)
    return float(t0 + min(max(frac, 0.0), 1.0) * (t1 - t0))


class EndConditions:
    """Stateful evaluator of one technique's :class:`Limits` over its stream of blocks."""

    def __init__(self, limits: Limits, t_start: float) -> None:
        self.limits = limits
        self.t_start = t_start
        self._t_prev: float | None = None
        self._v_prev: float | None = None
        self._i_prev: float | None = None
        self._q_prev: float | None = None
        self._short_since: float | None = None  # clock time the low-|V| run began

    def check(self, block: SampleBlock, charge: np.ndarray) -> Hit | None:
        """First condition met in ``block``; ``charge`` is the step's accumulated charge (C)."""
        lim = self.limits
        t, v, i = block.t, block.voltage, block.current
        n = len(t)
        if n == 0:
            return None
        hits: list[Hit] = []
        if lim.duration is not None:
            end = self.t_start + lim.duration
            idx = np.flatnonzero(t >= end - 1e-9)
            if idx.size:
                hits.append(Hit(EndReason.DURATION, int(idx[0]), float(end)))
        if lim.charge is not None:
            aq = np.abs(charge)
            idx = np.flatnonzero(aq >= lim.charge * (1 - 1e-9))
            if idx.size:
                k = int(idx[0])
                qp = None if self._q_prev is None else abs(self._q_prev)
                hits.append(Hit(EndReason.CHARGE, k, _interp_t(t, aq, k, lim.charge, self._t_prev, qp)))
        if lim.voltage_above is not None:
            idx = np.flatnonzero(v >= lim.voltage_above)
            if idx.size:
                k = int(idx[0])
                hits.append(
                    Hit(
                        EndReason.VOLTAGE_ABOVE,
                        k,
                        _interp_t(t, v, k, lim.voltage_above, self._t_prev, self._v_prev),
                        f"voltage reached {lim.voltage_above:g} V",
                    )
                )
        if lim.voltage_below is not None:
            idx = np.flatnonzero(v <= lim.voltage_below)
            if idx.size:
                k = int(idx[0])
                hits.append(
                    Hit(
                        EndReason.VOLTAGE_BELOW,
                        k,
                        _interp_t(t, v, k, lim.voltage_below, self._t_prev, self._v_prev),
                        f"voltage fell to {lim.voltage_below:g} V",
                    )
                )
        ai = np.abs(i)
        if lim.current_below is not None:
            idx = np.flatnonzero(ai <= lim.current_below)
            if idx.size:
                k = int(idx[0])
                ip = None if self._i_prev is None else abs(self._i_prev)
                hits.append(Hit(EndReason.CURRENT_BELOW, k, _interp_t(t, ai, k, lim.current_below, self._t_prev, ip)))
        if lim.current_above is not None:
            idx = np.flatnonzero(ai >= lim.current_above)
            if idx.size:
                k = int(idx[0])
                ip = None if self._i_prev is None else abs(self._i_prev)
                hits.append(Hit(EndReason.CURRENT_ABOVE, k, _interp_t(t, ai, k, lim.current_above, self._t_prev, ip)))
        if lim.short_circuit is not None:
            h = self._check_short(t, v, ai)
            if h is not None:
                hits.append(h)
        self._t_prev, self._v_prev, self._i_prev = float(t[-1]), float(v[-1]), float(i[-1])
        self._q_prev = float(charge[-1]) if len(charge) else self._q_prev
        if not hits:
            return None
        return min(hits, key=lambda h: (h.t, h.index))

    def _check_short(self, t: np.ndarray, v: np.ndarray, ai: np.ndarray) -> Hit | None:
        lim = self.limits
        n = len(t)
        below = lim.short_circuit
        assert below is not None  # only called when the limit is set
        low = (np.abs(v) < below) & (ai > 0)
        carried = self._short_since if low[0] else None
        begin = low.copy()
        begin[1:] &= ~low[:-1]
        if carried is not None:
            begin[0] = False  # the run began in an earlier block
        last_begin = np.maximum.accumulate(np.where(begin, np.arange(n), -1))
        start_t = np.where(last_begin >= 0, t[np.maximum(last_begin, 0)], np.nan if carried is None else carried)
        with np.errstate(invalid="ignore"):
            held = low & (t - start_t >= lim.short_hold)
        idx = np.flatnonzero(held)
        if idx.size:
            k = int(idx[0])
            self._short_since = None
            return Hit(
                EndReason.SHORT_CIRCUIT,
                k,
                float(start_t[k] + lim.short_hold),
                f"|V| below {below * 1e3:g} mV under current for {lim.short_hold:g} s",
            )
        self._short_since = float(start_t[-1]) if low[-1] else None
        return None


@dataclass(frozen=True)
class SafetyLimits:
    voltage_min: float
    voltage_max: float
    current_max: float
    temperature_max: float | None = None
    max_duration: float | None = None
    charge_max: float | None = None  # C, |charge passed in one step|


class SafetyTrip(Exception):
    """A safety limit was exceeded; the engine turns the cell off and ends the run."""

    def __init__(self, message: str, t: float | None = None) -> None:
        super().__init__(message)
        self.t = t


@dataclass(frozen=True)
class Violation:
    """The first sample of a block that leaves the safe window: its index, clock time and why."""

    index: int
    t: float
    message: str
    keep: int  # samples of the block to store: up to and including the tripping one


def safety_violation(
    s: SafetyLimits, block: SampleBlock, t_run0: float, charge: np.ndarray | None = None
) -> Violation | None:
    """The first sample of ``block`` outside the safety limits, or None.

    ``charge``: the step's accumulated charge at each sample (C), for ``charge_max``.

    The run's maximum duration is a limit like the others: the first sample past it trips,
    at the moment the duration ran out (not at the end of a long block).
    """
    if len(block) == 0:
        return None
    v, i, t = block.voltage, block.current, block.t
    found: list[Violation] = []
    with np.errstate(invalid="ignore"):
        bad_v = (v < s.voltage_min - 1e-9) | (v > s.voltage_max + 1e-9)
        bad_i = np.abs(i) > s.current_max * (1 + 1e-9)
    if bad_v.any():
        k = int(np.flatnonzero(bad_v)[0])
        found.append(
            Violation(
                k,
                float(t[k]),
                f"voltage {v[k]:.4g} V outside the safety window [{s.voltage_min:g}, {s.voltage_max:g}] V "
                f"at t = {t[k] - t_run0:.1f} s",
                k + 1,
            )
        )
    if bad_i.any():
        k = int(np.flatnonzero(bad_i)[0])
        found.append(
            Violation(
                k,
                float(t[k]),
                f"current {i[k] * 1e3:.4g} mA above the safety limit {s.current_max * 1e3:g} mA "
                f"at t = {t[k] - t_run0:.1f} s",
                k + 1,
            )
        )
    if s.temperature_max is not None and block.temperature is not None:
        with np.errstate(invalid="ignore"):
            bad_t = block.temperature > s.temperature_max
        if bad_t.any():
            k = int(np.flatnonzero(bad_t)[0])
            found.append(
                Violation(
                    k,
                    float(t[k]),
                    f"temperature {block.temperature[k]:.2f} degC above the safety limit "
                    f"{s.temperature_max:g} degC at t = {t[k] - t_run0:.1f} s",
                    k + 1,
                )
            )
    if s.charge_max is not None and charge is not None and len(charge) == len(t):
        with np.errstate(invalid="ignore"):
            bad_q = np.abs(charge) > s.charge_max * (1 + 1e-9)
        if bad_q.any():
            k = int(np.flatnonzero(bad_q)[0])
            found.append(
                Violation(
                    k,
                    float(t[k]),
                    f"charge {abs(charge[k]) / 3.6:.4g} mAh passed in the step, above the safety limit "
                    f"{s.charge_max / 3.6:g} mAh at t = {t[k] - t_run0:.1f} s",
                    k + 1,
                )
            )
    if s.max_duration is not None:
        deadline = t_run0 + s.max_duration
        past = np.flatnonzero(t > deadline + 1e-6)
        if past.size:
            k = int(past[0])
            found.append(
                Violation(k, float(deadline), f"run exceeded its maximum duration of {s.max_duration / 3600:g} h", k)
            )
    if not found:
        return None
    return min(found, key=lambda x: (x.index, x.t))


def check_safety(s: SafetyLimits, block: SampleBlock, t_run0: float) -> None:
    """Raise :class:`SafetyTrip` naming the first sample that leaves the safe window."""
    hit = safety_violation(s, block, t_run0)
    if hit is not None:
        raise SafetyTrip(hit.message, hit.t)


def step_charge(t: np.ndarray, i: np.ndarray, t_prev: float | None, i_prev: float | None, q_prev: float) -> np.ndarray:
    """Accumulated charge (C) at each sample, trapezoidal, continuing from the previous block.

    ``t_prev``/``i_prev``: the previous sample (or the step start time with ``i_prev=None``: the
    current is taken as constant from the start to the first sample, as in a galvanostatic step).
    """
    n = len(t)
    if n == 0:
        return np.zeros(0)
    inc = np.empty(n)
    if t_prev is None:
        inc[0] = 0.0
    else:
        ip = i[0] if i_prev is None else i_prev
        inc[0] = (t[0] - t_prev) * (i[0] + ip) * 0.5
    if n > 1:
        inc[1:] = np.diff(t) * (i[1:] + i[:-1]) * 0.5
    return q_prev + np.cumsum(inc)
