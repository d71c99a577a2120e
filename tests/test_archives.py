"""Archives and storage failures: a read-only database is listed, shown, exported and analysed;
a run into one is refused; a run whose database disappears or fills up never reports completed.

Read-only by permissions is tested in a subprocess that really lacks write permission: as root
(CI containers) the subprocess runs under ``setpriv`` without CAP_DAC_OVERRIDE, so the file mode
bits apply to it as to any user.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.studies.mg_anode import LIBRARY_DIR

EIS_RT = str(LIBRARY_DIR / "eis-rt.yaml")
LABCTL = [sys.executable, "-m", "labctl.cli"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count(path: Path, table: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        return c.execute(f"select count(*) from {table}").fetchone()[0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database (WAL mode, as labctl writes it) holding one completed simulated run (run 1), checkpointed."""
    folder = tmp_path_factory.mktemp("archive-src")
    db = folder / "lab.sqlite"
    r = invoke("run", EIS_RT, "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}")
    assert r.exit_code == 0, r.output
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def _read_only_copy(archive: Path, tmp_path: Path, *, folder_too: bool) -> Path:
    d = tmp_path / "ro"
    d.mkdir()
    db = d / "lab.sqlite"
    shutil.copy(archive, db)
    db.chmod(0o444)
    if folder_too:
        d.chmod(0o555)
    return db


def _as_unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop the permission override")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


# Runs the given labctl command lines in one process (the permissions are the subprocess's), one JSON
# record per command: exit code, stdout, stderr.
_BATCH = """
import json, sys
from typer.testing import CliRunner
from labctl.cli import app
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    out.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                "exc": None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)})
print(json.dumps(out))
"""


