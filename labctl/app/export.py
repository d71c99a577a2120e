"""Export a run's samples with Battery Data Format (BDF) column names, streamed in chunks.

The CSV starts with ``#`` comment lines stating the run, the current sign
convention and the cycle definition, so a file read years later is unambiguous.
Parquet files carry the same statements in their key/value metadata.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from labctl.core.conventions import CURRENT_SIGN, CYCLE_DEFINITION

COLUMNS = [
    "Test Time / s",
    "Unix Time / s",
    "Voltage / V",
    "Current / A",
    "Cycle Count / 1",
    "Step Count / 1",
    "Step Index / 1",
    "Charging Capacity / Ah",
    "Discharging Capacity / Ah",
    "Step Charge / Ah",
    "Temperature T1 / degC",
    "Frequency / Hz",
    "Impedance Real / Ohm",
    "Impedance Imaginary / Ohm",
]


def header_lines(run: dict) -> list[str]:
    return [
        f"labctl export of run {run['id']}: protocol {run.get('protocol')}, cell {run.get('cell')}, "
        f"status {run.get('status')} ({run.get('end_reason')})",
        f"simulated: {bool(run.get('simulated'))}, preset: {run.get('preset')}, seed: {run.get('seed')}",
        f"current sign: {CURRENT_SIGN}",
        f"cycle: {CYCLE_DEFINITION}",
        "Step Count: run-wide counter of executed steps (1-based); Step Index: position of the step in the "
        "protocol (the same for every repetition of a step)",
        "Charging/Discharging Capacity: charge passed in the step with positive/negative current, Ah "
        "(magnitudes); Step Charge: signed charge in the step, Ah",
    ]


def _step_index_map(steps: list[dict]) -> dict[int, int]:
    """Run-wide step counter -> position of that step in the protocol (repetitions share it)."""
    ids: dict[str, int] = {}
    out = {}
    for s in steps:
        key = re.sub(r"/cycle \d+", "/cycle *", s.get("path") or str(s["step_index"])) + "|" + (s.get("label") or "")
        out[s["step_index"]] = ids.setdefault(key, len(ids) + 1)
    return out


def _frame(chunk: dict[str, np.ndarray], unix0: float, index_map: dict[int, int]) -> dict[str, np.ndarray]:
    t = chunk["t"]
    q_ah = chunk["charge"] / 3600.0
    step = chunk["step_index"].astype(np.int64)
    lut_keys = np.fromiter(index_map.keys(), dtype=np.int64)
    lut_vals = np.fromiter(index_map.values(), dtype=np.int64)
    order = np.argsort(lut_keys)
    pos = np.searchsorted(lut_keys[order], step)
    pos = np.clip(pos, 0, max(len(order) - 1, 0))
    step_idx = lut_vals[order][pos] if len(order) else step
    return {
        "Test Time / s": t,
        "Unix Time / s": unix0 + t,
        "Voltage / V": chunk["voltage"],
        "Current / A": chunk["current"],
        "Cycle Count / 1": chunk["cycle"].astype(np.int64),
        "Step Count / 1": step,
        "Step Index / 1": step_idx,
        "Charging Capacity / Ah": np.where(q_ah > 0, q_ah, 0.0),
        "Discharging Capacity / Ah": np.where(q_ah < 0, -q_ah, 0.0),
        "Step Charge / Ah": q_ah,
        "Temperature T1 / degC": chunk["temperature"],
        "Frequency / Hz": chunk["frequency"],
        "Impedance Real / Ohm": chunk["z_re"],
        "Impedance Imaginary / Ohm": chunk["z_im"],
    }


def export_run(db: Any, run_id: int, path: Path, fmt: str = "csv") -> int:
    """Write run ``run_id`` to ``path``; returns the number of rows.  Written to a temporary
    file first and renamed, so a failed export leaves nothing half-written."""
    run = db.run(run_id)
    index_map = _step_index_map(db.steps(run_id))
    unix0 = float(run.get("started") or 0.0)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    n = 0
    try:
        if fmt == "csv":
            with open(tmp, "w", newline="") as f:
                for line in header_lines(run):
                    f.write(f"# {line}\n")
                f.write(",".join(COLUMNS) + "\n")
                for chunk in db.iter_samples(run_id):
                    frame = _frame(chunk, unix0, index_map)
                    n += _write_csv_chunk(f, frame)
        elif fmt == "parquet":
            n = _write_parquet(tmp, db, run_id, run, unix0, index_map)
        else:
            raise ValueError(f"unknown format {fmt}")
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


_FMT = {
    "Test Time / s": "%.3f",
    "Unix Time / s": "%.3f",
    "Voltage / V": "%.6g",
    "Current / A": "%.6g",
    "Cycle Count / 1": "%d",
    "Step Count / 1": "%d",
    "Step Index / 1": "%d",
    "Charging Capacity / Ah": "%.6g",
    "Discharging Capacity / Ah": "%.6g",
    "Step Charge / Ah": "%.6g",
    "Temperature T1 / degC": "%.4g",
    "Frequency / Hz": "%.6g",
    "Impedance Real / Ohm": "%.6g",
    "Impedance Imaginary / Ohm": "%.6g",
}


_ROW_FMT = ",".join(_FMT[name] for name in COLUMNS)


def _write_csv_chunk(f: Any, frame: dict[str, np.ndarray]) -> int:
    """Format a chunk row by row with one %-format (C speed); NaN becomes an empty field."""
    n = len(frame["Test Time / s"])
    if n == 0:
        return 0
    cols = [frame[name].tolist() for name in COLUMNS]
    fmt = _ROW_FMT
    text = "\n".join([fmt % row for row in zip(*cols)])
    text = text.replace(",nan", ",").replace(",nan", ",")
    f.write(text)
    f.write("\n")
    return n


def _write_parquet(tmp: Path, db: Any, run_id: int, run: dict, unix0: float, index_map: dict[int, int]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        from labctl.app.controller import UserError

        raise UserError("parquet export needs pyarrow: pip install 'labctl[parquet]'") from None
    meta = {f"labctl.{i}": line for i, line in enumerate(header_lines(run))}
    writer = None
    n = 0
    try:
        for chunk in db.iter_samples(run_id):
            frame = _frame(chunk, unix0, index_map)
            table = pa.table({k: frame[k] for k in COLUMNS})
            if writer is None:
                table = table.replace_schema_metadata(meta)
                writer = pq.ParquetWriter(str(tmp), table.schema)
            else:
                table = table.replace_schema_metadata(meta)
            writer.write_table(table)
            n += table.num_rows
        if writer is None:
            empty = pa.table({k: pa.array([], pa.float64()) for k in COLUMNS}).replace_schema_metadata(meta)
            pq.write_table(empty, str(tmp))
    finally:
        if writer is not None:
            writer.close()
    return n
