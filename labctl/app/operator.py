"""Operators answer the prompts of manual steps (dip coating).

``confirm(prompt, due)`` returns the clock time at which the operator confirmed.
``due`` is the clock time the action is planned for (None: as soon as ready).

- :class:`ConsoleOperator`: a person at the terminal, with a live countdown (rich).
- :class:`SimulatedOperator`: confirms at the planned time plus a seeded delay, for
  ``--sim`` rehearsals and tests (advances the virtual clock).
"""

from __future__ import annotations

import select
import sys
from typing import TextIO

import numpy as np

from labctl.core.clock import Clock


class SimulatedOperator:
    def __init__(
        self,
        clock: Clock,
        *,
        name: str = "simulated operator",
        seed: int = 0,
        delay_s: float = 5.0,
        jitter_s: float = 10.0,
        delays: list[float] | None = None,
    ) -> None:
        self.clock = clock
        self.name = name
        self._rng = np.random.default_rng(seed)
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self._delays = list(delays) if delays is not None else None
        self.prompts: list[str] = []

    def confirm(self, prompt: str, due: float | None) -> float:
        self.prompts.append(prompt)
        if self._delays:
            extra = self._delays.pop(0)
        else:
            extra = self.delay_s + abs(self._rng.normal(0.0, self.jitter_s))
        target = (self.clock.now() if due is None else due) + extra
        self.clock.sleep_until(target)
        return self.clock.now()


class ConsoleOperator:
    """Prompts on the terminal; shows a countdown to ``due``; Enter confirms."""

    def __init__(self, clock: Clock, *, name: str | None = None, stream: TextIO | None = None) -> None:
        self.clock = clock
        self.name = name
        self.stream = stream or sys.stdin

    def confirm(self, prompt: str, due: float | None) -> float:
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=True)
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while True:
                now = self.clock.now()
                if due is None:
                    live.update(f"[bold]{prompt}[/] - press Enter")
                else:
                    left = due - now
                    sign = "" if left >= 0 else "overdue by "
                    m, s = divmod(int(abs(left)), 60)
                    h, m = divmod(m, 60)
                    live.update(f"[bold]{prompt}[/] - {sign}{h:d}:{m:02d}:{s:02d} - press Enter when done")
                ready, _, _ = select.select([self.stream], [], [], 0.25)
                if ready:
                    self.stream.readline()
                    t = self.clock.now()
                    console.print(f"confirmed: {prompt}")
                    return t
