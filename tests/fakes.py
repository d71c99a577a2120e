"""A minimal potentiostat for engine tests: no native limits, scripted voltage, fault injection."""

from __future__ import annotations

from typing import Callable

import numpy as np

from labctl.drivers.contracts import Capabilities
from labctl.drivers.handles import GeneratorHandle
from labctl.drivers.techniques import ConstantCurrent, OpenCircuit, SampleBlock


class FakePotentiostat:
    """Streams blocks of ``block`` samples every ``dt`` s; voltage = ``voltage_fn(t_in_technique, current)``.

    It enforces no limits itself (like an SMU driven by a host loop), so the engine must.
    ``fail_after_blocks``: raise ``fail_with`` after that many blocks (fault injection).
    """

    def __init__(
        self,
        clock,
        *,
        voltage_fn: Callable[[np.ndarray, float], np.ndarray] | None = None,
        dt: float = 1.0,
        block: int = 50,
        fail_after_blocks: int | None = None,
        fail_with: BaseException | None = None,
    ) -> None:
        self.clock = clock
        self.voltage_fn = voltage_fn or (lambda t, i: np.full_like(t, 0.1 * np.sign(i) if i else 0.0))
        self.dt = dt
        self.block = block
        self.fail_after_blocks = fail_after_blocks
        self.fail_with = fail_with
        self.capabilities = Capabilities(
            techniques=frozenset({"ocp", "cp", "ca", "lsv", "cv", "eis"}), native_limits=False, model="fake"
        )
        self.cell_off_calls = 0
        self.blocks_sent = 0
        self.closed_early = 0
        self.cell_on = False

    def connect(self, timeout: float = 10.0) -> None: ...

    def identify(self) -> str:
        return "fake"

    def cell_off(self) -> None:
        self.cell_off_calls += 1
        self.cell_on = False

    def close(self) -> None:
        self.cell_off()

    def release(self) -> None: ...

    def start(self, technique) -> GeneratorHandle:
        return GeneratorHandle(self.run(technique), on_stop=self.cell_off)

    def run(self, technique):
        current = technique.current if isinstance(technique, ConstantCurrent) else 0.0
        t0 = self.clock.now()
        k = 0
        self.cell_on = not isinstance(technique, OpenCircuit)
        try:
            while True:
                if self.fail_after_blocks is not None and self.blocks_sent >= self.fail_after_blocks:
                    raise self.fail_with
                rel = (np.arange(self.block) + 1 + k * self.block) * self.dt
                t = t0 + rel
                v = np.asarray(self.voltage_fn(rel, current), dtype=float)
                i = np.full(self.block, current)
                self.clock.sleep_until(t[-1])
                self.blocks_sent += 1
                k += 1
                yield SampleBlock(t, v, i)
        except GeneratorExit:
            self.closed_early += 1
            raise
