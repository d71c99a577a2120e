"""``labctl demo``: the Mg anode study's campaign on simulated instruments (what ``make demo`` runs).

A thin wrapper: :mod:`labctl.studies.mg_anode.demo` plans, runs, analyses and
reports; this module shows the progress and prints the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from labctl.cli.common import open_db, user_errors


@user_errors
def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the report and the table."),
    db: str | None = typer.Option(
        None, "--db", envvar="LABCTL_DB", help="Database URL (default: the embedded SQLite database)."
    ),
    replicates: int = typer.Option(3, help="Replicate cells per anode."),
    workers: int = typer.Option(0, help="Worker processes (default: one per core)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON to this file."),
) -> None:
    """Reproduce the study's table on simulated instruments: both anodes, replicates, analysed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from labctl.studies.mg_anode.demo import ANODES, format_sd, plan_demo, run_demo

    con = Console()
    database = open_db(db)
    specs = plan_demo(replicates)
    n_experiments = len({Path(s.protocol).stem for s in specs})
    con.print(
        f"demo: {len(specs)} simulated runs ({n_experiments} experiments x {len(ANODES)} anodes x "
        f"{replicates} replicates) into {database.url}"
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=con
    ) as bar:
        task = bar.add_task("running and analysing", total=len(specs))
        result = run_demo(
            database,
            out,
            specs=specs,
            workers=workers,
            on_done=lambda r: bar.update(
                task,
                advance=1,
                description=f"{Path(r.spec.protocol).stem} {r.spec.preset} #{r.spec.replicate + 1}: {r.status}",
            ),
        )

    tab = Table(title="Mg anode study: paper vs labctl (simulated, mean +- sd over replicates)")
    for c in ("quantity", "anode", "paper", "labctl mean", "sd", "diff", "ok"):
        tab.add_column(c, justify="right" if c not in ("quantity", "anode") else "left")
    for row in result.table:
        tab.add_row(
            row["quantity"],
            row["anode"],
            f"{row['paper']:.4g} {row['unit']}",
            f"{row['mean']:.4g} {row['unit']}",
            format_sd(row["sd"]),
            f"{row['diff']:+.2f} {row['diff_unit']}",
            "yes" if row["within_tolerance"] else "NO",
        )
    con.print(tab)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.summary, indent=2, default=str))
    n_ok = result.summary["within_tolerance"]
    t_sim, t_total = result.t_sim, result.t_total
    con.print(
        f"{n_ok}/{len(result.table)} within tolerance (10 %, CE 0.3 pp); {len(result.done)} runs, "
        f"{sum(r.n_samples for r in result.done):,} samples; {t_total:.0f} s "
        f"(simulate, store and analyse {t_sim:.0f} s, reports {t_total - t_sim:.0f} s)"
    )
    con.print(f"report: {(out / 'index.html').resolve()}")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command()(demo)
