""".ndax: the emulator's writer against the maintained readers and the real BTS 8 file, and the final
data of a cycler job read from its .ndax (verified, gaps filled, fallbacks, a labctl killed before it)."""

from __future__ import annotations

import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.app.cycler_run import run_on_cycler
from labctl.app.station import StationError, load_station_text
from labctl.core.clock import VirtualClock
from labctl.db import Database
from labctl.importers.neware import read_neware_rows
from labctl.simulators.emulators.ndax import STATUS, NdaxTest, write_ndax
from labctl.simulators.emulators.neware import NewareEmulator
from tests.test_neware import SHORT, _Crashing, _driver, _events

pytest.importorskip("NewareNDA")
REAL = Path(__file__).parent / "data" / "import" / "neware_TESTCELL0001-B2.ndax"
PRESET, SEED = "br-mg", 3
TEST = NdaxTest(24, 27, 1, 3, 5, "labctl-7", "labctl-7-abc.xml", "<root/>", "a remark", 1.7e9 + 0.125)


def _rows(n_steps: int, sizes: list[int], kinds: list[int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(1, n_steps + 1), sizes)
    status = np.repeat(kinds, sizes)
    sid = np.repeat(np.arange(1, n_steps + 1) % 3 + 1, sizes)
    cyc = np.repeat(1 + np.arange(n_steps) // 2, sizes)
    dt = rng.uniform(0.05, 20.0, seq.size)
    tt = np.cumsum(dt)
    ends = np.cumsum(sizes) - 1  # a step begins at the last row of the one before (the test at 0)
    stt = tt - np.repeat(np.concatenate(([0.0], tt[ends[:-1]])), sizes)
    sign = np.where(np.isin(status, (1, 3)), 1.0, np.where(status == 4, 0.0, -1.0))
    i = sign * rng.uniform(0.01, 5.0, seq.size)
    v = rng.uniform(-0.5, 4.5, seq.size)
    cap = np.abs(i) * stt / 3600.0
    return {
        "step_seq": seq,
        "step_id": sid,
        "cycle": cyc,
        "status": status,
        "step_time": stt,
        "test_time": tt,
        "voltage": v,
        "current_ma": i,
        "charge_mah": np.where(sign > 0, cap, 0.0),
        "discharge_mah": np.where(sign < 0, cap, 0.0),
        "charge_mwh": np.where(sign > 0, cap * 3.1, 0.0),
        "discharge_mwh": np.where(sign < 0, cap * 3.1, 0.0),
    }


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


@settings(max_examples=6, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 600), st.sampled_from(sorted(STATUS.values()))), min_size=1, max_size=4),
    st.integers(0, 2**16),
)
def test_written_rows_read_back_through_newarenda(tmp_path_factory: pytest.TempPathFactory, steps, seed) -> None:
    sizes, kinds = [n for n, _ in steps], [k for _, k in steps]
    rows = _rows(len(steps), sizes, kinds, seed)
    path = write_ndax(tmp_path_factory.mktemp("ndax") / "x.ndax", TEST, **rows)
    r = read_neware_rows(path)
    n = sum(sizes)
    assert len(r.index) == n - int(np.count_nonzero(_f32(rows["voltage"]) == 0))  # NewareNDA drops V == 0 rows
    keep = r.index - 1
    np.testing.assert_array_equal(r.index, np.arange(1, n + 1)[keep])
    np.testing.assert_array_equal(r.step, rows["step_seq"][keep])
    np.testing.assert_array_equal(r.step_index, rows["step_id"][keep])
    np.testing.assert_array_equal(r.cycle, rows["cycle"][keep])
    names = {v: k for k, v in STATUS.items()}
    assert list(r.status) == [names[int(k)] for k in rows["status"][keep]]
    np.testing.assert_array_equal(r.voltage, _f32(rows["voltage"][keep]))  # float32, bit for bit
    np.testing.assert_allclose(r.current_ma, rows["current_ma"][keep], rtol=2e-7, atol=1e-9)
    np.testing.assert_allclose(r.step_time, rows["step_time"][keep], atol=5e-4 + 1e-9)  # ms in the file
    for a, b in (("charge_mah", r.charge_mah), ("discharge_mah", r.discharge_mah), ("charge_mwh", r.charge_mwh)):
        np.testing.assert_allclose(b, rows[a][keep], rtol=3e-7, atol=1e-12)
    assert r.unix is not None
    np.testing.assert_allclose(r.unix, TEST.start_unix + rows["test_time"][keep], atol=1e-3 + 1e-9)
    np.testing.assert_allclose(r.test_time, rows["test_time"][keep], atol=1e-3 * len(steps))


