"""Text/CSV exports of cyclers and potentiostats: which instrument wrote them, its conventions."""

from __future__ import annotations

from pathlib import Path

from .base import ImportedData
from .table import key, read_table_text, roles, table_to_data

READER = "labctl.importers.table 1"

_CYCLER_SIGN = "cycler export: positive current = charge; kept as is (charge is anodic at a positive-electrode WE)"
_POT_SIGN = "{who}: positive current = anodic at the WE, as labctl's; kept as is"


def vendor_of(names: list[str], preamble: list[str]) -> tuple[str, str, str]:
    """(format, sign note, cycle note) of an export, from its column names and preamble."""
    keys = {key(n) for n in names}
    pre = "\n".join(preamble).lower()
    if any(k.startswith("we(1).") for k in keys) or "potentialapplied(v)" in keys:
        return "nova-ascii", _POT_SIGN.format(who="Metrohm Autolab (Nova)"), "Nova: no cycle column, cycle 0"
    if "ch instruments" in pre or "instrument model:  chi" in pre or "instrument model: chi" in pre:
        return (
            "chi-text",
            "CH Instruments: the current as written in the file (CHI's software can write cathodic "
            "current as positive: check its 'current polarity' setting)",
            "CHI: no cycle column, cycle 0",
        )
    if "palmsens" in pre or "pstrace" in pre:
        return "palmsens-csv", _POT_SIGN.format(who="PalmSens PSTrace"), "PSTrace: one curve, cycle 0"
    if "cycleindex" in keys and ("testtime(s)" in keys or "datapointnumber" in keys or "datapoint" in keys):
        return "arbin-csv", _CYCLER_SIGN, "Arbin Cycle_Index (from 1): labctl cycle = that number"
    if "cyc#" in keys or "amp-hr" in keys:
        return "maccor-csv", _CYCLER_SIGN, "Maccor Cyc# : labctl cycle = that number"
    if any(k.startswith("chargecapacity(mah)") or k.startswith("chgcap") for k in keys) or "cycleid" in keys:
        return "neware-csv", _CYCLER_SIGN, "Neware BTSDA cycle column: labctl cycle = that number"
    r = roles(names)
    if "q_charge" in r or "cycle" in r:
        return "cycler-csv", _CYCLER_SIGN, "the file's cycle column: labctl cycle = that number"
    return "text-table", _POT_SIGN.format(who="text table"), "no cycle column: cycle 0"


def read_export(path: Path, *, area_cm2: float | None = None) -> ImportedData:
    tab = read_table_text(path)
    fmt, sign, cycle = vendor_of(tab.names, tab.preamble)
    d = table_to_data(path, tab, fmt=fmt, reader=READER, area_cm2=area_cm2, sign_note=sign, cycle_note=cycle)
    if fmt in ("nova-ascii", "chi-text", "palmsens-csv", "text-table"):
        for s in d.steps:
            if s.kind == "lsv" and fmt in ("nova-ascii", "chi-text", "text-table"):
                s.label = "tafel: polarisation curve"
    return d
