"""Physics of the simulated cells: symmetric Mg|Mg, asymmetric Mg|Al/C, full Mg|Mo6S8.

One module per cell kind (:mod:`.symmetric`, :mod:`.asymmetric`, :mod:`.full`) on
what they share: the base class (:mod:`.base`), electrode kinetics (:mod:`.kinetics`:
Arrhenius, Butler-Volmer, hysteresis, R||CPE), table interpolation (:mod:`.tables`)
and the seeded random streams (:mod:`.noise`).  Physical constants come from
:mod:`labctl.core.constants`.

Sign convention (labctl-wide): current > 0 is anodic at the working electrode
(stripping Mg from it, charging the full cell), < 0 cathodic (plating onto it,
discharging the full cell).  Voltage = working electrode minus counter.

Model equations and the paper observable each preset field reproduces are in
docs/presets.md.  Build a cell with :func:`simulate_cell`.
"""

from __future__ import annotations

from typing import Any

from labctl.simulators.cells.asymmetric import AsymmetricCell, calibrate_asymmetric, loss_at
from labctl.simulators.cells.base import CellModel
from labctl.simulators.cells.full import FullCell
from labctl.simulators.cells.kinetics import cpe_rc
from labctl.simulators.cells.symmetric import SymmetricCell
from labctl.simulators.cells.tables import interp_scalar, interp_table, linear_table
from labctl.simulators.presets import Preset

__all__ = [
    "KINDS",
    "AsymmetricCell",
    "CellModel",
    "FullCell",
    "SymmetricCell",
    "calibrate_asymmetric",
    "cpe_rc",
    "interp_scalar",
    "interp_table",
    "linear_table",
    "loss_at",
    "simulate_cell",
]

KINDS: dict[str, type[CellModel]] = {"symmetric": SymmetricCell, "asymmetric": AsymmetricCell, "full": FullCell}


def simulate_cell(
    kind: str,
    preset: str | Preset,
    *,
    area_cm2: float = 1.267,
    cathode_mass_g: float | None = None,
    seed: int = 0,
    replicate: int = 0,
) -> CellModel:
    """A fresh simulated cell of ``kind`` (symmetric, asymmetric, full) with ``preset``'s physics.

    ``preset``: a built-in preset name, a path to a preset YAML, or a :class:`Preset`
    (the simulator has no default physics: the caller chooses it).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; use one of: {', '.join(KINDS)}")
    kw: dict[str, Any] = {"area_cm2": area_cm2, "seed": seed, "replicate": replicate}
    if kind == "full":
        kw["cathode_mass_g"] = cathode_mass_g
    return KINDS[kind](preset, **kw)
