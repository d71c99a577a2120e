"""Driver + emulator end to end over a real pty and over TCP, against the in-process simulator."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from labctl.core.clock import ScaledClock, VirtualClock
from labctl.drivers.contracts import DeviceError, DeviceTimeout, TechniqueState
from labctl.drivers.methodscript import MethodScriptError, MethodScriptPotentiostat, MethodScriptProtocolError
from labctl.drivers.methodscript.compiler import compile_technique
from labctl.drivers.techniques import (
    ConstantCurrent,
    EndReason,
    Impedance,
    Limits,
    LinearSweep,
    OpenCircuit,
    Recording,
    SampleBlock,
)
from labctl.simulators import SimulatedPotentiostat
from labctl.simulators.emulators.methodscript import Faults, MethodScriptEmulator

SPEED = 2000.0
SEQUENCE = [
    OpenCircuit(60, Recording(dt=1)),
    LinearSweep(-0.02, 0.02, 0.01, step=0.001),
    Impedance(1e4, 1.0, 5, 0.01, e_dc=0.0, vs_ocp=False),
    ConstantCurrent(5e-3, Limits(duration=600, voltage_below=0.17, voltage_above=0.5), Recording(dt=1)),
]


def run(handle, limit: float = 20.0) -> SampleBlock:  # type: ignore[no-untyped-def]
    blocks = []
    t0 = time.monotonic()
    while handle.state is TechniqueState.RUNNING:
        assert time.monotonic() - t0 < limit
        b = handle.read(0.5)
        if len(b):
            blocks.append(b)
    if not blocks:
        return SampleBlock.empty()
    cat = {n: np.concatenate([getattr(b, n) for b in blocks]) for n in ("t", "voltage", "current")}
    opt = {
        n: np.concatenate([getattr(b, n) for b in blocks])
        for n in ("frequency", "z_re", "z_im")
        if blocks[0].frequency is not None
    }
    out = SampleBlock(cat["t"], cat["voltage"], cat["current"], **opt)
    out.end = blocks[-1].end
    return out


def simulated() -> list[SampleBlock]:
    sim = SimulatedPotentiostat(VirtualClock(), preset="br-mg", seed=7, noise=False)
    sim.connect()
    return [run(sim.start(t)) for t in SEQUENCE]


@pytest.fixture(params=["pty", "tcp"])
def device(request) -> Iterator[tuple[MethodScriptPotentiostat, MethodScriptEmulator]]:  # type: ignore[no-untyped-def]
    clock = ScaledClock(SPEED)
    emu = MethodScriptEmulator("es4_lr", preset="br-mg", seed=7, clock=clock, noise=False, advance_idle=False)
    port = emu.serve_pty() if request.param == "pty" else f"socket://127.0.0.1:{emu.serve_tcp()}"
    dev = MethodScriptPotentiostat(clock, port=port)
    dev.connect(timeout=5)
    yield dev, emu
    dev.close()
    emu.close()


def test_sequence_matches_the_simulator(device) -> None:  # type: ignore[no-untyped-def]
    dev, emu = device
    assert dev.device_id == "es4_lr" and "EmStat4 LR" in dev.identify() and "cp" in dev.capabilities.techniques
    ref = simulated()
    got = []
    for tech in SEQUENCE:
        h = dev.start(tech)
        anchor = h.anchor
        b = run(h)
        b.t = b.t - anchor
        got.append(b)
    ocp, lsv, eis, cp = got
    r_ocp, r_lsv, r_eis, r_cp = ref
    # OCP rest: same times, same potentials
    assert len(ocp) == len(r_ocp) == 60 and ocp.end.reason is EndReason.DURATION
    np.testing.assert_allclose(ocp.t, r_ocp.t - r_ocp.t[0] + 1.0, atol=1e-9)
    np.testing.assert_allclose(ocp.voltage, r_ocp.voltage, rtol=5e-6, atol=1e-9)
    # LSV: the device also reports the start point; after it, the same applied potentials and currents
    assert len(lsv) == len(r_lsv) + 1 and lsv.end.reason is EndReason.COMPLETE
    np.testing.assert_allclose(lsv.voltage[1:], r_lsv.voltage, atol=1e-9)
    np.testing.assert_allclose(lsv.current[1:], r_lsv.current, rtol=1e-5, atol=1e-10)
    # EIS: same frequencies and impedances
    # (7 hex digits on the wire: at most 4e-6 relative rounding)
    np.testing.assert_allclose(eis.frequency, r_eis.frequency, rtol=5e-6)
    np.testing.assert_allclose(eis.z_re, r_eis.z_re, rtol=5e-6)
    np.testing.assert_allclose(eis.z_im, r_eis.z_im, rtol=5e-6)
    # galvanostatic step: the instrument's cut-off ends it within one interval of the simulator's crossing
    assert cp.end.reason is EndReason.VOLTAGE_BELOW and r_cp.end.reason is EndReason.VOLTAGE_BELOW
    n = len(r_cp) - 1  # the simulator's last sample sits on the interpolated crossing
    np.testing.assert_allclose(cp.voltage[:n], r_cp.voltage[:n], rtol=5e-6)
    np.testing.assert_allclose(cp.current, 5e-3, rtol=1e-6)
    assert cp.voltage[-1] < 0.17 <= cp.voltage[-2]
    t_cross_sim = r_cp.end.t - r_cp.t[0] + 1.0
    assert abs((cp.t[-1]) - t_cross_sim) <= 1.0
    assert emu.cell_on is False


def test_cutoff_enforced_by_the_instrument_without_a_host() -> None:
    """The compiled script alone ends the step: the host disconnects after 3 packages."""
    clock = ScaledClock(SPEED)
    emu = MethodScriptEmulator("es4_lr", preset="br-mg", seed=7, clock=clock, faults=Faults(disconnect_after=3))
    port = emu.serve_tcp()
    tech = ConstantCurrent(5e-3, Limits(duration=600, voltage_below=0.17), Recording(dt=1))
    text = compile_technique(tech, max_current=0.03, galvanostat=True).text()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(text.encode())
        time.sleep(0.05)
        assert emu.wait_idle(5.0)
    rec = emu.scripts[-1]
    assert rec["texts"] == ["end voltage_below"]  # the in-loop `if p < 170m` / breakloop fired
    assert rec["elapsed"] < 100 and rec["cell_on"] is False and emu.cell_on is False
    emu.close()


def _start(faults: Faults, **kw):  # type: ignore[no-untyped-def]
    clock = ScaledClock(200.0)
    emu = MethodScriptEmulator("es4_lr", preset="br-mg", seed=1, clock=clock, faults=faults, **kw)
    dev = MethodScriptPotentiostat(clock, port=emu.serve_pty(), silence_timeout=0.5, command_timeout=0.5)
    dev.connect(timeout=5)
    return dev, emu, dev.start(OpenCircuit(600, Recording(dt=1)))


@pytest.mark.parametrize(
    "faults, exc",
    [
        (Faults(silent_after=5), DeviceTimeout),
        (Faults(error_after=5, error_code="4205"), MethodScriptError),
        (Faults(disconnect_after=5), DeviceError),
    ],
)
def test_faults_fail_within_the_timeout_and_abort(faults: Faults, exc: type) -> None:
    dev, emu, h = _start(faults)
    t0 = time.monotonic()
    with pytest.raises(exc) as info:
        for _ in range(50):
            h.read(0.5)
    assert time.monotonic() - t0 < 6.0
    assert h.state is TechniqueState.FAILED
    if isinstance(info.value, MethodScriptError):
        assert info.value.code == "4205" and "out of bounds" in str(info.value)
    if faults.disconnect_after is None:
        # the driver sent the abort and a cell_off script after the failure
        tail = emu.received[emu.received.index("e") + 1 :]
        assert "Z" in tail and "cell_off" in tail
    if faults.silent_after is None and faults.disconnect_after is None:
        assert emu.cell_on is False and dev.safe_state_confirmed
    h.stop()  # idempotent after an error
    dev.close()
    emu.close()


def test_garbage_is_rejected_counted_and_the_technique_goes_on() -> None:
    dev, emu, h = _start(Faults(garbage_after=5))
    n = 0
    for _ in range(40):
        n += len(h.read(0.2))
        if h.rejected:
            break
    n += len(h.read(0.3))
    assert h.rejected == 1 and h.state is TechniqueState.RUNNING
    assert n >= 5  # the samples around the garbage line all arrived
    h.stop()
    assert emu.cell_on is False
    dev.close()
    emu.close()


def test_a_link_of_nothing_but_garbage_fails() -> None:
    dev, emu, h = _start(Faults())
    h.MAX_REJECTED = 3
    h.read(0.2)
    with pytest.raises(MethodScriptProtocolError, match="3 malformed lines in a row"):
        for raw in (b"\x00junk\n", b"more junk\n", b"#\xff\n"):
            h._handle_line(raw, [], [])
    h.stop()
    dev.close()
    emu.close()


def test_stop_aborts_and_cell_is_off() -> None:
    dev, emu, h = _start(Faults())
    b = h.read(0.3)
    h.stop()
    h.stop()
    assert h.state is TechniqueState.STOPPED and emu.cell_on is False and dev.safe_state_confirmed
    assert emu.scripts[0]["end"] == "abort"
    assert len(b) >= 1 and h.read(0.1).t.size == 0
    dev.close()
    emu.close()


def test_overload_becomes_an_event() -> None:
    clock = ScaledClock(SPEED)
    emu = MethodScriptEmulator("es4_lr", preset="br-mg", seed=1, clock=clock)
    dev = MethodScriptPotentiostat(clock, port=emu.serve_pty(), max_current=1e-6)
    dev.connect(timeout=5)
    b = run(dev.start(LinearSweep(-0.3, 0.3, 0.1, step=0.01)))
    h = dev._handle
    assert h is not None and len(b) == 61
    kinds = {e.kind for e in h.drain_events()}
    assert kinds == {"overload"} and h.events == []
    dev.close()
    emu.close()


def test_pico_emulator_rejects_what_the_device_rejects() -> None:
    emu = MethodScriptEmulator("espico", preset="br-mg", clock=ScaledClock(SPEED))
    port = emu.serve_tcp()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        f = s.makefile("rwb", buffering=0)

        def ask(text: str) -> bytes:
            f.write(text.encode())
            return f.readline()

        assert ask("t\n").startswith(b"tespico") and f.readline() == b"R*\n"
        assert ask("Z\n") == b"Z!0006\n"
        assert ask("x\n") == b"x!0003\n"
        assert ask("e\nvar p\nvar c\nmeas_loop_cp p c 1m 1 10\nendloop\n\n") == b"e!001B: Line 3, Col 1\n"
        assert ask("e\nvar p\nset_e 0.5\n\n") == b"e!4004: Line 2, Col 1\n"
        assert ask("e\nset_e " + "1" * 130 + "\n\n") == b"e!0008: Line 1, Col 129\n"
    emu.close()
    # and the driver on a Pico: no galvanostatic mode, refused before anything is sent
    clock = ScaledClock(SPEED)
    emu = MethodScriptEmulator("espico", preset="br-mg", clock=clock)
    dev = MethodScriptPotentiostat(clock, port=emu.serve_pty())
    dev.connect(timeout=5)
    assert "cp" not in dev.capabilities.techniques and "Pico" in dev.identify()
    with pytest.raises(DeviceError, match="galvanostatic"):
        dev.start(ConstantCurrent(1e-4, Limits(duration=10)))
    dev.close()
    emu.close()


def test_next_script_accepted_the_moment_the_last_one_ends(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A host that sends the next script as soon as it reads a script's last line is heard.

    On a loaded PC the emulator's script thread can lose the CPU right after that last line;
    the device is idle from then on, so the next script must not be dropped (a CI failure:
    'sent nothing for 5 s while running cp').
    """
    import labctl.simulators.emulators.methodscript as ms

    real_write = ms._Session.write

    def slow_after_the_end(self, text):  # type: ignore[no-untyped-def]
        real_write(self, text)
        if text in ("\n", "Z\n") and threading.current_thread().name == "methodscript-script":
            time.sleep(0.3)  # the runner thread is preempted after its last line

    monkeypatch.setattr(ms._Session, "write", slow_after_the_end)
    clock = ScaledClock(SPEED)
    emu = MethodScriptEmulator("es4_lr", preset="br-mg", seed=7, clock=clock, noise=False, advance_idle=False)
    dev = MethodScriptPotentiostat(clock, port=f"socket://127.0.0.1:{emu.serve_tcp()}", silence_timeout=2.0)
    dev.connect(timeout=5)
    try:
        for tech in (OpenCircuit(5, Recording(dt=1)), OpenCircuit(5, Recording(dt=1))):
            b = run(dev.start(tech))
            assert len(b) == 5 and b.end.reason is EndReason.DURATION
    finally:
        dev.close()
        emu.close()
