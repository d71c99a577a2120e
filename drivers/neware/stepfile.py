"""Neware BTS step files: a :class:`~labctl.drivers.cycler.CyclerProgram` as step XML, and back.

The layout follows what BTS 8 reads (as aurora-unicycler writes it): ``root/config`` with
``Head_Info``, ``Whole_Prt`` (protection and recording), ``Step_Info`` holding ``Step1..StepN``
(``Step_ID``, ``Step_Type``) and an end step.  Step types: 1 CC charge, 2 CC discharge,
3 CV charge, 4 rest, 5 cycle (loop), 6 end.  Units in the file: current mA, time ms,
voltage 0.1 mV, capacity mAs.

What labctl adds and a BTS shows but does not need: a per-step ``Record`` (the step's own
recording interval and voltage step) and a stop capacity ``Cap`` in the step's ``Main``
limits (labctl's encoding of a capacity limit; check it against your BTS version before
relying on it on hardware).  Values are written with full float precision so the
emulator (``labctl.simulators.emulators.neware``) reads back exactly what was meant.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

from ..cycler import CyclerCC, CyclerCV, CyclerLoop, CyclerProgram, CyclerRest, CyclerSafety, CyclerStep
from ..techniques import Recording

STEP_CC_CHARGE = 1
STEP_CC_DISCHARGE = 2
STEP_CV = 3
STEP_REST = 4
STEP_LOOP = 5
STEP_END = 6
STEP_CV_DISCHARGE = 19
STEP_NAMES = {1: "CC_Chg", 2: "CC_DChg", 3: "CV_Chg", 4: "Rest", 5: "Cycle", 6: "End", 19: "CV_DChg"}

# file unit per SI unit
MA, MS, VOLT, MAS = 1e3, 1e3, 1e4, 1e3


class StepFileError(ValueError):
    """A step file that is not a Neware step file labctl can read."""


def _num(x: float) -> str:
    return repr(float(x))


def _record(parent: ET.Element, rec: Recording) -> None:
    el = ET.SubElement(ET.SubElement(parent, "Record"), "Main")
    if rec.dt is not None:
        ET.SubElement(el, "Time", Value=_num(rec.dt * MS))
    if rec.dv is not None:
        ET.SubElement(el, "Volt", Value=_num(rec.dv * VOLT))


def to_step_xml(program: CyclerProgram) -> str:
    """The step file text (UTF-8 XML) of ``program``."""
    root = ET.Element("root")
    config = ET.SubElement(root, "config", type="Step File", version="17", client_version="labctl")
    head = ET.SubElement(config, "Head_Info")
    ET.SubElement(head, "Operate", Value="66")
    ET.SubElement(head, "Scale", Value="1")
    ET.SubElement(head, "Start_Step", Value="1", Hide_Ctrl_Step="0")
    ET.SubElement(head, "Creator", Value="labctl")
    ET.SubElement(head, "Remark", Value=program.remark)
    ET.SubElement(head, "RateType", Value="103")
    whole = ET.SubElement(config, "Whole_Prt")
    main = ET.SubElement(ET.SubElement(whole, "Protect"), "Main")
    s = program.safety
    volt = ET.SubElement(main, "Volt")
    if s.voltage_max is not None:
        ET.SubElement(volt, "Upper", Value=_num(s.voltage_max * VOLT))
    if s.voltage_min is not None:
        ET.SubElement(volt, "Lower", Value=_num(s.voltage_min * VOLT))
    curr = ET.SubElement(main, "Curr")
    if s.current_max is not None:
        ET.SubElement(curr, "Upper", Value=_num(s.current_max * MA))
    info = ET.SubElement(config, "Step_Info", Num=str(len(program.steps) + 1))
    for n, step in enumerate(program.steps, start=1):
        info.append(_step(n, step))
    ET.SubElement(info, f"Step{len(program.steps) + 1}", Step_ID=str(len(program.steps) + 1), Step_Type=str(STEP_END))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _step(n: int, step: CyclerStep) -> ET.Element:
    def element(kind: int) -> tuple[ET.Element, ET.Element]:
        el = ET.Element(f"Step{n}", Step_ID=str(n), Step_Type=str(kind))
        return el, ET.SubElement(el, "Limit")

    if isinstance(step, CyclerLoop):
        el, limit = element(STEP_LOOP)
        other = ET.SubElement(limit, "Other")
        ET.SubElement(other, "Start_Step", Value=str(step.first))
        ET.SubElement(other, "Cycle_Count", Value=str(step.count))
        return el
    if isinstance(step, CyclerRest):
        el, limit = element(STEP_REST)
        ET.SubElement(ET.SubElement(limit, "Main"), "Time", Value=_num(step.duration * MS))
    elif isinstance(step, CyclerCC):
        el, limit = element(STEP_CC_CHARGE if step.current > 0 else STEP_CC_DISCHARGE)
        main = ET.SubElement(limit, "Main")
        ET.SubElement(main, "Curr", Value=_num(abs(step.current) * MA))
        if step.duration is not None:
            ET.SubElement(main, "Time", Value=_num(step.duration * MS))
        if step.voltage_limit is not None:
            ET.SubElement(main, "Stop_Volt", Value=_num(step.voltage_limit * VOLT))
        if step.charge is not None:
            ET.SubElement(main, "Cap", Value=_num(abs(step.charge) * MAS))
    else:
        el, limit = element(STEP_CV)
        main = ET.SubElement(limit, "Main")
        ET.SubElement(main, "Volt", Value=_num(step.voltage * VOLT))
        if step.duration is not None:
            ET.SubElement(main, "Time", Value=_num(step.duration * MS))
        if step.current_below is not None:
            ET.SubElement(main, "Stop_Curr", Value=_num(abs(step.current_below) * MA))
    _record(el, step.record)
    return el


def step_file_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------ reading
def _value(el: ET.Element | None, path: str, scale: float) -> float | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.get("Value") is None:
        return None
    try:
        return float(found.get("Value", "")) / scale
    except ValueError:
        raise StepFileError(f"{path}: not a number: {found.get('Value')!r}") from None


def parse_step_xml(text: str) -> CyclerProgram:
    """Read a step file written by :func:`to_step_xml` (the emulator's side)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise StepFileError(f"not XML: {e}") from None
    config = root.find("config")
    info = None if config is None else config.find("Step_Info")
    if config is None or info is None:
        raise StepFileError("no config/Step_Info: not a Neware step file")
    remark_el = config.find("Head_Info/Remark")
    remark = "" if remark_el is None else remark_el.get("Value", "")
    prot = config.find("Whole_Prt/Protect/Main")
    safety = CyclerSafety(
        voltage_min=_value(prot, "Volt/Lower", VOLT),
        voltage_max=_value(prot, "Volt/Upper", VOLT),
        current_max=_value(prot, "Curr/Upper", MA),
    )
    steps: list[CyclerStep] = []
    for n, el in enumerate(list(info), start=1):
        try:
            kind = int(el.get("Step_Type", ""))
        except ValueError:
            raise StepFileError(f"step {n}: no Step_Type") from None
        if kind == STEP_END:
            break
        main = el.find("Limit/Main")
        rec_el = el.find("Record/Main")
        dt = _value(rec_el, "Time", MS)
        record = Recording(dt=dt, dv=_value(rec_el, "Volt", VOLT))
        if kind == STEP_LOOP:
            other = el.find("Limit/Other")
            first, count = _value(other, "Start_Step", 1.0), _value(other, "Cycle_Count", 1.0)
            if first is None or count is None or not 1 <= first < n:
                raise StepFileError(f"step {n}: a cycle step needs Start_Step before it and Cycle_Count")
            steps.append(CyclerLoop(int(first), int(count)))
        elif kind == STEP_REST:
            duration = _value(main, "Time", MS)
            if duration is None:
                raise StepFileError(f"step {n}: a rest step needs a Time limit")
            steps.append(CyclerRest(duration, record))
        elif kind in (STEP_CC_CHARGE, STEP_CC_DISCHARGE):
            i = _value(main, "Curr", MA)
            if i is None:
                raise StepFileError(f"step {n}: a CC step needs Curr")
            sign = 1.0 if kind == STEP_CC_CHARGE else -1.0
            steps.append(
                CyclerCC(
                    sign * i,
                    duration=_value(main, "Time", MS),
                    charge=_value(main, "Cap", MAS),
                    voltage_limit=_value(main, "Stop_Volt", VOLT),
                    record=record,
                )
            )
        elif kind in (STEP_CV, STEP_CV_DISCHARGE):
            v = _value(main, "Volt", VOLT)
            if v is None:
                raise StepFileError(f"step {n}: a CV step needs Volt")
            steps.append(
                CyclerCV(
                    v, duration=_value(main, "Time", MS), current_below=_value(main, "Stop_Curr", MA), record=record
                )
            )
        else:
            raise StepFileError(f"step {n}: step type {kind} ({STEP_NAMES.get(kind, 'unknown')}) is not emulated")
    return CyclerProgram(tuple(steps), safety, remark)
