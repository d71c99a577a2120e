"""The small Protocols the engine depends on, implemented elsewhere (``labctl.db``, ``labctl.app``).

The engine never imports the database or a terminal: it talks to a :class:`Recorder`
and, for manual steps, an :class:`Operator`.  Both are structural (``typing.Protocol``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Recorder(Protocol):
    """Where a run's records go, in order.  Times ``t`` are test time (s since the run started).

    ``samples`` must not block on storage (queue and return).  ``checkpoint`` stores the
    engine's state at a step or cycle boundary, enough to resume there.  ``finish`` records
    the final status and reason; ``close`` flushes and releases.  A recorder for an instrument
    that runs a whole protocol on its own (a battery cycler) receives harvested samples through
    the same ``samples`` call, with the instrument's own step and cycle numbers already mapped.
    """

    run_id: int | None

    def step_started(
        self, index: int, *, path: str, kind: str, label: str | None, cycle: int, params: dict[str, Any], t: float
    ) -> None: ...

    def samples(
        self,
        step_index: int,
        cycle: int,
        t: np.ndarray,
        voltage: np.ndarray,
        current: np.ndarray,
        charge: np.ndarray,
        **optional: np.ndarray | None,
    ) -> None: ...

    def step_ended(
        self, index: int, *, t: float, end_reason: str, detail: str, n_samples: int, charge: float
    ) -> None: ...

    def event(self, t: float, kind: str, message: str, data: dict[str, Any] | None = None) -> None: ...

    def checkpoint(self, t: float, state: dict[str, Any]) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def finish(self, status: str, end_reason: str, ended_unix: float) -> None: ...

    def close(self) -> None: ...


class NullRecorder:
    """A recorder that keeps nothing (dry runs, unit tests)."""

    run_id: int | None = None

    def step_started(self, *a: Any, **k: Any) -> None: ...
    def samples(self, *a: Any, **k: Any) -> None: ...
    def step_ended(self, *a: Any, **k: Any) -> None: ...
    def event(self, *a: Any, **k: Any) -> None: ...
    def checkpoint(self, *a: Any, **k: Any) -> None: ...
    def flush(self, *a: Any, **k: Any) -> None: ...
    def finish(self, *a: Any, **k: Any) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class Operator(Protocol):
    """A person (or a simulated one) who confirms manual actions.

    ``confirm(prompt, due)`` returns the clock time at which the action was confirmed;
    ``due`` is the clock time it is planned for (None: as soon as ready).
    """

    def confirm(self, prompt: str, due: float | None) -> float: ...