def _pages(member: bytes) -> list[tuple[int, int, bytes]]:
    """(page type, row count, page) of every data page of an .ndc, checking the header page."""
    assert len(member) % 4096 == 0 and len(member) >= 8192
    assert member[2] == 17 and member[4] == 1 and member[1] == member[3] == 0
    out = []
    for p in range(1, len(member) // 4096):
        page = member[4096 * p : 4096 * (p + 1)]
        out.append((page[0], struct.unpack("<H", page[2:4])[0], page))
    return out


@pytest.mark.parametrize("member, per", [("data.ndc", 495), ("data_step.ndc", 39), ("data_runInfo.ndc", 39)])
def test_the_real_files_page_layout_is_the_writers(tmp_path: Path, member: str, per: int) -> None:
    """Both files: file type + 1, row count, a bitmap of exactly that many rows, CRC-32 of the page."""
    rows = _rows(3, [600, 20, 333], [4, 2, 1], 1)
    ours = write_ndax(tmp_path / "ours.ndax", TEST, **rows)
    for path in (REAL, ours):
        with zipfile.ZipFile(path) as z:
            data = z.read(member)
        kind = data[0]
        for page_type, count, page in _pages(data):
            assert page_type == kind + 1 and 0 < count <= per
            bits = np.unpackbits(np.frombuffer(page[4:132], np.uint8), bitorder="little")
            assert bits[:count].all() and not bits[count:].any(), path
            assert struct.unpack("<I", page[-4:])[0] == zlib.crc32(page[:-4]), path


def test_fastnda_reads_the_written_file_as_newarenda_does(tmp_path: Path) -> None:
    fastnda = pytest.importorskip("fastnda")
    rows = _rows(4, [300, 500, 10, 200], [4, 2, 1, 3], 2)
    path = write_ndax(tmp_path / "x.ndax", TEST, **rows)
    df = fastnda.read(str(path), cycle_mode="raw")
    r = read_neware_rows(path)
    assert len(df) == len(r.index)
    np.testing.assert_array_equal(df["voltage_V"].to_numpy().astype(np.float64), r.voltage)
    np.testing.assert_allclose(df["current_mA"].to_numpy(), r.current_ma, rtol=1e-6)
    np.testing.assert_allclose(df["step_time_s"].to_numpy(), r.step_time, atol=1e-9)
    np.testing.assert_array_equal(df["step_index"].to_numpy(), r.step_index)
    np.testing.assert_array_equal(df["cycle_count"].to_numpy(), r.cycle)
    np.testing.assert_allclose(df["unix_time_s"].to_numpy(), r.unix, atol=1e-3)


# ------------------------------------------------------------------------------ the final data of a job
def _station(em: NewareEmulator, tmp: Path, **opts: object) -> object:
    extra = "".join(f", {k}: {v}" for k, v in opts.items())
    text = (
        f"instruments:\n  bts: {{driver: neware, host: 127.0.0.1, port: {em.port}, "
        f"step_folder: '{tmp / 'steps'}', channels: 2{extra}}}\n"
        "channels:\n  N1: {cycler: bts, address: 27-1-1}\n  N2: {cycler: bts, address: 27-1-2}\n"
    )
    return load_station_text(text, source="station.yaml")


@pytest.fixture
def emulator(tmp_path: Path):
    em = NewareEmulator(clock=VirtualClock(), preset=PRESET, seed=SEED, channels=2, data_dir=tmp_path / "data")
    yield em
    em.close()


def _final(db: Database, run_id: int) -> list[dict]:
    return [e for e in db.events(run_id) if e["kind"] == "final_data"]


def test_a_job_ends_with_its_ndax_verified_against_the_download(emulator: NewareEmulator, tmp_path: Path) -> None:
    db = Database("sqlite://")
    station = _station(emulator, tmp_path, data_dir=f"'{tmp_path / 'data'}'")
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    assert o.status == "completed"
    (path,) = (tmp_path / "data").iterdir()
    assert path.name == f"labctl-{o.run_id}_27-1-1-1.ndax"  # barcode_devid-subdevid-chlid-testid
    (ev,) = _final(db, o.run_id)
    assert ev["data"]["source"] == "ndax" and ev["data"]["filled"] == 0 and ev["data"]["differ"] == 0
    assert ev["data"]["rows_file"] == o.n_samples == emulator.chl[1].cols.n
    assert "all agree with the file" in ev["message"]


def test_points_the_download_missed_are_filled_from_the_ndax_once(emulator: NewareEmulator, tmp_path: Path) -> None:
    db = Database("sqlite://")
    station = _station(emulator, tmp_path, data_dir=f"'{tmp_path / 'data'}'", page_size=400)
    ref = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N2", poll=0.01)
    emulator.inject("lose_tail", channel=1, count=1234)
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    assert o.status == ref.status == "completed"
    (ev,) = _final(db, o.run_id)
    assert ev["data"]["filled"] == 1234 and ev["data"]["source"] == "ndax"
    assert "1234 point(s) filled from the file" in ev["message"]
    a, b = db.samples(o.run_id), db.samples(ref.run_id)
    assert len(a["t"]) == len(b["t"]) == emulator.chl[1].cols.n  # every point once
    np.testing.assert_array_equal(a["step_index"], b["step_index"])
    np.testing.assert_array_equal(a["cycle"], b["cycle"])
    np.testing.assert_allclose(a["t"], b["t"], atol=2e-3)  # the file's ms
    np.testing.assert_allclose(a["voltage"], b["voltage"], rtol=1e-6)  # float32
    np.testing.assert_allclose(a["charge"], b["charge"], rtol=1e-5, atol=1e-9)
    assert [(s["kind"], s["n_samples"], s["end_reason"]) for s in db.steps(o.run_id)] == [
        (s["kind"], s["n_samples"], s["end_reason"]) for s in db.steps(ref.run_id)
    ]
    (job,) = db.cycler_jobs(run_id=o.run_id)
    assert job["state"] == "completed" and job["cursor"] == str(len(a["t"]))


def test_no_ndax_within_the_timeout_leaves_the_download_final(tmp_path: Path) -> None:
    em = NewareEmulator(clock=VirtualClock(), preset=PRESET, seed=SEED, channels=2)  # writes no files
    try:
        (tmp_path / "share").mkdir()
        station = _station(em, tmp_path, data_dir=f"'{tmp_path / 'share'}'", ndax_timeout="0.3 s")
        db = Database("sqlite://")
        o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    finally:
        em.close()
    assert o.status == "completed" and o.n_samples == em.chl[1].cols.n
    (ev,) = _final(db, o.run_id)
    assert ev["data"]["source"] == "download"
    assert f"no .ndax of job 27-1-1:1 appeared in {tmp_path / 'share'} within 0.3 s" in ev["message"]


def test_without_the_reader_the_download_is_final(
    emulator: NewareEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "NewareNDA", None)  # import NewareNDA -> ImportError
    db = Database("sqlite://")
    station = _station(emulator, tmp_path, data_dir=f"'{tmp_path / 'data'}'")
    o = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    assert o.status == "completed"
    (ev,) = _final(db, o.run_id)
    assert ev["data"]["source"] == "download" and "needs the package NewareNDA" in ev["message"]


class _Killed(BaseException):
    """Like SIGKILL: no handler of labctl's runs, nothing is closed or marked."""


class _DiesAtTheFile(_Crashing):
    def data_file(self, job: str, barcode: str = "") -> object:
        raise _Killed  # killed after the job ended, before its .ndax was read


def test_killed_after_the_job_ended_before_the_ndax_was_reconciled(emulator: NewareEmulator, tmp_path: Path) -> None:
    db = Database("sqlite://")
    station = _station(emulator, tmp_path, data_dir=f"'{tmp_path / 'data'}'")
    emulator.inject("lose_tail", channel=1, count=500)
    real = _driver(emulator, tmp_path, data_dir=str(tmp_path / "data"))
    with pytest.raises(_Killed):
        run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01,
                      cycler=_DiesAtTheFile(real))  # fmt: skip
    (run,) = db.runs()
    rid = run["id"]
    assert run["status"] == "running"
    db.mark_interrupted(rid, "owner process gone")  # what the reaper does once the killed pid is gone
    n = emulator.chl[1].cols.n
    assert db.n_samples(rid) == n - 500 and not _final(db, rid)
    assert db.cycler_jobs(run_id=rid)[0]["state"] == "running"  # the job's end was not stored yet
    again = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    assert again.run_id == rid and again.status == "completed"
    assert db.n_samples(rid) == n  # the 500 filled once
    (ev,) = _final(db, rid)
    assert ev["data"]["filled"] == 500 and ev["data"]["differ"] == 0
    steps = db.steps(rid)
    assert sum(s["n_samples"] for s in steps) == n
    assert all(s["end_reason"] != "interrupted" for s in steps)
    assert [s["step_index"] for s in steps] == list(range(1, len(steps) + 1))
    assert len(emulator.starts) == 1
    assert any(k == "resume" for k, _ in _events(db, rid))


