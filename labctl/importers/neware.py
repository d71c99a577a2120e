"""Neware BTS binary records (.nda, .ndax) through the NewareNDA package (BSD-3-Clause).

NewareNDA returns one row per record with ``Cycle``, ``Step``, ``Status`` (``CC_Chg``,
``CC_DChg``, ``CV_Chg``, ``CCCV_Chg``, ``Rest``, ...), ``Time`` (s), ``Voltage`` (V),
``Current(mA)``, ``Charge_Capacity(mAh)`` and ``Discharge_Capacity(mAh)`` (the
instrument's counters, reset at each step) and ``Timestamp``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import ImportedData, ImportFileError, step_charge
from .cycler import cycler_steps

CYCLE_MODE = "chg"


def read_neware(path: Path) -> ImportedData:
    try:
        import NewareNDA  # type: ignore[import-untyped]
    except ImportError:
        raise ImportFileError(
            f"{path}: reading Neware {path.suffix} files needs the package NewareNDA "
            "(pip install 'labctl[neware]'), or export the record as CSV from BTSDA"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas deprecation warnings from inside NewareNDA
            df = NewareNDA.read(str(path), cycle_mode=CYCLE_MODE, log_level="ERROR")
    except Exception as exc:  # NewareNDA raises EOFError/ValueError/KeyError/zip errors on bad files
        raise ImportFileError(
            f"{path}: looks like a Neware {path.suffix} file but NewareNDA cannot read it "
            f"({type(exc).__name__}: {exc}); a truncated or damaged file?"
        ) from None
    need = ("Cycle", "Step", "Status", "Time", "Voltage", "Current(mA)")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ImportFileError(f"{path}: Neware record without the column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise ImportFileError(f"{path}: Neware record with no data rows")
    t = df["Time"].to_numpy(np.float64)
    v = df["Voltage"].to_numpy(np.float64)
    i = df["Current(mA)"].to_numpy(np.float64) * 1e-3
    cyc = df["Cycle"].to_numpy(np.int64)
    stp = df["Step"].to_numpy(np.int64)
    status = df["Status"].astype(str).to_numpy()
    steps, kinds = cycler_steps(stp, cyc, status, i)
    bounds = [(s.start, s.stop) for s in steps]
    charge = None
    if "Charge_Capacity(mAh)" in df.columns and "Discharge_Capacity(mAh)" in df.columns:
        qc = step_charge(df["Charge_Capacity(mAh)"].to_numpy(np.float64) * 3.6, bounds)
        qd = step_charge(df["Discharge_Capacity(mAh)"].to_numpy(np.float64) * 3.6, bounds)
        charge = qc - qd  # signed like the current: charge positive, discharge negative
    t0 = 0.0
    started = None
    if "Timestamp" in df.columns:
        try:
            ts = df["Timestamp"].iloc[0]
            started = float(ts.timestamp()) if hasattr(ts, "timestamp") else None
        except (TypeError, ValueError, OverflowError):
            started = None
    t = t - (t[0] if t.size else t0)
    temperature = df["T1"].to_numpy(np.float64) if "T1" in df.columns else None
    version = getattr(NewareNDA, "__version__", "?")
    mapping = {
        "current_sign": "Neware: positive current = charge; kept as is (for a cell whose WE is the "
        "positive electrode, charge is anodic at the WE, labctl's positive)",
        "cycle_definition": f"NewareNDA cycle_mode='{CYCLE_MODE}': a cycle starts at the first charge step "
        "after a discharge; labctl cycle = that number (cycle 1 = the first)",
        "steps": {k: v for k, v in kinds.items()},
        "charge_source": "instrument counters Charge_Capacity(mAh)/Discharge_Capacity(mAh), per step"
        if charge is not None
        else "integrated current (no capacity counters in the file)",
        "time": "NewareNDA Time (test time, s), from the first record",
    }
    return ImportedData(
        source=str(path),
        format="neware-ndax" if path.suffix.lower() == ".ndax" else "neware-nda",
        reader=f"NewareNDA {version}",
        t=t,
        voltage=v,
        current=i,
        steps=steps,
        mapping=mapping,
        charge=charge,
        temperature=temperature,
        started_unix=started,
    )
