"""The HTML side of a report: ``index.html`` pages, result tables, run summaries, and the files written.

No matplotlib here: the figures are drawn by callables handed to :func:`draw_figures`.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labctl.reports.runview import RunView
from labctl.reports.text import display_value, electrodes, fmt_duration, result_note

__all__ = [
    "Figures",
    "Report",
    "analysis_errors",
    "comparison_table",
    "draw_figures",
    "esc",
    "figures_html",
    "html_page",
    "notes_html",
    "remove_stale",
    "results_table",
    "summary_rows",
    "write_index",
    "write_json",
]

#: (png path, caption) of the figures a page shows, in order
Figures = list[tuple[Path, str]]


@dataclass
class Report:
    """What a report wrote: ``index`` (index.html), ``files`` (index + PNGs), ``notes`` (what could not be shown)."""

    index: Path
    files: list[Path]
    notes: list[str]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:18px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#444;max-width:1000px}
.note{color:#8a5300} .small{font-size:0.85em;color:#555}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:0.85em}
"""


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def draw_figures(
    out: Path, plots: Sequence[tuple[str, str, Callable[[Path], Path | None]]], notes: list[str]
) -> Figures:
    """Draw each (file name, caption, draw(path) -> path or None) into ``out``; a plot that fails adds a note
    and does not lose the others.  Returns the figures drawn; removes our own files of an earlier report in
    ``out`` that this one did not draw."""
    figures: Figures = []
    for name, caption, draw in plots:
        try:
            p = draw(out / name)
        except Exception as e:
            notes.append(f"{name} could not be drawn: {type(e).__name__}: {e}")
            continue
        if p is not None:
            figures.append((p, caption))
    remove_stale(out, [n for n, _, _ in plots], figures)
    return figures


def remove_stale(out: Path, names: Sequence[str], figures: Sequence[tuple[Path, str]]) -> None:
    """Delete our own plot files left from an earlier report in the same directory that this one did not draw."""
    drawn = {p.name for p, _ in figures}
    for n in names:
        if n not in drawn and (out / n).is_file():
            (out / n).unlink()


def html_page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + f'\n<p class="small">Written by labctl.reports on {time.strftime("%Y-%m-%d %H:%M:%S")}. '
        "Current sign: positive = anodic at the working electrode (stripping from the WE), negative = "
        "cathodic (plating onto the WE). Voltage = WE minus counter.</p>\n</body></html>\n"
    )


def write_index(out: Path, title: str, body: list[str]) -> Path:
    index = out / "index.html"
    index.write_text(html_page(title, body), encoding="utf-8")
    return index


def figures_html(figures: Figures, empty: str) -> list[str]:
    """The 'Plots' section: one <figure> per PNG, or ``empty`` when nothing was drawn."""
    body = ["<h2>Plots</h2>"]
    if not figures:
        body.append(f"<p>{esc(empty)}</p>")
    for p, cap in figures:
        body.append(
            f'<figure><img src="{esc(p.name)}" alt="{esc(p.stem)}"><figcaption>{esc(cap)}</figcaption></figure>'
        )
    return body


def notes_html(notes: Sequence[str]) -> list[str]:
    if not notes:
        return []
    return ["<h2>Notes</h2><ul>" + "".join(f'<li class="note">{esc(n)}</li>' for n in notes) + "</ul>"]


def results_table(results: Sequence[dict]) -> str:
    rows = [r for r in results if r.get("name") != "analysis_error"]
    if not rows:
        return "<p>No results.</p>"
    out = [
        (
            "<table><tr><th>result</th><th>value</th><th>± (1σ)</th><th>unit</th><th>method</th><th>step</th>"
            "<th>notes</th></tr>"
        )
    ]
    for r in rows:
        v, u, unit = display_value(r)
        si = r.get("step_index")
        out.append(
            f'<tr><td>{esc(r.get("name"))}</td><td class="num" title="{esc(r.get("value"))} {esc(r.get("unit"))}">'
            f'{esc(v)}</td><td class="num">{esc(u)}</td><td>{esc(unit)}</td><td>{esc(r.get("method"))}</td>'
            f'<td class="num">{"" if si is None else esc(si)}</td><td class="small">{esc(result_note(r))}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)


def analysis_errors(results: Sequence[dict]) -> list[str]:
    out = []
    for r in results:
        if r.get("name") == "analysis_error":
            d = r.get("data") or {}
            where = f" (step {d['step_index']})" if d.get("step_index") is not None else ""
            out.append(f"{d.get('analysis', 'analysis')}{where}: {d.get('error', '')}")
    return out


def summary_rows(view: RunView) -> list[tuple[str, str]]:
    r = view.run
    c = view.cell
    cell_bits = [str(c.get("id") or r.get("cell"))] if (c.get("id") or r.get("cell")) else []
    if c.get("kind"):
        cell_bits.append(f"{c['kind']}")
    el = electrodes(c)
    if el:
        cell_bits.append(el)
    if c.get("electrolyte"):
        cell_bits.append(str(c["electrolyte"]))
    if c.get("area_cm2"):
        cell_bits.append(f"area {float(c['area_cm2']):.4g} cm2")
    if c.get("cathode_mass_g"):
        cell_bits.append(f"cathode {float(c['cathode_mass_g']) * 1e3:.4g} mg")
    started = r.get("started")
    kinds: dict[str, int] = {}
    for s in view.steps:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    cycles = view.cycles()
    return [
        ("protocol", str(r.get("protocol") or "-")),
        ("cell", ", ".join(cell_bits) or "-"),
        ("status", str(r.get("status") or "-")),
        ("end reason", str(r.get("end_reason") or "-")),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started))) if started else "-"),
        ("duration (test time)", fmt_duration(view.duration)),
        ("samples", f"{view.n_samples:,}"),
        ("steps", f"{len(view.steps)} (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")"),
        ("cycles", f"{cycles[0]}-{cycles[-1]}" if cycles else "-"),
        ("channel", str(r.get("channel") or "-")),
        (
            "instrument",
            f"simulated (preset {r.get('preset')}, seed {r.get('seed')})" if r.get("simulated") else "hardware",
        ),
    ]


def comparison_table(views: Sequence[RunView], labels: Sequence[str]) -> str:
    """One row per result name, one column per run: the first value of each result."""
    names: list[str] = []
    per_run: list[dict[str, dict]] = []
    for v in views:
        m: dict[str, dict] = {}
        for r in v.results:
            n = str(r.get("name"))
            if n in ("analysis_error", "linkk_residual_rms") or n in m:
                continue
            m[n] = r
            if n not in names:
                names.append(n)
        per_run.append(m)
    if not names:
        return "<p>No results.</p>"
    out = ["<table><tr><th>result</th>" + "".join(f"<th>{esc(lab)}</th>" for lab in labels) + "</tr>"]
    for n in names:
        cells = []
        unit = ""
        for m in per_run:
            if n not in m:
                cells.append("<td></td>")
                continue
            val, u, unit = display_value(m[n])
            cells.append(f'<td class="num">{esc(val)}{" ± " + esc(u) if u else ""}</td>')
        out.append(f"<tr><td>{esc(n)}{' / ' + esc(unit) if unit else ''}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _finite(x: Any) -> Any:
    """A copy with NaN/inf replaced by None (strict JSON)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
        return None
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_json(path: Path, data: Any) -> Path:
    """Strict JSON (NaN/inf as null, numpy values as numbers)."""
    path.write_text(json.dumps(_finite(data), indent=1, default=_json_default), encoding="utf-8")
    return path
