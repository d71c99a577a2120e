"""Quantities the plots draw, taken from a run's results: per-cycle series and the Arrhenius points.

Numbers come from ``labctl.analysis`` (stored or computed for the report); nothing is
re-derived here.  No matplotlib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labctl.reports.runview import CycleSeries, RunView

__all__ = ["ArrheniusData", "arrhenius_data", "capacity_series", "ce_series", "de_series", "hysteresis_series"]


def ce_series(view: RunView) -> CycleSeries | None:
    """Coulombic efficiency per cycle in %: of the full-cell capacities, else of the plated/stripped charge."""
    if view.kind == "full" or (view.kind is None and view.cathode_mass_g):
        s = view.per_cycle("capacity_charge_first", "ce") or view.per_cycle("capacity_discharge_first", "ce")
    else:
        s = view.per_cycle("ce_mean", "ce")
    if s is None:
        return None
    return CycleSeries("CE", "%", s.cycles, 100.0 * s.values)


def hysteresis_series(view: RunView) -> CycleSeries | None:
    s = view.per_cycle("hysteresis", "hysteresis_V")
    return None if s is None else CycleSeries("hysteresis", "mV", s.cycles, 1e3 * s.values)


def capacity_series(view: RunView) -> tuple[CycleSeries, CycleSeries] | None:
    """(charge, discharge) capacity per cycle: mAh/g for full cells, mAh/cm2 (stripped, plated) otherwise."""
    ch = view.per_cycle("capacity_charge_first", "capacity_charge_mAh_g")
    dis = view.per_cycle("capacity_discharge_first", "capacity_discharge_mAh_g")
    if ch is None:
        ch = view.per_cycle("capacity_discharge_first", "capacity_charge_mAh_g")
    if dis is None:
        dis = view.per_cycle("capacity_charge_first", "capacity_discharge_mAh_g")
    if ch is not None and dis is not None:
        return (
            CycleSeries("charge", "mAh/g", ch.cycles, ch.values, "charge"),
            CycleSeries("discharge", "mAh/g", dis.cycles, dis.values, "discharge"),
        )
    qs = view.per_cycle("ce_mean", "q_strip_C")
    qp = view.per_cycle("ce_mean", "q_plate_C")
    if qs is None or qp is None:
        return None
    area = view.area_cm2 or 1.0
    unit = "mAh/cm2" if view.area_cm2 else "mAh"
    return (
        CycleSeries("stripped", unit, qs.cycles, qs.values / 3.6 / area, "stripped"),
        CycleSeries("plated", unit, qp.cycles, qp.values / 3.6 / area, "plated"),
    )


def de_series(view: RunView) -> CycleSeries | None:
    """Polarisation ΔE at 50 % capacity per cycle (V): of its own result, else of the full-cell capacities."""
    return view.per_cycle("dE_50", "dE_50_V") or view.per_cycle("capacity_charge_first", "dE_50_V")


@dataclass
class ArrheniusData:
    temperature_c: np.ndarray
    rct: np.ndarray
    rct_sigma: np.ndarray
    ea: float | None
    ea_sigma: float | None
    ln_a: float | None
    r2: float | None


def arrhenius_data(view: RunView) -> ArrheniusData | None:
    """Rct against temperature with the activation energy: the stored ``Ea`` result, else a fit of the
    spectra's Rct when they span two temperatures or more."""
    ea = view.result_value("Ea")
    rct_by_step = {r.get("step_index"): r for r in view.results if r.get("name") == "Rct"}
    if ea is not None and isinstance(ea.get("data"), dict) and ea["data"].get("temperatures_C"):
        d = ea["data"]
        t = np.asarray(d["temperatures_C"], float)
        r = np.asarray(d["rct_ohm"], float)
        idx = d.get("step_indices") or [None] * t.size
        sig = np.asarray([(rct_by_step.get(i) or {}).get("uncertainty") or np.nan for i in idx], float)
        a = view.result_value("arrhenius_A")
        ln_a = math.log(a["value"]) if a is not None and a.get("value") else None
        return ArrheniusData(t, r, sig, float(ea["value"]), ea.get("uncertainty"), ln_a, d.get("r2"))
    pts = [
        (s.temperature, rct_by_step[s.step_index])
        for s in view.spectra
        if s.step_index in rct_by_step and math.isfinite(s.temperature)
    ]
    if len({round(t * 2) for t, _ in pts}) < 2:
        return None
    t = np.array([p[0] for p in pts])
    r = np.array([float(p[1]["value"]) for p in pts])
    sig = np.array([p[1].get("uncertainty") or np.nan for p in pts], float)
    from labctl.analysis.arrhenius import fit_arrhenius

    res = {x.name: x for x in fit_arrhenius(t, r)}
    return ArrheniusData(
        t,
        r,
        sig,
        res["Ea"].value,
        res["Ea"].uncertainty,
        math.log(res["arrhenius_A"].value),
        res["Ea"].details.get("r2"),
    )
