"""Every library protocol validates and runs on simulated instruments with both presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.controller import SimSettings, run_protocol
from protocols import load_protocol

LIB = sorted((Path(__file__).resolve().parent.parent / "protocols" / "library").glob("*.yaml"))


@pytest.mark.parametrize("preset", ["bare-mg", "br-mg"])
@pytest.mark.parametrize("path", LIB, ids=[p.stem for p in LIB])
def test_library_protocol_runs(path: Path, preset: str):
    proto = load_protocol(path)
    out = run_protocol(proto, sim=SimSettings(preset, seed=11, replicate=0))
    assert out.status == "completed", out.end_reason
    assert out.n_samples > 0 or path.stem == "dip-coat"
    kinds = {s.kind for s in out.steps}
    assert kinds, "no step ran"
    if proto.cell.kind == "symmetric" and "until: short_circuit" in proto.text:
        assert "short" in out.end_reason
