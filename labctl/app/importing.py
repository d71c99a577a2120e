"""``labctl import``: instrument files (cyclers, potentiostats) stored as runs.

Each file is read completely (:func:`labctl.importers.read_file`) before anything is
written, so a file labctl cannot read leaves the database as it was.  The run is
``simulated=False``; its ``meta`` records the source file's name, size and sha256, the
reader and its version, and the mapping applied (current sign, cycle definition,
instrument steps -> labctl step kinds, where the charge column came from, the area).
The file's sha256 is claimed in the ``imports`` table (unique) before the run is
opened: the same file imported again is refused with the run that holds it, never
stored twice, also when two imports race.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from labctl.core.conventions import CURRENT_SIGN, CYCLE_DEFINITION
from labctl.db.schema import imports
from labctl.importers import ImportedData, ImportFileError, file_sha256, read_file

__all__ = ["CellInfo", "ImportOutcome", "import_file", "load_cell_file"]


@dataclass
class CellInfo:
    """The cell an imported file was measured on (from ``--cell`` and ``--area``)."""

    label: str | None = None
    kind: str | None = None
    attrs: dict = field(default_factory=dict)
    source: str | None = None  # the cell file


@dataclass
class ImportOutcome:
    path: str
    sha256: str
    run_id: int | None
    duplicate: bool
    format: str | None = None
    n_samples: int = 0
    n_steps: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "sha256": self.sha256,
            "run_id": self.run_id,
            "status": "duplicate" if self.duplicate else "imported",
            "format": self.format,
            "n_samples": self.n_samples,
            "n_steps": self.n_steps,
            "notes": self.notes,
        }


_CELL_KEYS = {"label", "kind", "area_cm2", "area", "cathode_mass_g", "electrolyte", "notes", "we", "ce", "re"}


def load_cell_file(path: str | Path) -> CellInfo:
    """A small YAML cell description: label, kind, area_cm2, cathode_mass_g, ... (errors with line:col)."""
    from labctl.core.errors import Issue, ProtocolError
    from labctl.core.yamlio import load_yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportFileError(f"{p}: cannot read the cell file ({exc.strerror})") from None
    data, pos = load_yaml(text, str(p))
    if not isinstance(data, dict):
        raise ImportFileError(f"{p}:1:1: a cell file is a mapping (label: ..., area_cm2: ...)")
    attrs: dict = {}
    issues = []
    for k, v in data.items():
        ln, col = pos.key((k,)) or (1, 1)
        if k not in _CELL_KEYS:
            issues.append(
                Issue(str(p), ln, col, str(k), "unknown cell field", f"known: {', '.join(sorted(_CELL_KEYS))}")
            )
            continue
        if k in ("area_cm2", "area", "cathode_mass_g"):
            val = _quantity(v, "area" if k != "cathode_mass_g" else "mass")
            if val is None or not val > 0:
                issues.append(
                    Issue(str(p), ln, col, str(k), f"must be a positive number, got {v!r}", "e.g. area_cm2: 1.0")
                )
                continue
            attrs["area_cm2" if k == "area" else k] = val
        else:
            attrs[k] = v
    if issues:
        raise ProtocolError(issues)
    label = attrs.pop("label", None)
    kind = attrs.pop("kind", None)
    return CellInfo(None if label is None else str(label), None if kind is None else str(kind), attrs, str(p))


def _quantity(v: Any, dimension: str) -> float | None:
    """A positive number or a quantity string ('1.2 cm2', '25 mg') in labctl's unit; None if not."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    from labctl.core.units import UnitError, parse_quantity

    try:
        return parse_quantity(v, dimension)
    except (UnitError, KeyError):
        return None


def existing_import(database: Any, sha: str) -> int | bool | None:
    """The run id holding the file with this sha256, True while its import is under way, else None."""
    with database.transaction() as conn:
        row = conn.execute(sa.select(imports.c.run_id).where(imports.c.sha256 == sha)).first()
    if row is None:
        return None
    return True if row.run_id is None else int(row.run_id)


def _claim(database: Any, sha: str, source: str, fmt: str) -> int | None:
    """Insert the sha256; the id of the claim, or None when another import has it."""
    try:
        with database.transaction(write=True) as conn:
            return int(
                conn.execute(
                    imports.insert().values(sha256=sha, source=source, format=fmt, created_unix=time.time())
                ).inserted_primary_key[0]
            )
    except sa.exc.IntegrityError:
        return None


def _release(database: Any, claim_id: int) -> None:
    with database.transaction(write=True) as conn:
        conn.execute(imports.delete().where(imports.c.id == claim_id))


def _protocol_text(path: Path, sha: str, data: ImportedData) -> str:
    lines = [
        f"# imported from {path.name} ({data.format}, read by {data.reader})",
        f"# sha256 {sha}",
        "# the instrument ran its own program; the steps below are as the file records them",
    ]
    for k, s in enumerate(data.steps):
        lines.append(f"# step {k}: {s.kind} cycle {s.cycle}: {s.label} ({s.stop - s.start} samples)")
    return "\n".join(lines) + "\n"