def _cli_batch(commands: list[list[str]], cwd: Path) -> list[dict]:
    env = {**os.environ, "COLUMNS": "200", "HOME": str(cwd)}
    r = subprocess.run(
        [*_as_unprivileged(), sys.executable, "-c", _BATCH, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("folder_too", [False, True], ids=["file-444", "file-444-folder-555"])
def test_a_read_only_archive_is_listed_shown_exported_and_analysed(
    archive: Path, tmp_path: Path, folder_too: bool
) -> None:
    db = _read_only_copy(archive, tmp_path, folder_too=folder_too)
    before = sha(db)
    url = f"sqlite:///{db}"
    out = tmp_path / "out"
    out.mkdir()
    try:
        runs, show, export, analyze, run = _cli_batch(
            [
                ["runs", "--db", url, "--json"],
                ["show", "1", "--db", url, "--json"],
                ["export", "1", "--db", url, "--out", str(out / "run1.csv")],
                ["analyze", "1", "--db", url],
                ["run", EIS_RT, "--sim", "--preset", "bare-mg", "--db", url],
            ],
            cwd=out,
        )
        listing = sorted(p.name for p in db.parent.iterdir())
    finally:
        db.parent.chmod(0o755)
    for r in (runs, show, export, analyze, run):
        assert r["exc"] is None, r
    assert runs["code"] == 0, runs
    assert [x["id"] for x in json.loads(runs["stdout"])] == [1]
    assert show["code"] == 0 and json.loads(show["stdout"])["run"]["status"] == "completed"
    assert export["code"] == 0, export
    assert len((out / "run1.csv").read_text().splitlines()) > 400
    assert analyze["code"] == 0, analyze
    assert "Rs" in analyze["stdout"] and "not stored: the database is read-only" in analyze["stdout"]
    assert run["code"] == 2, run
    assert "is read-only (an archive)" in run["stderr"] and "Traceback" not in run["stderr"] + run["stdout"]
    assert sha(db) == before  # not one byte changed
    if folder_too:
        assert listing == ["lab.sqlite"]  # nothing created beside it
    assert count(db, "runs") == 1 and count(db, "results") == 0


def test_a_mode_ro_url_is_an_archive_too(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.app import controller

    opened: list[str] = []
    real_build = controller.build_sim_channel
    monkeypatch.setattr(controller, "build_sim_channel", lambda *a, **k: opened.append("sim") or real_build(*a, **k))
    db = tmp_path / "lab.sqlite"
    shutil.copy(archive, db)
    before = sha(db)
    url = f"sqlite:///file:{db}?mode=ro&uri=true"
    assert invoke("runs", "--db", url).exit_code == 0
    assert invoke("show", "1", "--db", url).exit_code == 0
    r = invoke("export", "1", "--db", url, "--out", str(tmp_path / "x.csv"))
    assert r.exit_code == 0, r.output
    r = invoke("analyze", "1", "--db", url)
    assert r.exit_code == 0, r.output
    assert "not stored" in r.output
    r = invoke("run", EIS_RT, "--sim", "--preset", "bare-mg", "--db", url)
    assert r.exit_code == 2 and "read-only" in r.output, r.output
    assert opened == []  # refused before any instrument was built or opened
    assert sha(db) == before
    assert count(db, "runs") == 1 and count(db, "results") == 0


def test_the_python_api_refuses_writes_to_an_archive(archive: Path, tmp_path: Path) -> None:
    from labctl.db import Database, ReadOnlyDatabase

    db = tmp_path / "lab.sqlite"
    shutil.copy(archive, db)
    with Database(f"sqlite:///file:{db}?mode=ro&uri=true") as d:
        assert d.read_only
        assert d.run(1)["status"] == "completed"
        with pytest.raises(ReadOnlyDatabase, match="read-only"):
            d.add_results(1, [{"name": "x", "value": 1.0}])
        with pytest.raises(ReadOnlyDatabase):
            d.open_run(protocol_name="p", protocol_text="x", channel="c", simulated=True)
    with Database(f"sqlite:///{db}") as d:
        assert not d.read_only


# --------------------------------------------------------------------------- storage failures


@pytest.fixture
def quick_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs give up on an unreachable database after 0.5 s instead of 30 s."""
    from labctl.db import Database

    init = Database.__init__

    def patched(self, *a, **k):  # type: ignore[no-untyped-def]
        init(self, *a, **k)
        self.outage_wait = 0.5
        self.spill_dir = Path(os.environ["LABCTL_TEST_SPILL"])

    monkeypatch.setattr(Database, "__init__", patched)


SLOW = """name: slow
cell: {kind: symmetric, working: Mg, counter: Mg, area: 1 cm2}
steps:
  - rest: {duration: 2 h, record_every: 1 s}
"""


def test_a_database_folder_deleted_mid_run_is_a_clear_error_never_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_outage: None
) -> None:
    monkeypatch.setenv("LABCTL_TEST_SPILL", str(tmp_path / "spill"))
    proto = tmp_path / "slow.yaml"
    proto.write_text(SLOW)
    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "lab.sqlite"

    def delete_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if count(db, "samples") > 0:
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        shutil.rmtree(folder)

    t = threading.Thread(target=delete_when_running)
    t.start()
    r = invoke("run", str(proto), "--sim", "--preset", "bare-mg", "--speed", "3000", "--db", f"sqlite:///{db}")
    t.join()
    assert r.exit_code == 1, r.output
    assert "completed" not in r.output.replace("did not complete", "")
    assert "error: run 1: the database failed during the run, which did not complete (cell off)" in r.output
    assert "is gone" in r.output and "labctl spill replay" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert list((tmp_path / "spill").glob("run-1-*.spill"))  # what was measured is kept


def test_a_full_disk_is_a_clear_error_and_the_run_is_not_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_outage: None
) -> None:
    import sqlalchemy as sa

    from labctl.db import recorder, spill

    monkeypatch.setenv("LABCTL_TEST_SPILL", str(tmp_path / "spill"))
    real = recorder.commit_batch
    calls = {"n": 0}

    def full(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] >= 1:  # the run row is written (open_run), then the disk is full
            raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
        return real(*a, **k)

    def no_space(self, path):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(recorder, "commit_batch", full)
    monkeypatch.setattr(spill.SpillFile, "__init__", no_space)
    proto = tmp_path / "slow.yaml"
    proto.write_text(SLOW)
    db = tmp_path / "lab.sqlite"
    r = invoke("run", str(proto), "--sim", "--preset", "bare-mg", "--db", f"sqlite:///{db}")
    assert r.exit_code == 1, (calls, r.output)
    assert "error: run 1: the database failed during the run" in r.output
    assert "No space left on device" in r.output or "disk is full" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    with sqlite3.connect(db) as c:
        status = c.execute("select status from runs where id = 1").fetchone()[0]
    assert status in ("failed", "interrupted")  # never running, never completed
    assert stat.S_ISREG(db.stat().st_mode)
