"""Simulated instruments: the driver contracts of :mod:`drivers.contracts` on modelled cells.

* :class:`~simulators.potentiostat.SimulatedPotentiostat`: symmetric Mg|Mg, asymmetric
  Mg|Al/C or full Mg|Mo6S8 cell, physics from a preset (``bare-mg``, ``br-mg``, or a file).
* :class:`~simulators.stage.SimulatedTemperatureStage`: first-order lag (optional overshoot).
* :class:`~simulators.dipcoater.SimulatedDipCoater`: timed immersion and withdrawal.

All run in clock time (:mod:`labctl.clock`); see docs/presets.md.
"""

from simulators.cells import simulate_cell
from simulators.dipcoater import SimulatedDipCoater
from simulators.potentiostat import SimulatedPotentiostat
from simulators.presets import Preset, load_preset, preset_json_schema
from simulators.stage import SimulatedTemperatureStage

__all__ = [
    "SimulatedPotentiostat", "SimulatedTemperatureStage", "SimulatedDipCoater", "simulate_cell",
    "Preset", "load_preset", "preset_json_schema",
]
