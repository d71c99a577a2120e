"""A study plugs in by folders: presets and protocols by name, stated cell metadata, no study in the core."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.app.controller import SimSettings, UserError, cell_attributes, run_protocol
from labctl.cli import app
from labctl.core.errors import ProtocolError
from labctl.core.folders import FolderRegistry
from labctl.db import Database
from labctl.protocols import (
    library,
    library_dirs,
    load_protocol,
    register_library_dir,
    unregister_library_dir,
)
from labctl.simulators.presets import (
    available_presets,
    load_preset,
    preset_dirs,
    register_preset_dir,
    unregister_preset_dir,
)
from labctl.studies.mg_anode import LIBRARY_DIR, PRESET_DIR

ROOT = Path(__file__).resolve().parent.parent

TINY = """name: tiny-rest
description: one minute at open circuit
cell: {kind: symmetric, id: TINY-1, working: Zn, counter: Zn, area: 1 cm2}
steps:
  - rest: {duration: 60 s, record_every: 10 s}
"""


# --------------------------------------------------------------------------- the study's folders


def test_the_study_registers_its_presets_and_library_through_entry_points():
    groups = {
        g: {ep.name: ep.value for ep in importlib.metadata.entry_points(group=g)}
        for g in ("labctl.presets", "labctl.protocol_libraries")
    }
    assert groups["labctl.presets"]["mg_anode"] == "labctl.studies.mg_anode:PRESET_DIR"
    assert groups["labctl.protocol_libraries"]["mg_anode"] == "labctl.studies.mg_anode:LIBRARY_DIR"
    assert PRESET_DIR in preset_dirs() and LIBRARY_DIR in library_dirs()
    assert available_presets() == {p.stem: p for p in sorted(PRESET_DIR.glob("*.yaml"))}
    assert library()["symmetric-0.5mA"] == LIBRARY_DIR / "symmetric-0.5mA.yaml"
    # the core keeps the protocol language only; the YAML library lives with the study
    assert not (ROOT / "protocols" / "library").exists() and not (ROOT / "simulators" / "presets").exists()


def test_core_code_names_no_study():
    """Outside labctl/studies/ no code names the study's anodes (docs and tests may)."""
    pattern = re.compile(r"bare-mg|br-mg|Br-Mg|bare Mg")
    allowed = {ROOT / "labctl" / "studies"}
    pending: set[Path] = set()
    hits = []
    for top in ("labctl", "protocols", "simulators", "drivers", "db"):
        for p in sorted((ROOT / top).rglob("*.py")):
            if any(p == a or a in p.parents for a in allowed | pending):
                continue
            for n, line in enumerate(p.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


# --------------------------------------------------------------------------- registering folders


def test_register_preset_dir_makes_a_preset_loadable_by_name(tmp_path: Path):
    (tmp_path / "zn-foil.yaml").write_text(
        "base: br-mg\nname: zn-foil\ncell: {label: Zn foil, sei: false}\nkinetics: {j0: 1 uA/cm2}\n"
    )
    with pytest.raises(ProtocolError, match=r"unknown preset 'zn-foil' \(hint: available presets: bare-mg, br-mg;"):
        load_preset("zn-foil")
    register_preset_dir(tmp_path)
    try:
        assert preset_dirs()[0] == tmp_path.resolve()
        assert available_presets()["zn-foil"] == tmp_path.resolve() / "zn-foil.yaml"
        p = load_preset("zn-foil")
        assert p.kinetics.j0 == pytest.approx(1e-6) and p.cell.label == "Zn foil" and p.cell.sei is False
        assert p.cell.eis_model == load_preset("br-mg").cell.eis_model  # inherited from the base
        missing = pytest.raises(ProtocolError, load_preset, str(tmp_path / "nope.yaml"))
        assert "available presets: bare-mg, br-mg, zn-foil" in str(missing.value)
    finally:
        unregister_preset_dir(tmp_path)
    assert "zn-foil" not in available_presets()
    with pytest.raises(ValueError, match="not a folder"):
        register_preset_dir(tmp_path / "missing")


def test_register_library_dir_makes_a_protocol_loadable_by_name(tmp_path: Path):
    (tmp_path / "tiny-rest.yaml").write_text(TINY)
    with pytest.raises(ProtocolError, match="library protocols: aurbach-ce, ce-longterm-0.5mA"):
        load_protocol("tiny-rest")
    register_library_dir(tmp_path)
    try:
        assert load_protocol("tiny-rest").name == "tiny-rest"
        assert "tiny-rest" in library() and "symmetric-0.5mA" in library()
        r = CliRunner().invoke(app, ["validate", "tiny-rest", "symmetric-0.5mA"])
        assert r.exit_code == 0, r.output
    finally:
        unregister_library_dir(tmp_path)
    assert "tiny-rest" not in library()


def _folder() -> Path:
    return Path(__file__).resolve().parent / "data"


def test_entry_points_may_name_a_path_or_a_callable_and_broken_ones_warn(monkeypatch, tmp_path: Path):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    eps = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint("by_call", f"{__name__}:_folder", "g"),
            importlib.metadata.EntryPoint("by_path", "labctl.studies.mg_anode:PRESET_DIR", "g"),
            importlib.metadata.EntryPoint("broken", "no_such_module_xyz:X", "g"),
        ]
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps if group == "g" else ())
    reg = FolderRegistry("g", "test folder")
    with pytest.warns(UserWarning, match="'broken'"):
        folders = reg.folders()
    # sorted by entry-point name: by_call, by_path ('broken' skipped)
    assert folders == [_folder(), PRESET_DIR]
    reg.register(tmp_path)
    assert reg.folders()[0] == tmp_path.resolve() and reg.files()["a"] == tmp_path.resolve() / "a.yaml"
    empty = FolderRegistry("nothing-here", "test folder")
    assert "no test folders are registered" in empty.describe()


