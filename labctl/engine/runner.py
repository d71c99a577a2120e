"""The engine: executes a compiled protocol on one channel through the driver contracts.

Flow of one run::

    Protocol (labctl.protocols, SI floats) --compile--> Program (labctl.engine.program)
        step through the program with explicit state (ProgramState):
        at every step and cycle boundary: checkpoint -> pause? abort?
        technique: potentiostat.start(technique) -> handle.read(timeout) blocks
            --> end conditions (labctl.engine.conditions), charge, safety check
            --> recorder.samples(...) (the db writer thread; never waits on SQL)

Every exit path (end, error, Ctrl-C, SIGTERM/SIGHUP, safety trip, abort) turns the cell
off, closes the step that was running with its samples counted, and records the run's
status and end reason.  An instrument whose link fails mid-step is reconnected with backoff
and the step run again (:mod:`labctl.engine.faults`: the policy, per instrument from
``devices.extras["reconnect"]``).  The engine depends only on the contracts in
``labctl.drivers`` and ``labctl.core.contracts``.

``pause()``, ``resume()``, ``abort(reason)`` and ``interrupt(reason)`` may be called from any
thread: a pause takes effect at the next boundary (the cell is turned off meanwhile), an abort
after the block being read or at the next boundary; ``interrupt`` stops the same way but ends the
run ``interrupted`` (resumable), as SIGTERM does: what a worker that is shutting down uses.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from labctl.core.clock import Clock, wait_for
from labctl.core.contracts import NullRecorder, Operator, Recorder
from labctl.core.conventions import CURRENT_SIGN, CYCLE_DEFINITION, RunStatus
from labctl.core.interrupts import Terminated, deferred_interrupt
from labctl.drivers.contracts import READ_TIMEOUT, ChannelDevices, DeviceError, TechniqueHandle, TechniqueState
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    EndInfo,
    EndReason,
    Limits,
    OpenCircuit,
    Recording,
    SampleBlock,
    Technique,
)
from labctl.engine.conditions import EndConditions, Hit, SafetyLimits, SafetyTrip, safety_violation, step_charge
from labctl.engine.faults import DEFAULT_POLICY, MAX_FAULTS_PER_STEP, ReconnectPolicy, is_link_fault
from labctl.engine.program import (
    LoopFrame,
    OpCycle,
    OpDipCoat,
    OpEvent,
    OpLoopInit,
    OpLoopNext,
    OpLoopTest,
    OpTechnique,
    OpTemperature,
    Program,
    ProgramState,
    compile_protocol,
    technique_kinds,
    walk,
)

__all__ = [
    "CURRENT_SIGN",
    "CYCLE_DEFINITION",
    "Engine",
    "EngineState",
    "NullRecorder",
    "PreflightError",
    "Progress",
    "ProtocolRuntimeError",
    "RunOutcome",
    "StepOutcome",
]

log = logging.getLogger("labctl.engine")


class ProtocolRuntimeError(RuntimeError):
    """The protocol cannot go on (a temperature that never settles, a missing operator)."""


class PreflightError(ProtocolRuntimeError):
    """Found before the run starts: this channel cannot run the protocol.  Nothing is recorded."""


class RunAborted(Exception):
    """``abort(reason)`` was called."""


class EngineState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


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
    status: str  # a RunStatus value: completed | aborted | failed | safety | interrupted
    end_reason: str
    duration: float  # s of test time
    n_samples: int
    steps: list[StepOutcome] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass
class _OpenStep:
    index: int
    kind: str
    t_start: float
    n: int = 0
    q: float = 0.0


class _RunShorted(Exception):
    """A short circuit outside any ``repeat: {until: short_circuit}``: the run ends."""

    def __init__(self, outcome: StepOutcome) -> None:
        self.outcome = outcome


class Engine:
    """Runs one protocol on one channel.

    ``operator`` answers the prompts of manual steps (dip coating); ``on_progress`` is
    called after every block; ``checkpoint`` (a dict from an earlier run's recorder)
    resumes the program at that boundary.  ``read_timeout``: seconds of wall time one
    read of a technique's handle may take before the instrument counts as silent.
    """

    def __init__(
        self,
        protocol: Any,
        devices: ChannelDevices,
        clock: Clock,
        recorder: Recorder | None = None,
        *,
        operator: Operator | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_coating: Callable[[dict[str, Any]], None] | None = None,
        checkpoint: dict[str, Any] | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.protocol = protocol
        self.devices = devices
        self.clock = clock
        self.rec: Recorder = recorder if recorder is not None else NullRecorder()
        self.operator = operator
        self.on_progress = on_progress
        self.on_coating = on_coating
        self.read_timeout = read_timeout
        s = protocol.safety
        self.safety = SafetyLimits(
            s.voltage_min,
            s.voltage_max,
            s.current_max,
            s.temperature_max,
            s.max_duration,
            getattr(s, "charge_max", None),
        )
        self.program: Program = compile_protocol(protocol)
        self.st = ProgramState() if checkpoint is None else ProgramState.from_checkpoint(self.program, checkpoint)
        self._resume_t_test = 0.0 if checkpoint is None else float(checkpoint.get("t_test", 0.0))
        self._t0 = 0.0
        self._outcomes: list[StepOutcome] = []
        self._events: list[tuple[float, str, str]] = []
        self._open: _OpenStep | None = None
        self._state = EngineState.IDLE
        self._pause_requested = threading.Event()
        self._resumed = threading.Event()
        self._abort_reason: str | None = None
        extras = devices.extras or {}
        self._names: dict[str, str] = dict(extras.get("instruments") or {})  # type: ignore[call-overload]
        self._policies: dict[str, ReconnectPolicy] = dict(extras.get("reconnect") or {})  # type: ignore[call-overload]
        self._overshoot: float | None = extras.get("max_overshoot")  # type: ignore[assignment]
        self.recoveries = 0  # reconnections in this run
        self._fault_streak = 0  # faults since a step last completed
        self._interrupting = False

    # ----------------------------------------------------------------- control (any thread)
    @property
    def state(self) -> EngineState:
        return self._state

    def pause(self) -> None:
        """Pause at the next step or cycle boundary; the cell is off until :meth:`resume`."""
        self._resumed.clear()
        self._pause_requested.set()

    def resume(self) -> None:
        self._pause_requested.clear()
        self._resumed.set()

    def abort(self, reason: str = "aborted by the user") -> None:
        """End the run: after the block being read, or at once when paused; cell off, status aborted."""
        self._abort_reason = reason
        self._resumed.set()

    def interrupt(self, reason: str = "interrupted") -> None:
        """Stop like :meth:`abort`, but end the run ``interrupted``: resumable from its last checkpoint."""
        self._interrupting = True
        self.abort(reason)

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

        for step in walk(self.protocol.steps):
            missing = technique_kinds(step) - set(caps.techniques)
            if missing:
                raise PreflightError(
                    f"{where(step)}: {step.kind}: the potentiostat ({model}) does not run {', '.join(sorted(missing))} "
                    f"(hint: it runs {', '.join(sorted(caps.techniques))}; choose another channel)"
                )
            if step.kind == "temperature":
                stage = self.devices.stage
                if stage is None:
                    raise PreflightError(
                        f"{where(step)}: temperature: the channel has no temperature stage "
                        f"(hint: add one to the channel or remove the step)"
                    )
                tlo, thi = stage.range_c
                if not (tlo <= step.setpoint <= thi):
                    raise PreflightError(
                        f"{where(step)}: temperature.setpoint: {step.setpoint:g} degC is outside the stage's range "
                        f"{tlo:g}..{thi:g} degC (hint: choose a set point within the stage's range)"
                    )
            if step.kind == "dip_coat" and step.mode == "automated" and self.devices.dip_coater is None:
                raise PreflightError(
                    f"{where(step)}: dip_coat.mode: automated, but the channel has no dip coater "
                    f"(hint: use mode: manual, or add a dip coater)"
                )
            if not caps.streams and not caps.native_limits:
                cut = [
                    name
                    for name in ("voltage_above", "voltage_below", "current_below", "capacity", "until")
                    if getattr(step, name, None) not in (None, False)
                ]
                if cut:
                    raise PreflightError(
                        f"{where(step)}: {step.kind}.{cut[0]}: the potentiostat ({model}) runs each technique to its "
                        f"end before returning data, so it cannot stop on a cut-off "
                        f"(hint: use a duration only, or run this step on a channel that enforces cut-offs)"
                    )
            if step.kind == "eis":
                flo, fhi = caps.frequency_range
                for name in ("f_start", "f_end"):
                    f = getattr(step, name)
                    if not (flo * (1 - 1e-9) <= f <= fhi * (1 + 1e-9)):
                        raise PreflightError(
                            f"{where(step)}: eis.{name}: {f:g} Hz is outside the instrument's frequency range "
                            f"{flo:g}..{fhi:g} Hz ({model}) (hint: choose frequencies within that range)"
                        )
            current = getattr(step, "current", None)
            if isinstance(current, float):
                lo, hi = caps.current_range
                applied = (current, -current) if step.kind == "aurbach_ce" else (current,)
                if any(not (lo - 1e-12 <= c <= hi + 1e-12) for c in applied):
                    raise PreflightError(
                        f"{where(step)}: {step.kind}.current: {current * 1e3:g} mA is outside the instrument's range "
                        f"{lo * 1e3:g}..{hi * 1e3:g} mA (hint: lower the current or use another instrument)"
                    )

    # ----------------------------------------------------------------- run
    def run(self) -> RunOutcome:
        """Run the protocol (call :meth:`preflight` first to fail before anything is recorded)."""
        self._t0 = self.clock.now() - self._resume_t_test
        self._state = EngineState.RUNNING
        status, reason = RunStatus.COMPLETED, "protocol completed"
        t_end: float | None = None
        try:
            self._execute()
            if self.st.shorted and self.st.short_t is not None:
                reason = f"protocol completed; short circuit at {self.st.short_t / 3600:.2f} h"
        except _RunShorted as e:
            o = e.outcome
            reason = (
                f"cell short-circuited at {(o.t_end - self._t0) / 3600:.2f} h (cycle {self.st.cycle}); "
                f"remaining steps skipped"
            )
            self._event("short_circuit", reason, {"cycle": self.st.cycle, "t_test": o.t_end - self._t0})
            self._cell_off()
        except Terminated as e:
            status = RunStatus.INTERRUPTED
            reason = f"terminated by {e.signame} (cell off; resumable from the last checkpoint)"
            self._fail_safe(EndReason.ABORTED, reason, "abort")
        except KeyboardInterrupt:
            status, reason = RunStatus.ABORTED, "interrupted by the user (Ctrl-C)"
            self._fail_safe(EndReason.ABORTED, reason, "abort")
        except RunAborted as e:
            status, reason = RunStatus.INTERRUPTED if self._interrupting else RunStatus.ABORTED, str(e)
            self._fail_safe(EndReason.ABORTED, reason, "abort")
        except SafetyTrip as e:
            status, reason = RunStatus.SAFETY, f"safety limit: {e}"
            t_end = e.t
            self._fail_safe(EndReason.SAFETY, str(e), "safety", t=e.t)
        except (DeviceError, ProtocolRuntimeError) as e:
            status, reason = RunStatus.FAILED, str(e)
            self._fail_safe(EndReason.ERROR, str(e), "error")
        except Exception as e:  # noqa: BLE001 - any failure must leave the cell safe and be recorded
            status, reason = RunStatus.FAILED, f"{type(e).__name__}: {e}"
            self._fail_safe(EndReason.ERROR, reason, "error")
            self._finish(status, reason, t_end)
            raise
        else:
            self._cell_off()
        self._finish(status, reason, t_end)
        end = self.clock.now() if t_end is None else t_end
        return RunOutcome(
            self.rec.run_id, status.value, reason, end - self._t0, self.st.n_samples, self._outcomes, self._events
        )

    def _finish(self, status: RunStatus, reason: str, t_end: float | None) -> None:
        self._state = EngineState.FINISHED
        t = self.clock.now() if t_end is None else t_end
        with deferred_interrupt():
            self.rec.finish(status.value, reason, self.clock.unix(t))

    def _fail_safe(self, end_reason: EndReason, detail: str, event_kind: str, t: float | None = None) -> None:
        """Cell off first; then close the step that was running (with its samples) and record why."""
        self._emergency_off()
        self._close_open_step(end_reason.value, detail, t)
        self._event(event_kind, detail, t=t)

    def _close_open_step(self, reason: str, detail: str, t: float | None) -> None:
        o = self._open
        if o is None:
            return
        with deferred_interrupt():
            self._end_step(o.index, o.kind, o.t_start, reason, detail, o.n, o.q, t_end=t)

    def _cell_off(self) -> None:
        self.devices.potentiostat.cell_off()
        self._restore_stage()

    def _restore_stage(self) -> None:
        """A run that changed the stage's set point hands the stage back at the temperature it
        found (room temperature, usually): a failed run must not leave a cell cooking at 60 C."""
        stage, start = self.devices.stage, self.st.stage_start
        if stage is None or start is None:
            return
        self.st.stage_start = None
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

    def _event(self, kind: str, message: str, data: dict[str, Any] | None = None, t: float | None = None) -> None:
        t_test = (self.clock.now() if t is None else t) - self._t0
        self._events.append((t_test, kind, message))
        self.rec.event(t_test, kind, message, data)

    # ----------------------------------------------------------------- the program
    def _execute(self) -> None:
        ops = self.program.ops
        st = self.st
        while st.pc < len(ops):
            op = ops[st.pc]
            if isinstance(op, (OpTechnique, OpTemperature, OpDipCoat)):
                self._boundary()
                role = (
                    "potentiostat"
                    if isinstance(op, OpTechnique)
                    else "stage"
                    if isinstance(op, OpTemperature)
                    else "dip_coater"
                )
                try:
                    if isinstance(op, OpTechnique):
                        self._run_technique(op)
                    elif isinstance(op, OpTemperature):
                        self._temperature(op)
                    else:
                        self._dip_coat(op)
                except DeviceError as e:
                    self._recover(role, e)  # raises when it gives up; else the step runs again
                else:
                    self._fault_streak = 0
            elif isinstance(op, OpLoopInit):
                st.loops[op.loop] = LoopFrame(0, self.clock.now() - self._t0)
                st.pc += 1
            elif isinstance(op, OpLoopTest):
                self._loop_test(op)
            elif isinstance(op, OpLoopNext):
                st.pc = op.test_pc
            elif isinstance(op, OpCycle):
                st.cycle += 1
                st.pc += 1
            elif isinstance(op, OpEvent):
                self._event(op.kind, st.render(op.message))
                st.pc += 1
        self._checkpoint()

    # ----------------------------------------------------------------- instrument faults
    def _instrument(self, role: str) -> str:
        name = self._names.get(role)
        return f"{role} {name}" if name else role

    def _recover(self, role: str, exc: DeviceError) -> None:
        """The fault policy (:mod:`labctl.engine.faults`): cell off, the cut step closed with its
        samples, reconnect with backoff; returns when the instrument is back (the step at the
        program counter runs again), raises a DeviceError naming the instrument when it gives up."""
        what = self._instrument(role)
        dev = getattr(self.devices, role, None)
        policy = self._policies.get(role, DEFAULT_POLICY)
        if not is_link_fault(exc) or dev is None:
            raise DeviceError(f"{what}: {exc}") from exc
        detail = f"{what}: {type(exc).__name__}: {exc}"
        self._safe_cell_off()
        self._close_open_step(EndReason.ERROR.value, f"{detail} (reconnecting; the step runs again)", None)
        self._event(
            "instrument_fault",
            detail,
            {"instrument": self._names.get(role), "role": role, "error": str(exc), "type": type(exc).__name__},
        )
        self._fault_streak += 1
        if self._fault_streak > MAX_FAULTS_PER_STEP:
            raise DeviceError(
                f"{detail}; gave up: the step failed {self._fault_streak} times in a row (reconnected each time)"
            ) from exc
        waited = 0.0
        for k, delay in enumerate(policy.delays(), 1):
            self._event("reconnect", f"{what}: attempt {k} of {policy.attempts} in {delay:g} s", {"attempt": k})
            self.clock.sleep(delay)
            waited += delay
            if self._abort_reason is not None:
                raise RunAborted(self._abort_reason)
            try:
                _reconnect(dev, policy.connect_timeout)
                if role == "potentiostat":
                    dev.cell_off()
            except DeviceError as e:
                self._event("reconnect_failed", f"{what}: attempt {k}: {type(e).__name__}: {e}", {"attempt": k})
                continue
            self.recoveries += 1
            self._event(
                "reconnected",
                f"{what}: reconnected at attempt {k} after {waited:g} s; the step runs again from its start",
                {"attempt": k, "waited": waited},
            )
            return
        raise DeviceError(
            f"{detail}; gave up after {policy.attempts} reconnect attempt(s) over {waited:g} s"
            if policy.attempts
            else f"{detail}; reconnecting is off for this instrument"
        ) from exc

    def _safe_cell_off(self) -> None:
        with deferred_interrupt():
            try:
                self.devices.potentiostat.cell_off()
            except Exception as e:  # noqa: BLE001 - a dead link; recorded, the policy goes on
                self._event("error", f"cell_off failed: {e}")

    def _loop_test(self, op: OpLoopTest) -> None:
        st = self.st
        step = op.step
        frame = st.loops[op.loop]
        path = st.render(op.path)
        limit = step.times if step.times is not None else step.max_cycles
        done = False
        if limit is not None and frame.it >= limit:
            if step.until is not None:
                self._event("repeat", f"{path}: reached max_cycles={limit} without {step.until}")
            done = True
        elif step.max_duration is not None and self.clock.now() - (self._t0 + frame.t_start) >= step.max_duration:
            self._event("repeat", f"{path}: reached max_duration={step.max_duration / 3600:g} h")
            done = True
        if done:
            self._exit_loop(op.loop, op.exit_pc)
            return
        frame.it += 1
        if op.innermost:
            st.cycle += 1
        st.pc += 1

    def _exit_loop(self, loop: int, exit_pc: int) -> None:
        # frames of loops nested inside ``loop`` have larger ids and are active only inside it
        for k in [k for k in self.st.loops if k >= loop]:
            del self.st.loops[k]
        self.st.pc = exit_pc

    def _boundary(self) -> None:
        """A step or cycle boundary: checkpoint, then honour abort and pause."""
        self._checkpoint()
        if self._abort_reason is not None:
            raise RunAborted(self._abort_reason)
        if self._pause_requested.is_set():
            self._pause_here()

    def _pause_here(self) -> None:
        self.devices.potentiostat.cell_off()
        self._state = EngineState.PAUSED
        self._event("pause", f"paused before program position {self.st.pc} (cell off)")
        wait_for(self.clock, self._resumed)
        self._state = EngineState.RUNNING
        if self._abort_reason is not None:
            raise RunAborted(self._abort_reason)
        self._event("resume", "resumed")

    def _checkpoint(self) -> None:
        t_test = self.clock.now() - self._t0
        self.rec.checkpoint(t_test, self.st.to_checkpoint(self.program, t_test))

    # ----------------------------------------------------------------- leaves
    def _run_technique(self, op: OpTechnique) -> None:
        st = self.st
        path = st.render(op.path)
        o = self._technique(op.step, path, op.kind, op.label, op.technique, op.params_extra)
        st.pc += 1
        if op.aurbach_cycle is not None and o.end_reason != EndReason.CHARGE.value:
            self._event(
                "aurbach", f"cycle {op.aurbach_cycle}: strip ended early ({o.end_reason}); the reservoir is exhausted"
            )
        if op.ends_on_short and o.end_reason == EndReason.SHORT_CIRCUIT.value:
            st.shorted = True
            st.short_t = o.t_end - self._t0
            if op.short_loop is None:
                raise _RunShorted(o)
            self._event(
                "short_circuit",
                f"short circuit detected in cycle {st.cycle} at {(o.t_end - self._t0) / 3600:.2f} h",
                {"cycle": st.cycle, "t_test": o.t_end - self._t0},
            )
            self._exit_loop(op.short_loop, self.program.loop_exits[op.short_loop])

    def _dip_coat(self, op: OpDipCoat) -> None:
        from labctl.engine.dipcoat import run_dip_coat

        step = op.step
        path = self.st.render(op.path)
        idx = self._begin_step(step, path, "dip_coat", getattr(step, "label", None), {})
        t0 = self.clock.now()
        record = run_dip_coat(step, self.clock, self.operator, self.devices.dip_coater, self._event)
        record["run_id"] = self.rec.run_id
        record["step_index"] = idx
        if self.on_coating is not None:
            self.on_coating(record)
        self._end_step(
            idx,
            "dip_coat",
            t0,
            EndReason.COMPLETE.value,
            f"coated {', '.join(step.cells)}; {len(record['deviations'])} deviation(s)",
            0,
            0.0,
        )
        self.st.pc += 1

    def _temperature(self, op: OpTemperature) -> None:
        step = op.step
        stage = self.devices.stage
        if stage is None:  # preflight refuses this; a resumed run on another channel must too
            raise ProtocolRuntimeError(f"temperature step (line {step.line}): the channel has no temperature stage")
        idx = self._begin_step(
            step,
            self.st.render(op.path),
            "temperature",
            getattr(step, "label", None),
            {"setpoint": step.setpoint, "band": step.band, "hold": step.hold},
        )
        t0 = self.clock.now()
        if self.st.stage_start is None:
            self.st.stage_start = round(float(stage.read_temperature()), 1)
        stage.set_setpoint(step.setpoint)
        self._event("temperature", f"set point {step.setpoint:g} degC")
        inside_since: float | None = None
        dt = step.record_every
        ts: list[float] = []
        temps: list[float] = []
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
                    raise SafetyTrip(
                        f"temperature {temp:.2f} degC above the safety limit {self.safety.temperature_max:g} degC", now
                    )
                if self._overshoot is not None and temp > step.setpoint + self._overshoot:
                    self._flush_temps(idx, ts, temps)
                    raise SafetyTrip(
                        f"{self._instrument('stage')}: temperature {temp:.2f} degC overshot the set point "
                        f"{step.setpoint:g} degC by more than {self._overshoot:g} K (the station's max_overshoot)",
                        now,
                    )
                if len(ts) >= 256:
                    self._flush_temps(idx, ts, temps)
                if inside_since is not None and now - inside_since >= step.hold:
                    self._flush_temps(idx, ts, temps)
                    self._end_step(
                        idx,
                        "temperature",
                        t0,
                        EndReason.COMPLETE.value,
                        f"held {step.setpoint:g} +- {step.band:g} degC for {step.hold:g} s",
                        self._open_n(),
                        0.0,
                    )
                    self.st.pc += 1
                    return
                if now - t0 >= step.timeout:
                    self._flush_temps(idx, ts, temps)
                    self._end_step(idx, "temperature", t0, EndReason.ERROR.value, "timeout", self._open_n(), 0.0)
                    raise ProtocolRuntimeError(
                        f"temperature step (line {step.line}): the {self._instrument('stage')} did not settle at "
                        f"{step.setpoint:g} "
                        f"+- {step.band:g} degC within {step.timeout / 60:g} min (last reading {temp:.2f} degC)"
                    )
                if self._abort_reason is not None:
                    self._flush_temps(idx, ts, temps)
                    raise RunAborted(self._abort_reason)
                self.clock.sleep(dt)
        except BaseException:
            if ts:
                self._flush_temps(idx, ts, temps)
            raise

    def _open_n(self) -> int:
        return 0 if self._open is None else self._open.n

    def _flush_temps(self, idx: int, ts: list[float], temps: list[float]) -> None:
        if not ts:
            return
        t = np.asarray(ts) - self._t0
        n = len(ts)
        self.rec.samples(
            idx, self.st.cycle, t, np.full(n, np.nan), np.zeros(n), np.zeros(n), temperature=np.asarray(temps)
        )
        self.st.n_samples += n
        if self._open is not None:
            self._open.n += n
        ts.clear()
        temps.clear()

    # ----------------------------------------------------------------- one technique
    def _begin_step(self, step: Any, path: str, kind: str, label: str | None, params: dict[str, Any]) -> int:
        self.st.step_counter += 1
        idx = self.st.step_counter
        params = {**params, "line": getattr(step, "line", None)}
        t = self.clock.now()
        self.rec.step_started(
            idx, path=path, kind=kind, label=label, cycle=self.st.cycle, params=params, t=t - self._t0
        )
        self._open = _OpenStep(idx, kind, t)
        return idx

    def _end_step(
        self,
        idx: int,
        kind: str,
        t_start: float,
        reason: str,
        detail: str,
        n: int,
        q: float,
        v_last: float = float("nan"),
        t_end: float | None = None,
    ) -> StepOutcome:
        """``t_end``: when the end condition was met (interpolated); default now."""
        t_end = self.clock.now() if t_end is None else t_end
        self.rec.step_ended(idx, t=t_end - self._t0, end_reason=reason, detail=detail, n_samples=n, charge=q)
        o = StepOutcome(idx, kind, reason, detail, t_start, t_end, n, q, v_last)
        self._outcomes.append(o)
        self._open = None
        return o

    def _technique(
        self,
        step: Any,
        path: str,
        kind: str,
        label: str | None,
        tech: Technique,
        params_extra: dict[str, Any] | None = None,
    ) -> StepOutcome:
        params = technique_params(tech)
        if params_extra:
            params.update(params_extra)
        idx = self._begin_step(step, path, kind, label, params)
        assert self._open is not None
        open_step = self._open
        t_start = open_step.t_start
        limits = getattr(tech, "limits", None)
        if isinstance(tech, OpenCircuit):
            limits = Limits(duration=tech.duration)
        cond = EndConditions(limits, t_start) if limits is not None else None
        q = 0.0
        t_prev: float | None = t_start
        i_prev: float | None = None
        v_last = float("nan")
        end: EndInfo | None = None
        handle: TechniqueHandle = self.devices.potentiostat.start(tech)
        try:
            while True:
                block = handle.read(self.read_timeout)
                if len(block) == 0 and block.end is None:
                    if handle.state is not TechniqueState.RUNNING:
                        break
                    if self._abort_reason is not None:
                        raise RunAborted(self._abort_reason)
                    continue
                charge = step_charge(block.t, block.current, t_prev, i_prev, q)
                hit = cond.check(block, charge) if cond is not None else None
                if hit is not None and (block.end is None or hit.t < block.end.t - 1e-9 or hit.index < len(block) - 1):
                    block, charge = _truncate(block, charge, hit)
                    end = EndInfo(hit.reason, hit.t, hit.detail)
                elif block.end is not None:
                    end = block.end
                if len(block):
                    trip = safety_violation(self.safety, block, self._t0, charge)
                    if trip is not None:
                        # store what was measured up to the trip, then stop
                        self._store(idx, block.head(trip.keep), charge[: trip.keep], open_step)
                        raise SafetyTrip(trip.message, trip.t)
                    self._store(idx, block, charge, open_step)
                    t_prev, i_prev = float(block.t[-1]), float(block.current[-1])
                    q = open_step.q
                    v_last = float(block.voltage[-1])
                if self.on_progress is not None:
                    self.on_progress(
                        Progress(idx, path, kind, label, self.st.cycle, self.clock.now() - self._t0, self.st.n_samples)
                    )
                if end is not None:
                    break
                if self._abort_reason is not None:
                    raise RunAborted(self._abort_reason)
        finally:
            if handle.state is TechniqueState.RUNNING:
                handle.stop()
            rejected = int(getattr(handle, "rejected", 0) or 0)
            if rejected:
                self._event(
                    "link_garbage",
                    f"{self._instrument('potentiostat')}: {rejected} malformed line(s) rejected and skipped "
                    f"in step {idx} (garbage or lines cut short; the parser resynchronised)",
                    {"rejected": rejected, "step_index": idx},
                )
        if end is None:
            end = EndInfo(
                EndReason.COMPLETE
                if not isinstance(tech, (OpenCircuit, ConstantCurrent, ConstantPotential))
                else EndReason.DURATION,
                self.clock.now(),
            )
        self.clock.sleep_until(end.t)
        return self._end_step(idx, kind, t_start, end.reason.value, end.detail, open_step.n, q, v_last, t_end=end.t)

    def _store(self, idx: int, block: SampleBlock, charge: np.ndarray, open_step: _OpenStep) -> None:
        if not len(block):
            return
        self.rec.samples(
            idx,
            self.st.cycle,
            block.t - self._t0,
            block.voltage,
            block.current,
            charge,
            temperature=block.temperature,
            frequency=block.frequency,
            z_re=block.z_re,
            z_im=block.z_im,
        )
        open_step.n += len(block)
        open_step.q = float(charge[-1])
        self.st.n_samples += len(block)


def _reconnect(dev: Any, timeout: float) -> None:
    """Drop the link and connect again: the driver's ``reconnect(timeout)`` when it has one,
    else ``close()`` (errors ignored: the link is down) and ``connect(timeout)``."""
    fn = getattr(dev, "reconnect", None)
    if callable(fn):
        fn(timeout)
        return
    with contextlib.suppress(Exception):  # closing a broken link may fail; connect tells
        dev.close()
    dev.connect(timeout)


def _truncate(block: SampleBlock, charge: np.ndarray, hit: Hit) -> tuple[SampleBlock, np.ndarray]:
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

        out = SampleBlock(
            np.concatenate((block.t[:k], [hit.t])),
            _req(lerp(block.voltage)),
            _req(lerp(block.current)),
            temperature=lerp(block.temperature),
            frequency=lerp(block.frequency),
            z_re=lerp(block.z_re),
            z_im=lerp(block.z_im),
        )
        return out, _req(lerp(charge))
    return head, charge[:k]


def _req(a: np.ndarray | None) -> np.ndarray:
    assert a is not None
    return a


def technique_params(tech: Technique) -> dict[str, Any]:
    """A technique's parameters as stored with its step (limits and recording as dicts)."""
    out: dict[str, Any] = {"technique": tech.kind}
    for name, value in vars(tech).items():
        if name in ("kind",):
            continue
        if isinstance(value, (Limits, Recording)):
            out[name] = {k: v for k, v in vars(value).items() if v is not None}
        else:
            out[name] = value
    return out
