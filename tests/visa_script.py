"""A scripted Transport for message-pair tests of the VISA drivers: the exact commands, in order."""

from __future__ import annotations

from collections.abc import Callable


class ScriptedTransport:
    """Replays ``script``: a list of ``(command, reply)``; ``reply`` None for a write.

    A command other than the next one in the script fails the test with both shown.
    ``replies`` (a function of the command) answers instead, for open-ended runs; every
    command sent is kept in ``sent``.
    """

    address = "scripted"

    def __init__(
        self, script: list[tuple[str, str | None]] | None = None, replies: Callable[[str], str | None] | None = None
    ) -> None:
        self.script = list(script or [])
        self.replies = replies
        self.sent: list[str] = []
        self.is_open = False

    def _next(self, command: str, want_reply: bool) -> str | None:
        self.sent.append(command)
        if self.replies is not None:
            return self.replies(command)
        assert self.script, f"unexpected command after the end of the script: {command!r}"
        expected, reply = self.script.pop(0)
        assert command == expected, f"sent {command!r}, the script expected {expected!r}"
        assert (reply is not None) == want_reply, f"{command!r}: write/query mismatch with the script"
        return reply

    def open(self, timeout: float) -> None:
        self.is_open = True

    def write(self, data: bytes, timeout: float) -> None:
        self._next(data.decode("ascii").rstrip("\r\n"), False)

    def query(self, data: bytes, timeout: float, terminator: bytes = b"\n") -> bytes:
        reply = self._next(data.decode("ascii").rstrip("\r\n"), True)
        return (reply or "").encode("latin-1") + terminator

    def read_line(self, timeout: float, terminator: bytes = b"\n") -> bytes:
        raise AssertionError("the drivers only use write and query")

    def read_bytes(self, n: int, timeout: float) -> bytes:
        raise AssertionError("the drivers only use write and query")

    def discard_input(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False