@pytest.mark.parametrize(
    "entry, message",
    [
        ("{driver: neware, data_dir: 5}", "data_dir must be a folder path"),
        ("{driver: neware, data_dir: /x, ndax_timeout: soon}", "ndax_timeout must be a duration"),
        ("{driver: neware, ndax_timeout: 60 s}", "ndax_timeout without data_dir"),
        ("{driver: methodscript, port: 'socket://x:1', data_dir: /x}", "data_dir belongs to a battery cycler"),
    ],
)
def test_station_data_dir_errors_name_line_field_and_fix(entry: str, message: str) -> None:
    with pytest.raises(StationError) as e:
        load_station_text(f"name: s\ninstruments:\n  bts: {entry}\n", source="station.yaml")
    text = str(e.value)
    assert text.startswith("station.yaml:3:") and message in text and "hint: " in text
    assert "instruments.bts." in text


def test_killed_mid_fill_restarts_from_the_file_without_doubling(
    emulator: NewareEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after a page of filled points was committed but before its checkpoint: the restart
    replays those points from the .ndax (download never had them) and fills only the rest."""
    from labctl.db.recorder import RunRecorder

    db = Database("sqlite://")
    station = _station(emulator, tmp_path, data_dir=f"'{tmp_path / 'data'}'", page_size=200)
    emulator.inject("lose_tail", channel=1, count=500)
    real_checkpoint = RunRecorder.checkpoint

    def dies(self: RunRecorder, t: float, state: dict) -> None:
        if state.get("source") == "ndax":
            self.flush()  # the page's samples are committed, the checkpoint after them never is
            raise _Killed
        real_checkpoint(self, t, state)

    monkeypatch.setattr(RunRecorder, "checkpoint", dies)
    with pytest.raises(_Killed):
        run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    monkeypatch.setattr(RunRecorder, "checkpoint", real_checkpoint)
    (run,) = db.runs()
    rid = run["id"]
    db.mark_interrupted(rid, "owner process gone")
    n = emulator.chl[1].cols.n
    assert db.n_samples(rid) == n - 300  # one page of 200 filled, its checkpoint lost
    again = run_on_cycler(SHORT["ce-longterm"](), db=db, station=station, channel="N1", poll=0.01)
    assert again.status == "completed" and db.n_samples(rid) == n
    (ev,) = _final(db, rid)
    assert ev["data"]["filled"] == 300 and ev["data"]["differ"] == 0 and ev["data"]["verified"] == n - 300
    steps = db.steps(rid)
    assert sum(s["n_samples"] for s in steps) == n
    assert [s["step_index"] for s in steps] == list(range(1, len(steps) + 1))
    t = db.samples(rid)["t"]
    assert np.all(np.diff(t) > 0)


def test_reconcile_reports_differences_missing_points_and_gaps(tmp_path: Path) -> None:
    import dataclasses

    from labctl.app.cycler_run import reconcile

    rows = _rows(2, [300, 200], [2, 1], 5)
    r = read_neware_rows(write_ndax(tmp_path / "x.ndax", TEST, **rows))
    t, v, i = rows["test_time"], rows["voltage"], rows["current_ma"] * 1e-3  # float64, as harvested
    full = reconcile(r, t, v, i)
    assert (full.verified, full.differ, full.missing_in_file, full.fill, full.after_gap) == (500, 0, 0, 0, 0)
    head = reconcile(r, t[:120], v[:120], i[:120])
    assert (head.verified, head.differ, head.fill, head.after_gap) == (120, 0, 380, 0)
    v2 = v.copy()
    v2[[40, 41]] += 1e-3  # 1 mV: far beyond float32
    t2 = t.copy()
    t2[300] += 0.01  # 10 ms: beyond the file's ms
    bad = reconcile(r, t2, v2, i)
    assert (bad.differ, bad.first_differ) == (3, 41)
    keep = np.ones(500, dtype=bool)
    keep[[10, 250]] = False  # the file lacks points 11 and 251
    gappy = dataclasses.replace(r, **{f.name: getattr(r, f.name)[keep] for f in dataclasses.fields(r)
                                      if isinstance(getattr(r, f.name), np.ndarray)})  # fmt: skip
    g = reconcile(gappy, t[:100], v[:100], i[:100])
    assert (g.verified, g.missing_in_file, g.fill, g.after_gap) == (99, 1, 150, 249)
