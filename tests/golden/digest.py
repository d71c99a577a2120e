"""Digest of everything a simulated run records: the oracle that restructurings keep the data.

``python -m tests.golden.digest`` prints the digests of :data:`CASES`; the stored
values in ``tests/golden/digests.json`` were computed before the engine was rewritten.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from labctl.studies.mg_anode import LIBRARY_DIR

ROOT = Path(__file__).resolve().parents[2]
LIB = LIBRARY_DIR

# (protocol file in the library, preset, seed, replicate)
CASES: list[tuple[str, str, int, int]] = [
    ("symmetric-0.5mA", "br-mg", 1, 0),
    ("symmetric-5mA", "bare-mg", 2, 1),
    ("tafel", "bare-mg", 3, 0),
    ("eis-temperature", "br-mg", 4, 2),
    ("aurbach-ce", "br-mg", 5, 0),
    ("ce-longterm-3mA", "bare-mg", 6, 0),
    ("full-cell-0.1C", "br-mg", 7, 1),
    ("rate-current-capacity", "bare-mg", 0, 0),
    ("dip-coat", "br-mg", 8, 0),
]


class CapturingRecorder:
    """Keeps what a run records, in order, for hashing."""

    run_id = 1

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.n = 0
        self.steps: list[tuple] = []

    def _arr(self, a: Any) -> None:
        if a is None:
            self.h.update(b"-")
        else:
            self.h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())

    def step_started(self, index: int, *, path: str, kind: str, label: Any, cycle: int, params: dict, t: float) -> None:
        self.steps.append(("start", index, path, kind, label, cycle, round(t, 6)))

    def samples(
        self, step_index: int, cycle: int, t: Any, voltage: Any, current: Any, charge: Any, **optional: Any
    ) -> None:
        self.h.update(f"{step_index}:{cycle}:{len(t)}".encode())
        for a in (t, voltage, current, charge):
            self._arr(a)
        for name in ("temperature", "frequency", "z_re", "z_im"):
            self._arr(optional.get(name))
        self.n += len(t)

    def step_ended(self, index: int, *, t: float, end_reason: str, detail: str, n_samples: int, charge: float) -> None:
        self.steps.append(("end", index, round(t, 6), end_reason, n_samples))

    def event(self, *a: Any, **k: Any) -> None: ...
    def checkpoint(self, *a: Any, **k: Any) -> None: ...
    def flush(self, *a: Any, **k: Any) -> None: ...
    def finish(self, status: str, end_reason: str, ended_unix: float) -> None:
        self.final = (status, end_reason)

    def close(self) -> None: ...

    def digest(self) -> str:
        h = self.h.copy()
        h.update(json.dumps(self.steps, default=str).encode())
        h.update(json.dumps(self.final).encode())
        return h.hexdigest()


class _CapturingDb:
    def __init__(self) -> None:
        self.rec = CapturingRecorder()

    def open_run(self, **kw: Any) -> CapturingRecorder:
        return self.rec

    def add_coating(self, **kw: Any) -> None: ...


def run_digest(name: str, preset: str, seed: int, replicate: int) -> tuple[str, int]:
    from labctl.app.controller import SimSettings, run_protocol

    db = _CapturingDb()
    run_protocol(LIB / f"{name}.yaml", db=db, sim=SimSettings(preset, seed=seed, replicate=replicate), speed="max")
    return db.rec.digest(), db.rec.n


if __name__ == "__main__":
    out = {}
    for case in CASES:
        d, n = run_digest(*case)
        out["/".join(map(str, case))] = {"sha256": d, "samples": n}
        print(case, n, d, file=sys.stderr)
    print(json.dumps(out, indent=1))
