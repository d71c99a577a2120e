"""Seeded random streams of a cell: the replicate spread and the per-cycle scatter.

Every draw comes from a numpy Generator seeded by (seed, replicate, stream), so a cell
with the same arguments draws the same numbers whatever else runs in the process.
Stream 1 holds the replicate's parameters; each cell kind has its own per-cycle stream.
(Measurement noise is the potentiostat's, on streams 100-102.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["PARAMETER_STREAM", "cell_rng", "cycle_deviation", "lognormal_multiplier", "normal_offset"]

PARAMETER_STREAM = 1


def cell_rng(seed: int, replicate: int, stream: int) -> np.random.Generator:
    """The Generator of ``stream`` for cell (``seed``, ``replicate``)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(replicate) & 0xFFFFFFFF, stream])


def lognormal_multiplier(rng: np.random.Generator, sigma: float) -> float:
    """exp(N(0, sigma)): a replicate's multiplier of a lifetime or capacity (always one draw)."""
    return float(np.exp(rng.normal(0.0, sigma)))


def normal_offset(rng: np.random.Generator, sd: float) -> float:
    """N(0, sd), or 0 without a draw when ``sd`` is 0 (a replicate's offset)."""
    return float(rng.normal(0.0, sd)) if sd > 0 else 0.0


def cycle_deviation(rng: np.random.Generator, sd: float) -> float:
    """N(0, sd) for one cycle, or 0 without a draw when ``sd`` is 0."""
    return float(rng.normal(0.0, sd)) if sd > 0 else 0.0
