"""Tafel plots: |j| against overpotential with the Butler-Volmer fit, the Tafel lines and j0."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from labctl.core.constants import FARADAY, GAS_CONSTANT, ZERO_CELSIUS_K
from labctl.reports.runview import RunView, TafelCurve
from labctl.reports.style import new_figure, run_colour, save
from labctl.reports.text import fmt

F_FARADAY = FARADAY
R_GAS = GAS_CONSTANT

__all__ = ["F_FARADAY", "R_GAS", "draw_tafel", "fmt_j", "plot_tafel", "tafel_axes", "tafel_model"]

Curve = Callable[[np.ndarray], np.ndarray]


def tafel_model(res: dict[str, dict]) -> tuple[Curve, Curve] | None:
    """(Butler-Volmer j(eta), Tafel line log10|j|(eta)) from the stored Tafel-extrapolation results."""
    j0r = res.get("j0")
    if j0r is None or j0r.get("value") is None:
        return None
    d = j0r.get("data") or {}
    j0 = float(j0r["value"])
    temp = float(d.get("temperature_C", 22.0) or 22.0)
    n = float(d.get("n", 2) or 2)
    f = F_FARADAY / (R_GAS * (temp + ZERO_CELSIUS_K))
    if "b_cell" in res and "alpha" in res:
        a = float(res["alpha"]["value"])
        b = float(res["b_cell"]["value"]) / 1e3

        def bv_sym(eta: np.ndarray) -> np.ndarray:
            return 2 * j0 * np.sinh(a * n * f * eta / 2)

        def line_sym(eta: np.ndarray) -> np.ndarray:
            return math.log10(j0) + np.abs(eta) / b

        return bv_sym, line_sym
    if all(k in res for k in ("alpha_a", "alpha_c", "b_a", "b_c")):
        aa, ac = float(res["alpha_a"]["value"]), float(res["alpha_c"]["value"])
        ba, bc = float(res["b_a"]["value"]) / 1e3, float(res["b_c"]["value"]) / 1e3

        def bv(eta: np.ndarray) -> np.ndarray:
            return j0 * (np.exp(aa * n * f * eta) - np.exp(-ac * n * f * eta))

        def line(eta: np.ndarray) -> np.ndarray:
            return math.log10(j0) + np.where(eta >= 0, eta / ba, -eta / bc)

        return bv, line
    return None


def fmt_j(j: float) -> str:
    a = abs(j)
    if a >= 1e-3:
        return f"{j * 1e3:.3g} mA cm$^{{-2}}$"
    if a >= 1e-8:
        return f"{j * 1e6:.3g} µA cm$^{{-2}}$"
    return f"{j * 1e9:.3g} nA cm$^{{-2}}$"


def draw_tafel(
    ax: Any, curve: TafelCurve, colour: Any, label: str, mark_fit: bool = True, fit_colour: Any = None
) -> None:
    ok = np.isfinite(curve.eta) & np.isfinite(curve.j) & (curve.j != 0)
    ax.semilogy(1e3 * curve.eta[ok], np.abs(curve.j[ok]), ".", ms=2.5, color=colour, alpha=0.5, label=label)
    fcol = colour if fit_colour is None else fit_colour
    model = tafel_model(curve.results)
    if model is None:
        return
    bv, line = model
    d = curve.results["j0"].get("data") or {}
    win = d.get("window_V") or [0.06, float(np.nanmax(np.abs(curve.eta)))]
    lo, hi = float(win[0]), float(win[1])
    j0 = float(curve.results["j0"]["value"])
    for sgn in (1, -1):
        e = sgn * np.linspace(lo, hi, 100)
        ax.semilogy(1e3 * e, np.abs(bv(e)), "-", lw=1.8, color=fcol, zorder=3)
        el = sgn * np.linspace(0, hi, 50)
        ax.semilogy(1e3 * el, 10 ** line(el), "--", lw=1.0, color=fcol, alpha=0.9, zorder=3)
        if mark_fit:
            ax.axvspan(1e3 * min(sgn * lo, sgn * hi), 1e3 * max(sgn * lo, sgn * hi), color="green", alpha=0.06, lw=0)
    unc = curve.results["j0"].get("uncertainty")
    txt = f"j$_0$ = {fmt_j(j0)}" + (f" ± {fmt(100 * unc / j0, 2)} %" if unc else "")
    micro = curve.results.get("j0_micro")
    if micro is not None and micro.get("value") is not None:
        txt += f"\n(micro-polarisation: {fmt_j(float(micro['value']))})"
    ax.semilogy([0], [j0], marker="*", ms=13, color=fcol, mec="black", mew=0.6, ls="none", label=txt, zorder=5)


def tafel_axes(ax: Any, shaded: bool = True) -> None:
    ax.set_xlabel("Overpotential η / mV")
    ax.set_ylabel("|j| / A cm$^{-2}$")
    ax.grid(alpha=0.3, which="both")
    ax.axvline(0, color="0.6", lw=0.6, zorder=0)
    h, lab = ax.get_legend_handles_labels()
    h += [Line2D([], [], color="0.3", lw=1.6), Line2D([], [], color="0.3", lw=1.0, ls="--")]
    lab += ["Butler-Volmer fit" + (" (shaded: fit window)" if shaded else ""), "Tafel lines to η = 0"]
    ax.legend(h, lab, fontsize=8, loc="lower right")


def plot_tafel(view: RunView, path: Path) -> Path | None:
    curves = view.tafel_curves()
    if not curves:
        return None
    fig = new_figure(8.0, 5.8)
    ax = fig.add_subplot()
    for k, c in enumerate(curves):
        lab = "data" if len(curves) == 1 else f"step {c.step_index}"
        draw_tafel(ax, c, run_colour(k), lab, fit_colour="#d62728" if len(curves) == 1 else None)
    tafel_axes(ax)
    ax.set_title(view.title("Tafel plot"), fontsize=11)
    return save(fig, path)
