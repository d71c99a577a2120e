"""Conformance suite for driver authors: does an implementation keep the contracts the engine relies on?

Two forms, the same checks:

* functions: ``check_potentiostat(factory, clock=...)`` and ``check_temperature_stage(factory, ...)``
  run every check and raise :class:`ConformanceError` listing every failure with its fix;
* pytest classes: subclass :class:`PotentiostatConformance` (or :class:`TemperatureStageConformance`),
  override ``make_driver()``, and pytest collects one test per check::

      class TestMyPstat(PotentiostatConformance):
          def make_driver(self):
              return MyPotentiostat(port="/dev/ttyACM0")

``factory`` is called with ``clock=clock`` when a clock is given (a registry factory such as
``SimulatedPotentiostat``), else with no arguments.  Every driver call runs in a helper
thread that is given up after its timeout plus ``margin`` seconds, so a driver that hangs
fails the check (and says so) instead of hanging the suite.  On hardware, run it against a
dummy cell: the default techniques pass 10 uA, or hold +-10 mV around open circuit, for
about 2 s each.  A driver that reports whether its cell switch is on exposes ``cell_on``
(bool); the suite then checks it is off after ``stop()``, ``cell_off()`` and ``close()``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from labctl.core.constants import ZERO_CELSIUS_K

from .contracts import Capabilities, DeviceError, Potentiostat, TechniqueHandle, TechniqueState, TemperatureStage
from .techniques import (
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

__all__ = [
    "POTENTIOSTAT_CHECKS",
    "TEMPERATURE_STAGE_CHECKS",
    "ConformanceError",
    "Failure",
    "PotentiostatConformance",
    "TemperatureStageConformance",
    "check_potentiostat",
    "check_temperature_stage",
    "default_techniques",
]

KINDS = ("ocp", "cp", "ca", "lsv", "cv", "eis")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Failure:
    """One broken promise: which check, what went wrong, how to fix it."""

    check: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.problem}\n      fix: {self.fix}"


class ConformanceError(AssertionError):
    """An implementation failed checks; ``failures`` lists every one with its fix."""

    def __init__(self, subject: str, failures: list[Failure]) -> None:
        self.subject = subject
        self.failures = list(failures)
        n = len(self.failures)
        body = "\n".join(f"  {k}. {f}" for k, f in enumerate(self.failures, 1))
        super().__init__(f"{subject}: {n} conformance failure{'s' if n != 1 else ''}\n{body}")


def default_techniques() -> dict[str, Technique]:
    """Small, dummy-cell-safe techniques of about 2 s each, one per kind."""
    rec = Recording(dt=0.2)
    return {
        "ocp": OpenCircuit(duration=2.0, record=rec),
        "cp": ConstantCurrent(
            current=1e-5, limits=Limits(duration=2.0, voltage_above=3.0, voltage_below=-3.0), record=rec
        ),
        "ca": ConstantPotential(potential=0.0, vs_ocp=True, limits=Limits(duration=2.0), record=rec),
        "lsv": LinearSweep(start=-0.01, end=0.01, scan_rate=0.01, step=0.001, vs_ocp=True),
        "cv": CyclicSweep(start=0.0, vertex1=0.01, vertex2=-0.01, scan_rate=0.01, step=0.001, vs_ocp=True),
        "eis": Impedance(f_start=1e4, f_end=1e2, points_per_decade=2, amplitude=0.01),
    }


def _expected_duration(tech: Technique) -> float | None:
    """Seconds of technique time the technique takes when nothing but its natural end or duration ends it."""
    lim = getattr(tech, "limits", None)
    if isinstance(tech, OpenCircuit):
        return tech.duration
    if lim is not None and lim.duration is not None:
        return float(lim.duration)
    if isinstance(tech, LinearSweep):
        return abs(tech.end - tech.start) / tech.scan_rate
    if isinstance(tech, CyclicSweep):
        one = abs(tech.vertex1 - tech.start) + abs(tech.vertex2 - tech.vertex1) + abs(tech.start - tech.vertex2)
        return max(1, tech.cycles) * one / tech.scan_rate
    return None


def _expected_end(tech: Technique) -> EndReason | None:
    """The end reason an instrument with native limits must report for ``tech``, if only one is possible."""
    if isinstance(tech, OpenCircuit):
        return EndReason.DURATION
    lim = getattr(tech, "limits", None)
    others = lim is not None and any(
        getattr(lim, f) is not None
        for f in ("charge", "voltage_above", "voltage_below", "current_below", "current_above", "short_circuit")
    )
    if others:
        return None
    if lim is not None and lim.duration is not None:
        return EndReason.DURATION
    if isinstance(tech, (LinearSweep, CyclicSweep, Impedance)):
        return EndReason.COMPLETE
    return None


# ---------------------------------------------------------------------- guarded calls
@dataclass
class _Outcome:
    status: str  # "done", "raised", "hung"
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


def _guarded(fn: Callable[[], Any], limit: float) -> _Outcome:
    """Run ``fn`` in a daemon thread; give up after ``limit`` seconds (the thread is abandoned)."""
    out = _Outcome("hung")
    done = threading.Event()

    def target() -> None:
        try:
            out.value = fn()
            out.status = "done"
        except BaseException as exc:
            out.error = exc
            out.status = "raised"
        finally:
            done.set()

    t0 = time.monotonic()
    threading.Thread(target=target, name="labctl-conformance", daemon=True).start()
    if not done.wait(limit):
        return _Outcome("hung", seconds=time.monotonic() - t0)
    out.seconds = time.monotonic() - t0
    return out


def _exc(e: BaseException | None) -> str:
    return f"{type(e).__name__}: {e}" if e is not None else "?"


@dataclass
class _Ctx:
    """One run of the checks: how to make a driver, the clock, the time budgets, what was learnt."""

    factory: Callable[[], Any]
    clock: Callable[[], Any]
    read_timeout: float = 1.0
    connect_timeout: float = 10.0
    margin: float = 2.0
    max_technique_s: float = 120.0
    techniques: dict[str, Technique] = field(default_factory=default_techniques)
    approach_s: float | None = None
    read_hung: bool = False
    start_broken: bool = False
    failures: list[Failure] = field(default_factory=list)

    def fail(self, check: str, problem: str, fix: str) -> None:
        self.failures.append(Failure(check, problem, fix))

    def call(self, check: str, what: str, fn: Callable[[], _T], limit: float, fix: str) -> _Outcome:
        """Guarded call; a hang or an exception is recorded as a failure."""
        out = _guarded(fn, limit)
        if out.status == "hung":
            self.fail(check, f"{what} did not return within {limit:g} s", fix)
        elif out.status == "raised":
            self.fail(check, f"{what} raised {_exc(out.error)}", fix)
        return out

    def make(self, check: str, connect: bool = True) -> Any | None:
        out = self.call(
            check,
            "the factory",
            self.factory,
            self.connect_timeout + self.margin,
            "the factory must build the driver without waiting on the instrument (connect() does that)",
        )
        if out.status != "done":
            return None
        drv = out.value
        if connect:
            c = self.call(
                check,
                f"connect(timeout={self.connect_timeout:g})",
                lambda: drv.connect(timeout=self.connect_timeout),
                self.connect_timeout + self.margin,
                "connect(timeout=seconds) must open the link and identify the instrument, raising "
                "DeviceError (or DeviceTimeout) when it does not answer within the timeout",
            )
            if c.status != "done":
                return None
        return drv

    def dispose(self, drv: Any) -> None:
        if drv is not None:
            _guarded(drv.close, self.margin + 1.0)


# ====================================================================== potentiostat checks
def _kinds(ctx: _Ctx, drv: Any) -> list[str]:
    caps = getattr(drv, "capabilities", None)
    declared = getattr(caps, "techniques", None) or ()
    return [k for k in KINDS if k in declared and k in ctx.techniques]


def _check_contract(ctx: _Ctx) -> None:
    name = "contract"
    drv = ctx.make(name, connect=False)
    if drv is None:
        return
    try:
        missing = [
            m for m in ("connect", "start", "cell_off", "close", "identify") if not callable(getattr(drv, m, None))
        ]
        if missing or not isinstance(drv, Potentiostat):
            ctx.fail(
                name,
                f"{type(drv).__name__} does not implement the Potentiostat contract: missing "
                f"{', '.join(missing) or 'capabilities'}",
                "implement capabilities, connect(timeout), start(technique) -> TechniqueHandle, cell_off(), "
                "close() and identify() (labctl.drivers.contracts.Potentiostat)",
            )
        caps = getattr(drv, "capabilities", None)
        if not isinstance(caps, Capabilities):
            ctx.fail(
                name,
                f"capabilities is {type(caps).__name__}, not a Capabilities",
                "set self.capabilities = Capabilities(techniques=frozenset({...}), ...) in __init__, before connect()",
            )
            return
        kinds = set(caps.techniques) if isinstance(caps.techniques, (set, frozenset)) else None
        if not kinds:
            ctx.fail(
                name,
                f"capabilities.techniques is {caps.techniques!r}: no technique declared",
                f"declare the kinds the instrument runs natively, a frozenset of {', '.join(KINDS)}",
            )
        elif kinds - set(KINDS):
            ctx.fail(
                name,
                f"capabilities.techniques has unknown kinds {sorted(kinds - set(KINDS))}",
                f"use the kind strings of labctl.drivers.techniques: {', '.join(KINDS)}",
            )
        ranges = [("current_range", "A"), ("voltage_range", "V")]
        if kinds and "eis" in kinds:  # a frequency range means something only to an impedance instrument
            ranges.append(("frequency_range", "Hz"))
        for attr, unit in ranges:
            rng = getattr(caps, attr)
            try:
                lo, hi = (float(x) for x in rng)
                ok = math.isfinite(lo) and math.isfinite(hi) and lo < hi
            except (TypeError, ValueError):
                ok = False
            if not ok:
                ctx.fail(
                    name, f"capabilities.{attr} is {rng!r}", f"give ({unit} low, {unit} high) with low < high, in SI"
                )
        if kinds and "eis" in kinds and caps.frequency_range[0] <= 0:
            ctx.fail(
                name,
                f"capabilities.frequency_range starts at {caps.frequency_range[0]!r} Hz",
                "frequencies are positive: give the lowest frequency the instrument measures",
            )
        if not isinstance(caps.channels, int) or caps.channels < 1:
            ctx.fail(name, f"capabilities.channels is {caps.channels!r}", "channels is a whole number >= 1")
        if not isinstance(caps.native_limits, bool):
            ctx.fail(
                name,
                f"capabilities.native_limits is {caps.native_limits!r}",
                "True only when the instrument itself ends techniques at their limits",
            )
    finally:
        ctx.dispose(drv)


def _check_connect(ctx: _Ctx) -> None:
    name = "connect"
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        out = ctx.call(
            name,
            "identify()",
            drv.identify,
            ctx.connect_timeout + ctx.margin,
            "identify() returns the model, serial number and firmware as text",
        )
        if out.status == "done" and not (isinstance(out.value, str) and out.value.strip()):
            ctx.fail(
                name, f"identify() returned {out.value!r}", "return a non-empty str: model, serial number, firmware"
            )
    finally:
        ctx.dispose(drv)


_HANDLE_FIX = (
    "return an object with state, end, read(timeout) and stop() (labctl.drivers.contracts.TechniqueHandle); "
    "a driver with a generator of SampleBlocks wraps it: "
    "return GeneratorHandle(self.run(technique), on_stop=self.cell_off) (labctl.drivers.handles)"
)
_READ_FIX = (
    "read(timeout) must give up when its timeout runs out and return the samples that arrived so far "
    "(an empty SampleBlock when none did): wait on the link with the time left (every Transport call "
    "takes a timeout), never on the instrument's next data package"
)


def _start(ctx: _Ctx, check: str, drv: Any, tech: Technique) -> TechniqueHandle | None:
    """Start ``tech``; the handle, or None (with the failure recorded)."""
    kind = tech.kind
    out = ctx.call(
        check,
        f"start({kind})",
        lambda: drv.start(tech),
        ctx.read_timeout + ctx.margin + 5.0,
        "start() sends the technique and returns a handle at once; samples come from handle.read()",
    )
    if out.status != "done":
        return None
    h = out.value
    if not isinstance(h, TechniqueHandle):
        ctx.start_broken = True
        ctx.fail(
            check,
            "start() must return a TechniqueHandle with read(timeout)/stop()/state "
            f"(technique {kind}), got {type(h).__name__}",
            _HANDLE_FIX,
        )
        close = getattr(h, "close", None)
        if callable(close):
            _guarded(close, ctx.margin)
        return None
    st = _guarded(lambda: h.state, ctx.margin)
    if st.status != "done" or not isinstance(st.value, TechniqueState):
        ctx.fail(
            check,
            f"handle.state of {kind} is {st.value!r} ({st.status})",
            "state is a TechniqueState (RUNNING, ENDED, STOPPED or FAILED), read without talking to the instrument",
        )
    return h


def _stop(ctx: _Ctx, check: str, h: TechniqueHandle, what: str = "stop()") -> bool:
    out = ctx.call(
        check,
        what,
        h.stop,
        ctx.margin + 5.0,
        "stop() ends the technique on the instrument and leaves the cell off; it must be idempotent "
        "and must not raise when the technique already ended or failed",
    )
    return out.status == "done"


def _read(ctx: _Ctx, check: str, h: TechniqueHandle, kind: str) -> tuple[str, SampleBlock | None]:
    """One guarded read: ("ok", block), ("hung", None) or ("error", None)."""
    T = ctx.read_timeout
    out = _guarded(lambda: h.read(timeout=T), T + ctx.margin)
    if out.status == "hung":
        ctx.read_hung = True
        ctx.fail(
            check,
            f"read(timeout={T:g}) of {kind} did not return within {T + ctx.margin:g} s: read blocks "
            "past its timeout (it ignores it)",
            _READ_FIX,
        )
        return "hung", None
    if out.status == "raised":
        ctx.fail(
            check,
            f"read(timeout={T:g}) of {kind} raised {_exc(out.error)}",
            "read raises DeviceError only when the link is dead or garbled; a quiet instrument gives an empty "
            "SampleBlock",
        )
        return "error", None
    if not isinstance(out.value, SampleBlock):
        ctx.fail(
            check,
            f"read() of {kind} returned {type(out.value).__name__}, not a SampleBlock",
            "return labctl.drivers.techniques.SampleBlock (SampleBlock.empty() when nothing arrived)",
        )
        return "error", None
    return "ok", out.value


@dataclass
class _Run:
    blocks: list[SampleBlock]
    handle: TechniqueHandle | None
    ended: bool  # the handle left RUNNING on its own and was drained
    t_before: float | None
    t_after: float | None


def _run_technique(ctx: _Ctx, check: str, drv: Any, tech: Technique) -> _Run:
    """Start ``tech`` and read it to its end (or, without native limits, to its expected duration)."""
    clock = ctx.clock()
    t_before = float(clock.now()) if clock is not None else None
    h = _start(ctx, check, drv, tech)
    run = _Run([], h, False, t_before, None)
    if h is None or ctx.read_hung:
        if h is not None:
            _stop(ctx, check, h)
        return run
    native = bool(getattr(getattr(drv, "capabilities", None), "native_limits", False))
    want = _expected_duration(tech)
    deadline = time.monotonic() + ctx.max_technique_s
    t_first: float | None = None
    nonempty = 0
    while True:
        state = h.state
        status, block = _read(ctx, check, h, tech.kind)
        if status != "ok" or block is None:
            break
        if len(block):
            run.blocks.append(block)
            nonempty += 1
            t_first = float(block.t[0]) if t_first is None else t_first
        elif state is not TechniqueState.RUNNING:
            run.ended = True
            break
        if not native and len(block):
            span = float(block.t[-1]) - (t_before if t_before is not None else (t_first or 0.0))
            if (want is not None and span >= want - 1e-9) or (want is None and nonempty >= 3):
                break
        if time.monotonic() > deadline:
            ctx.fail(
                check,
                f"{tech.kind} did not end within {ctx.max_technique_s:g} s of wall time "
                f"(expected about {want or '?'} s)",
                "the handle's state must leave RUNNING when the instrument ends the technique, and read() "
                "must then return an empty block"
                if native
                else "a driver without native limits streams until stop(); check that read() returns blocks",
            )
            break
    if not run.ended:
        _stop(ctx, check, h)
    run.t_after = float(clock.now()) if clock is not None else None
    return run


def _check_blocks(ctx: _Ctx, check: str, drv: Any, tech: Technique, run: _Run) -> None:
    kind = tech.kind
    caps: Capabilities = drv.capabilities
    if not run.blocks:
        if run.handle is not None and not ctx.read_hung:
            ctx.fail(
                check, f"{kind} delivered no samples", "read() returns the samples of the technique as SampleBlocks"
            )
        return
    t_prev = -math.inf
    i_lim = 1.5 * max(abs(x) for x in caps.current_range)
    v_lim = 1.5 * max(abs(x) for x in caps.voltage_range)
    for k, b in enumerate(run.blocks):
        cols: list[tuple[str, Any]] = [("t", b.t), ("voltage", b.voltage), ("current", b.current)]
        bad = [n for n, a in cols if not isinstance(a, np.ndarray) or a.dtype.kind != "f"]
        if bad:
            ctx.fail(
                check,
                f"{kind} block {k}: columns {', '.join(bad)} are not float numpy arrays",
                "build SampleBlock from np.asarray(values, dtype=float)",
            )
            return
        if not np.all(np.isfinite(b.t)):
            ctx.fail(check, f"{kind} block {k}: t has NaN or inf", "t is the clock time of each sample, finite")
            return
        d = np.diff(np.concatenate(([t_prev], b.t)))
        if np.any(d < 0):
            j = int(np.flatnonzero(d < 0)[0])
            before = t_prev if j == 0 else float(b.t[j - 1])
            ctx.fail(
                check,
                f"{kind} block {k}: t goes back in time ({before:g} s then {float(b.t[j]):g} s)",
                "t must be monotonic: clock time (clock.now()), increasing within and across blocks",
            )
            return
        t_prev = float(b.t[-1])
        if np.any(np.abs(b.current[np.isfinite(b.current)]) > i_lim):
            ctx.fail(
                check,
                f"{kind} block {k}: |current| up to {float(np.nanmax(np.abs(b.current))):g}, beyond "
                f"the declared range {caps.current_range}",
                "report current in amperes (SI), not mA or uA",
            )
            return
        if np.any(np.abs(b.voltage[np.isfinite(b.voltage)]) > v_lim):
            ctx.fail(
                check,
                f"{kind} block {k}: |voltage| up to {float(np.nanmax(np.abs(b.voltage))):g}, beyond "
                f"the declared range {caps.voltage_range}",
                "report voltage in volts (SI), not mV",
            )
            return
        if b.temperature is not None and np.any(np.abs(b.temperature[np.isfinite(b.temperature)]) > 400):
            ctx.fail(
                check,
                f"{kind} block {k}: temperature up to {float(np.nanmax(b.temperature)):g}",
                "temperature is in degC (not K or m degC)",
            )
            return
    clock = ctx.clock()
    if clock is not None and run.t_before is not None and run.t_after is not None:
        t0, t1 = float(run.blocks[0].t[0]), float(run.blocks[-1].t[-1])
        if t0 < run.t_before - 1.0 or t1 > run.t_after + 1.0:
            ctx.fail(
                check,
                f"{kind}: samples span {t0:g}..{t1:g} s but the technique ran from clock time "
                f"{run.t_before:g} to {run.t_after:g} s",
                "t is the driver's clock time (clock.now()), not time since the technique started or Unix time",
            )
    allc = np.concatenate([b.current for b in run.blocks])
    if isinstance(tech, ConstantCurrent) and tech.current != 0 and allc.size:
        med = float(np.nanmedian(allc))
        if not (0.5 * abs(tech.current) <= abs(med) <= 2.0 * abs(tech.current)) or med * tech.current < 0:
            ctx.fail(
                check,
                f"cp at {tech.current:g} A reports a median current of {med:g}",
                "report the current in amperes with labctl's sign (positive anodic at the working electrode)",
            )
    if isinstance(tech, Impedance):
        f = [b.frequency for b in run.blocks]
        if any(x is None for x in f) or any(b.z_re is None or b.z_im is None for b in run.blocks):
            ctx.fail(
                check,
                "eis blocks lack frequency, z_re or z_im",
                "an impedance block carries frequency (Hz), z_re and z_im (ohm) per point",
            )
        else:
            fa = np.concatenate([x for x in f if x is not None])
            lo, hi = sorted((tech.f_start, tech.f_end))
            if np.any(fa < lo * 0.99) | np.any(fa > hi * 1.01):
                ctx.fail(
                    check,
                    f"eis frequencies {float(fa.min()):g}..{float(fa.max()):g} Hz outside the requested "
                    f"{lo:g}..{hi:g} Hz",
                    "frequency is in Hz (not rad/s or kHz)",
                )
    if caps.native_limits:
        h = run.handle
        last = run.blocks[-1]
        if not run.ended:
            if not ctx.read_hung:
                ctx.fail(
                    check,
                    f"{kind}: the handle stayed RUNNING although the instrument enforces limits",
                    "after the instrument ends the technique, state is ENDED and read() returns an empty block",
                )
            return
        if not isinstance(last.end, EndInfo):
            ctx.fail(
                check,
                f"{kind}: the final block carries no end (EndInfo) although native_limits is True",
                "set block.end = EndInfo(reason, t, detail) on the block that ends the technique",
            )
            return
        want = _expected_end(tech)
        if want is not None and last.end.reason != want:
            ctx.fail(
                check,
                f"{kind}: the final block ends with {last.end.reason!r}, expected {want!r}",
                "report why the instrument ended: DURATION for a duration limit, COMPLETE for a finished "
                "sweep or spectrum",
            )
        if h is not None and h.end != last.end:
            ctx.fail(
                check,
                f"{kind}: handle.end is {h.end!r}, the final block's end is {last.end!r}",
                "handle.end returns the EndInfo of the final block",
            )
        if h is not None and h.state is not TechniqueState.ENDED:
            ctx.fail(check, f"{kind}: state is {h.state!r} after the instrument ended it", "state is ENDED")


def _check_start_returns_handle(ctx: _Ctx) -> None:
    name = "start_returns_handle"
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        for kind in _kinds(ctx, drv):
            h = _start(ctx, name, drv, ctx.techniques[kind])
            if h is not None:
                _stop(ctx, name, h)
    finally:
        ctx.dispose(drv)


def _check_read_timeout(ctx: _Ctx) -> None:
    name = "read_honours_timeout"
    if ctx.start_broken:
        return
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        kinds = _kinds(ctx, drv)
        if not kinds:
            return
        h = _start(ctx, name, drv, ctx.techniques[kinds[0]])
        if h is None:
            return
        for _ in range(3):
            status, _b = _read(ctx, name, h, kinds[0])
            if status != "ok":
                break
        _stop(ctx, name, h)
    finally:
        ctx.dispose(drv)


def _check_techniques(ctx: _Ctx) -> None:
    name = "techniques"
    if ctx.start_broken or ctx.read_hung:
        return
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        for kind in _kinds(ctx, drv):
            if ctx.read_hung:
                break
            tech = ctx.techniques[kind]
            run = _run_technique(ctx, f"{name}[{kind}]", drv, tech)
            _check_blocks(ctx, f"{name}[{kind}]", drv, tech, run)
            if run.handle is not None and run.ended:
                st = _guarded(lambda: run.handle.read(timeout=ctx.read_timeout), ctx.margin)  # type: ignore[union-attr]
                if st.status != "done" or not isinstance(st.value, SampleBlock) or len(st.value):
                    ctx.fail(
                        f"{name}[{kind}]",
                        "read() after the technique ended did not return an empty block at once",
                        "once state is not RUNNING and every sample was delivered, read returns SampleBlock.empty()",
                    )
    finally:
        ctx.dispose(drv)


def _cell_is_off(ctx: _Ctx, check: str, drv: Any, after: str) -> None:
    on = getattr(drv, "cell_on", None)
    if isinstance(on, bool) and on:
        ctx.fail(check, f"cell_on is True after {after}", f"{after} must leave the cell off (open circuit)")


def _long_technique(ctx: _Ctx, kinds: list[str]) -> Technique:
    for k in ("cp", "ca", "ocp"):
        if k in kinds:
            base = ctx.techniques[k]
            if isinstance(base, ConstantCurrent):
                return ConstantCurrent(base.current, Limits(duration=3600.0), record=base.record)
            if isinstance(base, ConstantPotential):
                return ConstantPotential(
                    base.potential, Limits(duration=3600.0), vs_ocp=base.vs_ocp, record=base.record
                )
            if isinstance(base, OpenCircuit):
                return OpenCircuit(3600.0, record=base.record)
    return ctx.techniques[kinds[0]]


def _check_stop(ctx: _Ctx) -> None:
    name = "stop"
    if ctx.start_broken:
        return
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        kinds = _kinds(ctx, drv)
        if not kinds:
            return
        tech = _long_technique(ctx, kinds)
        h = _start(ctx, name, drv, tech)
        if h is None:
            return
        if not ctx.read_hung:
            _read(ctx, name, h, tech.kind)
        was = h.state
        if not (_stop(ctx, name, h) and _stop(ctx, name, h, "a second stop()")):
            return
        if was is TechniqueState.RUNNING and h.state is not TechniqueState.STOPPED:
            ctx.fail(name, f"state is {h.state!r} after stop() of a running technique", "stop() sets state to STOPPED")
        _cell_is_off(ctx, name, drv, "stop()")
        if not ctx.read_hung:
            t0 = time.monotonic()
            status, b = _read(ctx, name, h, tech.kind)
            if status == "ok" and b is not None and time.monotonic() - t0 > ctx.margin:
                ctx.fail(
                    name,
                    "read() after stop() waited",
                    "after stop() read returns what is left, then empty blocks, at once",
                )
        h2 = _start(ctx, name, drv, tech)
        if h2 is None:
            ctx.fail(
                name,
                "the channel does not accept a new technique after stop()",
                "stop() must free the channel: the next start() runs",
            )
        else:
            _stop(ctx, name, h2)
    finally:
        ctx.dispose(drv)


def _check_cell_off(ctx: _Ctx) -> None:
    name = "cell_off"
    drv = ctx.make(name)
    if drv is None:
        return
    fix = "cell_off() opens the cell circuit; it must be safe at any time, also twice and during a technique"
    try:
        for what in ("cell_off()", "a second cell_off()"):
            if ctx.call(name, what, drv.cell_off, ctx.margin + 5.0, fix).status != "done":
                return
        _cell_is_off(ctx, name, drv, "cell_off()")
        kinds = _kinds(ctx, drv)
        if kinds and not ctx.start_broken:
            h = _start(ctx, name, drv, _long_technique(ctx, kinds))
            if h is not None:
                if not ctx.read_hung:
                    _read(ctx, name, h, kinds[0])
                ctx.call(name, "cell_off() during a technique", drv.cell_off, ctx.margin + 5.0, fix)
                _cell_is_off(ctx, name, drv, "cell_off() during a technique")
                _stop(ctx, name, h, "stop() after cell_off()")
    finally:
        ctx.dispose(drv)


def _check_close(ctx: _Ctx) -> None:
    name = "close"
    drv = ctx.make(name)
    if drv is None:
        return
    fix = "close() turns the cell off and releases the link; a second close() does nothing"
    kinds = _kinds(ctx, drv)
    if kinds and not ctx.start_broken:
        h = _start(ctx, name, drv, _long_technique(ctx, kinds))
        if h is not None and not ctx.read_hung:
            _read(ctx, name, h, kinds[0])
    for what in ("close()", "a second close()"):
        if ctx.call(name, what, drv.close, ctx.margin + 5.0, fix).status != "done":
            return
    _cell_is_off(ctx, name, drv, "close()")


def _check_unsupported(ctx: _Ctx) -> None:
    name = "undeclared_technique"
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        missing = [k for k in KINDS if k not in _kinds(ctx, drv) and k in ctx.techniques]
        if not missing:
            return
        tech = ctx.techniques[missing[0]]
        out = _guarded(lambda: drv.start(tech), ctx.margin + 5.0)
        if out.status == "done":
            ctx.fail(
                name,
                f"start({tech.kind}) of an undeclared technique returned {type(out.value).__name__}",
                "raise DeviceError for a technique outside capabilities.techniques",
            )
            stop = getattr(out.value, "stop", None)
            if callable(stop):
                _guarded(stop, ctx.margin)
        elif out.status == "hung":
            ctx.fail(name, f"start({tech.kind}) of an undeclared technique hung", "raise DeviceError at once")
        elif not isinstance(out.error, (DeviceError, ValueError, TypeError)):
            ctx.fail(
                name,
                f"start({tech.kind}) of an undeclared technique raised {_exc(out.error)}",
                "raise DeviceError naming the techniques the instrument runs",
            )
    finally:
        ctx.dispose(drv)


#: The potentiostat checks, in order: (name, function).
POTENTIOSTAT_CHECKS: list[tuple[str, Callable[[_Ctx], None]]] = [
    ("contract", _check_contract),
    ("connect", _check_connect),
    ("start_returns_handle", _check_start_returns_handle),
    ("read_honours_timeout", _check_read_timeout),
    ("techniques", _check_techniques),
    ("stop", _check_stop),
    ("cell_off", _check_cell_off),
    ("close", _check_close),
    ("undeclared_technique", _check_unsupported),
]


def _factory(factory: Callable[..., Any], clock: Any) -> Callable[[], Any]:
    return (lambda: factory(clock=clock)) if clock is not None else factory


def _subject(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__name__


def _techniques(overrides: Mapping[str, Technique] | None) -> dict[str, Technique]:
    techs = default_techniques()
    if overrides:
        for k, v in overrides.items():
            if k not in KINDS or getattr(v, "kind", None) != k:
                raise ValueError(f"techniques[{k!r}] must be a technique of kind {k!r} (one of {', '.join(KINDS)})")
            techs[k] = v
    return techs


def check_potentiostat(
    factory: Callable[..., Any],
    *,
    clock: Any = None,
    read_timeout: float = 1.0,
    connect_timeout: float = 10.0,
    margin: float = 2.0,
    max_technique_s: float = 120.0,
    techniques: Mapping[str, Technique] | None = None,
    only: list[str] | None = None,
) -> None:
    """Run every potentiostat check; raise :class:`ConformanceError` listing each failure and its fix.

    ``factory`` builds a fresh driver (called with ``clock=clock`` when a clock is given);
    each check makes its own.  ``read_timeout`` is the timeout passed to ``read``; a call
    that has not returned ``margin`` seconds after its timeout fails.  ``techniques``
    replaces the default technique of a kind (see :func:`default_techniques`); ``only``
    runs a subset of :data:`POTENTIOSTAT_CHECKS` by name.
    """
    ctx = _Ctx(
        _factory(factory, clock),
        lambda: clock,
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
        margin=margin,
        max_technique_s=max_technique_s,
        techniques=_techniques(techniques),
    )
    for name, fn in POTENTIOSTAT_CHECKS:
        if only is None or name in only:
            fn(ctx)
    if ctx.failures:
        raise ConformanceError(_subject(factory), ctx.failures)


# ====================================================================== temperature stage checks
def _check_stage_contract(ctx: _Ctx) -> None:
    name = "contract"
    drv = ctx.make(name, connect=False)
    if drv is None:
        return
    try:
        missing = [
            m for m in ("connect", "set_setpoint", "read_temperature", "close") if not callable(getattr(drv, m, None))
        ]
        if missing or not isinstance(drv, TemperatureStage):
            ctx.fail(
                name,
                f"{type(drv).__name__} does not implement the TemperatureStage contract: missing "
                f"{', '.join(missing) or 'range_c'}",
                "implement range_c, connect(timeout), set_setpoint(celsius), read_temperature() and close()",
            )
        rng = getattr(drv, "range_c", None)
        try:
            lo, hi = (float(x) for x in rng)  # type: ignore[union-attr]
            ok = math.isfinite(lo) and math.isfinite(hi) and lo < hi and lo >= -ZERO_CELSIUS_K
        except (TypeError, ValueError):
            ok = False
        if not ok:
            ctx.fail(name, f"range_c is {rng!r}", "range_c = (low, high) in degC with low < high")
    finally:
        ctx.dispose(drv)


def _stage_temp(ctx: _Ctx, check: str, drv: Any) -> float | None:
    out = ctx.call(
        check,
        "read_temperature()",
        drv.read_temperature,
        ctx.connect_timeout + ctx.margin,
        "read_temperature() returns the stage temperature in degC, raising DeviceError if the controller "
        "does not answer within its timeout",
    )
    if out.status != "done":
        return None
    v = out.value
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(float(v)):
        ctx.fail(check, f"read_temperature() returned {v!r}", "return a finite float in degC")
        return None
    lo, hi = drv.range_c
    if not lo - 100.0 <= float(v) <= hi + 100.0:
        ctx.fail(
            check,
            f"read_temperature() returned {float(v):g}, far outside range_c {drv.range_c}",
            "report degC (not K, degF or a raw count)",
        )
    return float(v)


def _check_stage_read(ctx: _Ctx) -> None:
    name = "read_temperature"
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        _stage_temp(ctx, name, drv)
    finally:
        ctx.dispose(drv)


def _check_stage_setpoint(ctx: _Ctx) -> None:
    name = "set_setpoint"
    drv = ctx.make(name)
    if drv is None:
        return
    try:
        lo, hi = (float(x) for x in drv.range_c)
        fix = "set_setpoint(celsius) sends the set point and returns; values outside range_c raise ValueError or DeviceError"
        t0 = _stage_temp(ctx, name, drv)
        start = min(max(t0 if t0 is not None else (lo + hi) / 2, lo), hi)
        if (
            ctx.call(name, f"set_setpoint({start:g})", lambda: drv.set_setpoint(start), ctx.margin + 5.0, fix).status
            != "done"
        ):
            return
        for bad in (hi + 50.0, lo - 50.0, math.nan):
            out = _guarded(lambda: drv.set_setpoint(bad), ctx.margin + 5.0)
            if out.status == "done":
                ctx.fail(
                    name,
                    f"set_setpoint({bad:g}) outside range_c {drv.range_c} was accepted",
                    "refuse set points outside range_c (or NaN) with ValueError or DeviceError: a typo must "
                    "not heat a cell",
                )
            elif out.status == "hung":
                ctx.fail(name, f"set_setpoint({bad:g}) hung", fix)
        clock = ctx.clock()
        approach = ctx.approach_s
        if approach is None and clock is not None and getattr(clock, "virtual", False):
            approach = 3600.0
        if approach and clock is not None and t0 is not None:
            target = start + 5.0 if start + 5.0 <= hi else start - 5.0
            ctx.call(name, f"set_setpoint({target:g})", lambda: drv.set_setpoint(target), ctx.margin + 5.0, fix)
            clock.sleep(approach)
            t1 = _stage_temp(ctx, name, drv)
            if t1 is not None and not abs(t1 - target) < 0.5 * abs(t0 - target):
                ctx.fail(
                    name,
                    f"after a set point of {target:g} degC and {approach:g} s the stage reads {t1:g} degC "
                    f"(from {t0:g})",
                    "the stage must move towards its set point in clock time",
                )
            _guarded(lambda: drv.set_setpoint(start), ctx.margin + 5.0)
    finally:
        ctx.dispose(drv)


def _check_stage_close(ctx: _Ctx) -> None:
    name = "close"
    drv = ctx.make(name)
    if drv is None:
        return
    for what in ("close()", "a second close()"):
        if (
            ctx.call(
                name, what, drv.close, ctx.margin + 5.0, "close() releases the link; a second close() does nothing"
            ).status
            != "done"
        ):
            return


#: The temperature stage checks, in order.
TEMPERATURE_STAGE_CHECKS: list[tuple[str, Callable[[_Ctx], None]]] = [
    ("contract", _check_stage_contract),
    ("read_temperature", _check_stage_read),
    ("set_setpoint", _check_stage_setpoint),
    ("close", _check_stage_close),
]


def check_temperature_stage(
    factory: Callable[..., Any],
    *,
    clock: Any = None,
    connect_timeout: float = 10.0,
    margin: float = 2.0,
    approach_s: float | None = None,
    only: list[str] | None = None,
) -> None:
    """Run every temperature-stage check; raise :class:`ConformanceError` listing each failure.

    With a virtual clock (or ``approach_s`` seconds given), also check the stage moves
    towards a set point 5 degC away within ``approach_s`` of clock time (default 3600 s).
    """
    ctx = _Ctx(
        _factory(factory, clock), lambda: clock, connect_timeout=connect_timeout, margin=margin, approach_s=approach_s
    )
    for name, fn in TEMPERATURE_STAGE_CHECKS:
        if only is None or name in only:
            fn(ctx)
    if ctx.failures:
        raise ConformanceError(_subject(factory), ctx.failures)


# ====================================================================== pytest form
class _ConformanceBase:
    """Shared machinery: subclasses get one ``test_<check>`` method per check."""

    _checks: ClassVar[list[tuple[str, Callable[[_Ctx], None]]]] = []
    #: Clock the driver runs on (for the clock-time checks); set it in make_driver() or as a class attribute.
    clock: Any = None
    read_timeout: float = 1.0
    connect_timeout: float = 10.0
    margin: float = 2.0
    max_technique_s: float = 120.0
    approach_s: float | None = None
    techniques: Mapping[str, Technique] | None = None

    def make_driver(self) -> Any:
        """Build a fresh, unconnected driver; override this."""
        raise TypeError(f"{type(self).__name__} must override make_driver() to build the driver under test")

    def _run_check(self, fn: Callable[[_Ctx], None]) -> None:
        ctx = _Ctx(
            self.make_driver,
            lambda: self.clock,
            read_timeout=self.read_timeout,
            connect_timeout=self.connect_timeout,
            margin=self.margin,
            max_technique_s=self.max_technique_s,
            techniques=_techniques(self.techniques),
            approach_s=self.approach_s,
        )
        fn(ctx)
        if ctx.failures:
            raise ConformanceError(type(self).__name__, ctx.failures)


def _make_test(fn: Callable[[_Ctx], None], doc: str) -> Callable[[Any], None]:
    def test(self: _ConformanceBase) -> None:
        self._run_check(fn)

    test.__doc__ = doc
    return test


class PotentiostatConformance(_ConformanceBase):
    """Subclass as ``TestSomething`` and override :meth:`make_driver`; pytest runs one test per check."""

    _checks = POTENTIOSTAT_CHECKS


class TemperatureStageConformance(_ConformanceBase):
    """Subclass as ``TestSomething`` and override :meth:`make_driver`; pytest runs one test per check."""

    _checks = TEMPERATURE_STAGE_CHECKS


for _cls in (PotentiostatConformance, TemperatureStageConformance):
    for _name, _fn in _cls._checks:
        setattr(_cls, f"test_{_name}", _make_test(_fn, f"conformance check {_name!r}"))
del _cls, _name, _fn
