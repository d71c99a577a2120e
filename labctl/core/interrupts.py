"""Defer Ctrl-C while something must not be cut in half (cell off, final flush).

Inside ``with deferred_interrupt():`` a SIGINT is remembered, not raised; it is
raised as KeyboardInterrupt when the block ends.  Outside the main thread (where
signal handlers cannot be installed) the block runs as is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[object] = []

    def handler(signum: int, frame: object) -> None:
        received.append((signum, frame))

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