def _integrated(t: np.ndarray, i: np.ndarray) -> np.ndarray:
    if t.size < 2:
        return np.zeros_like(i)
    ii = np.nan_to_num(i)
    return np.concatenate(([0.0], np.cumsum(0.5 * (ii[1:] + ii[:-1]) * np.diff(t))))


def import_file(
    database: Any,
    path: str | Path,
    *,
    cell: CellInfo | None = None,
    area_cm2: float | None = None,
) -> ImportOutcome:
    """Import one file as a run (see the module docstring); a duplicate returns the existing run."""
    p = Path(path)
    if not p.exists():
        raise ImportFileError(f"{p}: no such file")
    if p.is_dir():
        raise ImportFileError(f"{p}: is a directory, not a data file")
    sha = file_sha256(p)
    found = existing_import(database, sha)
    if found is not None:
        rid = None if found is True else int(found)
        return ImportOutcome(str(p), sha, rid, True)
    cell = cell or CellInfo()
    if area_cm2 is not None and not (math.isfinite(area_cm2) and area_cm2 > 0):
        raise ImportFileError(f"--area must be a positive area in cm2, got {area_cm2}")
    area = area_cm2 if area_cm2 is not None else cell.attrs.get("area_cm2")
    data = read_file(p, area_cm2=area)  # everything is read before anything is written
    area_src = "command line (--area)" if area_cm2 is not None else ("cell file" if area is not None else None)
    if area is None and data.area_cm2 is not None:
        area, area_src = data.area_cm2, "file"
    if not data.steps or data.n == 0:
        raise ImportFileError(f"{p}: no data rows")
    attrs = dict(cell.attrs)
    if area is not None:
        attrs["area_cm2"] = float(area)
    kind = cell.kind
    mapping = dict(data.mapping)
    mapping["labctl_current_sign"] = CURRENT_SIGN
    mapping["labctl_cycle_definition"] = CYCLE_DEFINITION
    mapping["area"] = f"{area} cm2 from the {area_src}" if area is not None else "no electrode area known"
    cycler = any(s.params.get("cycling") for s in data.steps)
    if cycler and kind is None:
        kind = "full"
        mapping["cell_kind"] = (
            "'full' from the cycler's charge/discharge steps (CE = discharge / charge); give a cell file "
            "with kind: to change it"
        )
    claim = _claim(database, sha, p.name, data.format)
    if claim is None:
        found = existing_import(database, sha)
        return ImportOutcome(str(p), sha, found if isinstance(found, int) and found is not True else None, True)
    cell_meta = {**attrs, "kind": kind}
    if cell.label is not None:
        cell_meta["label"] = cell.label
    meta = {
        "imported": {
            "source_file": p.name,
            "source_path": str(p.resolve()),
            "size_bytes": p.stat().st_size,
            "sha256": sha,
            "format": data.format,
            "reader": data.reader,
            "mapping": mapping,
            "notes": data.notes,
            "cell_file": cell.source,
        },
        "cell": cell_meta,
    }
    rec = None
    try:
        started = data.started_unix if data.started_unix is not None else p.stat().st_mtime - float(data.t[-1])
        rec = database.open_run(
            protocol_name=f"import:{data.format}",
            protocol_text=_protocol_text(p, sha, data),
            protocol_source=str(p),
            cell_label=cell.label,
            cell_kind=kind,
            cell_attrs=attrs or None,
            channel=f"import:{data.format}",
            simulated=False,
            started_unix=started,
            meta=meta,
        )
        charge = data.charge
        n_total = 0
        for k, s in enumerate(data.steps):
            sl = slice(s.start, s.stop)
            t = data.t[sl]
            q = charge[sl] if charge is not None else _integrated(t, data.current[sl])
            params = dict(s.params)
            if s.params.get("cycling"):
                params["cycle_definition"] = mapping.get("cycle_definition")
                params["charge_source"] = mapping.get("charge_source")
            rec.step_started(k, path=str(k), kind=s.kind, label=s.label, cycle=s.cycle, params=params, t=float(t[0]))
            opt = {}
            for name in ("temperature", "frequency", "z_re", "z_im"):
                arr = getattr(data, name)
                if arr is not None:
                    opt[name] = arr[sl]
            rec.samples(k, s.cycle, t, data.voltage[sl], data.current[sl], q, **opt)
            n_total += s.stop - s.start
            last_q = float(q[-1]) if q.size and np.isfinite(q[-1]) else 0.0
            rec.step_ended(
                k,
                t=float(t[-1]),
                end_reason="imported",
                detail=s.label,
                n_samples=s.stop - s.start,
                charge=last_q,
            )
        rec.event(0.0, "import", f"imported {p.name} ({data.format}) with {data.reader}", {"sha256": sha})
        rec.finish("completed", f"imported from {p.name}", ended_unix=started + float(data.t[-1]))
        run_id = rec.run_id
    except BaseException:
        if rec is not None:
            with contextlib.suppress(Exception):
                rec.finish("failed", "import failed", ended_unix=time.time())
        _release(database, claim)
        raise
    with database.transaction(write=True) as conn:
        conn.execute(imports.update().where(imports.c.id == claim).values(run_id=run_id))
    return ImportOutcome(str(p), sha, run_id, False, data.format, n_total, len(data.steps), list(data.notes))
