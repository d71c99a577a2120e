"""Fuzzing what users type and write: every YAML loader and the CLI's options.

* Loaders (protocols, simulator presets, stations, the config file): valid files mutated at random (characters and
  YAML tokens inserted, lines dropped, duplicated and swapped, values replaced by absurd ones) and
  random text.  Each input gives a valid model or a ProtocolError whose every issue names the
  source with a line and column; never another exception.
* The CLI: random option values for run, validate, runs, show, export, analyze, report, compare and
  resume.  Exit code 0 or 2, no traceback, and on 2 nothing written (no run row, no result, no file).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl.app.config import load_config_text
from labctl.app.station import load_station_text
from labctl.cli import app
from labctl.core.errors import ProtocolError
from labctl.core.limits import ResourceLimits
from labctl.protocols import check_limits, load_protocol_text
from labctl.simulators.presets import load_preset_text
from labctl.studies.mg_anode import LIBRARY_DIR, PRESET_DIR

# LABCTL_FUZZ_EXAMPLES=5000 explores further (random seeds); the suite runs a fixed, modest set.
DEEP = int(os.environ.get("LABCTL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=DEEP or 120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    derandomize=not DEEP,  # the same examples on every run: a failure is reproducible from the test alone
)

PROTOCOLS = [
    (LIBRARY_DIR / n).read_text()
    for n in ("eis-temperature.yaml", "symmetric-0.5mA.yaml", "aurbach-ce.yaml", "tafel.yaml", "ce-multi-current.yaml")
]
PRESETS = [
    (PRESET_DIR / "bare-mg.yaml").read_text(),
    "base: bare-mg\nname: tweak\nkinetics: {j0: 0.1 uA/cm2}\nimpedance: {rs: 40 ohm}\n",
]
STATIONS = [
    """name: bench-1
instruments:
  pstat1: {driver: sim, preset: br-mg, seed: 3, limits: {current: 5 mA, voltage: [-2 V, 2 V]}}
  pstat2: {driver: sim, preset: bare-mg}
  spare:  {driver: sim, preset: br-mg}
channels:
  A: {potentiostat: pstat1}
  B: {potentiostat: pstat2}
"""
]

CONFIGS = [
    """db:
  url: sqlite:////tmp/lab.sqlite
dashboard:
  token: ${TOK}
  port: 9000
notify:
  on: [completed, failed, safety]
  retries: 3
  backoff: 500 ms
  email:
    host: smtp.example.org
    port: 587
    starttls: true
    password: ${PW}
    sender: labctl@example.org
    to: [me@example.org]
    timeout: 30 s
  webhooks:
    - url: https://hooks.example.org/services/T0
      headers: {Authorization: "Bearer ${HOOK}"}
      timeout: 5
