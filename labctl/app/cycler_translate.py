"""A labctl protocol as a battery cycler's program, or a refusal naming the step that cannot be.

:func:`translate` compiles the protocol (``labctl.engine.program``: the same techniques the
engine would run, current densities resolved) and maps it onto cycler steps
(:mod:`labctl.drivers.cycler`): rest -> rest, galvanostatic -> CC with time, capacity and
voltage limits, potentiostatic -> CV, ``repeat`` -> a loop step, ``aurbach_ce`` -> CC steps
and a loop.  EIS, Tafel and other sweeps, dip coating and temperature steps are refused
(:class:`~labctl.core.errors.ProtocolError`, file:line:col) before anything is sent.

What a cycler cannot stop on by itself labctl watches on the harvested data
(:class:`HostWatch`): a short circuit (``repeat: {until: short_circuit}``, and every
galvanostatic step of a symmetric cell), a repeat's ``max_duration`` and the protocol's
``safety.max_duration``: when one is met labctl stops the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labctl.core.errors import Issue, ProtocolError
from labctl.drivers.cycler import CyclerCC, CyclerCV, CyclerLoop, CyclerProgram, CyclerRest, CyclerSafety, CyclerStep
from labctl.drivers.techniques import ConstantCurrent, ConstantPotential, OpenCircuit
from labctl.engine.program import (
    OpCycle,
    OpDipCoat,
    OpEvent,
    OpLoopInit,
    OpLoopNext,
    OpLoopTest,
    OpTechnique,
    OpTemperature,
    compile_protocol,
)
from labctl.engine.runner import technique_params

AURBACH_LOOP_BASE = 1000  # ids of the loops an aurbach_ce step becomes (repeat loops count from 0)
ELSEWHERE = "run it on a potentiostat channel of the same campaign"


@dataclass
class StepInfo:
    """What one cycler step is in labctl's terms."""

    path: str  # template with {L<loop>}
    kind: str  # labctl step kind (rest, galvanostatic, potentiostatic)
    label: str | None
    params: dict[str, Any]
    step: CyclerStep
    loops: tuple[int, ...]  # enclosing loops, outermost first
    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, message template) before it
    short: tuple[float, float] | None = None  # (below V, hold s): watched by labctl
    aurbach_strip: bool = False


@dataclass
class LoopInfo:
    loop: int
    first: int  # first step number of the body
    last: int  # step number of the loop step
    innermost: bool
    path: str
    count: int
    max_duration: float | None
    until_short: bool


@dataclass
class Translation:
    program: CyclerProgram
    steps: dict[int, StepInfo]  # step number -> info (technique steps)
    loops: dict[int, LoopInfo]
    max_duration: float | None  # the protocol's safety.max_duration, watched by labctl
    digest: str


def _refuse(protocol: Any, step: Any, field_: str, message: str, hint: str) -> ProtocolError:
    src = getattr(protocol, "source", None) or "<protocol>"
    return ProtocolError([Issue(src, getattr(step, "line", None), getattr(step, "col", None), field_, message, hint)])


