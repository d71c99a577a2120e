"""The engine: executes a validated protocol on one channel through the driver contracts.

Flow of one run::

    Protocol (protocols/, SI floats) --compile--> techniques (drivers/techniques.py)
        --> driver.run(technique) yields SampleBlocks
        --> safety check, end conditions (labctl/conditions.py), charge, cycle
        --> recorder.samples(...) (db/ writer thread; never waits on SQL)

Every exit path (end, error, Ctrl-C, safety trip) turns the cell off and records
the run's end reason.  The engine depends only on the contracts in ``drivers/``
and on a recorder with the :class:`db.RunRecorder` interface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.drivers.contracts import ChannelDevices, DeviceError
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
from labctl.core.clock import Clock
from labctl.engine.conditions import EndConditions, SafetyLimits, SafetyTrip, check_safety, step_charge
from labctl.core.interrupts import deferred_interrupt

log = logging.getLogger("labctl.engine")

#: Written into every export and the docs: one definition, everywhere.
CURRENT_SIGN = "positive current = anodic at the working electrode (oxidation, Mg stripping from the WE); negative = cathodic (plating onto the WE)"
CYCLE_DEFINITION = (
    "a cycle is one iteration of a repeat block that contains no other repeat (or one cycle of an "
    "aurbach_ce step); the counter is run-wide, 0 before the first cycle, and increments when an iteration starts"
)


class ProtocolRuntimeError(RuntimeError):
    """The protocol cannot go on (a temperature that never settles, a missing operator)."""


class PreflightError(ProtocolRuntimeError):
    """Found before the run starts: this channel cannot run the protocol.  Nothing is recorded."""


@dataclass
class Progress:
    step_index: int
    path: str
    kind: str
    label: str | None
    cycle: int
    t_test: float  # s since run start
    n_samples: int
    note: str = ""


@dataclass
class StepOutcome:
    step_index: int
    kind: str
    end_reason: str
    detail: str
    t_start: float
    t_end: float
    n_samples: int
    charge: float
    last_voltage: float = float("nan")


@dataclass
class RunOutcome:
    run_id: int | None
    status: str  # completed | aborted | failed | safety
    end_reason: str
    duration: float  # s of test time
    n_samples: int
    steps: list[StepOutcome] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)


class NullRecorder:
    """A recorder that keeps nothing (dry runs, unit tests)."""

    run_id = None

    def step_started(self, *a: Any, **k: Any) -> None: ...
    def samples(self, *a: Any, **k: Any) -> None: ...
    def step_ended(self, *a: Any, **k: Any) -> None: ...
    def event(self, *a: Any, **k: Any) -> None: ...
    def finish(self, *a: Any, **k: Any) -> None: ...
    def flush(self, *a: Any, **k: Any) -> None: ...
    def close(self) -> None: ...


class _EndRepeat(Exception):
    """Internal: a short circuit ended the enclosing repeat."""

    def __init__(self, outcome: StepOutcome) -> None:
        self.outcome = outcome


class Engine:
    """Runs one protocol on one channel.

    ``operator`` answers the prompts of manual steps (dip coating); see
    :mod:`labctl.app.operator`.  ``on_progress`` is called after every block.
    """

    def __init__(
        self,
        protocol: Any,
        devices: ChannelDevices,
        clock: Clock,
        recorder: Any | None = None,
        *,
        operator: Any | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_coating: Callable[[dict], None] | None = None,
    ) -> None:
        self.protocol = protocol
        self.devices = devices
        self.clock = clock
        self.rec = recorder if recorder is not None else NullRecorder()
        self.operator = operator
        self.on_progress = on_progress
        self.on_coating = on_coating
        s = protocol.safety
        self.safety = SafetyLimits(s.voltage_min, s.voltage_max, s.current_max, s.temperature_max, s.max_duration)
        self._step_counter = 0
        self._cycle = 0
        self._n_samples = 0
        self._t0 = 0.0
        self._outcomes: list[StepOutcome] = []
        self._events: list[tuple[float, str, str]] = []
        self._cell_on = False
        self._short_stack: list[tuple[float, float]] = []
        # A symmetric cell is always watched for a short (|V| < 10 mV under current for 60 s):
        # outside a `repeat: {until: short_circuit}` a short ends the run, since every later
        # step on a shorted cell is meaningless.
        self._default_short = (0.010, 60.0) if protocol.cell.kind == "symmetric" else None

    # ----------------------------------------------------------------- preflight
    def preflight(self) -> None:
        """Check before any current flows that this channel can run the protocol.

        Raises :class:`PreflightError` whose message reads ``file:line:col: field: message (hint: ...)``.
        """
        caps = self.devices.potentiostat.capabilities
        src = getattr(self.protocol, "source", None) or "<protocol>"
        model = caps.model or type(self.devices.potentiostat).__name__

        def where(step: Any) -> str:
            return f"{src}:{getattr(step, 'line', 0) or 0}:{getattr(step, 'col', 0) or 0}"

        for step in _walk(self.protocol.steps):
            missing = _technique_kinds(step) - set(caps.techniques)
            if missing:
                raise PreflightError(
                    f"{where(step)}: {step.kind}: the potentiostat ({model}) does not run {', '.join(sorted(missing))} "
                    f"(hint: it runs {', '.join(sorted(caps.techniques))}; choose another channel)")
            if step.kind == "temperature":
                stage = self.devices.stage
                if stage is None:
                    raise PreflightError(f"{where(step)}: temperature: the channel has no temperature stage "
                                         f"(hint: add one to the channel or remove the step)")
                tlo, thi = stage.range_c
                if not (tlo <= step.setpoint <= thi):
                    raise PreflightError(
                        f"{where(step)}: temperature.setpoint: {step.setpoint:g} degC is outside the stage's range "
                        f"{tlo:g}..{thi:g} degC (hint: choose a set point within the stage's range)")
            if step.kind == "dip_coat" and step.mode == "automated" and self.devices.dip_coater is None:
                raise PreflightError(f"{where(step)}: dip_coat.mode: automated, but the channel has no dip coater "
                                     f"(hint: use mode: manual, or add a dip coater)")
            current = getattr(step, "current", None)
            if isinstance(current, float):
                lo, hi = caps.current_range
                applied = (current, -current) if step.kind == "aurbach_ce" else (current,)
                if any(not (lo - 1e-12 <= c <= hi + 1e-12) for c in applied):
                    raise PreflightError(
                        f"{where(step)}: {step.kind}.current: {current * 1e3:g} mA is outside the instrument's range "
                        f"{lo * 1e3:g}..{hi * 1e3:g} mA (hint: lower the current or use another instrument)")

    # ----------------------------------------------------------------- run
    def run(self) -> RunOutcome:
        """Run the protocol (call :meth:`preflight` first to fail before anything is recorded)."""
        self._t0 = self.clock.now()
        status, reason = "completed", "protocol completed"
        try:
            self._run_steps(self.protocol.steps, path="")
            shorts = [o for o in self._outcomes if o.end_reason == EndReason.SHORT_CIRCUIT.value]
            if shorts:
                o = shorts[-1]
                reason = f"protocol completed; short circuit at {(o.t_end - self._t0) / 3600:.2f} h"
        except _EndRepeat as e:
            o = e.outcome
            reason = (f"cell short-circuited at {(o.t_end - self._t0) / 3600:.2f} h (cycle {self._cycle}); "
                      f"remaining steps skipped")
            self._event("short_circuit", reason, {"cycle": self._cycle, "t_test": o.t_end - self._t0})
            self._cell_off()
        except KeyboardInterrupt:
            status, reason = "aborted", "interrupted by the user (Ctrl-C)"
            self._emergency_off()
            self._event("abort", reason)
        except SafetyTrip as e:
            status, reason = "safety", f"safety limit: {e}"
            self._emergency_off()
            self._event("safety", str(e))
        except (DeviceError, ProtocolRuntimeError) as e:
            status, reason = "failed", str(e)
            self._emergency_off()
            self._event("error", str(e))
        except Exception as e:  # noqa: BLE001 - any failure must leave the cell safe and be recorded
            status, reason = "failed", f"{type(e).__name__}: {e}"
            self._emergency_off()
            self._event("error", reason)
            self._finish(status, reason)
            raise
        else:
            self._cell_off()
        self._finish(status, reason)
        return RunOutcome(self.rec.run_id, status, reason, self.clock.now() - self._t0, self._n_samples,
                          self._outcomes, self._events)

    def _finish(self, status: str, reason: str) -> None:
        with deferred_interrupt():
            self.rec.finish(status, reason, self.clock.unix(self.clock.now()))

    def _cell_off(self) -> None:
        self.devices.potentiostat.cell_off()
        self._cell_on = False
        self._restore_stage()

    def _restore_stage(self) -> None:
        """A run that changed the stage's set point hands the stage back at the temperature it
        found (room temperature, usually): a failed run must not leave a cell cooking at 60 C."""
        stage, start = self.devices.stage, getattr(self, "_stage_start", None)
        if stage is None or start is None:
            return
        self._stage_start = None
        try:
            stage.set_setpoint(start)
            self._event("temperature", f"stage set point back to {start:.1f} degC (run ended)")
        except Exception as e:  # noqa: BLE001 - report; the cell is already off
            log.error("could not restore the stage set point: %s", e)
            self._event("error", f"could not restore the stage set point: {e}")

    def _emergency_off(self) -> None:
        with deferred_interrupt():
            try:
                self._cell_off()
            except Exception as e:  # noqa: BLE001 - report, keep going: data must still be committed
                log.error("cell_off failed: %s", e)
                self._event("error", f"cell_off failed: {e}")

    def _event(self, kind: str, message: str, data: dict | None = None) -> None:
        t = self.clock.now() - self._t0
        self._events.append((t, kind, message))
        self.rec.event(t, kind, message, data)

    # ----------------------------------------------------------------- structure
    def _run_steps(self, steps: list[Any], path: str) -> None:
        for n, step in enumerate(steps, start=1):
            p = f"{path}{n}"
            kind = step.kind
            if kind == "repeat":
                self._run_repeat(step, p)
            elif kind == "group":
                self._event("group", f"{p}: {step.label}")
                self._run_steps(step.steps, p + f"[{step.label}]/")
            else:
                self._run_leaf(step, p)

    def _run_repeat(self, step: Any, path: str) -> None:
        innermost = not any(s.kind == "repeat" for s in _walk(step.steps) if s is not step)
        t_start = self.clock.now()
        if step.until == "short_circuit":
            self._short_stack.append((step.short_below, step.short_hold))
        try:
            self._repeat_loop(step, path, innermost, t_start)
        finally:
            if step.until == "short_circuit":
                self._short_stack.pop()

    def _repeat_loop(self, step: Any, path: str, innermost: bool, t_start: float) -> None:
        limit = step.times if step.times is not None else step.max_cycles
        it = 0
        while True:
            if limit is not None and it >= limit:
                if step.until is not None:
                    self._event("repeat", f"{path}: reached max_cycles={limit} without {step.until}")
                break
            if step.max_duration is not None and self.clock.now() - t_start >= step.max_duration:
                self._event("repeat", f"{path}: reached max_duration={step.max_duration / 3600:g} h")
                break
            it += 1
            if innermost:
                self._cycle += 1
            try:
                self._run_steps(step.steps, f"{path}/cycle {it}/")
            except _EndRepeat as e:
                if step.until != "short_circuit":
                    raise
                o = e.outcome
                self._event("short_circuit",
                            f"short circuit detected in cycle {self._cycle} at {(o.t_end - self._t0) / 3600:.2f} h",
                            {"cycle": self._cycle, "t_test": o.t_end - self._t0})
                break

    # ----------------------------------------------------------------- leaves
    def _run_leaf(self, step: Any, path: str) -> None:
        kind = step.kind
        label = getattr(step, "label", None)
        if kind == "rest":
            self._technique(step, path, kind, label, OpenCircuit(step.duration, Recording(dt=step.record_every)))
        elif kind == "galvanostatic":
            short = self._short_stack[-1] if self._short_stack else self._default_short
            limits = Limits(duration=step.duration, charge=step.capacity, voltage_above=step.voltage_above,
                            voltage_below=step.voltage_below,
                            short_circuit=short[0] if short else None, short_hold=short[1] if short else 60.0)
            rec = Recording(dt=step.record_every_s, dv=step.record_dv)
            o = self._technique(step, path, kind, label, ConstantCurrent(step.current, limits, rec))
            if o.end_reason == EndReason.SHORT_CIRCUIT.value:
                raise _EndRepeat(o)
        elif kind == "potentiostatic":
            limits = Limits(duration=step.duration, current_below=step.current_below)
            self._technique(step, path, kind, label,
                            ConstantPotential(step.potential, limits, vs_ocp=step.vs_ocp,
                                              record=Recording(dt=step.record_every)))
        elif kind == "tafel":
            if step.rest > 0:
                self._technique(step, path + ".rest", "rest", "tafel:rest",
                                OpenCircuit(step.rest, Recording(dt=max(step.rest / 600, 1.0))))
            self._technique(step, path, "tafel", label,
                            LinearSweep(-step.span, step.span, step.scan_rate, step.step, vs_ocp=True),
                            params_extra={"span": step.span})
        elif kind == "lsv":
            self._technique(step, path, kind, label,
                            LinearSweep(step.start, step.end, step.scan_rate, step.step, vs_ocp=step.vs_ocp))
        elif kind == "cv":
            self._technique(step, path, kind, label,
                            CyclicSweep(step.start, step.vertex1, step.vertex2, step.scan_rate, step.step,
                                        cycles=step.cycles, vs_ocp=step.vs_ocp))
        elif kind == "eis":
            e_dc = 0.0 if step.e_dc is None else step.e_dc
            vs_ocp = True if step.e_dc is None else step.vs_ocp
            self._technique(step, path, kind, label,
                            Impedance(step.f_start, step.f_end, step.points_per_decade, step.amplitude, e_dc, vs_ocp))
        elif kind == "temperature":
            self._temperature(step, path)
        elif kind == "aurbach_ce":
            self._aurbach(step, path)
        elif kind == "dip_coat":
            from labctl.engine.dipcoat import run_dip_coat

            idx = self._begin_step(step, path, kind, label, {})
            t0 = self.clock.now()
            record = run_dip_coat(step, self.clock, self.operator, self.devices.dip_coater, self._event)
            record["run_id"] = self.rec.run_id
            record["step_index"] = idx
            if self.on_coating is not None:
                self.on_coating(record)
            self._end_step(idx, kind, t0, EndReason.COMPLETE.value,
                           f"coated {', '.join(step.cells)}; {len(record['deviations'])} deviation(s)", 0, 0.0)
        else:
            raise ProtocolRuntimeError(f"unknown step kind {kind!r}")

    def _aurbach(self, step: Any, path: str) -> None:
        i = abs(step.current)
        rec = Recording(dt=step.record_every_s, dv=step.record_dv)
        cutoff = step.strip_cutoff
        guard = Limits(duration=step.max_strip_duration, voltage_above=cutoff)
        self._event("aurbach", f"{path}: reservoir Q_T={step.reservoir / 3.6:.4g} mAh, {step.cycles} cycles of "
                               f"Q_C={step.cycle_capacity / 3.6:.4g} mAh, strip to {cutoff:g} V")
        self._technique(step, path + ".reservoir", "galvanostatic", "aurbach:reservoir",
                        ConstantCurrent(-i, Limits(charge=step.reservoir, voltage_below=self.safety.voltage_min + 1e-3), rec))
        for c in range(1, step.cycles + 1):
            self._cycle += 1
            o = self._technique(step, f"{path}/cycle {c}.strip", "galvanostatic", "aurbach:cycle-strip",
                                ConstantCurrent(i, Limits(charge=step.cycle_capacity, voltage_above=cutoff,
                                                          duration=step.max_strip_duration), rec))
            if o.end_reason != EndReason.CHARGE.value:
                self._event("aurbach", f"cycle {c}: strip ended early ({o.end_reason}); the reservoir is exhausted")
            self._technique(step, f"{path}/cycle {c}.plate", "galvanostatic", "aurbach:cycle-plate",
                            ConstantCurrent(-i, Limits(charge=step.cycle_capacity,
                                                       voltage_below=self.safety.voltage_min + 1e-3), rec))
        self._technique(step, path + ".final", "galvanostatic", "aurbach:final-strip", ConstantCurrent(i, guard, rec))

    def _temperature(self, step: Any, path: str) -> None:
        stage = self.devices.stage
        assert stage is not None  # preflight
        idx = self._begin_step(step, path, "temperature", getattr(step, "label", None),
                               {"setpoint": step.setpoint, "band": step.band, "hold": step.hold})
        t0 = self.clock.now()
        if getattr(self, "_stage_start", None) is None:
            self._stage_start = round(float(stage.read_temperature()), 1)
        stage.set_setpoint(step.setpoint)
        self._event("temperature", f"set point {step.setpoint:g} degC")
        inside_since: float | None = None
        n = 0
        dt = step.record_every
        ts, temps = [], []
        try:
            while True:
                now = self.clock.now()
                temp = float(stage.read_temperature())
                ts.append(now)
                temps.append(temp)
                if abs(temp - step.setpoint) <= step.band:
                    if inside_since is None:
                        inside_since = now
                else:
                    inside_since = None
                if self.safety.temperature_max is not None and temp > self.safety.temperature_max:
                    self._flush_temps(idx, ts, temps)
                    raise SafetyTrip(f"temperature {temp:.2f} degC above the safety limit "
                                     f"{self.safety.temperature_max:g} degC")
                if len(ts) >= 256:
                    n += self._flush_temps(idx, ts, temps)
                    ts, temps = [], []
                if inside_since is not None and now - inside_since >= step.hold:
                    n += self._flush_temps(idx, ts, temps)
                    self._end_step(idx, "temperature", t0, EndReason.COMPLETE.value,
                                   f"held {step.setpoint:g} +- {step.band:g} degC for {step.hold:g} s", n, 0.0)
                    return
                if now - t0 >= step.timeout:
                    n += self._flush_temps(idx, ts, temps)
                    self._end_step(idx, "temperature", t0, EndReason.ERROR.value, "timeout", n, 0.0)
                    raise ProtocolRuntimeError(
                        f"temperature step (line {step.line}): the stage did not settle at {step.setpoint:g} "
                        f"+- {step.band:g} degC within {step.timeout / 60:g} min (last reading {temp:.2f} degC)")
                self.clock.sleep(dt)
        except BaseException:
            if ts:
                self._flush_temps(idx, ts, temps)
            raise

    def _flush_temps(self, idx: int, ts: list[float], temps: list[float]) -> int:
        if not ts:
            return 0
        t = np.asarray(ts) - self._t0
        nan = np.full(len(ts), np.nan)
        self.rec.samples(idx, self._cycle, t, nan, np.zeros(len(ts)), np.zeros(len(ts)), temperature=np.asarray(temps))
        self._n_samples += len(ts)
        ts.clear()
        temps.clear()
        return len(t)

    # ----------------------------------------------------------------- one technique
    def _begin_step(self, step: Any, path: str, kind: str, label: str | None, params: dict) -> int:
        self._step_counter += 1
        idx = self._step_counter
        params = {**params, "line": getattr(step, "line", None)}
        self.rec.step_started(idx, path=path, kind=kind, label=label, cycle=self._cycle, params=params,
                              t=self.clock.now() - self._t0)
        return idx

    def _end_step(self, idx: int, kind: str, t_start: float, reason: str, detail: str, n: int, q: float,
                  v_last: float = float("nan"), t_end: float | None = None) -> StepOutcome:
        """``t_end``: when the end condition was met (interpolated); default now."""
        t_end = self.clock.now() if t_end is None else t_end
        self.rec.step_ended(idx, t=t_end - self._t0, end_reason=reason, detail=detail, n_samples=n, charge=q)
        o = StepOutcome(idx, kind, reason, detail, t_start, t_end, n, q, v_last)
        self._outcomes.append(o)
        return o

    def _technique(self, step: Any, path: str, kind: str, label: str | None, tech: Technique,
                   params_extra: dict | None = None) -> StepOutcome:
        params = _technique_params(tech)
        if params_extra:
            params.update(params_extra)
        idx = self._begin_step(step, path, kind, label, params)
        t_start = self.clock.now()
        limits = getattr(tech, "limits", None)
        if isinstance(tech, OpenCircuit):
            limits = Limits(duration=tech.duration)
        cond = EndConditions(limits, t_start) if limits is not None else None
        n = 0
        q = 0.0
        t_prev: float | None = t_start
        i_prev: float | None = None
        v_last = float("nan")
        end: EndInfo | None = None
        pstat = self.devices.potentiostat
        self._cell_on = True
        gen: Iterator[SampleBlock] = pstat.run(tech)
        try:
            for block in gen:
                if len(block) == 0 and block.end is None:
                    continue
                charge = step_charge(block.t, block.current, t_prev, i_prev, q)
                hit = cond.check(block, charge) if cond is not None else None
                if hit is not None and (block.end is None or hit.t < block.end.t - 1e-9 or hit.index < len(block) - 1):
                    block, charge = _truncate(block, charge, hit)
                    end = EndInfo(hit.reason, hit.t, hit.detail)
                elif block.end is not None:
                    end = block.end
                if len(block):
                    check_safety(self.safety, block, self._t0)
                    self.rec.samples(idx, self._cycle, block.t - self._t0, block.voltage, block.current, charge,
                                     temperature=block.temperature, frequency=block.frequency,
                                     z_re=block.z_re, z_im=block.z_im)
                    n += len(block)
                    self._n_samples += len(block)
                    t_prev, i_prev = float(block.t[-1]), float(block.current[-1])
                    q = float(charge[-1])
                    v_last = float(block.voltage[-1])
                if self.on_progress is not None:
                    self.on_progress(Progress(idx, path, kind, label, self._cycle, self.clock.now() - self._t0,
                                              self._n_samples))
                if end is not None:
                    break
        finally:
            gen.close()
        if end is None:
            end = EndInfo(EndReason.COMPLETE if not isinstance(tech, (OpenCircuit, ConstantCurrent, ConstantPotential))
                          else EndReason.DURATION, self.clock.now())
        self.clock.sleep_until(end.t)
        return self._end_step(idx, kind, t_start, end.reason.value, end.detail, n, q, v_last, t_end=end.t)


def _truncate(block: SampleBlock, charge: np.ndarray, hit: Any) -> tuple[SampleBlock, np.ndarray]:
    """Keep samples before the crossing, then one interpolated sample at the crossing."""
    k = hit.index
    head = block.head(k)
    if k < len(block) and hit.t <= block.t[k]:
        t_prev = block.t[k - 1] if k > 0 else None
        if t_prev is not None and block.t[k] > t_prev:
            f = (hit.t - t_prev) / (block.t[k] - t_prev)
        else:
            f = 1.0

        def lerp(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            if k == 0:
                return a[:1].copy()
            return np.concatenate((a[:k], [a[k - 1] + f * (a[k] - a[k - 1])]))

        out = SampleBlock(np.concatenate((block.t[:k], [hit.t])), lerp(block.voltage), lerp(block.current),
                          temperature=lerp(block.temperature), frequency=lerp(block.frequency),
                          z_re=lerp(block.z_re), z_im=lerp(block.z_im))
        return out, lerp(charge)
    return head, charge[:k]


def _walk(steps: list[Any]) -> Iterator[Any]:
    for s in steps:
        yield s
        sub = getattr(s, "steps", None)
        if sub:
            yield from _walk(sub)


def _technique_kinds(step: Any) -> set[str]:
    return {
        "rest": {"ocp"}, "galvanostatic": {"cp"}, "aurbach_ce": {"cp"}, "potentiostatic": {"ca"},
        "tafel": {"ocp", "lsv"}, "lsv": {"lsv"}, "cv": {"cv"}, "eis": {"eis"},
    }.get(step.kind, set())


def _technique_params(tech: Technique) -> dict:
    out: dict[str, Any] = {"technique": tech.kind}
    for name, value in vars(tech).items():
        if name in ("kind",):
            continue
        if isinstance(value, (Limits, Recording)):
            out[name] = {k: v for k, v in vars(value).items() if v is not None}
        else:
            out[name] = value
    return out
