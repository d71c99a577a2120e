"""Technique handles for drivers whose samples come from an in-process generator.

A simulator (or a driver that already has a blocking generator of blocks) wraps it in
:class:`GeneratorHandle` to meet the :class:`~labctl.drivers.contracts.TechniqueHandle`
contract: ``read`` advances the generator by one block, ``stop`` closes it (the
generator's ``finally`` makes the cell safe), ``state`` follows what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .contracts import READ_TIMEOUT, TechniqueState
from .techniques import EndInfo, SampleBlock


class GeneratorHandle:
    """A started technique backed by a generator of :class:`SampleBlock` s.

    ``on_stop`` runs after the generator is closed by :meth:`stop` (e.g. the driver's ``cell_off``).
    """

    def __init__(self, blocks: Iterator[SampleBlock], on_stop: Callable[[], None] | None = None) -> None:
        self._gen = blocks
        self._state = TechniqueState.RUNNING
        self._end: EndInfo | None = None
        self._on_stop = on_stop

    @property
    def state(self) -> TechniqueState:
        return self._state

    @property
    def end(self) -> EndInfo | None:
        return self._end

    def read(self, timeout: float = READ_TIMEOUT) -> SampleBlock:
        if self._state is not TechniqueState.RUNNING:
            return SampleBlock.empty()
        try:
            block = next(self._gen)
        except StopIteration:
            self._state = TechniqueState.ENDED
            return SampleBlock.empty()
        except BaseException:
            self._state = TechniqueState.FAILED
            self._close()
            raise
        if block.end is not None:
            self._end = block.end
            self._state = TechniqueState.ENDED
            self._close()
        return block

    def stop(self) -> None:
        if self._state is TechniqueState.RUNNING:
            self._state = TechniqueState.STOPPED
        self._close()
        if self._on_stop is not None:
            self._on_stop()

    def _close(self) -> None:
        close = getattr(self._gen, "close", None)
        if close is not None:
            close()
