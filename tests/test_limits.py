"""Resource limits checked before anything runs: steps, samples, database growth; preflight; option ranges.

Each case of issue 10 "measured today" that exhausted the machine or left a run row behind
is here with the numbers it must be refused with.
"""

from __future__ import annotations

import os
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.core.errors import ProtocolError
from labctl.core.limits import DEFAULT_MAX_SAMPLES, ResourceLimits
from labctl.protocols import check_limits, estimate_run, load_protocol, load_protocol_text
from labctl.studies.mg_anode import LIBRARY_DIR

CELL = "cell: {kind: symmetric, working: Mg, counter: Mg, area: 1 cm2}\n"
VALUES = "[" + ", ".join(str(i) for i in range(1, 31)) + "]"


def nested_for_each(depth: int = 4) -> str:
    """Four for_each loops of 30 values around one rest: 810,000 steps in under 1 kB."""

    def nest(indent: int, names: list[str]) -> str:
        pad = " " * indent
        if not names:
            return f"{pad}- rest: {{duration: 1 s}}\n"
        inner = " " * (indent + 4)
        return f"{pad}- for_each:\n{inner}as: {names[0]}\n{inner}values: {VALUES}\n{inner}steps:\n" + nest(
            indent + 6, names[1:]
        )

    return "name: nested\n" + CELL + "steps:\n" + nest(2, list("abcd")[:depth])


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def n_runs(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as c:
        try:
            return c.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


# --------------------------------------------------------------------------- steps


def test_nested_for_each_810k_steps_is_refused_fast_with_bounded_memory(tmp_path: Path) -> None:
    text = nested_for_each()
    assert len(text.encode()) < 1000
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ProtocolError) as e:
        load_protocol_text(text, "nested.yaml")
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    msg = str(e.value)
    assert "nested.yaml:4:5: steps[0]: the protocol expands to 810,000 steps, over the limit of 10,000" in msg
    assert "30 x 30 x 30 x 30 for_each values" in msg
    assert "--max-steps" in msg and "LABCTL_MAX_STEPS" in msg
    assert elapsed < 0.5, elapsed
    assert peak < 20e6, peak  # bytes: the expansion (GBs) is never built


def test_the_step_limit_is_raised_by_max_steps() -> None:
    text = nested_for_each(depth=2)  # 900 steps
    with pytest.raises(ProtocolError, match="expands to 900 steps, over the limit of 100"):
        load_protocol_text(text, "two.yaml", max_steps=100)
    p = load_protocol_text(text, "two.yaml", max_steps=1000)
    assert estimate_run(p).steps == 900


def test_a_million_written_steps_are_refused_before_parsing(tmp_path: Path) -> None:
    f = tmp_path / "million.yaml"
    f.write_text("name: big\n" + CELL + "steps:\n" + "  - rest: {duration: 1 s, record_every: 1 s}\n" * 600_000)
    assert f.stat().st_size > 26e6
    t0 = time.perf_counter()
    r = invoke("validate", str(f))
    elapsed = time.perf_counter() - t0
    assert r.exit_code == 2
    assert f"{f}:10004:5: steps: the file has about 600,000 steps written out" in r.output
    assert "over the limit of 10,000 steps" in r.output and "--max-steps" in r.output
    assert "Traceback" not in r.output
    assert elapsed < 3.0, elapsed


