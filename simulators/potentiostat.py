"""A simulated potentiostat: the :class:`labctl.drivers.contracts.Potentiostat` contract on a modelled cell.

It runs every technique of :mod:`labctl.drivers.techniques` against a cell model from
:mod:`labctl.simulators.cells`, in clock time: a block covers up to ``clock.horizon()``
seconds (one block per technique on a :class:`~labctl.clock.VirtualClock`, at most
100,000 internal samples), is generated with numpy, then the driver sleeps until the
block's end and yields it.  It enforces every end condition natively: the crossing
is located between internal samples (refined on the model, then interpolated), the
block ends with a sample at the crossing, and the cell state advances only to it.

The cell persists across techniques (a run is a sequence of techniques on one
cell).  Time that passes between techniques counts as open circuit.  With a
``stage`` the cell temperature follows it (the stage's ``temperature_at`` model when
it has one, else one ``read_temperature()`` per block); otherwise 22 degC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from labctl.drivers.contracts import Capabilities, DeviceError
from labctl.drivers.handles import GeneratorHandle
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    EndInfo,
    EndReason,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
    SampleBlock,
    Technique,
)
from labctl.simulators.cells import CellModel, simulate_cell
from labctl.simulators.presets import Preset, load_preset

__all__ = ["SimulatedPotentiostat", "ROOM_TEMPERATURE"]

ROOM_TEMPERATURE = 22.0
MAX_BLOCK = 100_000  # internal samples per block
H_MAX = 10.0  # s, coarsest internal step (finer when the recording asks for it)
CA_BLOCK_S = 600.0  # potentiostatic holds update the cell state at least this often
_TECHNIQUES = frozenset({"ocp", "cp", "ca", "lsv", "cv", "eis"})
_REFINE_POINTS = 32
_REFINE_ROUNDS = 3


class SimulatedPotentiostat:
    """One potentiostat channel with one simulated cell.

    ``preset`` (required): a preset's name (:func:`~labctl.simulators.presets.available_presets`),
    a path to a preset YAML, or a :class:`Preset`.
    ``cell_kind``: ``"symmetric"`` (Mg|Mg), ``"asymmetric"`` (Mg|Al/C, WE = Al/C) or
    ``"full"`` (Mg|Mo6S8, WE = cathode).  ``seed`` and ``replicate`` both feed every
    random draw (replicate spread and measurement noise); the same arguments and the
    same sequence of techniques give identical arrays.  ``noise=False`` turns the
    measurement noise off (the physics, including the replicate spread, stays).
    """

    def __init__(
        self,
        clock: Any,
        *,
        preset: "str | Preset",
        cell_kind: str = "symmetric",
        area_cm2: float = 1.267,
        cathode_mass_g: float | None = None,
        seed: int = 0,
        replicate: int = 0,
        stage: Any | None = None,
        noise: bool = True,
        room_temperature: float = ROOM_TEMPERATURE,
    ) -> None:
        self.clock = clock
        self.preset = load_preset(preset)
        self.cell: CellModel = simulate_cell(
            cell_kind, self.preset, area_cm2=area_cm2, cathode_mass_g=cathode_mass_g, seed=seed, replicate=replicate
        )
        self.cell_kind = cell_kind
        self.seed = int(seed)
        self.replicate = int(replicate)
        self.stage = stage
        self.noise = bool(noise)
        self.room_temperature = float(room_temperature)
        # one stream per noisy quantity, so the values do not depend on how samples fall into blocks
        ss = [self.seed & 0xFFFFFFFF, self.replicate & 0xFFFFFFFF]
        self._rng_v = np.random.default_rng(ss + [100])
        self._rng_i = np.random.default_rng(ss + [101])
        self._rng_z = np.random.default_rng(ss + [102])
        self.capabilities = Capabilities(
            techniques=_TECHNIQUES,
            current_range=(-0.1, 0.1),
            voltage_range=(-10.0, 10.0),
            frequency_range=(1e-3, 1e6),
            native_limits=True,
            channels=1,
            model="labctl-sim potentiostat",
        )
        self.connected = False
        self.cell_on = False
        self._t_state: float | None = None  # clock time the cell state corresponds to
        self._running = False

    # ------------------------------------------------------------------ contract
    def connect(self, timeout: float = 10.0) -> None:
        self.connected = True
        if self._t_state is None:
            self._t_state = self.clock.now()

    def identify(self) -> str:
        return (
            f"labctl-sim potentiostat: {self.cell_kind} cell, preset {self.preset.name}, "
            f"seed {self.seed}, replicate {self.replicate}"
        )

    def cell_off(self) -> None:
        self.cell_on = False

    def close(self) -> None:
        self.cell_off()
        self.connected = False

    def release(self) -> None:
        self.connected = False

    def read_state(self) -> dict[str, str]:
        return {"cell": "on" if self.cell_on else "off", "cell kind": self.cell_kind, "preset": str(self.preset.name)}

    def start(self, technique: Technique) -> GeneratorHandle:
        """Start ``technique`` on the cell; blocks are read from the handle (see the module docstring)."""
        return GeneratorHandle(self.run(technique), on_stop=self.cell_off)

    def run(self, technique: Technique) -> Iterator[SampleBlock]:
        """Run ``technique`` on the cell, yielding blocks (see the module docstring)."""
        if not self.connected:
            raise DeviceError("simulated potentiostat is not connected: call connect() first")
        kind = getattr(technique, "kind", None)
        if kind not in _TECHNIQUES:
            raise DeviceError(f"unsupported technique {kind!r}; this instrument runs {', '.join(sorted(_TECHNIQUES))}")
        if self._running:
            raise DeviceError("a technique is already running on this channel")
        self._validate(technique)
        return self._run(technique)

    # ------------------------------------------------------------------ checks and helpers
    def _validate(self, tech: Technique) -> None:
        lo, hi = self.capabilities.current_range
        if isinstance(tech, ConstantCurrent) and not lo <= tech.current <= hi:
            raise DeviceError(f"current {tech.current:g} A outside the instrument range {lo:g}..{hi:g} A")
        vlo, vhi = self.capabilities.voltage_range
        pots: list[float] = []
        if isinstance(tech, ConstantPotential) and not tech.vs_ocp:
            pots = [tech.potential]
        if isinstance(tech, (LinearSweep, CyclicSweep)) and not tech.vs_ocp:
            pots = [tech.start, tech.end] if isinstance(tech, LinearSweep) else [tech.start, tech.vertex1, tech.vertex2]
        for p in pots:
            if not vlo <= p <= vhi:
                raise DeviceError(f"potential {p:g} V outside the instrument range {vlo:g}..{vhi:g} V")
        if isinstance(tech, (LinearSweep, CyclicSweep)) and not (tech.scan_rate > 0 and tech.step > 0):
            raise DeviceError("sweep needs a positive scan_rate and step")
        if isinstance(tech, Impedance):
            flo, fhi = self.capabilities.frequency_range
            for f in (tech.f_start, tech.f_end):
                if not flo <= f <= fhi:
                    raise DeviceError(f"frequency {f:g} Hz outside the instrument range {flo:g}..{fhi:g} Hz")
            if tech.points_per_decade < 1:
                raise DeviceError("EIS needs at least one point per decade")
        rec = getattr(tech, "record", None)
        if rec is not None and rec.dt is not None and not rec.dt > 0:
            raise DeviceError(f"recording interval must be positive, got {rec.dt!r}")
        if rec is not None and not rec.max_dt > 0:
            raise DeviceError(f"recording max_dt must be positive, got {rec.max_dt!r}")

    def _sync(self) -> float:
        """Bring the cell to the clock's present (time since the last technique was open circuit)."""
        now = self.clock.now()
        if self._t_state is None:
            self._t_state = now
        elif now > self._t_state:
            self.cell.advance_rest(now - self._t_state)
            self._t_state = now
        return self._t_state

    def _temperature(self, t: float) -> float:
        if self.stage is None:
            return self.room_temperature
        model = getattr(self.stage, "temperature_at", None)
        if callable(model):
            return float(np.asarray(model(np.array([t])))[0])
        return float(self.stage.read_temperature())

    def _temperatures(self, t: np.ndarray, scalar: float) -> np.ndarray:
        if self.stage is not None:
            model = getattr(self.stage, "temperature_at", None)
            if callable(model):
                return np.asarray(model(t), dtype=float)
        return np.full(len(t), scalar)

    def _vnoise(self, n: int, scale: float = 1.0) -> np.ndarray:
        if not self.noise or self.preset.noise.voltage == 0:
            return np.zeros(n)
        return self._rng_v.normal(0.0, self.preset.noise.voltage * scale, n)

    def _inoise(self, current: np.ndarray) -> np.ndarray:
        nz = self.preset.noise
        if not self.noise or (nz.current == 0 and nz.current_floor == 0):
            return current
        e = self._rng_i.standard_normal(2 * len(current))
        return current * (1.0 + nz.current * e[0::2]) + nz.current_floor * e[1::2]

    # ------------------------------------------------------------------ dispatch
    def _run(self, tech: Technique) -> Iterator[SampleBlock]:
        self._running = True
        try:
            self._sync()
            cell = self.cell
            if isinstance(tech, OpenCircuit):
                cell.begin("ocp")
                yield from self._series(
                    tech,
                    Limits(duration=tech.duration),
                    tech.record,
                    v_fun=cell.v_rest,
                    current=0.0,
                    advance=cell.advance_rest,
                )
            elif isinstance(tech, ConstantCurrent):
                cell.begin("cp", tech.current)
                self.cell_on = True
                i = float(tech.current)
                yield from self._series(
                    tech,
                    tech.limits,
                    tech.record,
                    v_fun=lambda tau: cell.v_cp(i, tau),
                    current=i,
                    advance=lambda dt: cell.advance_cp(i, dt),
                )
            elif isinstance(tech, ConstantPotential):
                cell.begin("ca")
                self.cell_on = True
                e = float(tech.potential) + (cell.ocv() if tech.vs_ocp else 0.0)
                yield from self._series(
                    tech, tech.limits, tech.record, v_fun=None, current=None, advance=None, potential=e
                )
            elif isinstance(tech, (LinearSweep, CyclicSweep)):
                cell.begin(tech.kind)
                self.cell_on = True
                yield from self._sweep(tech)
            elif isinstance(tech, Impedance):
                cell.begin("eis")
                self.cell_on = True
                yield from self._eis(tech)
        finally:
            self._running = False
            self.cell_on = False

    # ------------------------------------------------------------------ time series (ocp, cp, ca)
    @staticmethod
    def _grid(rec: Recording) -> tuple[float, int]:
        """Internal step h and the number of steps per recorded dt (or per max_dt)."""
        base = rec.dt if rec.dt is not None else rec.max_dt
        m = max(1, math.ceil(base / H_MAX - 1e-9))
        return base / m, m

    def _series(
        self,
        tech: Technique,
        limits: Limits,
        rec: Recording,
        *,
        v_fun: Callable | None,
        current: float | None,
        advance: Callable | None,
        potential: float | None = None,
    ) -> Iterator[SampleBlock]:
        clock = self.clock
        cell = self.cell
        t0 = self._t_state
        h, m_rec = self._grid(rec)
        dv = rec.dv if rec.dv else None
        d = limits.duration
        k_total = None if d is None else max(1, math.ceil(d / h - 1e-9))
        ca = potential is not None
        k = 0  # internal grid steps done
        s = 0.0  # technique time done (s)
        q_done = 0.0
        short_since: float | None = None
        temp = self._temperature(t0)
        i_blk = 0.0

        if ca:

            def vf(tau: np.ndarray) -> np.ndarray:
                return np.full(np.shape(tau), potential)

            def i_of(tau: np.ndarray) -> np.ndarray:
                return np.full(np.shape(tau), i_blk)
        else:
            vf = v_fun  # type: ignore[assignment]

            def i_of(tau: np.ndarray) -> np.ndarray:
                return np.full(np.shape(tau), current)

        def ca_current() -> float:
            return float(
                np.clip(cell.kinetic_current(np.array([potential]), temp)[0], *self.capabilities.current_range)
            )

        if ca:
            i_blk = ca_current()
        v_prev = float(vf(np.array([0.0]))[0])
        i_prev = float(i_of(np.array([0.0]))[0])
        level_prev = math.floor(v_prev / dv) if dv else 0.0

        while True:
            temp = self._temperature(t0 + s)
            if ca:
                i_blk = ca_current()
            hor = clock.horizon()
            n_blk = MAX_BLOCK if not math.isfinite(hor) else min(MAX_BLOCK, max(1, int(hor / h + 1e-9)))
            if ca:
                n_blk = min(n_blk, max(1, int(CA_BLOCK_S / h)))
            if k_total is not None:
                n_blk = min(n_blk, k_total - k)
            # evaluate the block in growing chunks, so an early end costs little
            parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
            reason: Any = None
            t_end = v_end = 0.0
            detail = ""
            done = 0
            chunk = 4096
            cs, cv, ci = s, v_prev, i_prev  # the sample before the chunk (block start: state point)
            qc = q_done
            while done < n_blk and reason is None:
                n = min(chunk, n_blk - done)
                chunk *= 4
                ks = np.arange(k + done + 1, k + done + n + 1)
                sg = ks * h
                last_is_end = k_total is not None and k + done + n == k_total
                if last_is_end:
                    sg[-1] = d
                v = vf(sg - s)
                ig = i_of(sg - s)
                on_rec = ks % m_rec == 0
                if last_is_end:
                    on_rec[-1] = True
                reason, t_end, detail, v_end, short_since = self._find_end(
                    limits, vf, i_of, s, cs, cv, ci, qc, sg, v, ig, short_since
                )
                if reason is not None:
                    keep = sg < t_end - 1e-9
                    sg = np.append(sg[keep], t_end)
                    v = np.append(v[keep], v_end)
                    ig = np.append(ig[keep], float(i_of(np.array([t_end - s]))[0]))
                    on_rec = np.append(on_rec[keep], True)
                if dv:
                    sg, v, on_rec = self._refine_dv(vf, s, cs, cv, sg, v, on_rec, dv)
                    ig = i_of(sg - s)
                parts.append((sg, v, ig, on_rec))
                qc += float(
                    np.sum(
                        0.5
                        * (np.abs(ig) + np.abs(np.concatenate(([ci], ig[:-1]))))
                        * np.diff(np.concatenate(([cs], sg)))
                    )
                )
                cs, cv, ci = float(sg[-1]), float(v[-1]), float(ig[-1])
                done += n
            if len(parts) == 1:
                s_all, v_all, i_all, on_rec = parts[0]
            else:
                s_all, v_all, i_all, on_rec = (np.concatenate([p[c] for p in parts]) for c in range(4))
            # which internal samples are recorded: the dt grid, every dv step, the end
            mark = on_rec.copy()
            if dv:
                lev = np.floor(v_all / dv)
                mark |= lev != np.concatenate(([level_prev], lev[:-1]))
                level_prev = float(lev[-1])
            s_rec, v_rec, i_rec = s_all[mark], v_all[mark] + self._vnoise(int(mark.sum())), i_all[mark]
            i_rec = self._inoise(i_rec)
            n_rec = len(s_rec)
            if n_rec:
                stop = n_rec - 1 if reason is not None else n_rec
                if limits.voltage_above is not None:
                    v_rec[:stop] = np.minimum(v_rec[:stop], limits.voltage_above - 1e-6)
                if limits.voltage_below is not None:
                    v_rec[:stop] = np.maximum(v_rec[:stop], limits.voltage_below + 1e-6)
                if reason in (EndReason.VOLTAGE_ABOVE, EndReason.VOLTAGE_BELOW):
                    v_rec[-1] = v_end
            s_new = cs
            q_done = qc
            if ca:
                cell.pass_charge(i_blk * (s_new - s), s_new - s)
            else:
                advance(s_new - s)
            v_prev, i_prev = cv, ci
            k += done
            s = s_new
            self._t_state = t0 + s
            t_abs = t0 + s_rec
            block = SampleBlock(t_abs, v_rec, i_rec, temperature=self._temperatures(t_abs, temp))
            if reason is not None:
                block.end = EndInfo(reason, t0 + t_end, detail)
            clock.sleep_until(t0 + s)
            yield block
            if reason is not None:
                return

    @staticmethod
    def _refine_dv(
        vf: Callable,
        s: float,
        s_prev: float,
        v_prev: float,
        sg: np.ndarray,
        v: np.ndarray,
        on_rec: np.ndarray,
        dv: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Insert internal samples where the voltage moves more than ``dv`` between grid points.

        ``s`` is the time of the state the model ``vf`` starts from; ``(s_prev, v_prev)``
        the sample before ``sg[0]``.
        """
        vfull = np.concatenate(([v_prev], v))
        dvv = np.abs(np.diff(vfull))
        need = np.flatnonzero(dvv > dv)
        if need.size == 0:
            return sg, v, on_rec
        counts = np.minimum(np.ceil(dvv[need] / dv).astype(int) * 2, 64)
        left = np.concatenate(([s_prev], sg[:-1]))[need]
        right = sg[need]
        rep = np.repeat(np.arange(need.size), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        frac = (np.arange(rep.size) - starts + 1) / np.repeat(counts + 1, counts)
        ts = left[rep] + frac * (right - left)[rep]
        vs = vf(ts - s)
        s_all = np.concatenate((sg, ts))
        order = np.argsort(s_all, kind="stable")
        return s_all[order], np.concatenate((v, vs))[order], np.concatenate((on_rec, np.zeros(ts.size, bool)))[order]

    @staticmethod
    def _bracket(
        f: Callable[[np.ndarray], np.ndarray], pred: Callable[[np.ndarray], np.ndarray], a: float, b: float
    ) -> tuple[float, float]:
        """Narrow [a, b] (pred false at a, true at b) to a tiny bracket on the model."""
        for _ in range(_REFINE_ROUNDS):
            xs = a + (b - a) * np.arange(1, _REFINE_POINTS + 1) / _REFINE_POINTS
            hit = pred(f(xs))
            idx = int(np.argmax(hit)) if hit.any() else _REFINE_POINTS - 1
            a, b = (xs[idx - 1] if idx > 0 else a), xs[idx]
        return a, b

    def _crossing(
        self,
        f: Callable[[np.ndarray], np.ndarray],
        level: float,
        above: bool,
        a: float,
        b: float,
    ) -> float:
        """Time in [a, b] where f crosses ``level`` (upwards if ``above``), refined then interpolated."""
        pred = (lambda y: y >= level) if above else (lambda y: y <= level)
        a, b = self._bracket(f, pred, a, b)
        fa, fb = f(np.array([a, b]))
        if fb == fa:
            return b
        x = (level - fa) / (fb - fa)
        return float(a + min(max(x, 0.0), 1.0) * (b - a))

    def _find_end(
        self,
        lim: Limits,
        vf: Callable,
        i_of: Callable,
        s: float,
        s_prev: float,
        v_prev: float,
        i_prev: float,
        q_done: float,
        s_all: np.ndarray,
        v_all: np.ndarray,
        i_all: np.ndarray,
        short_since: float | None,
    ) -> tuple[Any, float, str, float, float | None]:
        """Earliest end condition among these samples: (reason, t, detail, V at t, carried short start).

        ``vf`` gives the model voltage at time ``t - s``; ``(s_prev, v_prev, i_prev)`` is the
        sample before ``s_all[0]`` and ``q_done`` the charge passed up to it.
        """
        cands: list[tuple[float, int, EndReason, str, float]] = []

        def vt(t_rel: np.ndarray) -> np.ndarray:
            return vf(np.asarray(t_rel) - s)

        def left_of(i: int) -> tuple[float, float, float]:
            return (
                (s_prev, v_prev, i_prev) if i == 0 else (float(s_all[i - 1]), float(v_all[i - 1]), float(i_all[i - 1]))
            )

        if lim.duration is not None and len(s_all) and s_all[-1] >= lim.duration - 1e-9:
            t = float(lim.duration)
            cands.append((t, 5, EndReason.DURATION, "", float(vt(np.array([t]))[0])))
        if lim.charge is not None and len(s_all):
            ai = np.abs(i_all)
            ds = np.diff(np.concatenate(([s_prev], s_all)))
            aprev = np.concatenate(([abs(i_prev)], ai[:-1]))
            q = q_done + np.cumsum(0.5 * (ai + aprev) * ds)
            idx = np.flatnonzero(q >= lim.charge * (1 - 1e-12))
            if idx.size:
                i = int(idx[0])
                q0 = q_done if i == 0 else float(q[i - 1])
                a, _, _ = left_of(i)
                b = float(s_all[i])
                x = (lim.charge - q0) / (float(q[i]) - q0) if q[i] > q0 else 1.0
                t = a + min(max(x, 0.0), 1.0) * (b - a)
                cands.append((t, 4, EndReason.CHARGE, f"charge reached {lim.charge:g} C", float(vt(np.array([t]))[0])))
        for level, above, reason in (
            (lim.voltage_above, True, EndReason.VOLTAGE_ABOVE),
            (lim.voltage_below, False, EndReason.VOLTAGE_BELOW),
        ):
            if level is None or not len(s_all):
                continue
            hit = v_all >= level if above else v_all <= level
            idx = np.flatnonzero(hit)
            if idx.size:
                i = int(idx[0])
                a, va, _ = left_of(i)
                b = float(s_all[i])
                if (va >= level) if above else (va <= level):
                    t = a  # already beyond the limit at the start
                else:
                    t = self._crossing(vt, level, above, a, b)
                word = "reached" if above else "fell to"
                cands.append((t, 1, reason, f"voltage {word} {level:g} V", float(level)))
        ai = np.abs(i_all)
        for level, above, reason in (
            (lim.current_above, True, EndReason.CURRENT_ABOVE),
            (lim.current_below, False, EndReason.CURRENT_BELOW),
        ):
            if level is None or not len(s_all):
                continue
            idx = np.flatnonzero(ai >= level if above else ai <= level)
            if idx.size:
                i = int(idx[0])
                a, _, ia = left_of(i)
                b = float(s_all[i])
                ia, ib = abs(ia), float(ai[i])
                if (ia >= level) if above else (ia <= level):
                    t = a
                else:
                    x = (level - ia) / (ib - ia) if ib != ia else 1.0
                    t = a + min(max(x, 0.0), 1.0) * (b - a)
                cands.append(
                    (
                        t,
                        2,
                        reason,
                        f"|current| {'reached' if above else 'fell to'} {level:g} A",
                        float(vt(np.array([t]))[0]),
                    )
                )
        if lim.short_circuit is not None and len(s_all):
            thr = lim.short_circuit
            low = (np.abs(v_all) < thr) & (ai > 0)
            prev_low = short_since is not None
            starts = np.flatnonzero(low & ~np.concatenate(([prev_low], low[:-1])))
            ends = np.flatnonzero(low & ~np.concatenate((low[1:], [False])))  # last low index of each run
            run_starts: list[float | None] = []
            if prev_low and low[0]:
                run_starts.append(short_since)
            elif prev_low:
                short_since = None
            for i in starts:
                a, va, _ = left_of(int(i))
                b = float(s_all[i])
                if abs(va) < thr:
                    run_starts.append(a)
                else:
                    run_starts.append(self._crossing(lambda t: np.abs(vt(t)), thr, False, a, b))
            new_since: float | None = None
            found = None
            for r, start in enumerate(run_starts):
                last_low = float(s_all[ends[r]]) if r < len(ends) else float(s_all[-1])
                if start + lim.short_hold <= last_low + 1e-12:
                    found = start + lim.short_hold
                    break
                if r == len(run_starts) - 1 and low[-1]:
                    new_since = start
            if found is not None:
                cands.append(
                    (
                        found,
                        3,
                        EndReason.SHORT_CIRCUIT,
                        f"|V| below {thr:g} V for {lim.short_hold:g} s",
                        float(vt(np.array([found]))[0]),
                    )
                )
                short_since = None
            else:
                short_since = new_since
        if not cands:
            return None, 0.0, "", 0.0, short_since
        t, _, reason, detail, v_end = min(cands, key=lambda c: (c[0], c[1]))
        return reason, t, detail, v_end, short_since

    # ------------------------------------------------------------------ sweeps
    def _sweep(self, tech: LinearSweep | CyclicSweep) -> Iterator[SampleBlock]:
        cell = self.cell
        t0 = self._t_state
        ocv = cell.ocv() + float(self._vnoise(1)[0])
        base = ocv if tech.vs_ocp else 0.0
        if isinstance(tech, LinearSweep):
            nodes = [tech.start, tech.end]
        else:
            nodes = [tech.start]
            for _ in range(max(1, tech.cycles)):
                nodes += [tech.vertex1, tech.vertex2, tech.start]
        pts = []
        for a, b in zip(nodes, nodes[1:]):
            n = max(1, int(round(abs(b - a) / tech.step)))
            pts.append(a + (b - a) * np.arange(1, n + 1) / n)
        e = np.concatenate(pts) + base
        de = np.abs(np.diff(np.concatenate(([nodes[0] + base], e))))
        t_rel = np.cumsum(de) / tech.scan_rate
        lim = tech.limits
        temp = self._temperature(t0)
        cur = np.clip(cell.kinetic_current(e, temp), *self.capabilities.current_range)
        # natural end, then the limits on the sampled arrays
        end_idx, reason, detail, t_end = len(e) - 1, EndReason.COMPLETE, "sweep complete", float(t_rel[-1])
        cands = []
        if lim.duration is not None:
            idx = np.flatnonzero(t_rel >= lim.duration - 1e-9)
            if idx.size:
                cands.append((float(lim.duration), int(idx[0]), EndReason.DURATION, ""))
        if lim.charge is not None:
            q = np.cumsum(np.abs(cur) * np.diff(np.concatenate(([0.0], t_rel))))
            idx = np.flatnonzero(q >= lim.charge)
            if idx.size:
                cands.append((float(t_rel[idx[0]]), int(idx[0]), EndReason.CHARGE, f"charge reached {lim.charge:g} C"))
        for level, arr, above, why in (
            (lim.voltage_above, e, True, EndReason.VOLTAGE_ABOVE),
            (lim.voltage_below, e, False, EndReason.VOLTAGE_BELOW),
            (lim.current_above, np.abs(cur), True, EndReason.CURRENT_ABOVE),
            (lim.current_below, np.abs(cur), False, EndReason.CURRENT_BELOW),
        ):
            if level is None:
                continue
            idx = np.flatnonzero(arr >= level if above else arr <= level)
            if idx.size:
                cands.append((float(t_rel[idx[0]]), int(idx[0]), why, f"{why.value.replace('_', ' ')} {level:g}"))
        if cands:
            t_end, end_idx, reason, detail = min(cands, key=lambda c: (c[0], c[1]))
        e, cur, t_rel = e[: end_idx + 1], cur[: end_idx + 1], t_rel[: end_idx + 1]
        t_rel[-1] = t_end
        v_meas = e + self._vnoise(len(e), 0.1)
        i_meas = self._inoise(cur)
        yield from self._emit_points(t0, t_rel, v_meas, i_meas, cur, EndInfo(reason, t0 + t_end, detail), temp)

    def _emit_points(
        self,
        t0: float,
        t_rel: np.ndarray,
        v: np.ndarray,
        i: np.ndarray,
        i_model: np.ndarray,
        end: EndInfo,
        temp: float,
        extra: dict | None = None,
    ) -> Iterator[SampleBlock]:
        """Yield precomputed points in horizon-sized blocks, advancing the cell as time passes."""
        s = 0.0
        k = 0
        n = len(t_rel)
        while k < n:
            hor = self.clock.horizon()
            j = n if not math.isfinite(hor) else int(np.searchsorted(t_rel, s + hor, side="right"))
            j = min(max(j, k + 1), k + MAX_BLOCK, n)
            s_new = float(t_rel[j - 1])
            q = float(np.sum(i_model[k:j] * np.diff(np.concatenate(([s], t_rel[k:j])))))
            self.cell.pass_charge(q, s_new - s)
            s = s_new
            self._t_state = t0 + s
            t_abs = t0 + t_rel[k:j]
            kw = {name: arr[k:j] for name, arr in (extra or {}).items()}
            if "temperature" not in kw:
                kw["temperature"] = self._temperatures(t_abs, temp)
            block = SampleBlock(t_abs, v[k:j], i[k:j], **kw)
            if j == n:
                block.end = end
            self.clock.sleep_until(t0 + s)
            k = j
            yield block

    # ------------------------------------------------------------------ impedance
    @staticmethod
    def frequencies(tech: Impedance) -> np.ndarray:
        """The frequencies of a spectrum: log spaced, ``points_per_decade``, both ends included."""
        decades = abs(math.log10(tech.f_end / tech.f_start))
        n = max(1, int(round(decades * tech.points_per_decade))) + 1
        return np.logspace(math.log10(tech.f_start), math.log10(tech.f_end), n)

    @staticmethod
    def point_time(freq: np.ndarray) -> np.ndarray:
        """Measurement time of each EIS point: two periods, at least 0.5 s."""
        return np.maximum(2.0 / freq, 0.5)

    def _eis(self, tech: Impedance) -> Iterator[SampleBlock]:
        cell = self.cell
        t0 = self._t_state
        f = self.frequencies(tech)
        t_rel = np.cumsum(self.point_time(f))
        ocv = cell.ocv()
        e_dc = ocv + tech.e_dc if tech.vs_ocp else tech.e_dc
        temp0 = self._temperature(t0)
        if self.stage is not None and callable(getattr(self.stage, "temperature_at", None)):
            temps = np.asarray(self.stage.temperature_at(t0 + t_rel), dtype=float)
        else:
            temps = np.full(len(f), temp0)
        z = cell.impedance(f, temps)
        if self.noise and self.preset.noise.impedance > 0:
            eps = self._rng_z.standard_normal(2 * len(f)) * self.preset.noise.impedance
            z = z * (1.0 + eps[0::2] + 1j * eps[1::2])
        i_dc = float(np.clip(cell.kinetic_current(np.array([e_dc]), temp0)[0], *self.capabilities.current_range))
        i_model = np.full(len(f), i_dc)
        v = np.full(len(f), e_dc) + self._vnoise(len(f), 0.1)
        i = self._inoise(i_model)
        extra = {"frequency": f, "z_re": z.real.copy(), "z_im": z.imag.copy(), "temperature": temps}
        end = EndInfo(EndReason.COMPLETE, t0 + float(t_rel[-1]), "spectrum complete")
        yield from self._emit_points(t0, t_rel, v, i, i_model, end, temp0, extra)
