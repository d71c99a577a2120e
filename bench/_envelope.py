"""What storing the voltage envelope costs the run writer, for the ingest benches.

``without_envelope()``: the writer with ``labctl.db.envelope.append`` switched off (the peer
measured in the same run); ``timing_envelope()``: the time the writer spends inside it, one
figure per run appended to ``ENVELOPE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labctl.db import envelope

ENVELOPE_SECONDS: list[float] = []  # time inside envelope.append, per labctl run with it


@contextlib.contextmanager
def without_envelope() -> Iterator[None]:
    """The writer with the voltage envelope switched off: ``envelope.append`` does nothing meanwhile."""
    real = envelope.append
    envelope.append = lambda *a, **k: None
    try:
        yield
    finally:
        envelope.append = real


@contextlib.contextmanager
def timing_envelope() -> Iterator[None]:
    """Add up the time the writer spends in ``envelope.append`` (its share of a run)."""
    real = envelope.append
    spent = [0.0]

    def timed(*a: object, **k: object) -> None:
        t0 = time.perf_counter()
        real(*a, **k)  # type: ignore[arg-type]
        spent[0] += time.perf_counter() - t0

    envelope.append = timed
    try:
        yield
    finally:
        envelope.append = real
        ENVELOPE_SECONDS.append(spent[0])
