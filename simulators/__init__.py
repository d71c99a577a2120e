"""Simulated instruments: the driver contracts of :mod:`labctl.drivers.contracts` on modelled cells.

* :class:`~simulators.potentiostat.SimulatedPotentiostat`: symmetric Mg|Mg, asymmetric
  Mg|Al/C or full Mg|Mo6S8 cell, physics from a preset (a registered preset's name, or a file).
* :class:`~simulators.stage.SimulatedTemperatureStage`: first-order lag (optional overshoot).
* :class:`~simulators.dipcoater.SimulatedDipCoater`: timed immersion and withdrawal.

All run in clock time (:mod:`labctl.core.clock`); see docs/presets.md.
"""

from labctl.simulators.cells import simulate_cell
from labctl.simulators.dipcoater import SimulatedDipCoater
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.presets import Preset, load_preset, preset_json_schema
from labctl.simulators.stage import SimulatedTemperatureStage

__all__ = [
    "SimulatedPotentiostat",
    "SimulatedTemperatureStage",
    "SimulatedDipCoater",
    "simulate_cell",
    "Preset",
    "load_preset",
    "preset_json_schema",
]
