"""Resource limits a protocol is checked against before anything runs.

The defaults are generous for real work (a 2000 h cycling test recording every 10 s is
720,000 samples) and refuse what would exhaust the machine: a few lines of nested
``for_each`` expanding to a million steps, ``record_every: 1 ns``, ``duration: 100000 years``.
Each limit is raised by a command-line option or an environment variable (the config of a
service); the estimate itself is :func:`labctl.protocols.limits.estimate_run`.

Nothing here imports more than the standard library (``labctl --help`` stays fast).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_MAX_STEPS",
    "ENV_MAX_SAMPLES",
    "ENV_MAX_STEPS",
    "SAMPLE_BYTES",
    "ResourceLimits",
]

#: Steps of a protocol once ``for_each`` is expanded and ``aurbach_ce`` cycles unrolled.
DEFAULT_MAX_STEPS = 10_000
#: Samples one run may record (upper-bound estimate; ~1.3 GB of SQLite at SAMPLE_BYTES).
DEFAULT_MAX_SAMPLES = 20_000_000
#: Database bytes one sample takes, with margin (measured: 51 B per sample in SQLite, WAL
#: checkpointed, 360,000 samples of one step; see docs/reliability.md).
SAMPLE_BYTES = 64

ENV_MAX_STEPS = "LABCTL_MAX_STEPS"
ENV_MAX_SAMPLES = "LABCTL_MAX_SAMPLES"


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip().replace("_", "").replace(",", "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class ResourceLimits:
    """The limits one run is held to: steps, samples, and (for a local database) free disk."""

    max_steps: int = DEFAULT_MAX_STEPS
    max_samples: int = DEFAULT_MAX_SAMPLES
    #: refuse a run whose estimated database growth exceeds the free space of the database's folder
    check_disk: bool = True

    @classmethod
    def from_env(
        cls, *, max_steps: int | None = None, max_samples: int | None = None, check_disk: bool = True
    ) -> ResourceLimits:
        """Explicit values first, then ``$LABCTL_MAX_STEPS`` / ``$LABCTL_MAX_SAMPLES``, then the defaults."""
        return cls(
            max_steps=max_steps if max_steps is not None else _env_int(ENV_MAX_STEPS, DEFAULT_MAX_STEPS),
            max_samples=max_samples if max_samples is not None else _env_int(ENV_MAX_SAMPLES, DEFAULT_MAX_SAMPLES),
            check_disk=check_disk,
        )
