"""CH Instruments through hardpotato: the macro text for labctl's steps, the protocols it must
refuse before anything starts, and data coming back from a (stand-in) chi.exe."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hardpotato")  # the optional GPL extra; installed by the dev extra

from labctl.core.clock import VirtualClock
from labctl.drivers.chi import CHIPotentiostat, macro, read_chi_text
from labctl.drivers.contracts import ChannelDevices, DeviceError
from labctl.drivers.techniques import (
    ConstantPotential,
    CyclicSweep,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
)
from labctl.engine.runner import Engine, PreflightError
from tests.test_engine import ListRecorder, proto


def lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines()]


def test_tafel_sweep_macro_is_shifted_by_the_ocp():
    m = lines(
        macro("chi760e", LinearSweep(-0.2, 0.2, 0.001, 0.001, vs_ocp=True), folder="C:/d", name="m1", e_ocp=-0.05)
    )
    assert "tech=lsv" in m and "ei=-0.25" in m and "ef=0.15" in m and "v=0.001" in m and "si=0.001" in m
    assert "save:m1" in m and "tsave:m1" in m and m[-1] == "forcequit: yesiamsure"


@pytest.mark.parametrize(
    "tech, expect",
    [
        (OpenCircuit(3600, Recording(dt=10.0)), ["tech=ocpt", "st=3600", "si=10.0"]),
        (ConstantPotential(0.1, Limits(duration=600), record=Recording(dt=1.0)), ["tech=i-t", "ei=0.1", "st=600"]),
        (CyclicSweep(0.0, 0.5, -0.5, 0.05, 0.001, cycles=2), ["tech=cv", "eh=0.5", "el=-0.5", "pn=p", "v=0.05"]),
        (Impedance(1e5, 0.1, 10, 0.01, vs_ocp=False), ["tech=imp", "fl=0.1", "fh=100000.0", "amp=0.0141421356"]),
    ],
)
def test_macro_text_for_each_technique(tech, expect):
    m = lines(macro("chi760e", tech, folder="C:/d", name="x"))
    for e in expect:
        assert e in m, (e, m)


def test_galvanostatic_steps_are_refused_before_anything_starts():
    pstat = CHIPotentiostat(VirtualClock(), model="chi760e")
    p = proto("  - galvanostatic: {current: 1 mA, duration: 1 h}")
    with pytest.raises(PreflightError, match=r"engine-test.yaml:\d+:\d+: galvanostatic: .*does not run cp"):
        Engine(p, ChannelDevices(pstat), VirtualClock()).preflight()


def test_cut_offs_are_refused_since_chi_returns_data_only_at_the_end():
    pstat = CHIPotentiostat(VirtualClock(), model="chi760e")
    p = proto("  - potentiostatic: {potential: 0.1 V, duration: 1 h, current_below: 1 uA}")
    with pytest.raises(PreflightError, match="cannot stop on a cut-off"):
        Engine(p, ChannelDevices(pstat), VirtualClock()).preflight()
    ok = proto(
        "  - potentiostatic: {potential: 0.1 V, duration: 1 h}\n  - eis: {f_start: 100 kHz, f_end: 1 Hz, "
        "points_per_decade: 5, amplitude: 10 mV}"
    )
    Engine(ok, ChannelDevices(pstat), VirtualClock()).preflight()


def test_models_without_impedance_do_not_declare_it():
    assert "eis" not in CHIPotentiostat(VirtualClock(), model="chi601e").capabilities.techniques
    with pytest.raises(DeviceError, match="not supported"):
        CHIPotentiostat(VirtualClock(), model="chi9999")


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal is for machines without chi.exe")
def test_connect_says_it_needs_windows_and_chi_exe():
    with pytest.raises(DeviceError, match="Windows"):
        CHIPotentiostat(VirtualClock(), chi_exe="C:/CHI/chi760e.exe").connect()


FAKE_CHI = r"""#!{python}
import sys, re
macro = open(sys.argv[1].split(":", 1)[1], encoding="latin-1").read()
name = re.search(r"^save:(\S+)", macro, re.M).group(1)
folder = sys.argv[1].split(":", 1)[1].rsplit("/", 1)[0]
tech = re.search(r"^tech=(\S+)", macro, re.M).group(1)
out = ["Nov. 30, 2026", "Instrument Model:  CHI760E", ""]
if tech == "ocpt":
    st = float(re.search(r"^st=(\S+)", macro, re.M).group(1))
    out.append("Time/sec, Potential/V")
    out += [f"{{t:.1f}}, {{-1.2 + 0.0001 * t:.5f}}" for t in range(1, int(st) + 1)]
elif tech == "lsv":
    ei = float(re.search(r"^ei=(\S+)", macro, re.M).group(1)); ef = float(re.search(r"^ef=(\S+)", macro, re.M).group(1))
    out.append("Potential/V, Current/A")
    for k in range(101):
        e = ei + (ef - ei) * k / 100
        out.append(f"{{e:.4f}}, {{-1e-6 * (e + 1.2):.4e}}")
open(folder + "/" + name + ".txt", "w").write("\n".join(out) + "\n")
"""


def test_a_tafel_sweep_runs_through_a_stand_in_chi_exe(tmp_path: Path):
    exe = tmp_path / "chi760e.exe"
    exe.write_text(FAKE_CHI.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    clock = VirtualClock(start_unix=0)
    pstat = CHIPotentiostat(clock, model="chi760e", chi_exe=str(exe), folder=str(tmp_path))
    p = proto("  - tafel: {span: 200 mV, scan_rate: 1 mV/s, step: 4 mV, rest: 0 s}")
    rec = ListRecorder()
    out = Engine(p, ChannelDevices(pstat), clock, rec).run()
    assert out.status == "completed", out.end_reason
    v = np.concatenate([s[3] for s in rec.samples_list])
    i = np.concatenate([s[4] for s in rec.samples_list])
    t = np.concatenate([s[2] for s in rec.samples_list])
    ocp = -1.2 + 0.0001 * 10  # the stand-in's OCP after 10 s
    assert v[0] == pytest.approx(ocp - 0.2, abs=1e-4) and v[-1] == pytest.approx(ocp + 0.2, abs=1e-4)
    assert i[-1] > 0  # anodic end of the sweep: positive in labctl's convention
    assert np.all(np.diff(t) > 0)
    cols = read_chi_text(tmp_path / "labctl_0.txt")
    assert set(cols) == {"Potential/V", "Current/A"}
