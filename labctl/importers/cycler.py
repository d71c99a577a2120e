"""Steps of a battery cycler's record: status names mapped onto labctl step kinds.

Cyclers (Neware, Arbin, Maccor) name each step's mode: charge or discharge at constant
current (CC), constant voltage (CV), both (CCCV), rest.  labctl stores such a step as
``galvanostatic`` (CC), ``potentiostatic`` (CV) or ``rest``; every charge or discharge
step carries ``params['cycling'] = True`` so the cycling analysis counts a CC step and
the CV step after it as one charge (a cycle's charge is the sum of its steps).
"""

from __future__ import annotations

import re

import numpy as np

from .base import ImportedStep, segments

_REST = re.compile(r"rest|pause|ocv|open|^r$|^o$", re.I)
_CYCLING = re.compile(r"chg|charge|^c$|^d$|^cc|^cv", re.I)


def status_kind(status: str, mean_current: float) -> tuple[str, bool]:
    """(labctl step kind, is a charge/discharge step) for a cycler's status name."""
    low = str(status).strip().lower().replace("-", "_").replace(" ", "_")
    if _REST.search(low):
        return "rest", False
    if _CYCLING.search(low):
        if "cccv" in low or "cc_cv" in low or low.startswith("cc"):
            return "galvanostatic", True  # CC, or CC-CV: a step that starts at constant current
        if low.startswith("cv") or "_cv" in low:
            return "potentiostatic", True
        return "galvanostatic", True
    if mean_current == 0:
        return "rest", False
    return "galvanostatic", True


def cycler_steps(
    step_no: np.ndarray,
    cycle: np.ndarray,
    status: np.ndarray | None,
    current: np.ndarray,
) -> tuple[list[ImportedStep], dict]:
    """labctl steps from a cycler's per-row step number, cycle number and status."""
    key = np.stack([step_no.astype(np.int64), cycle.astype(np.int64)], axis=1)
    # rows where either the step number or the cycle changes start a new step
    change = np.nonzero(np.any(key[1:] != key[:-1], axis=1))[0] + 1 if key.shape[0] > 1 else np.array([], int)
    starts = np.concatenate(([0], change)).astype(int)
    stops = np.concatenate((change, [key.shape[0]])).astype(int)
    steps: list[ImportedStep] = []
    kinds: dict[str, str] = {}
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        st = str(status[a]) if status is not None else ""
        mean_i = float(np.mean(current[a:b])) if b > a else 0.0
        if status is None:
            st = "rest" if abs(mean_i) == 0 else ("charge" if mean_i > 0 else "discharge")
        kind, cyc = status_kind(st, mean_i)
        kinds[st] = kind
        params = {"instrument_step": int(step_no[a]), "instrument_status": st}
        if cyc:
            params["cycling"] = True
        steps.append(ImportedStep(kind, f"{st} (step {int(step_no[a])})", int(cycle[a]), a, b, params))
    return steps, kinds


def sign_steps(current: np.ndarray) -> np.ndarray:
    """A step number per row from the sign of the current (for records without step numbers)."""
    sgn = np.sign(current).astype(np.int64)
    out = np.zeros(current.shape[0], dtype=np.int64)
    for k, (a, b) in enumerate(segments(sgn)):
        out[a:b] = k + 1
    return out