def translate(protocol: Any, *, cell_remark: str = "") -> Translation:
    """The cycler program of ``protocol``; :class:`ProtocolError` naming every step a cycler cannot run."""
    prog = compile_protocol(protocol)
    ops = prog.ops
    issues: list[Issue] = []
    steps: list[CyclerStep] = []
    info: dict[int, StepInfo] = {}
    loops: dict[int, LoopInfo] = {}
    open_loops: list[tuple[int, OpLoopTest, int]] = []  # (loop, test op, first step number)
    pending: list[tuple[str, str]] = []
    aurbach_loops = 0
    pc = 0

    def refuse(step: Any, field_: str, message: str, hint: str) -> None:
        issues.extend(_refuse(protocol, step, field_, message, hint).issues)

    def add(op: OpTechnique, path: str, extra_loops: tuple[int, ...] = ()) -> None:
        tech = op.technique
        step = op.step
        cs: CyclerStep | None = None
        if isinstance(tech, OpenCircuit):
            cs = CyclerRest(tech.duration, tech.record)
        elif isinstance(tech, ConstantCurrent):
            lim = tech.limits
            if tech.current == 0:
                refuse(step, f"{op.kind}.current", "a cycler cannot hold zero current", "use a rest step")
                return
            vl = None
            wrong = lim.voltage_below if tech.current > 0 else lim.voltage_above
            right = lim.voltage_above if tech.current > 0 else lim.voltage_below
            if wrong is not None:
                name = "voltage_below" if tech.current > 0 else "voltage_above"
                refuse(
                    step,
                    f"{op.kind}.{name}",
                    f"a cycler's {'charge' if tech.current > 0 else 'discharge'} step stops on "
                    f"{'rising' if tech.current > 0 else 'falling'} voltage only",
                    f"use {'voltage_above' if tech.current > 0 else 'voltage_below'}, or {ELSEWHERE}",
                )
                return
            vl = right
            if lim.current_below is not None or lim.current_above is not None:
                refuse(step, f"{op.kind}.current_below", "a CC step cannot stop on current", ELSEWHERE)
                return
            cs = CyclerCC(tech.current, lim.duration, lim.charge, vl, tech.record)
        elif isinstance(tech, ConstantPotential):
            if tech.vs_ocp:
                refuse(
                    step,
                    f"{op.kind}.vs_ocp",
                    "a cycler holds an absolute voltage, not one relative to the open-circuit potential",
                    f"give the potential vs the counter electrode, or {ELSEWHERE}",
                )
                return
            cs = CyclerCV(tech.potential, tech.limits.duration, tech.limits.current_below, tech.record)
        else:
            refuse(
                step,
                op.kind,
                f"a battery cycler cannot run a {op.kind} step ({tech.kind})",
                f"{ELSEWHERE}, before or after this protocol",
            )
            return
        steps.append(cs)
        params = technique_params(tech)
        params["line"] = getattr(step, "line", None)
        if op.params_extra:
            params.update(op.params_extra)
        short = None
        if isinstance(tech, ConstantCurrent) and tech.limits.short_circuit is not None:
            short = (float(tech.limits.short_circuit), float(tech.limits.short_hold))
        info[len(steps)] = StepInfo(
            path,
            op.kind,
            op.label,
            params,
            cs,
            tuple(x[0] for x in open_loops) + extra_loops,
            events=list(pending),
            short=short,
            aurbach_strip=op.aurbach_cycle is not None,
        )
        pending.clear()

    while pc < len(ops):
        op = ops[pc]
        if isinstance(op, OpEvent):
            pending.append((op.kind, op.message))
        elif isinstance(op, (OpTemperature, OpDipCoat)):
            kind = op.step.kind
            refuse(
                op.step,
                kind,
                f"a battery cycler cannot run a {kind} step",
                f"{ELSEWHERE} (a {'temperature stage' if kind == 'temperature' else 'dip coater'} channel)",
            )
        elif isinstance(op, OpLoopInit):
            pass
        elif isinstance(op, OpLoopTest):
            open_loops.append((op.loop, op, len(steps) + 1))
        elif isinstance(op, OpLoopNext):
            loop, test, first = open_loops.pop()
            rep = test.step
            count = rep.times if rep.times is not None else rep.max_cycles
            if count is None:
                refuse(rep, "repeat.max_cycles", "a cycler loop needs a count", "add times: N or max_cycles: N")
            elif len(steps) < first:
                refuse(rep, "repeat.steps", "this repeat has no step a cycler can run", ELSEWHERE)
            else:
                steps.append(CyclerLoop(first, int(count)))
                loops[loop] = LoopInfo(
                    loop,
                    first,
                    len(steps),
                    test.innermost,
                    test.path,
                    int(count),
                    rep.max_duration,
                    rep.until == "short_circuit",
                )
        elif isinstance(op, OpCycle):
            # an aurbach_ce cycle: OpCycle, strip, plate, repeated; folded into one loop
            strip, plate = ops[pc + 1], ops[pc + 2]
            assert isinstance(strip, OpTechnique) and isinstance(plate, OpTechnique)
            n = 0
            while pc < len(ops) and isinstance(ops[pc], OpCycle):
                n += 1
                pc += 3
            loop = AURBACH_LOOP_BASE + aurbach_loops
            aurbach_loops += 1
            base = strip.path.rsplit("/cycle ", 1)[0]
            first = len(steps) + 1
            add(strip, f"{base}/cycle {{L{loop}}}.strip", (loop,))
            add(plate, f"{base}/cycle {{L{loop}}}.plate", (loop,))
            steps.append(CyclerLoop(first, n))
            loops[loop] = LoopInfo(loop, first, len(steps), True, base, n, None, False)
            continue
        elif isinstance(op, OpTechnique):
            add(op, op.path)
        pc += 1
    if issues:
        raise ProtocolError(issues)
    s = protocol.safety
    program = CyclerProgram(tuple(steps), CyclerSafety(s.voltage_min, s.voltage_max, s.current_max), remark=cell_remark)
    return Translation(program, info, loops, s.max_duration, prog.digest)


def cell_remark(protocol: Any, *, replicate: int = 0) -> str:
    """The Remark labctl writes into a step file: the cell (the emulator simulates it from this)."""
    c = protocol.cell
    parts = [f"kind={c.kind}", f"area_cm2={c.area_cm2!r}"]
    if getattr(c, "cathode_mass_g", None) is not None:
        parts.append(f"cathode_mass_g={c.cathode_mass_g!r}")
    if replicate:
        parts.append(f"replicate={int(replicate)}")
    return f"{protocol.name}; labctl cell: " + " ".join(parts)
