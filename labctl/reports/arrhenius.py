"""Arrhenius plots of 1/Rct (from the EIS fits) against 1000/T, with the activation-energy fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.core.constants import ZERO_CELSIUS_K
from labctl.reports.runview import RunView
from labctl.reports.series import ArrheniusData, arrhenius_data
from labctl.reports.style import new_figure, save
from labctl.reports.tafel import R_GAS

__all__ = ["arrhenius_axes", "draw_arrhenius", "plot_arrhenius"]


def draw_arrhenius(ax: Any, a: ArrheniusData, colour: Any, label: str) -> None:
    x = 1000.0 / (a.temperature_c + ZERO_CELSIUS_K)
    y = np.log(1.0 / a.rct)
    yerr = np.where(np.isfinite(a.rct_sigma), a.rct_sigma / a.rct, 0.0)
    ax.errorbar(
        x,
        y,
        yerr=yerr if np.any(yerr > 0) else None,
        fmt="o",
        color=colour,
        ms=6,
        capsize=3,
        label=f"{label}1/R$_{{ct}}$ from EIS fits",
    )
    if a.ea is not None and a.ln_a is not None:
        xx = np.linspace(x.min() - 0.03 * np.ptp(x), x.max() + 0.03 * np.ptp(x), 50)
        yy = a.ln_a - a.ea * 1e3 / R_GAS * (xx / 1000.0)
        ea_txt = f"E$_a$ = {a.ea:.4g}" + (f" ± {a.ea_sigma:.2g}" if a.ea_sigma else "") + " kJ mol$^{-1}$"
        if a.r2 is not None:
            ea_txt += f" (R² = {a.r2:.4f})"
        ax.plot(xx, yy, "-", color=colour, lw=1.3, label=f"{label}fit: {ea_txt}")


def arrhenius_axes(ax: Any) -> None:
    ax.set_xlabel("1000 / T / K$^{-1}$")
    ax.set_ylabel("ln(1/R$_{ct}$ / Ω$^{-1}$)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    sec = ax.secondary_xaxis(
        "top",
        functions=(
            lambda x: 1000.0 / np.maximum(x, 1e-9) - ZERO_CELSIUS_K,
            lambda t: 1000.0 / np.maximum(t + ZERO_CELSIUS_K, 1e-9),
        ),
    )
    sec.set_xlabel("Temperature / °C")


def plot_arrhenius(view: RunView, path: Path) -> Path | None:
    a = arrhenius_data(view)
    if a is None:
        return None
    fig = new_figure(7.5, 5.5)
    ax = fig.add_subplot()
    draw_arrhenius(ax, a, "#1f4e79", "")
    arrhenius_axes(ax)
    ax.set_title(view.title("Arrhenius plot of the charge-transfer resistance"), fontsize=11)
    return save(fig, path)
