"""The live web dashboard (``labctl serve``): a FastAPI app over the labctl database.

Needs the ``web`` extra (FastAPI, uvicorn).  ``create_app(db, token=...)`` builds the app;
see ``docs/dashboard.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(db: Any, *, token: Any = None, poll_interval: float = 0.5, warm: bool = True) -> Any:
    """The dashboard app over ``db`` (see :func:`labctl.web.app.create_app`)."""
    from labctl.web.app import create_app as make

    return make(db, token=token, poll_interval=poll_interval, warm=warm)
