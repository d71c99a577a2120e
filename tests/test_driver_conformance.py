"""Every real driver passes the conformance suite against its emulator, over its real transport."""

from __future__ import annotations

import pytest

from labctl.core.clock import ScaledClock, WallClock
from labctl.drivers.conformance import check_potentiostat, check_temperature_stage


def test_methodscript_driver_passes_against_its_emulator():
    from labctl.drivers.methodscript import MethodScriptPotentiostat
    from labctl.simulators.emulators.methodscript import MethodScriptEmulator

    clock = WallClock()
    emu = MethodScriptEmulator("es4_lr", preset="br-mg", seed=1, clock=clock)
    port = emu.serve_tcp()
    try:
        check_potentiostat(
            lambda clock=clock: MethodScriptPotentiostat(clock, port=f"socket://127.0.0.1:{port}", model="es4_lr"),
            clock=clock,
            read_timeout=1.0,
        )
    finally:
        emu.close()


def test_keithley2450_driver_passes_against_its_emulator():
    from labctl.drivers.keithley2450 import Keithley2450
    from labctl.simulators.emulators.scpi2450 import Keithley2450Emulator

    clock = WallClock()
    with Keithley2450Emulator(clock, preset="br-mg") as emu:
        check_potentiostat(
            lambda clock=clock: Keithley2450(clock, resource=emu.resource, visa_library="@py", poll_interval=0.2),
            clock=clock,
            read_timeout=1.0,
        )


def test_lakeshore_driver_passes_against_its_emulator():
    from labctl.drivers.lakeshore import LakeShore335
    from labctl.simulators.emulators.lakeshore import LakeShoreEmulator

    clock = ScaledClock(400.0)
    with LakeShoreEmulator(clock, tau_s=20.0) as emu:
        check_temperature_stage(
            lambda clock=clock: LakeShore335(clock, resource=emu.resource, visa_library="@py"), clock=clock
        )


@pytest.mark.parametrize("name", ["methodscript", "keithley2450", "lakeshore335", "chi", "grbl"])
def test_every_driver_is_registered(name):
    from labctl.drivers import registry

    kinds = [k for k in registry.GROUPS if name in registry.available(k)]
    assert kinds, name