def test_aurbach_cycles_count_as_steps() -> None:
    text = (
        "name: a\n" + CELL + "steps:\n  - aurbach_ce: {current: 0.5 mA, reservoir: 5 mAh, cycle_capacity: 1 mAh, "
        "strip_cutoff: 1 V, cycles: 100000}\n"
    )
    with pytest.raises(ProtocolError, match="200,002 steps, over the limit of 10,000"):
        load_protocol_text(text, "a.yaml")


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize(
    ("step", "expect"),
    [
        ("- rest: {duration: 1 h, record_every: 1 ns}", "3,600,000,000,001 samples"),
        ("- galvanostatic: {current: 1 mA, duration: 100000 years}", "315,576,000,001 samples"),
        ("- potentiostatic: {potential: 0.1 V, duration: 20 years, record_every: 1 s}", "631,152,001 samples"),
    ],
)
def test_runs_that_would_record_too_many_samples_are_refused(tmp_path: Path, step: str, expect: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("name: p\n" + CELL + "steps:\n  " + step + "\n")
    r = invoke("validate", str(f))
    assert r.exit_code == 2, r.output
    assert f"{f}:4:5: steps[0]." in r.output
    assert expect in r.output and f"over the limit of {DEFAULT_MAX_SAMPLES:,}" in r.output
    assert "--max-samples" in r.output and "LABCTL_MAX_SAMPLES" in r.output
    db = tmp_path / "lab.sqlite"
    r = invoke("run", str(f), "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}")
    assert r.exit_code == 2 and "over the limit" in r.output
    assert n_runs(db) == 0


def test_repeat_iterations_multiply_samples_and_max_samples_raises_the_limit(tmp_path: Path) -> None:
    text = (
        "name: r\n" + CELL + "steps:\n  - repeat:\n      times: 1000\n      steps:\n"
        "        - galvanostatic: {current: 1 mA, duration: 1 h, record_every: 1 s}\n"
    )
    p = load_protocol_text(text, "r.yaml")
    est = estimate_run(p)
    assert est.samples == pytest.approx(1000 * 3601)
    assert est.duration == pytest.approx(1000 * 3600)
    with pytest.raises(ProtocolError, match=r"3,601,000 samples .* over the limit of 1,000,000"):
        check_limits(p, ResourceLimits(max_samples=1_000_000))
    assert check_limits(p, ResourceLimits(max_samples=4_000_000)).samples == est.samples


def test_max_duration_bounds_an_open_ended_repeat() -> None:
    text = (
        "name: u\n" + CELL + "safety: {voltage: [-2.5 V, 2.5 V], current: 20 mA, max_duration: 100 h}\nsteps:\n"
        "  - repeat:\n      until: short_circuit\n      max_cycles: 100000000\n      steps:\n"
        "        - galvanostatic: {current: 1 mA, duration: 1 h}\n"
    )
    est = estimate_run(load_protocol_text(text, "u.yaml"))
    assert est.samples <= 100 * 3600 / 10 + 10
    assert est.duration == pytest.approx(100 * 3600)


def test_every_library_protocol_is_within_the_default_limits() -> None:
    for f in sorted(Path(LIBRARY_DIR).glob("*.yaml")):
        est = check_limits(load_protocol(f), ResourceLimits(check_disk=False))
        assert 0 <= est.samples < DEFAULT_MAX_SAMPLES, f


def test_database_growth_against_free_disk_space(tmp_path: Path) -> None:
    text = "name: d\n" + CELL + "steps:\n  - rest: {duration: 1000 h, record_every: 1 s}\n"
    p = load_protocol_text(text, "d.yaml")
    est = check_limits(p, free=10**12)
    assert est.db_bytes() == pytest.approx(3_600_001 * 64)
    with pytest.raises(
        ProtocolError, match=r"write about 230 MB to the database .* but the database's disk has 100 MB"
    ):
        check_limits(p, free=100_000_000)
    assert check_limits(p, ResourceLimits(check_disk=False), free=100_000_000) is not None


def test_run_refuses_a_run_the_disk_cannot_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    f = tmp_path / "d.yaml"
    f.write_text("name: d\n" + CELL + "steps:\n  - rest: {duration: 1000 h, record_every: 1 s}\n")
    db = tmp_path / "lab.sqlite"
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 50_000_000, 50_000_000))
    r = invoke("run", str(f), "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}")
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert r.exit_code == 2, r.output
    assert "write about 230 MB to the database" in r.output and "50 MB free" in r.output
    assert "--no-disk-check" in r.output
    assert n_runs(db) == 0


# --------------------------------------------------------------------------- preflight


@pytest.mark.parametrize(
    ("eis", "field", "value"),
    [
        ("{f_start: 1 THz, f_end: 1 Hz}", "f_start", "1e+12 Hz"),
        ("{f_start: 1 Hz, f_end: 1e-300 Hz}", "f_end", "1e-300 Hz"),
    ],
)
def test_eis_outside_the_instruments_range_fails_preflight_without_a_run_row(
    tmp_path: Path, eis: str, field: str, value: str
) -> None:
    f = tmp_path / "eis.yaml"
    f.write_text("name: eis\n" + CELL + "steps:\n  - eis: " + eis + "\n")
    db = tmp_path / "lab.sqlite"
    r = invoke("run", str(f), "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}")
    assert r.exit_code == 2, r.output
    assert f"{f}:4:5: eis.{field}: {value} is outside the instrument's frequency range 0.001..1e+06 Hz" in r.output
    assert "Traceback" not in r.output
    assert n_runs(db) == 0


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--replicate", "-1"], "--replicate"),
        (["--replicate", "99999999999999999999999"], "--replicate"),
        (["--speed", "1e-300"], "out of range"),
        (["--speed", "inf"], "out of range"),
        (["--speed", "-inf"], "out of range"),
        (["--speed", "nan"], "out of range"),
        (["--speed", "-5"], "out of range"),
        (["--speed", "0"], "out of range"),
        (["--speed", "1e400"], "out of range"),
        (["--speed", "fast"], "not a number"),
        (["--max-samples", "0"], "--max-samples"),
        (["--max-steps", "-3"], "--max-steps"),
        (["--progress-interval", "0"], "--progress-interval"),
        (["--progress-interval", "nan"], "--progress-interval"),
    ],
)
def test_bad_run_options_are_clear_errors_with_nothing_written(tmp_path: Path, option: list[str], message: str) -> None:
    db = tmp_path / "lab.sqlite"
    r = invoke(
        "run", str(LIBRARY_DIR / "eis-rt.yaml"), "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}", *option
    )
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert ("Traceback" not in r.output and r.exception is None) or isinstance(r.exception, SystemExit)
    assert n_runs(db) == 0


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_MAX_STEPS", "50")
    assert ResourceLimits.from_env().max_steps == 50
    with pytest.raises(ProtocolError, match="over the limit of 50"):
        load_protocol_text(nested_for_each(depth=2), "two.yaml")
    monkeypatch.setenv("LABCTL_MAX_STEPS", "1000")
    assert os.environ["LABCTL_MAX_STEPS"] == "1000"
    load_protocol_text(nested_for_each(depth=2), "two.yaml")


def test_deeply_nested_brackets_are_refused_fast_at_their_position() -> None:
    # The YAML scanner's cost grows with the square of the flow depth (2,000 brackets took 20 s):
    # a linear scan refuses them first, at the first bracket too deep.
    text = "name: deep\n" + CELL + "steps: " + "[" * 100_000 + "]" * 100_000 + "\n"
    t0 = time.perf_counter()
    with pytest.raises(ProtocolError, match=r"^deep\.yaml:3:72: the file nests more than 64 levels deep"):
        load_protocol_text(text, "deep.yaml")
    assert time.perf_counter() - t0 < 0.5
