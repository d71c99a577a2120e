"""Techniques of :mod:`labctl.drivers.techniques` compiled into MethodSCRIPT.

One technique is one script: set-up, one measurement loop whose body sends a data
package per point (device time ``t`` first, then the loop's outputs) and enforces every
limit of the technique as ``if ... breakloop`` logic, so the instrument ends the step
by itself even if the host dies.  Before ``breakloop`` the script sends
``T<END_TAG> <reason>`` (``send_string``) so the host knows which limit ended it.
``on_finished:`` turns the cell off whatever ends the script (its end, an abort, an error).

Number literals are integers with an SI prefix, lines are at most 128 characters and
end in ``\\n``.  See docs/drivers-methodscript.md for each technique's text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from labctl.drivers.contracts import DeviceError
from labctl.drivers.methodscript.protocol import MAX_LINE, format_literal
from labctl.drivers.techniques import (
    ConstantCurrent,
    ConstantPotential,
    CyclicSweep,
    EndReason,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
    Technique,
)

__all__ = [
    "END_TAG",
    "LONGEST_RUN",
    "OCP_PROBE",
    "CompiledScript",
    "compile_technique",
    "eis_points",
    "recording_interval",
]

#: Prefix of the ``send_string`` text a limit sends before ``breakloop``.
END_TAG = "end"
#: Run time used when a technique has no duration (its other limits end it): 100 days.
LONGEST_RUN = 8_640_000.0
#: Interval and run time of the short open-circuit measurement before a ``vs_ocp`` technique.
OCP_PROBE = 0.1
#: Recording interval when a technique records on ``dv`` only (the device samples at fixed times).
DV_ONLY_INTERVAL = 10.0

fl = format_literal


@dataclass
class CompiledScript:
    """The lines of one script (without the leading ``e`` and the final empty line)."""

    lines: list[str]
    kind: str
    interval: float  # s between packages the host must expect at most (device time)
    run_time: float
    probe_ocp: bool = False  # a first measurement loop sends one open-circuit package (vs_ocp)
    e_dc: float | None = None  # EIS: applied DC potential when known at compile time
    e_dc_offset: float = 0.0  # EIS vs_ocp: added to the probed OCP
    reasons: dict[str, EndReason] = field(default_factory=dict)

    def text(self) -> str:
        """The bytes sent: ``e``, the lines, an empty line."""
        return "e\n" + "".join(line + "\n" for line in self.lines) + "\n"


def recording_interval(rec: Recording) -> float:
    """The fixed interval the device records at (dv-only recording falls back, see the docs)."""
    if rec.dt is not None:
        return float(rec.dt)
    return float(min(rec.max_dt, DV_ONLY_INTERVAL))


def eis_points(tech: Impedance) -> int:
    """Number of frequencies, both ends included (log spaced, ``points_per_decade``)."""
    decades = abs(math.log10(tech.f_end / tech.f_start))
    return max(1, int(round(decades * tech.points_per_decade))) + 1


def _limit_lines(
    lim: Limits,
    *,
    interval_var: str | None,
    step_time: float | None,
    check_v: bool,
    check_i: bool,
    reasons: dict[str, EndReason],
) -> list[str]:
    """The ``if ... breakloop`` body that enforces ``lim`` inside a measurement loop.

    ``p`` holds the potential, ``c`` the current, ``t`` the device time of the point.
    ``step_time``: seconds one point stands for (charge integration).
    """
    out: list[str] = []

    def stop(reason: EndReason, indent: str = "  ") -> list[str]:
        reasons[reason.value] = reason
        return [f'{indent}send_string "{END_TAG} {reason.value}"', f"{indent}breakloop"]

    if lim.charge is not None and step_time is not None:
        # q = |c| * dt accumulated in a; the instrument ends the step at the charge limit
        out += [
            "copy_var c q",
            "if q < 0",
            "  mul_var q -1",
            "endif",
            f"mul_var q {fl(step_time)}",
            "add_var a q",
            f"if a > {fl(lim.charge)}",
            *stop(EndReason.CHARGE),
            "endif",
        ]
    if check_v and lim.voltage_above is not None:
        out += [f"if p > {fl(lim.voltage_above)}", *stop(EndReason.VOLTAGE_ABOVE), "endif"]
    if check_v and lim.voltage_below is not None:
        out += [f"if p < {fl(lim.voltage_below)}", *stop(EndReason.VOLTAGE_BELOW), "endif"]
    if check_i and lim.current_above is not None:
        x = fl(lim.current_above)
        out += [
            f"if c > {x}",
            *stop(EndReason.CURRENT_ABOVE),
            "endif",
            f"if c < {fl(-lim.current_above)}",
            *stop(EndReason.CURRENT_ABOVE),
            "endif",
        ]
    if check_i and lim.current_below is not None:
        out += [
            f"if c < {fl(lim.current_below)}",
            f"  if c > {fl(-lim.current_below)}",
            *stop(EndReason.CURRENT_BELOW, "    "),
            "  endif",
            "endif",
        ]
    if check_v and lim.short_circuit is not None and step_time is not None:
        thr = fl(lim.short_circuit)
        out += [
            f"add_var s {fl(step_time)}",
            f"if p > {thr}",
            "  store_var s 0 ja",
            "endif",
            f"if p < {fl(-lim.short_circuit)}",
            "  store_var s 0 ja",
            "endif",
            f"if s > {fl(lim.short_hold)}",
            *stop(EndReason.SHORT_CIRCUIT),
            "endif",
        ]
    if lim.duration is not None and interval_var is None:
        # sweeps have no run time argument: the duration is a limit on the device timer
        out += [f"if t > {fl(lim.duration)}", *stop(EndReason.DURATION), "endif"]
    return out


def _package(*names: str) -> list[str]:
    return ["timer_get t", "pck_start", *[f"pck_add {n}" for n in names], "pck_end"]


def _ocp_probe() -> list[str]:
    """One open-circuit point into ``o`` (sent as a package so the host knows the reference)."""
    x = fl(OCP_PROBE)
    return ["cell_off", f"meas_loop_ocp o {x} {x}", "  pck_start", "  pck_add o", "  pck_end", "endloop"]


def compile_technique(
    tech: Technique, *, max_current: float, galvanostat: bool, max_potential: float = 10.0
) -> CompiledScript:
    """Compile ``tech`` into a script for a device whose largest current range is ``max_current`` A.

    Raises :class:`DeviceError` for what the device cannot run (chronopotentiometry without
    ``galvanostat``).
    """
    irange = fl(max_current)
    header = [
        "var p",
        "var c",
        "var t",
        "var q",
        "var a",
        "var s",
        "var o",
        "var h",
        "var k",
        "var w",
        "store_var a 0 ja",
        "store_var s 0 ja",
    ]
    reasons: dict[str, EndReason] = {}
    footer = ["on_finished:", "  cell_off"]

    if isinstance(tech, OpenCircuit):
        dt = recording_interval(tech.record)
        lines = [
            *header,
            "set_pgstat_mode 2",
            "set_range ab 4",
            "cell_off",
            "timer_start",
            f"meas_loop_ocp p {fl(dt)} {fl(tech.duration)}",
            *_indent(_package("t", "p")),
            "endloop",
            *footer,
        ]
        return _checked(CompiledScript(lines, "ocp", dt, tech.duration, reasons=reasons))

    if isinstance(tech, ConstantCurrent):
        if not galvanostat:
            raise DeviceError(
                "chronopotentiometry (constant current) is not available on this device: "
                "the EmStat Pico has no galvanostatic mode"
            )
        dt = recording_interval(tech.record)
        run = tech.limits.duration if tech.limits.duration is not None else LONGEST_RUN
        body = _package("t", "p", "c") + _limit_lines(
            tech.limits, interval_var="dt", step_time=dt, check_v=True, check_i=False, reasons=reasons
        )
        irng = fl(_range_for(abs(tech.current), max_current))
        lines = [
            *header,
            "set_pgstat_mode 6",
            "set_range ab 4",
            "set_autoranging ab 4 4",
            f"set_range db {irng}",
            f"set_autoranging db {irng} {irng}",
            "set_i 0",
            "cell_on",
            "timer_start",
            f"meas_loop_cp p c {fl(tech.current)} {fl(dt)} {fl(run)}",
            *_indent(body),
            "endloop",
            *footer,
        ]
        return _checked(CompiledScript(lines, "cp", dt, run, reasons=reasons))

    if isinstance(tech, ConstantPotential):
        dt = recording_interval(tech.record)
        run = tech.limits.duration if tech.limits.duration is not None else LONGEST_RUN
        body = _package("t", "p", "c") + _limit_lines(
            tech.limits, interval_var="dt", step_time=dt, check_v=False, check_i=True, reasons=reasons
        )
        pre, e = _potential(tech.potential, tech.vs_ocp, "h")
        lines = [
            *header,
            *pre,
            "set_pgstat_mode 2",
            f"set_range ba {irange}",
            f"set_autoranging ba 1n {irange}",
            f"set_e {e}",
            "cell_on",
            "timer_start",
            f"meas_loop_ca p c {e} {fl(dt)} {fl(run)}",
            *_indent(body),
            "endloop",
            *footer,
        ]
        return _checked(CompiledScript(lines, "ca", dt, run, probe_ocp=tech.vs_ocp, reasons=reasons))

    if isinstance(tech, (LinearSweep, CyclicSweep)):
        if not (tech.scan_rate > 0 and tech.step > 0):
            raise DeviceError("a sweep needs a positive scan_rate and step")
        dt = tech.step / tech.scan_rate
        body = _package("t", "p", "c") + _limit_lines(
            tech.limits, interval_var=None, step_time=dt, check_v=True, check_i=True, reasons=reasons
        )
        common = [f"set_range ba {irange}", f"set_autoranging ba 1n {irange}"]
        if isinstance(tech, LinearSweep):
            pre1, b = _potential(tech.start, tech.vs_ocp, "h")
            pre2, x = _potential(tech.end, tech.vs_ocp, "k")
            total = abs(tech.end - tech.start) / tech.scan_rate
            loop = f"meas_loop_lsv p c {b} {x} {fl(tech.step)} {fl(tech.scan_rate)}"
            kind = "lsv"
        else:
            pre1, b = _potential(tech.start, tech.vs_ocp, "h")
            pre2a, x = _potential(tech.vertex1, tech.vs_ocp, "k")
            pre2b, y = _potential(tech.vertex2, tech.vs_ocp, "w")
            pre2 = pre2a + pre2b
            span = abs(tech.vertex1 - tech.start) + abs(tech.vertex2 - tech.vertex1) + abs(tech.start - tech.vertex2)
            total = span * max(1, tech.cycles) / tech.scan_rate
            scans = f" nscans({tech.cycles})" if tech.cycles > 1 else ""
            loop = f"meas_loop_cv p c {b} {x} {y} {fl(tech.step)} {fl(tech.scan_rate)}{scans}"
            kind = "cv"
        pre = pre1 + pre2
        lines = [
            *header,
            *pre,
            "set_pgstat_mode 2",
            *common,
            f"set_e {b}",
            "cell_on",
            "timer_start",
            loop,
            *_indent(body),
            "endloop",
            *footer,
        ]
        return _checked(CompiledScript(lines, kind, dt, total, probe_ocp=tech.vs_ocp, reasons=reasons))

    if isinstance(tech, Impedance):
        if tech.points_per_decade < 1:
            raise DeviceError("EIS needs at least one point per decade")
        n = eis_points(tech)
        pre, e = _potential(tech.e_dc, tech.vs_ocp, "h")
        lines = [
            *header,
            *pre,
            "set_pgstat_mode 3",
            "set_max_bandwidth 1M",
            f"set_range ba {irange}",
            f"set_autoranging ba 1n {irange}",
            "set_range ab 4",
            "set_autoranging ab 4 4",
            f"set_e {e}",
            "cell_on",
            "timer_start",
            f"meas_loop_eis f r j {fl(tech.amplitude)} {fl(tech.f_start)} {fl(tech.f_end)} {fl(n, integer=True)} {e}",
            *_indent(["timer_get t", "pck_start", "pck_add t", "pck_add f", "pck_add r", "pck_add j", "pck_end"]),
            "endloop",
            *footer,
        ]
        lines = lines[:3] + ["var f", "var r", "var j"] + lines[3:]
        f_low = min(tech.f_start, tech.f_end)
        return _checked(
            CompiledScript(
                lines,
                "eis",
                max(10.0 / f_low, 1.0),
                0.0,
                probe_ocp=tech.vs_ocp,
                e_dc=None if tech.vs_ocp else tech.e_dc,
                e_dc_offset=tech.e_dc if tech.vs_ocp else 0.0,
                reasons=reasons,
            )
        )

    raise DeviceError(f"unsupported technique {getattr(tech, 'kind', tech)!r}")


def _potential(value: float, vs_ocp: bool, var: str) -> tuple[list[str], str]:
    """A potential argument: a literal, or (``vs_ocp``) variable ``var`` = probed OCP + ``value``."""
    if not vs_ocp:
        return [], fl(value)
    lines = _ocp_probe() + [f"copy_var o {var}"]
    if value != 0:
        lines.append(f"add_var {var} {fl(value)}")
    return lines, var


def _range_for(current: float, max_current: float) -> float:
    """The smallest decade range (1 nA ... ) holding ``current``, at most the device maximum."""
    r = 1e-9
    while r < current and r < max_current:
        r *= 10
    return min(r, max_current)


def _indent(lines: list[str]) -> list[str]:
    return ["  " + ln for ln in lines]


def _checked(script: CompiledScript) -> CompiledScript:
    # the OCP probe may only appear once (several vs_ocp arguments share it)
    probe = _ocp_probe()
    out: list[str] = []
    i = 0
    seen = False
    while i < len(script.lines):
        if script.lines[i : i + len(probe)] == probe:
            if not seen:
                out += probe
            seen = True
            i += len(probe)
            continue
        out.append(script.lines[i])
        i += 1
    script.lines = out
    for n, line in enumerate(script.lines, 1):
        if len(line) > MAX_LINE:
            raise DeviceError(
                f"MethodSCRIPT line {n} has {len(line)} characters (the device takes at most "
                f"{MAX_LINE}): {line[:40]}..."
            )
        if "\r" in line or "\n" in line:
            raise DeviceError(f"MethodSCRIPT line {n} contains a line break")
    return script
