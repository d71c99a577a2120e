"""Impedance spectra: Nyquist (with a high-frequency zoom) and Bode plots, data and fitted circuits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.lines import Line2D

from labctl.reports.runview import RunView, Spectrum
from labctl.reports.style import (
    RUN_COLOURS,
    TEMPERATURE_CMAP,
    Figure,
    new_figure,
    ohm_scale,
    ohm_text,
    save,
)

__all__ = [
    "SpecStyle",
    "bode_figure",
    "eis_styles",
    "nyquist_figure",
    "plot_bode",
    "plot_nyquist",
    "spectra_mode",
    "spectrum_colours",
    "step_label",
]


@dataclass
class SpecStyle:
    """How one spectrum is drawn: colour, legend label, marker."""

    spectrum: Spectrum
    colour: Any
    label: str
    marker: str = "o"


def step_label(sp: Spectrum, mode: str) -> str:
    if mode == "temperature" and math.isfinite(sp.temperature):
        return f"{sp.temperature:.1f} °C"
    if mode == "cycle":
        return f"after cycle {sp.cycle}" if sp.cycle else "before cycling"
    if math.isfinite(sp.temperature):
        return f"step {sp.step_index}, {sp.temperature:.1f} °C"
    return f"step {sp.step_index}"


def spectra_mode(spectra: Sequence[Spectrum]) -> str:
    """What tells the spectra apart: 'temperature', 'cycle' or 'step'."""
    temps = {round(s.temperature * 2) / 2 for s in spectra if math.isfinite(s.temperature)}
    if len(temps) > 1:
        return "temperature"
    if len({s.cycle for s in spectra}) > 1:
        return "cycle"
    return "step"


def spectrum_colours(spectra: Sequence[Spectrum], mode: str, cmap_name: str | None = None) -> list:
    """Colours of spectra: by temperature (blue cold, red hot), else distinct colours; with ``cmap_name``
    (one run of several in a comparison) shades of that colour map."""
    n = len(spectra)
    if n == 0:
        return []
    if mode == "temperature":
        temps = np.array([s.temperature for s in spectra], float)
        lo, hi = float(np.nanmin(temps)), float(np.nanmax(temps))
        pos = [0.5 if not math.isfinite(t) or hi == lo else (t - lo) / (hi - lo) for t in temps]
        if cmap_name:
            return [matplotlib.colormaps[cmap_name](0.35 + 0.6 * p) for p in pos]
        return [TEMPERATURE_CMAP(p) for p in pos]
    if cmap_name:
        cmap = matplotlib.colormaps[cmap_name]
        return [cmap(0.85 if n == 1 else 0.35 + 0.6 * k / (n - 1)) for k in range(n)]
    if n <= 10:
        return RUN_COLOURS[:n]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(k / (n - 1)) for k in range(n)]


def eis_styles(spectra: Sequence[Spectrum]) -> tuple[list[SpecStyle], str]:
    mode = spectra_mode(spectra)
    cols = spectrum_colours(spectra, mode)
    return [SpecStyle(sp, c, step_label(sp, mode)) for sp, c in zip(spectra, cols)], mode


def _valley_re(z: np.ndarray) -> float | None:
    """Z' at the first local minimum of -Z'' after it has risen (the end of the fastest arc), going from
    high to low frequency along a smooth (fitted) curve; None when there is no such valley."""
    y = -z.imag
    rising = False
    for i in range(1, y.size - 1):
        if y[i] > y[i - 1]:
            rising = True
        elif rising and y[i + 1] > y[i]:
            return float(z.real[i])
    return None


def _hf_zoom(spectra: Sequence[Spectrum]) -> tuple[float, float] | None:
    """Z' range of a high-frequency zoom when the high-frequency features (Rs intercept, interphase arc)
    are tiny next to the whole spectrum: up to the valley after the fastest arc when the data show one,
    else three times the sum of the fitted resistances other than the largest (Rs + R_SEI)."""
    his, full, lows = [], [], []
    for sp in spectra:
        if sp.z.size == 0:
            continue
        full.append(float(np.nanmax(sp.z.real)))
        lows.append(float(np.nanmin(sp.z.real)))
        fc = sp.fit_curve(600)
        if fc is not None and sp.circuit is not None and sp.params is not None:
            v = _valley_re(fc[1][np.argsort(fc[0])[::-1]])
            if v is not None:
                his.append(1.5 * v)
                continue
            from labctl.analysis.circuit import parse_circuit

            c = parse_circuit(sp.circuit)
            rs = sorted(float(sp.params[e.index]) for e in c.elements if e.type == "R")
            if len(rs) >= 2:
                his.append(3.0 * sum(rs[:-1]))
        else:
            his.append(20.0 * max(float(np.nanmin(sp.z.real)), 1e-12))
    if not his or not full:
        return None
    hi = max(his)
    if hi <= min(lows) or hi > 0.1 * max(full):
        return None
    return 0.0, hi


def _fit_summary(sp: Spectrum) -> str:
    return ", ".join(f"{k} {ohm_text(sp.fitted[k])}" for k in ("Rs", "R_SEI", "Rct") if k in sp.fitted)


def _fit_legend(ax: Any, styles: Sequence[SpecStyle], fontsize: int = 8, below: float = 0.13) -> None:
    """One entry per spectrum (points = data, line = fit, with the fitted resistances when few)."""
    circuits = sorted({st.spectrum.circuit for st in styles if st.spectrum.circuit})
    title = ("points: data, lines: fit " + " / ".join(circuits)) if circuits else "points: data (no fit)"
    kw: dict[str, Any] = {}
    if len(styles) > 12:
        ax.legend([], [], title=title, title_fontsize=fontsize, fontsize=fontsize)
        return
    handles, labels = [], []
    for st in styles:
        fitted = st.spectrum.circuit is not None
        handles.append(
            Line2D([], [], color=st.colour, marker=st.marker, mfc="none", ms=4, ls="-" if fitted else "none", lw=1.3)
        )
        summary = _fit_summary(st.spectrum) if len(styles) <= 6 else ""
        labels.append(st.label + (f" ({summary})" if summary else ""))
    if len(handles) > 4:  # below the axes, not over the data
        kw = {"loc": "upper center", "bbox_to_anchor": (0.5, -below), "ncol": 2 if len(handles) > 5 else 1}
    ax.legend(handles, labels, title=title, title_fontsize=fontsize, fontsize=fontsize, **kw)


def _colourbar_if_many(fig: Figure, ax: Any, styles: Sequence[SpecStyle], mode: str) -> None:
    """With many spectra, a colour bar replaces the legend entries."""
    if len(styles) <= 12:
        return
    sps = [s.spectrum for s in styles]
    cmap: Colormap
    if mode == "temperature":
        vals = [s.temperature for s in sps]
        cmap, label = TEMPERATURE_CMAP, "temperature / °C"
    else:
        vals = [s.cycle if mode == "cycle" else k for k, s in enumerate(sps)]
        cmap, label = matplotlib.colormaps["viridis"], "cycle" if mode == "cycle" else "spectrum"
    sm = ScalarMappable(norm=Normalize(np.nanmin(vals), np.nanmax(vals)), cmap=cmap)
    fig.colorbar(sm, ax=ax, label=label, shrink=0.8)


def _draw_nyquist(ax: Any, styles: Sequence[SpecStyle], scale: float, unit: str, legend: bool = True) -> None:
    for st in styles:
        z = st.spectrum.z
        ax.plot(
            z.real / scale, -z.imag / scale, ls="none", marker=st.marker, ms=4, mfc="none", mew=0.9, color=st.colour
        )
        fc = st.spectrum.fit_curve(600)
        if fc is not None:
            zf = fc[1]
            ax.plot(zf.real / scale, -zf.imag / scale, "-", lw=1.3, color=st.colour)
    ax.set_xlabel(f"$Z'$ / {unit}")
    ax.set_ylabel(f"$-Z''$ / {unit}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.axhline(0, color="0.6", lw=0.5, zorder=0)
    if legend:
        _fit_legend(ax, styles)


def nyquist_figure(styles: Sequence[SpecStyle], mode: str, path: Path, title: str) -> Path:
    """Nyquist plot of styled spectra (one run's or several runs'), with a high-frequency zoom when it helps."""
    spectra = [s.spectrum for s in styles]
    zmax = max(float(np.nanmax(np.abs(s.z))) for s in spectra)
    scale, unit = ohm_scale(zmax)
    zoom = _hf_zoom(spectra)
    fig = new_figure(12.0 if zoom else 8.0, 5.8)
    if zoom:
        ax, az = fig.subplots(1, 2, width_ratios=[1.5, 1])
    else:
        ax, az = fig.add_subplot(), None
    _draw_nyquist(ax, styles, scale, unit)
    ax.set_title(title, fontsize=11)
    _colourbar_if_many(fig, ax, styles, mode)
    if az is not None and zoom is not None:
        zs, zu = ohm_scale(zoom[1])
        _draw_nyquist(az, styles, zs, zu, legend=False)
        w = (zoom[1] - zoom[0]) / zs
        az.set_aspect("equal", adjustable="box")
        az.set_xlim(zoom[0] / zs, zoom[1] / zs)
        az.set_ylim(-0.05 * w, 0.75 * w)
        az.set_title("high-frequency region", fontsize=10)
        ax.axvspan(zoom[0] / scale, zoom[1] / scale, color="orange", alpha=0.25, lw=0)
    return save(fig, path)


def bode_figure(styles: Sequence[SpecStyle], mode: str, path: Path, title: str) -> Path:
    """Bode plot (|Z| and phase against frequency) of styled spectra, data as points and fits as lines."""
    fig = new_figure(8.0, 6.5)
    am, ap = fig.subplots(2, 1, sharex=True)
    for st in styles:
        sp = st.spectrum
        am.loglog(
            sp.frequency,
            np.abs(sp.z),
            ls="none",
            marker=st.marker,
            ms=3.5,
            mfc="none",
            mew=0.8,
            color=st.colour,
            label=st.label,
        )
        ap.semilogx(
            sp.frequency,
            -np.degrees(np.angle(sp.z)),
            ls="none",
            marker=st.marker,
            ms=3.5,
            mfc="none",
            mew=0.8,
            color=st.colour,
        )
        fc = sp.fit_curve()
        if fc is not None:
            am.loglog(fc[0], np.abs(fc[1]), "-", lw=1.2, color=st.colour)
            ap.semilogx(fc[0], -np.degrees(np.angle(fc[1])), "-", lw=1.2, color=st.colour)
    am.set_ylabel("|Z| / Ω")
    ap.set_ylabel("−phase / °")
    ap.set_xlabel("Frequency / Hz")
    for a in (am, ap):
        a.grid(alpha=0.3, which="both")
    am.set_title(title, fontsize=11)
    _fit_legend(ap, styles, below=0.2)
    _colourbar_if_many(fig, am, styles, mode)
    return save(fig, path)


def plot_nyquist(view: RunView, path: Path) -> Path | None:
    spectra = view.nonempty_spectra()
    if not spectra:
        return None
    styles, mode = eis_styles(spectra)
    return nyquist_figure(styles, mode, path, view.title("Nyquist plot"))


def plot_bode(view: RunView, path: Path) -> Path | None:
    spectra = view.nonempty_spectra()
    if not spectra:
        return None
    styles, mode = eis_styles(spectra)
    return bode_figure(styles, mode, path, view.title("Bode plot"))
