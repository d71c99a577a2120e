"""``labctl import``: the lab's instrument files (Neware, BioLogic, Gamry, Nova, CHI, cycler CSV) as runs."""

from __future__ import annotations

from pathlib import Path

import typer

from labctl.cli.common import EXIT_USER, open_db, out, print_error, print_json, user_error_prefix


def import_files(
    files: list[Path] = typer.Argument(..., help="Instrument files (.nda .ndax .mpr .mpt .DTA .csv .txt ...)."),
    cell: str | None = typer.Option(
        None, "--cell", help="Cell label, or a cell file (YAML: label, kind, area_cm2, cathode_mass_g)."
    ),
    area: float | None = typer.Option(
        None, "--area", help="Electrode area, cm2 (overrides the file's and the cell file's)."
    ),
    db: str | None = typer.Option(None, "--db", envvar="LABCTL_DB", help="Database URL."),
    as_json: bool = typer.Option(False, "--json", help="Print each file's run id (and status) as JSON."),
) -> None:
    """Import instrument files as runs; the same file (sha256) is never imported twice.

    Every file is read completely before anything is stored; a file that cannot be read
    stores nothing and makes the exit code 2 (the other files are still imported).
    """
    from labctl.app.importing import CellInfo, import_file, load_cell_file

    failed = False
    try:
        info = CellInfo()
        if cell is not None:
            cp = Path(cell)
            info = (
                load_cell_file(cp) if cp.suffix.lower() in (".yaml", ".yml") or cp.is_file() else CellInfo(label=cell)
            )
    except Exception as e:
        prefix = user_error_prefix(e)
        if prefix is None and not type(e).__name__ == "ImportFileError":
            raise
        print_error(f"{prefix or 'error: '}{e}")
        raise typer.Exit(EXIT_USER) from None
    database = open_db(db)
    results = []
    try:
        for f in files:
            try:
                res = import_file(database, f, cell=info, area_cm2=area)
            except Exception as e:
                prefix = user_error_prefix(e)
                if prefix is None:
                    raise
                failed = True
                print_error(f"{prefix}{e}")
                results.append({"file": str(f), "status": "error", "run_id": None, "error": str(e)})
                continue
            d = res.to_dict()
            results.append(d)
            if as_json:
                continue
            if res.duplicate:
                where = f"run {res.run_id}" if res.run_id is not None else "an import under way"
                out.print(
                    f"{f}: already imported as {where} (sha256 {res.sha256[:12]}...); not imported again",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                out.print(
                    f"{f}: run {res.run_id} ({res.format}, {res.n_steps} steps, {res.n_samples:,} samples)",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
                for n in res.notes:
                    out.print(f"  note: {n}", markup=False, highlight=False, soft_wrap=True)
    finally:
        database.close()
    if as_json:
        print_json(results)
    if failed:
        raise typer.Exit(EXIT_USER)


def register(app: typer.Typer) -> None:
    """Add ``import`` to ``app``."""
    app.command("import")(import_files)