"""
]

TOKENS = [
    "",
    " ",
    "  ",
    "\n",
    "\t",
    ":",
    ": ",
    "- ",
    "-",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "#",
    "?",
    "|",
    ">",
    "&a ",
    "*a",
    "*nope",
    "<<: *a",
    "!!python/object/apply:os.system ['x']",
    "!!binary ",
    "!tag ",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "~",
    "null",
    "true",
    "no",
    "0",
    "-0",
    "1e999",
    "-1e999",
    ".nan",
    ".inf",
    "nan",
    "inf",
    "99999999999999999999999",
    "0x10",
    "0o17",
    "1_000",
    "1 ns",
    "1e-300 Hz",
    "1 THz",
    "100000 years",
    "0 V",
    "-5 mA",
    "5 mA/cm2",
    "2 degC",
    "-300 degC",
    "1 mAh",
    "0.1 C",
    "1 furlong",
    "mA",
    "1 mA mA",
    "µA",
    "1 µA",
    "☃",
    "\x00",
    "\x07",
    "\ufeff",
    "\u202e",
    "\r",
    "\r\n",
    "2026-01-01",
    "12:30:00",
    "{a: 1}",
    "[1, 2]",
    "for_each:",
    "repeat:",
    "steps:",
    "group:",
    "values: []",
    "times: 0",
    "{T}",
    "{nope}",
    "[" * 2000,
    "{a: " * 80,
    "- " * 100,
]

LINE_OPS = ["insert", "delete", "drop_line", "dup_line", "swap_lines", "replace_value"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> str:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(LINE_OPS))
        lines = text.split("\n")
        if op == "insert":
            at = draw(st.integers(0, len(text)))
            tok = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)))
            text = text[:at] + tok + text[at:]
        elif op == "delete":
            at = draw(st.integers(0, max(len(text) - 1, 0)))
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        elif op == "drop_line" and lines:
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
        elif op == "dup_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif op == "swap_lines" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == "replace_value":
            candidates = [k for k, ln in enumerate(lines) if ": " in ln]
            if candidates:
                k = draw(st.sampled_from(candidates))
                head = lines[k].split(": ", 1)[0]
                lines[k] = head + ": " + draw(st.sampled_from(TOKENS))
                text = "\n".join(lines)
    return text


def _random_text() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=200), st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))


def _only_protocol_errors(load, text: str, source: str) -> object | None:  # type: ignore[no-untyped-def]
    try:
        return load(text, source)
    except ProtocolError as e:
        assert e.issues, "a ProtocolError without issues"
        for issue in e.issues:
            assert issue.source == source or issue.source.endswith(".yaml"), issue  # the file, or its base preset
            assert issue.line is not None and issue.line >= 1, f"no line: {issue}"
            assert issue.col is not None and issue.col >= 1, f"no column: {issue}"
            assert issue.message, issue
        assert str(e).startswith(e.issues[0].source)
        return None


@FUZZ
@given(text=st.one_of(mutated(PROTOCOLS), _random_text()))
def test_protocol_loader_fuzz(text: str) -> None:
    p = _only_protocol_errors(load_protocol_text, text, "fuzz.yaml")
    if p is not None:
        # a valid protocol is also sized without an exception (over a limit is a ProtocolError)
        with contextlib.suppress(ProtocolError):
            check_limits(p, ResourceLimits(check_disk=False))


@FUZZ
@given(text=st.one_of(mutated(PRESETS), _random_text()))
def test_preset_loader_fuzz(text: str) -> None:
    _only_protocol_errors(load_preset_text, text, "fuzz-preset.yaml")


@FUZZ
@given(text=st.one_of(mutated(STATIONS), _random_text()))
def test_station_loader_fuzz(text: str) -> None:
    _only_protocol_errors(lambda t, s: load_station_text(t, source=s), text, "fuzz-station.yaml")


@FUZZ
@given(text=st.one_of(mutated(CONFIGS), _random_text()))
def test_config_loader_fuzz(text: str) -> None:
    env = {"TOK": "t", "PW": "p", "HOOK": "h"}
    _only_protocol_errors(lambda t, s: load_config_text(t, s, env=env), text, "fuzz-config.yaml")


# --------------------------------------------------------------------------- the CLI

TINY = """name: tiny
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1 cm2}
steps:
  - rest: {duration: 2 min, record_every: 30 s}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fuzz-cli")
    proto = d / "tiny.yaml"
    proto.write_text(TINY)
    db = d / "lab.sqlite"
    r = CliRunner().invoke(app, ["run", str(proto), "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}"])
    assert r.exit_code == 0, r.output
    return {"dir": d, "proto": proto, "db": db}


def _rows(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as c:
        return tuple(c.execute(f"select count(*) from {t}").fetchone()[0] for t in ("runs", "results", "samples"))  # type: ignore[return-value]


INTS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "-1", "1", "2", "99999999999999999999999", "1e3", "nan", "", " ", "0x10", "1.5", "²", "٣"]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e-300", "1e300", "0", "-5", "max", "wall", "fast", "", "1,5", "1e400"]),
)
WORDS = st.one_of(st.text(max_size=20), st.sampled_from(["", "-", "--", "csv", "parquet", "x.csv", "/", ".."]))


