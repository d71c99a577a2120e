"""A protocol compiled into a flat program the engine steps through with explicit state.

The nested steps of a protocol (repeat, group, leaves) become a list of operations
with jumps.  Everything that depends on nesting is decided here, once:

* each leaf becomes an :class:`OpTechnique` (or :class:`OpTemperature`, :class:`OpDipCoat`)
  whose technique is fully built, including the short-circuit watch of its enclosing
  ``repeat: {until: short_circuit}``;
* a ``repeat`` becomes :class:`OpLoopInit` ... :class:`OpLoopTest` ... body ...
  :class:`OpLoopNext` (jump back to the test);
* an ``aurbach_ce`` step is unrolled into its reservoir, cycles and final strip;
* step paths are templates (``"2/cycle {L0}/1"``) rendered with the loop counters.

The engine's whole state is then :class:`ProgramState`: the program counter, the loop
frames, the cycle and step counters and the stage's starting temperature.  A
checkpoint is that state as a dict, taken at every step and cycle boundary; a run
resumes by loading it (see :meth:`ProgramState.from_checkpoint`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from labctl.core.conventions import STEP_TECHNIQUES
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
    Technique,
)

#: Bumped when the meaning of a checkpoint changes; a checkpoint of another version is refused.
CHECKPOINT_VERSION = 1
#: A symmetric cell is always watched for a short: |V| below 10 mV under current for 60 s.
DEFAULT_SHORT = (0.010, 60.0)


@dataclass
class OpTechnique:
    step: Any
    path: str  # template, see module docstring
    kind: str
    label: str | None
    technique: Technique
    params_extra: dict[str, Any] | None = None
    #: galvanostatic steps: a short circuit ends the loop ``short_loop`` (the nearest enclosing
    #: ``repeat: {until: short_circuit}``), or, when None, the run
    ends_on_short: bool = False
    short_loop: int | None = None
    aurbach_cycle: int | None = None  # an Aurbach strip: note an early end


@dataclass
class OpEvent:
    kind: str
    message: str  # template


@dataclass
class OpCycle:
    """One cycle of an ``aurbach_ce`` step begins: the run-wide cycle counter increments."""


@dataclass
class OpTemperature:
    step: Any
    path: str


@dataclass
class OpDipCoat:
    step: Any
    path: str


@dataclass
class OpLoopInit:
    loop: int


@dataclass
class OpLoopTest:
    loop: int
    step: Any
    path: str
    innermost: bool
    exit_pc: int = -1  # patched once the body is compiled


@dataclass
class OpLoopNext:
    loop: int
    test_pc: int


Op = OpTechnique | OpEvent | OpCycle | OpTemperature | OpDipCoat | OpLoopInit | OpLoopTest | OpLoopNext


@dataclass
class Program:
    ops: list[Op]
    digest: str  # of the protocol text: a checkpoint resumes only the program it came from
    loop_exits: dict[int, int] = field(default_factory=dict)  # loop id -> pc after its OpLoopNext

    def __len__(self) -> int:
        return len(self.ops)


@dataclass
class LoopFrame:
    it: int = 0
    t_start: float = 0.0  # test time the loop started


@dataclass
class ProgramState:
    """Everything the engine needs to continue a run from a boundary."""

    pc: int = 0
    loops: dict[int, LoopFrame] = field(default_factory=dict)
    cycle: int = 0
    step_counter: int = 0
    n_samples: int = 0
    stage_start: float | None = None  # degC the stage was found at (handed back at the end)
    shorted: bool = False  # a short circuit ended a step (the completion reason says so)
    short_t: float | None = None  # test time of the last short

    def to_checkpoint(self, program: Program, t_test: float) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "program": program.digest,
            "pc": self.pc,
            "loops": {str(k): {"it": f.it, "t_start": f.t_start} for k, f in self.loops.items()},
            "cycle": self.cycle,
            "step_counter": self.step_counter,
            "n_samples": self.n_samples,
            "stage_start": self.stage_start,
            "shorted": self.shorted,
            "short_t": self.short_t,
            "t_test": t_test,
        }

    @classmethod
    def from_checkpoint(cls, program: Program, data: dict[str, Any]) -> ProgramState:
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {data.get('version')!r}; this labctl reads {CHECKPOINT_VERSION}")
        if data.get("program") != program.digest:
            raise ValueError("the checkpoint belongs to another protocol text; resume needs the run's own protocol")
        pc = int(data["pc"])
        if not 0 <= pc <= len(program):
            raise ValueError(f"checkpoint position {pc} is outside the program (0..{len(program)})")
        return cls(
            pc=pc,
            loops={int(k): LoopFrame(int(v["it"]), float(v["t_start"])) for k, v in data.get("loops", {}).items()},
            cycle=int(data["cycle"]),
            step_counter=int(data["step_counter"]),
            n_samples=int(data["n_samples"]),
            stage_start=data.get("stage_start"),
            shorted=bool(data.get("shorted", False)),
            short_t=data.get("short_t"),
        )

    def render(self, template: str) -> str:
        if "{" not in template:
            return template.replace("}}", "}")
        return template.format(**{f"L{k}": f.it for k, f in self.loops.items()})


def walk(steps: list[Any]) -> Iterator[Any]:
    """Every step, depth first (structure steps and their children)."""
    for s in steps:
        yield s
        sub = getattr(s, "steps", None)
        if sub:
            yield from walk(sub)


def technique_kinds(step: Any) -> frozenset[str]:
    """Technique kinds a leaf step needs from the potentiostat."""
    return STEP_TECHNIQUES.get(step.kind, frozenset())


def _esc(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


class _Compiler:
    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.ops: list[Op] = []
        self.n_loops = 0
        self.default_short = DEFAULT_SHORT if protocol.cell.kind == "symmetric" else None
        s = protocol.safety
        self.voltage_min = s.voltage_min

    def compile(self) -> Program:
        self.steps(self.protocol.steps, "", [])
        text = getattr(self.protocol, "text", None) or repr(self.protocol.steps)
        exits = {op.loop: op.exit_pc for op in self.ops if isinstance(op, OpLoopTest)}
        return Program(self.ops, hashlib.sha256(text.encode()).hexdigest(), exits)

    # shorts: stack of (loop id, short_below, short_hold) of the enclosing until-short loops
    def steps(self, steps: list[Any], path: str, shorts: list[tuple[int, float, float]]) -> None:
        for n, step in enumerate(steps, start=1):
            p = f"{path}{n}"
            if step.kind == "repeat":
                self.repeat(step, p, shorts)
            elif step.kind == "group":
                self.ops.append(OpEvent("group", f"{p}: {_esc(str(step.label))}"))
                self.steps(step.steps, p + f"[{_esc(str(step.label))}]/", shorts)
            else:
                self.leaf(step, p, shorts)

    def repeat(self, step: Any, path: str, shorts: list[tuple[int, float, float]]) -> None:
        loop = self.n_loops
        self.n_loops += 1
        innermost = not any(s.kind == "repeat" for s in walk(step.steps))
        self.ops.append(OpLoopInit(loop))
        test = OpLoopTest(loop, step, path, innermost)
        test_pc = len(self.ops)
        self.ops.append(test)
        inner = shorts + [(loop, step.short_below, step.short_hold)] if step.until == "short_circuit" else shorts
        self.steps(step.steps, f"{path}/cycle {{L{loop}}}/", inner)
        self.ops.append(OpLoopNext(loop, test_pc))
        test.exit_pc = len(self.ops)

    def leaf(self, step: Any, path: str, shorts: list[tuple[int, float, float]]) -> None:
        kind = step.kind
        label = getattr(step, "label", None)
        add = self.ops.append
        if kind == "rest":
            add(OpTechnique(step, path, kind, label, OpenCircuit(step.duration, Recording(dt=step.record_every))))
        elif kind == "galvanostatic":
            short_loop: int | None = None
            short: tuple[float, float] | None = self.default_short
            if shorts:
                short_loop, below, hold = shorts[-1]
                short = (below, hold)
            limits = Limits(
                duration=step.duration,
                charge=step.capacity,
                voltage_above=step.voltage_above,
                voltage_below=step.voltage_below,
                short_circuit=short[0] if short else None,
                short_hold=short[1] if short else 60.0,
            )
            rec = Recording(dt=step.record_every_s, dv=step.record_dv)
            add(
                OpTechnique(
                    step,
                    path,
                    kind,
                    label,
                    ConstantCurrent(step.current, limits, rec),
                    ends_on_short=True,
                    short_loop=short_loop,
                )
            )
        elif kind == "potentiostatic":
            limits = Limits(duration=step.duration, current_below=step.current_below)
            add(
                OpTechnique(
                    step,
                    path,
                    kind,
                    label,
                    ConstantPotential(
                        step.potential, limits, vs_ocp=step.vs_ocp, record=Recording(dt=step.record_every)
                    ),
                )
            )
        elif kind == "tafel":
            if step.rest > 0:
                add(
                    OpTechnique(
                        step,
                        path + ".rest",
                        "rest",
                        "tafel:rest",
                        OpenCircuit(step.rest, Recording(dt=max(step.rest / 600, 1.0))),
                    )
                )
            add(
                OpTechnique(
                    step,
                    path,
                    "tafel",
                    label,
                    LinearSweep(-step.span, step.span, step.scan_rate, step.step, vs_ocp=True),
                    params_extra={"span": step.span},
                )
            )
        elif kind == "lsv":
            add(
                OpTechnique(
                    step,
                    path,
                    kind,
                    label,
                    LinearSweep(step.start, step.end, step.scan_rate, step.step, vs_ocp=step.vs_ocp),
                )
            )
        elif kind == "cv":
            add(
                OpTechnique(
                    step,
                    path,
                    kind,
                    label,
                    CyclicSweep(
                        step.start,
                        step.vertex1,
                        step.vertex2,
                        step.scan_rate,
                        step.step,
                        cycles=step.cycles,
                        vs_ocp=step.vs_ocp,
                    ),
                )
            )
        elif kind == "eis":
            e_dc = 0.0 if step.e_dc is None else step.e_dc
            vs_ocp = True if step.e_dc is None else step.vs_ocp
            add(
                OpTechnique(
                    step,
                    path,
                    kind,
                    label,
                    Impedance(step.f_start, step.f_end, step.points_per_decade, step.amplitude, e_dc, vs_ocp),
                )
            )
        elif kind == "temperature":
            add(OpTemperature(step, path))
        elif kind == "aurbach_ce":
            self.aurbach(step, path)
        elif kind == "dip_coat":
            add(OpDipCoat(step, path))
        else:
            raise ValueError(f"unknown step kind {kind!r}")

    def aurbach(self, step: Any, path: str) -> None:
        i = abs(step.current)
        rec = Recording(dt=step.record_every_s, dv=step.record_dv)
        cutoff = step.strip_cutoff
        v_floor = self.voltage_min + 1e-3
        add = self.ops.append
        add(
            OpEvent(
                "aurbach",
                f"{path}: reservoir Q_T={step.reservoir / 3.6:.4g} mAh, {step.cycles} cycles of "
                f"Q_C={step.cycle_capacity / 3.6:.4g} mAh, strip to {cutoff:g} V",
            )
        )
        add(
            OpTechnique(
                step,
                path + ".reservoir",
                "galvanostatic",
                "aurbach:reservoir",
                ConstantCurrent(-i, Limits(charge=step.reservoir, voltage_below=v_floor), rec),
            )
        )
        for c in range(1, step.cycles + 1):
            add(OpCycle())
            add(
                OpTechnique(
                    step,
                    f"{path}/cycle {c}.strip",
                    "galvanostatic",
                    "aurbach:cycle-strip",
                    ConstantCurrent(
                        i,
                        Limits(charge=step.cycle_capacity, voltage_above=cutoff, duration=step.max_strip_duration),
                        rec,
                    ),
                    aurbach_cycle=c,
                )
            )
            add(
                OpTechnique(
                    step,
                    f"{path}/cycle {c}.plate",
                    "galvanostatic",
                    "aurbach:cycle-plate",
                    ConstantCurrent(-i, Limits(charge=step.cycle_capacity, voltage_below=v_floor), rec),
                )
            )
        add(
            OpTechnique(
                step,
                path + ".final",
                "galvanostatic",
                "aurbach:final-strip",
                ConstantCurrent(i, Limits(duration=step.max_strip_duration, voltage_above=cutoff), rec),
            )
        )


def compile_protocol(protocol: Any) -> Program:
    """The program of a validated protocol (see the module docstring)."""
    return _Compiler(protocol).compile()
