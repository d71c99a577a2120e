"""Readers for the lab's existing instrument files (cyclers and potentiostats).

:func:`read_file` looks at the file's first bytes (not only its extension) and picks
the reader; every reader returns an :class:`ImportedData` in labctl's units and
conventions with the mapping it applied.  A file labctl cannot read raises
:class:`ImportFileError` saying which format it looks like and what is missing.
Heavy or optional libraries (NewareNDA, galvani, access-parser) are imported only
when their format is read.  See docs/importers.md.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .base import ImportedData, ImportedStep, ImportFileError, decode_text, file_sha256, read_bytes

__all__ = ["ImportFileError", "ImportedData", "ImportedStep", "file_sha256", "read_file", "sniff"]

_TEXT_EXT = {".csv", ".txt", ".tsv", ".dat", ".mpt", ".dta", ".asc", ".ascii"}


def sniff(path: Path, head: bytes) -> str:
    """What the file looks like from its first bytes and name."""
    suf = path.suffix.lower()
    if head.startswith(b"NEWARE"):
        return "neware-nda"
    if head.startswith(b"PK\x03\x04"):
        if suf == ".ndax":
            return "neware-ndax"
        if suf in (".xlsx", ".xlsm"):
            return "xlsx"
        return "zip"
    if head.startswith(b"BIO-LOGIC MODULAR FILE"):
        return "biologic-mpr"
    if head[4:19] == b"Standard Jet DB" or head[4:19] == b"Standard ACE DB":
        return "access-db"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "ole2"  # old .xls
    if head.startswith(b"SQLite format 3"):
        return "sqlite"
    if suf == ".pssession" or (
        head.startswith(codecs.BOM_UTF16_LE)
        and "palmsens.datafiles" in head[2:400].decode("utf-16-le", errors="ignore").lower()
    ):
        return "pssession"
    try:
        text, _ = decode_text(path, head)
    except ImportFileError:
        return "binary"
    first = text.lstrip("\ufeff").lstrip()[:40]
    if first.startswith("EC-Lab ASCII FILE"):
        return "biologic-mpt"
    if first.startswith("EXPLAIN"):
        return "gamry-dta"
    from .maccor import looks_maccor
    from .palmsens_csv import looks_palmsens_csv

    if looks_maccor(text):
        return "maccor-text"
    if looks_palmsens_csv(text):
        return "palmsens-csv"
    return "text"


def read_file(path: str | Path, *, area_cm2: float | None = None) -> ImportedData:
    """Read one instrument file (see the module docstring)."""
    p = Path(path)
    raw = read_bytes(p)
    if not raw:
        raise ImportFileError(f"{p}: empty file")
    kind = sniff(p, raw[:4096])
    suf = p.suffix.lower()
    if kind == "neware-nda" and suf != ".nda":
        raise ImportFileError(
            f"{p}: a Neware .nda record (its first bytes are 'NEWARE') named {suf or 'without extension'}, "
            "not a text export; rename it to .nda to import it"
        )
    if kind in ("neware-nda", "neware-ndax"):
        from .neware import read_neware

        return read_neware(p)
    if kind == "zip" and suf == ".nda":
        raise ImportFileError(f"{p}: a zip archive named .nda: a Neware .ndax file? rename it to .ndax")
    if suf in (".nda", ".ndax"):
        raise ImportFileError(
            f"{p}: named {suf} but not a Neware record (an .nda starts with 'NEWARE', an .ndax is a zip archive)"
        )
    if kind == "biologic-mpr":
        from .biologic import read_mpr

        return read_mpr(p, area_cm2=area_cm2)
    if suf == ".mpr":
        raise ImportFileError(f"{p}: named .mpr but not a BioLogic file (it must start with 'BIO-LOGIC MODULAR FILE')")
    if kind == "access-db":
        from .arbin import read_res

        return read_res(p, raw, area_cm2=area_cm2)
    if suf == ".res" and kind != "pssession":
        raise ImportFileError(
            f"{p}: named .res but not an Arbin .res file (an MS Access database, whose bytes 4-19 read "
            "'Standard Jet DB'); a file of another format renamed, or damaged at its start?"
        )
    if kind == "xlsx":
        from .spreadsheet import read_xlsx

        return read_xlsx(p, area_cm2=area_cm2)
    if kind == "ole2":
        raise ImportFileError(
            f"{p}: an old Excel .xls workbook: labctl reads .xlsx and CSV exports; save the data sheet as "
            ".xlsx or CSV (UTF-8) and import that"
        )
    if kind == "pssession":
        from .palmsens import read_pssession

        return read_pssession(p, raw)
    if kind in ("zip", "sqlite", "binary"):
        what = {"zip": "a zip archive", "sqlite": "an SQLite database", "binary": "binary data"}[kind]
        raise ImportFileError(
            f"{p}: {what}, not a text export"
            + (f" although it is named {suf}" if suf in _TEXT_EXT else "")
            + "; labctl reads Neware .nda/.ndax, BioLogic .mpr/.mpt, Gamry .DTA and CSV/text exports"
        )
    if kind == "gamry-dta":
        from .gamry import read_gamry

        d = read_gamry(p)
        if area_cm2 is not None:
            d.area_cm2 = area_cm2
        return d
    if kind == "palmsens-csv":
        from .palmsens_csv import read_palmsens_csv

        return read_palmsens_csv(p, area_cm2=area_cm2)
    if kind == "maccor-text":
        from .maccor import read_maccor

        return read_maccor(p, area_cm2=area_cm2)
    if kind == "biologic-mpt":
        from .biologic import read_mpt

        return read_mpt(p, area_cm2=area_cm2)
    if suf == ".dta":
        raise ImportFileError(f"{p}:1: named .DTA but not a Gamry file (it must start with 'EXPLAIN')")
    from .exports import read_export

    return read_export(p, area_cm2=area_cm2)
