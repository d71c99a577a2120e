"""XLSX exports (Arbin MITS Pro, Neware BTSDA, Maccor) through openpyxl (MIT; ``pip install 'labctl[xlsx]'``).

The data sheet is the first sheet whose first row names a potential and a current column
(Arbin puts them in ``Channel_1-006``-like sheets after an ``Info`` sheet); its columns are
then read like a CSV export's (labctl.importers.exports): the same names, units, step,
cycle and counter columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ImportedData, ImportFileError
from .table import Table, roles, table_to_data


def read_xlsx(path: Path, *, area_cm2: float | None = None) -> ImportedData:
    try:
        import openpyxl  # type: ignore[import-untyped]
    except ImportError:
        raise ImportFileError(
            f"{path}: reading XLSX exports needs the optional package openpyxl (pip install 'labctl[xlsx]'), "
            "or save the data sheet as CSV"
        ) from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException on damaged files
        raise ImportFileError(
            f"{path}: an XLSX file that openpyxl cannot open ({exc}); a truncated or damaged file?"
        ) from None
    try:
        seen = []
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            head = next(rows, None)
            if head is None:
                continue
            names = ["" if h is None else str(h).strip() for h in head]
            while names and names[-1] == "":
                names.pop()
            seen.append(ws.title)
            r = roles(names)
            if not (("voltage" in r or "applied" in r) and ("current" in r or "density" in r)):
                continue
            n = len(names)
            num: list[list[float]] = [[] for _ in range(n)]
            txt: list[list[str]] = [[] for _ in range(n)]
            for row in rows:
                if row is None or all(v is None for v in row[:n]):
                    continue
                for k in range(n):
                    v = row[k] if k < len(row) else None
                    if isinstance(v, bool) or v is None:
                        num[k].append(np.nan)
                        txt[k].append("")
                    elif isinstance(v, int | float):
                        num[k].append(float(v))
                        txt[k].append(str(v))
                    else:
                        try:
                            num[k].append(float(str(v).replace(",", ".")))
                        except ValueError:
                            num[k].append(np.nan)
                        txt[k].append(str(v))
            if not num[0]:
                raise ImportFileError(f"{path}: sheet {ws.title!r} has a header but no data rows")
            text_cols = {k: np.array(txt[k], dtype=object) for k in range(n)}
            tab = Table(names, [np.array(c, float) for c in num], 1, 2, "xlsx", [], text_cols)
            from .exports import vendor_of

            fmt, sign, cycle = vendor_of(names, [])
            d = table_to_data(
                path,
                tab,
                fmt=f"{fmt}:xlsx",
                reader=f"openpyxl {openpyxl.__version__}",
                area_cm2=area_cm2,
                sign_note=sign,
                cycle_note=cycle,
            )
            d.mapping["sheet"] = ws.title
            return d
    finally:
        wb.close()
    raise ImportFileError(
        f"{path}: no sheet whose first row names a potential and a current column (sheets: {', '.join(seen) or 'none'})"
    )
