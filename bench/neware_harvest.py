"""Harvest benchmark: 10^6 cycler points through the BTS API's paged ``download``.

Three ways over the same points of one emulated channel:

* ``harvest``: ``NewareCycler.harvest`` page after page over loopback TCP (the emulator formats
  each page, the driver reads, parses and checks it) - what ``run_on_cycler`` does;
* ``parse only``: the same reply pages, fetched once beforehand, parsed by
  ``labctl.drivers.neware.bts.parse_download`` (ElementTree + numpy);
* ``ElementTree floor``: those pages through ``xml.etree.ElementTree.fromstring`` alone (the
  reader library, no columns built): the floor any XML reply parser pays.

No .ndax file is produced by the emulator (see docs/cyclers.md), so there is no .ndax row.
Prints points/s and the ratios harvest/floor and parse/floor.

    python bench/neware_harvest.py [--points 1000000] [--page 5000]
"""

from __future__ import annotations

import argparse
import time
import xml.etree.ElementTree as ET

import numpy as np

from labctl.core.clock import VirtualClock
from labctl.drivers.neware import NewareCycler
from labctl.drivers.neware.bts import TERMINATOR, parse_download, unframe
from labctl.simulators.emulators.neware import COLUMNS, NewareEmulator


def fill(em: NewareEmulator, n: int) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--page", type=int, default=5000)
    a = ap.parse_args()
    em = NewareEmulator(clock=VirtualClock(), preset="br-mg", channels=1)
    fill(em, a.points)
    drv = NewareCycler(port=em.port, page_size=a.page, timeout=30.0)
    drv.connect()
    job = "27-1-1:1"

    t0 = time.perf_counter()
    cursor, n, check = "0", 0, 0.0
    while True:
        h = drv.harvest(job, cursor)
        if not len(h.block):
            break
        cursor, n = h.cursor, n + len(h.block)
        check += float(h.block.voltage.sum())
    t_harvest = time.perf_counter() - t0
    assert n == a.points

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
    mb = sum(len(p) for p in pages) / 1e6
    print(f"{a.points:,} points in pages of {a.page:,} ({mb:.0f} MB of XML)")
    print(f"harvest over TCP   {t_harvest:7.2f} s  {a.points / t_harvest:12,.0f} points/s")
    print(f"parse only         {t_parse:7.2f} s  {a.points / t_parse:12,.0f} points/s")
    print(f"ElementTree floor  {t_floor:7.2f} s  {a.points / t_floor:12,.0f} points/s")
    print(f"ratio harvest/floor {t_harvest / t_floor:.2f}x slower; parse/floor {t_parse / t_floor:.2f}x")


if __name__ == "__main__":
    main()
