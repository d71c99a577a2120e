"""Parameter recovery end to end: a user's preset with random numbers is simulated with the
library protocols, stored, analysed (labctl analyze), and gives its numbers back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from labctl.db import Database
from labctl.app.controller import SimSettings, run_protocol
from labctl.app.results import analyze_and_store
from labctl.studies.mg_anode import LIBRARY_DIR

LIB = LIBRARY_DIR
R = 8.314462618


def random_preset(rng: np.random.Generator) -> dict:
    aur = rng.uniform(93.0, 98.0)
    return {
        "j0_uA": float(np.exp(rng.uniform(np.log(0.05), np.log(2.0)))),
        "rs": float(rng.uniform(2.0, 50.0)),
        "rct": float(np.exp(rng.uniform(np.log(2e4), np.log(1e6)))),
        "ea": float(rng.uniform(25.0, 60.0)),
        "aurbach": float(aur),
        "ce_lt": float(min(aur + rng.uniform(0.6, 1.5), 99.7)),
        "h05": float(rng.uniform(40.0, 150.0)),
        "h5_factor": float(rng.uniform(1.3, 2.5)),
    }


def preset_text(p: dict) -> str:
    return f"""name: user-random
base: br-mg
kinetics: {{j0: {p["j0_uA"]:.6g} uA/cm2}}
impedance: {{rs: {p["rs"]:.6g} ohm, rct: {p["rct"]:.6g} ohm, activation_energy: {p["ea"]:.6g} kJ/mol}}
symmetric:
  hysteresis: {{0.5 mA/cm2: {p["h05"]:.6g} mV, 5 mA/cm2: {p["h05"] * p["h5_factor"]:.6g} mV}}
  life: {{0.5 mA/cm2: 300 h, 5 mA/cm2: 40 h}}
asymmetric:
  aurbach: {{ce: {p["aurbach"]:.6g} %, reservoir: 5 mAh/cm2, cycles: 20, cycle_capacity: 0.5 mAh/cm2,
            current_density: 0.5 mA/cm2, cutoff: 1.0 V}}
  ce: {{0.5 mA/cm2: {p["ce_lt"]:.6g} %, 3 mA/cm2: {p["ce_lt"]:.6g} %}}
"""


def results_of(db: Database, protocol: str, preset: Path, seed: int) -> dict[str, list[dict]]:
    out = run_protocol(LIB / f"{protocol}.yaml", db=db, sim=SimSettings(str(preset), seed, 0))
    assert out.status == "completed", out.end_reason
    by: dict[str, list[dict]] = {}
    for r in analyze_and_store(db, out.run_id):
        by.setdefault(r["name"], []).append(r)
    return by


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_random_preset_parameters_come_back(tmp_path: Path, seed: int):
    p = random_preset(np.random.default_rng(seed))
    preset = tmp_path / "user-random.yaml"
    preset.write_text(preset_text(p))
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}")

    tafel = results_of(db, "tafel", preset, seed)
    assert tafel["j0"][0]["value"] * 1e6 == pytest.approx(p["j0_uA"], rel=0.05)

    rt = results_of(db, "eis-rt", preset, seed)
    assert rt["Rs"][0]["value"] == pytest.approx(p["rs"], rel=0.03)
    assert rt["Rct"][0]["value"] == pytest.approx(p["rct"], rel=0.03)

    temp = results_of(db, "eis-temperature", preset, seed)
    assert temp["Ea"][0]["value"] == pytest.approx(p["ea"], rel=0.03)
    # Rct at 60 C follows Arrhenius from the room-temperature value (22 C)
    r60 = [r for r in temp["Rct"] if abs((r["data"].get("temperature_C") or 0) - 60) < 0.5]
    expect60 = p["rct"] * math.exp(p["ea"] * 1e3 / R * (1 / 333.15 - 1 / 295.15))
    assert r60 and r60[0]["value"] == pytest.approx(expect60, rel=0.05)

    aur = results_of(db, "aurbach-ce", preset, seed)
    assert aur["ce_aurbach"][0]["value"] * 100 == pytest.approx(p["aurbach"], abs=0.3)

    sym = results_of(db, "symmetric-5mA", preset, seed)
    assert sym["hysteresis"][-1]["value"] * 1e3 == pytest.approx(p["h05"] * p["h5_factor"], rel=0.05)
    assert sym["t_short"][0]["value"] / 3600 == pytest.approx(40, rel=0.15)
    db.close()