@st.composite
def command(draw: st.DrawFn, lab: dict[str, Path]) -> list[str]:
    url = f"sqlite:///{lab['db']}"
    out = str(lab["dir"] / "out" / draw(st.sampled_from(["a.csv", "b.parquet", "rep", "x"])))
    run_id = draw(st.one_of(st.just("1"), INTS))
    kind = draw(
        st.sampled_from(["run", "validate", "runs", "show", "export", "analyze", "report", "compare", "resume"])
    )
    opts: list[str]
    if kind == "run":
        opts = ["run", str(lab["proto"]), "--sim", "--preset", "bare-mg", "--db", url]
        for name, values in draw(
            st.lists(
                st.sampled_from(
                    [
                        ("--seed", INTS),
                        ("--replicate", INTS),
                        ("--speed", FLOATS),
                        ("--max-steps", INTS),
                        ("--max-samples", INTS),
                        ("--progress-interval", FLOATS),
                        ("--channel", WORDS),
                        ("--from-run", INTS),
                        ("--preset", WORDS),
                        ("--driver-opt", WORDS),
                        ("--operator", WORDS),
                    ]
                ),
                min_size=1,
                max_size=3,
            )
        ):
            opts += [name, draw(values)]
    elif kind == "validate":
        opts = ["validate", str(lab["proto"]), "--max-steps", draw(INTS), "--max-samples", draw(INTS)]
    elif kind == "runs":
        opts = ["runs", "--db", url, "--limit", draw(INTS)]
    elif kind == "show":
        opts = ["show", run_id, "--db", url, "--steps", draw(INTS)]
    elif kind == "export":
        opts = ["export", run_id, "--db", url, "--out", out, "--format", draw(WORDS)]
    elif kind == "analyze":
        opts = ["analyze", run_id, "--db", url]
    elif kind == "report":
        opts = ["report", run_id, "--db", url, "--out", out, "--cycles", draw(WORDS)]
    elif kind == "compare":
        opts = ["compare", run_id, draw(INTS), "--db", url, "--out", out, "--cycles", draw(WORDS)]
    else:
        opts = ["resume", run_id, "--db", url, "--speed", draw(FLOATS)]
    if draw(st.booleans()):
        opts.append("--json")
    return opts


@settings(
    max_examples=DEEP or 60,
    deadline=None,
    derandomize=not DEEP,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_cli_option_fuzz(lab: dict[str, Path], data: st.DataObject) -> None:
    args = data.draw(command(lab))
    before = _rows(lab["db"])
    out_dir = lab["dir"] / "out"
    files_before = sorted(out_dir.rglob("*")) if out_dir.exists() else []
    r = CliRunner().invoke(app, args)
    text = r.output
    assert r.exit_code in (0, 2), (args, r.exit_code, text, r.exception)
    assert "Traceback" not in text, (args, text)
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, repr(r.exception))
    if r.exit_code == 2:
        assert _rows(lab["db"]) == before, (args, text)  # nothing written
        assert (sorted(out_dir.rglob("*")) if out_dir.exists() else []) == files_before, (args, text)


def test_the_cli_run_id_bound_is_the_schemas() -> None:
    from labctl.cli.common import RUN_ID_MAX
    from labctl.db.schema import MAX_RUN_ID

    assert RUN_ID_MAX == MAX_RUN_ID


@pytest.mark.parametrize("ref", ["9223372036854775808", "99999999999999999999999", "²", "0"])
@pytest.mark.parametrize("cmd", ["show", "analyze", "resume"])
def test_absurd_run_ids_are_usage_errors(lab: dict[str, Path], cmd: str, ref: str) -> None:
    r = CliRunner().invoke(app, [cmd, ref, "--db", f"sqlite:///{lab['db']}"])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


def test_the_database_treats_an_absurd_run_id_as_no_such_run(lab: dict[str, Path]) -> None:
    from labctl.db import Database

    with Database(f"sqlite:///{lab['db']}") as d:
        for rid in (2**63, 2**70, 0, -1):
            with pytest.raises(KeyError):
                d.run(rid)
            with pytest.raises(KeyError):
                d.samples(rid)
