"""Every library protocol validates and runs on simulated instruments with both presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labctl.app.controller import SimSettings, run_protocol
from labctl.protocols import load_protocol
from labctl.studies.mg_anode import LIBRARY_DIR

LIB = sorted(LIBRARY_DIR.glob("*.yaml"))


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


def _short_cycle(reason: str) -> int:
    m = re.search(r"short-circuited at [\d.]+ h \(cycle (\d+)\)", reason)
    assert m, reason
    return int(m.group(1))


def test_rate_tests_bare_mg_fails_at_5_mA_cm2_br_mg_cycles_to_15():
    """The study: bare Mg fails at 5 mA/cm2 / 5 mAh/cm2, Br-Mg cycles up to 15 mA/cm2 / 15 mAh/cm2."""
    lib = LIB[0].parent
    bare = run_protocol(lib / "rate-current-capacity.yaml", sim=SimSettings("bare-mg", seed=0))
    # 10 cycles per rate: 1/1, 2/2, then 5/5 -> the short falls in cycles 21-30
    assert 21 <= _short_cycle(bare.end_reason) <= 30
    br = run_protocol(lib / "rate-current-capacity.yaml", sim=SimSettings("br-mg", seed=0))
    assert br.end_reason == "protocol completed"
    stepped = run_protocol(lib / "rate-stepped.yaml", sim=SimSettings("bare-mg", seed=0))
    assert 31 <= _short_cycle(stepped.end_reason) <= 40  # 0.5, 1, 2, then the 5 mA/cm2 block
