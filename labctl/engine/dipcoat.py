"""The dip-coat timing log: immersion and rinse timed against sample ids.

Manual mode prompts an operator at each stage (see :mod:`labctl.app.operator`) and logs
confirmations that come earlier or later than planned (beyond the step's
tolerance) as deviations.  Automated mode drives a :class:`drivers.DipCoater`.
"""

from __future__ import annotations

from typing import Any, Callable

from labctl.core.clock import Clock


def run_dip_coat(step: Any, clock: Clock, operator: Any, coater: Any, event: Callable[..., None]) -> dict:
    cells = ", ".join(step.cells)
    deviations: list[dict] = []

    def check(stage: str, planned: float, actual: float) -> None:
        delta = actual - planned
        if abs(delta) > step.tolerance:
            deviations.append(
                {
                    "stage": stage,
                    "planned_s": planned,
                    "actual_s": actual,
                    "delta_s": delta,
                    "note": f"{stage} {'late' if delta > 0 else 'early'} by {abs(delta):.0f} s",
                }
            )
            event(
                "deviation",
                f"dip-coat {stage}: {'late' if delta > 0 else 'early'} by {abs(delta):.0f} s "
                f"(tolerance {step.tolerance:g} s)",
            )

    if step.mode == "automated":
        coater.immerse(step.solution)
        t_in = clock.now()
        event("dip_coat", f"{cells} immersed in {step.concentration} {step.solution}")
        clock.sleep(step.immersion)
        coater.withdraw()
        t_out = clock.now()
        coater.immerse(step.rinse_solution)
        r_in = clock.now()
        clock.sleep(step.rinse)
        coater.withdraw()
        r_out = clock.now()
        operator_name = step.operator or "dip coater"
    else:
        if operator is None:
            raise RuntimeError("a manual dip_coat step needs an operator (run interactively or pass --operator)")
        t_in = operator.confirm(f"Immerse {cells} in {step.concentration} {step.solution}, then confirm", None)
        event("dip_coat", f"{cells} immersed in {step.concentration} {step.solution}")
        t_out = operator.confirm(
            f"Take {cells} out of the solution ({step.immersion / 60:g} min)", t_in + step.immersion
        )
        check("immersion", step.immersion, t_out - t_in)
        r_in = operator.confirm(f"Put {cells} into {step.rinse_solution} to rinse, then confirm", None)
        r_out = operator.confirm(f"Take {cells} out of the rinse ({step.rinse:g} s)", r_in + step.rinse)
        check("rinse", step.rinse, r_out - r_in)
        operator_name = step.operator or getattr(operator, "name", None)
    event("dip_coat", f"{cells} coated: immersion {(t_out - t_in) / 60:.1f} min, rinse {r_out - r_in:.0f} s")
    return {
        "cells": list(step.cells),
        "solution": step.solution,
        "concentration": step.concentration,
        "rinse_solution": step.rinse_solution,
        "immersion_start": clock.unix(t_in),
        "immersion_end": clock.unix(t_out),
        "rinse_start": clock.unix(r_in),
        "rinse_end": clock.unix(r_out),
        "planned_immersion_s": step.immersion,
        "planned_rinse_s": step.rinse,
        "operator": operator_name,
        "mode": step.mode,
        "deviations": deviations,
    }