# --------------------------------------------------------------------------- the simulated cell is what the preset says


def test_simulating_without_a_preset_is_a_user_error_listing_the_presets():
    with pytest.raises(
        UserError,
        match=r"needs a preset: --preset NAME or --preset FILE.yaml "
        r"\(available presets: bare-mg, br-mg\)",
    ):
        run_protocol(load_protocol(LIBRARY_DIR / "eis-rt.yaml"), sim=SimSettings(None))
    with pytest.raises(TypeError):
        SimSettings()  # type: ignore[call-arg]


def test_a_run_records_the_presets_cell_section(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    try:
        proto = load_protocol(LIBRARY_DIR / "eis-rt.yaml")
        attrs = {}
        for name in ("bare-mg", "br-mg"):
            out = run_protocol(proto, db=db, sim=SimSettings(name, seed=1))
            attrs[name] = db.run(out.run_id)["meta"]["cell"]
        assert attrs["br-mg"]["label"] == "Br-Mg" and attrs["br-mg"]["sei"] is True
        assert attrs["br-mg"]["eis_model"] == "R0-p(R1,CPE1)-p(R2,CPE2)"
        assert attrs["bare-mg"]["eis_model"] == {"0": "R0-p(R1,CPE1)", "1": "R0-p(R1,CPE1)-p(R2,CPE2)"}
        assert attrs["bare-mg"]["label"] == "bare Mg" and attrs["bare-mg"]["sei"] is False
        assert attrs["bare-mg"]["area_cm2"] == pytest.approx(1.267)  # the protocol's cell is kept
    finally:
        db.close()
    # without a preset (hardware): only what the protocol states; nothing guessed from electrode names
    plain = cell_attributes(proto)
    assert "anode" not in plain and "eis_model" not in plain and plain["working"] == "Br-Mg"


def test_a_preset_whose_eis_model_does_not_parse_is_refused_before_the_run(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: br-mg\nname: bad\ncell:\n  eis_model: R0-X1\n")
    db = Database(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    try:
        with pytest.raises(ProtocolError, match=r"bad.yaml: cell.eis_model: the EIS model is not a valid circuit"):
            run_protocol(load_protocol(LIBRARY_DIR / "eis-rt.yaml"), db=db, sim=SimSettings(str(bad)))
        assert db.runs() == []
    finally:
        db.close()
