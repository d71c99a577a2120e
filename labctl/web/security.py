"""The dashboard's control token: checked on every control request, never echoed.

The browser sends the token in the ``X-Labctl-Token`` header (or ``Authorization: Bearer``),
never in a cookie, so another site cannot make a logged-in browser send it (no CSRF), and
a cross-origin script cannot add the header without a CORS preflight, which this app does
not answer.  The comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException, Request

HEADER = "X-Labctl-Token"


def presented_token(request: Request) -> str | None:
    tok = request.headers.get(HEADER)
    if tok:
        return tok
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def secret_value(token: Any) -> str | None:
    """The plain text of a token given as ``str`` or pydantic ``SecretStr`` (None: control disabled)."""
    if token is None:
        return None
    get = getattr(token, "get_secret_value", None)
    text = get() if callable(get) else str(token)
    return text or None


def check_token(request: Request, expected: str | None) -> None:
    """401 without a token, 403 with a wrong one (or when control is disabled); the detail never
    contains what was sent or what was expected."""
    got = presented_token(request)
    if got is None:
        raise HTTPException(
            status_code=401,
            detail=f"control needs the dashboard token in the {HEADER} header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is None:
        raise HTTPException(status_code=403, detail="control is disabled: no dashboard token is configured")
    if not hmac.compare_digest(got.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(status_code=403, detail="wrong dashboard token")
