"""Small formatting helpers shared by the CLI and the reports."""

from __future__ import annotations

import math


def fmt_duration(seconds: float | None) -> str:
    """``42 s``, ``12.5 min`` or ``1610.00 h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
