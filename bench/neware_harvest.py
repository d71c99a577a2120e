"""Harvest benchmark: 10^6 cycler points through the BTS API's paged ``download`` and through the .ndax.

Over the same points of one emulated channel:

* ``harvest``: ``NewareCycler.harvest`` page after page over loopback TCP (the emulator formats
  each page, the driver reads, parses and checks it) - what ``run_on_cycler`` does;
* ``parse only``: the same reply pages, fetched once beforehand, parsed by
  ``labctl.drivers.neware.bts.parse_download`` (ElementTree + numpy);
* ``ElementTree floor``: those pages through ``xml.etree.ElementTree.fromstring`` alone (the
  reader library, no columns built): the floor any XML reply parser pays.

and the same points as the channel's ``.ndax`` (written by the emulator's writer,
:mod:`labctl.simulators.emulators.ndax`; its time is printed too):

* ``labctl .ndax path``: what ``run_on_cycler`` does at a job's end with the file -
  ``labctl.importers.neware.read_neware_rows`` (NewareNDA.read, then arrays and test times)
  and ``labctl.app.cycler_run.reconcile`` against the 10^6 harvested points (every row
  compared: voltage, current, time);
* ``NewareNDA.read alone``: the reader library on the same file, nothing else (the floor).

Prints points/s and the ratios harvest/floor, parse/floor and .ndax path/NewareNDA.

    python bench/neware_harvest.py [--points 1000000] [--page 5000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from labctl.core.clock import VirtualClock
from labctl.drivers.neware import NewareCycler
from labctl.drivers.neware.bts import TERMINATOR, parse_download, unframe
from labctl.simulators.emulators.neware import COLUMNS, NewareEmulator


def fill(em: NewareEmulator, n: int) -> dict[str, np.ndarray]:
    ch = em.chl[1]
    rng = np.random.default_rng(0)
    t = np.arange(n, dtype=float) * 10.0
    cols = {
        "testtime": t,
        "steptime": t % 3600.0,
        "volt": 0.15 + 0.01 * rng.standard_normal(n),
        "curr": np.where((t // 3600) % 2 == 0, -0.6335, 0.6335),
        "cap": (t % 3600.0) * 0.6335 / 3600.0,
        "eng": (t % 3600.0) * 0.1 / 3600.0,
        "cycleid": 1 + t // 7200,
        "stepid": 2 + (t // 3600) % 2,
        "stepseq": 1 + t // 3600,
    }
    assert set(cols) == set(COLUMNS)
    ch.cols.append(cols)
    ch.testid, ch.state = 1, "finish"
    return cols


def write_file(cols: dict[str, np.ndarray], folder: Path) -> Path:
    from labctl.simulators.emulators.ndax import STATUS, NdaxTest, write_ndax

    charge = cols["curr"] > 0
    status = np.where(charge, STATUS["CC_Chg"], STATUS["CC_DChg"])
    test = NdaxTest(24, 27, 1, 1, 1, "bench", "bench.xml", "<root/>", "bench", 1.7e9)
    return write_ndax(
        folder / "bench_27-1-1-1.ndax",
        test,
        step_seq=cols["stepseq"].astype(np.int64),
        step_id=cols["stepid"].astype(np.int64),
        cycle=cols["cycleid"].astype(np.int64),
        status=status,
        step_time=cols["steptime"],
        test_time=cols["testtime"],
        voltage=cols["volt"],
        current_ma=cols["curr"],
        charge_mah=np.where(charge, cols["cap"], 0.0),
        discharge_mah=np.where(~charge, cols["cap"], 0.0),
        charge_mwh=np.where(charge, cols["eng"], 0.0),
        discharge_mwh=np.where(~charge, cols["eng"], 0.0),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--page", type=int, default=5000)
    a = ap.parse_args()
    em = NewareEmulator(clock=VirtualClock(), preset="br-mg", channels=1)
    cols = fill(em, a.points)
    drv = NewareCycler(port=em.port, page_size=a.page, timeout=30.0)
    drv.connect()
    job = "27-1-1:1"

    t0 = time.perf_counter()
    cursor, n = "0", 0
    got_t, got_v, got_i = [], [], []
    while True:
        h = drv.harvest(job, cursor)
        if not len(h.block):
            break
        cursor, n = h.cursor, n + len(h.block)
        got_t.append(h.block.t)
        got_v.append(h.block.voltage)
        got_i.append(h.block.current)
    t_harvest = time.perf_counter() - t0
    assert n == a.points
    ht, hv, hi = np.concatenate(got_t), np.concatenate(got_v), np.concatenate(got_i)

    # the raw reply pages, fetched once
    pages = []
    for start in range(1, a.points + 1, a.page):
        body = em.dispatch(
            f'<bts><cmd>download</cmd><download devtype="24" devid="27" subdevid="1" chlid="1" auxid="0" '
            f'testid="1" startpos="{start}" count="{a.page}"/></bts>'.encode()
        )[0]
        pages.append(body[: -len(TERMINATOR)])
    t0 = time.perf_counter()
    m = sum(len(parse_download(unframe(p))[1]["seqid"]) for p in pages)
    t_parse = time.perf_counter() - t0
    t0 = time.perf_counter()
    k = sum(len(ET.fromstring(p).find("list") or []) for p in pages)
    t_floor = time.perf_counter() - t0
    assert m == k == a.points
    drv.close()
    em.close()

    # the .ndax of the same points
    import NewareNDA  # type: ignore[import-untyped]

    from labctl.app.cycler_run import reconcile
    from labctl.importers.neware import read_neware_rows

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_file(cols, Path(tmp))
        t_write = time.perf_counter() - t0
        size = path.stat().st_size / 1e6
        t_ndax = t_nda = float("inf")
        for _ in range(2):  # best of 2, alternating (a loaded machine; the first read pays the page cache)
            t0 = time.perf_counter()
            rows = read_neware_rows(path)
            r = reconcile(rows, ht, hv, hi)
            t_ndax = min(t_ndax, time.perf_counter() - t0)
            assert r.verified == a.points and r.differ == 0 and r.fill == 0, r
            del rows
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = NewareNDA.read(str(path), software_cycle_number=False, log_level="ERROR")
            t_nda = min(t_nda, time.perf_counter() - t0)
        assert len(df) == a.points
    mb = sum(len(p) for p in pages) / 1e6
    print(f"{a.points:,} points in pages of {a.page:,} ({mb:.0f} MB of XML)")
    print(f"harvest over TCP   {t_harvest:7.2f} s  {a.points / t_harvest:12,.0f} points/s")
    print(f"parse only         {t_parse:7.2f} s  {a.points / t_parse:12,.0f} points/s")
    print(f"ElementTree floor  {t_floor:7.2f} s  {a.points / t_floor:12,.0f} points/s")
    print(f"ratio harvest/floor {t_harvest / t_floor:.2f}x slower; parse/floor {t_parse / t_floor:.2f}x")
    print(f".ndax of the same points: {size:.0f} MB, written by the emulator in {t_write:.2f} s")
    print(f"labctl .ndax path  {t_ndax:7.2f} s  {a.points / t_ndax:12,.0f} points/s  (read + reconcile, best of 2)")
    print(f"NewareNDA.read     {t_nda:7.2f} s  {a.points / t_nda:12,.0f} points/s  (the reader alone, best of 2)")
    print(f"ratio .ndax path/NewareNDA {t_ndax / t_nda:.2f}x; download harvest/.ndax path {t_harvest / t_ndax:.2f}x")


if __name__ == "__main__":
    main()
