"""Who owns a running run, and whether that owner is still alive.

Every run being recorded has an owner (``host:pid``) and a heartbeat that its writer
thread refreshes (every ``Database.heartbeat_interval`` seconds, and with every
commit).  A run marked ``running`` whose owner is gone, a process that no longer
exists on this host, or a heartbeat older than ``stale_after`` seconds from another
host, is *interrupted*: listed so by ``labctl runs``/``status``, the workers and the
dashboard, and resumable (``labctl resume RUN``).
"""

from __future__ import annotations

import os
import socket
import time

#: A heartbeat older than this (s) means the owner is gone, for owners on other hosts.
STALE_AFTER = 60.0


def owner_id() -> str:
    """This process as a run owner: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_gone(
    owner: str | None, heartbeat_unix: float | None, *, now: float | None = None, stale_after: float = STALE_AFTER
) -> str | None:
    """Why the owner of a running run is gone, or None while it is alive."""
    now = time.time() if now is None else now
    if owner:
        host, _, pid = owner.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            if not _pid_alive(int(pid)):
                return f"its process {owner} no longer exists"
            if int(pid) == os.getpid():
                return None
    if heartbeat_unix is None:
        return None if owner is None else "it never reported a heartbeat"
    age = now - heartbeat_unix
    if age > stale_after:
        return f"no heartbeat from {owner or 'its owner'} for {age:.0f} s"
    return None


def effective_status(
    status: str, owner: str | None, heartbeat_unix: float | None, *, stale_after: float = STALE_AFTER
) -> tuple[str, str | None]:
    """``(status, why)``: a ``running`` run whose owner is gone is ``interrupted``."""
    if status != "running":
        return status, None
    why = owner_gone(owner, heartbeat_unix, stale_after=stale_after)
    return ("interrupted", why) if why else (status, None)
