"""An emulator of the Neware BTS API on loopback TCP: channels that run step files on simulated cells.

It speaks the framing and the commands of :mod:`labctl.drivers.neware.bts` (``connect``,
``getdevinfo``, ``getchlstatus``, ``inquire``, ``inquiredf``, ``start``, ``stop``,
``continue``, paged ``download``).  Each channel is a state machine (``finish`` ->
``working`` -> ``finish`` | ``stop`` | ``protect``) that executes the step file's rest,
CC, CV and cycle steps with a :class:`~labctl.simulators.potentiostat.SimulatedPotentiostat`
(the cell models of :mod:`labctl.simulators.cells`), so a step file gives the same samples
as the same protocol on ``labctl run --sim`` with the same preset and seed.  The cell of a
test is read from the step file's Remark (``labctl cell: kind=asymmetric area_cm2=1.267``),
which labctl writes; the preset and seed are the emulator's.

Time: with a virtual clock (``--speed max``) every channel has its own virtual clock, so a
test runs as fast as the CPU allows and channels never wait for each other; with a scaled
or wall clock the channels share it and data arrive paced.

Faults (:meth:`NewareEmulator.inject`): ``start_false`` (the next start is answered
``false``), ``protect`` (the channel's protection trips ``after`` s into the test: the cell
is switched off, the channel shows ``protect``), ``wrong_subdevid`` (the next ``count``
replies name another sub-device), ``slow`` (replies delayed ``delay`` s), ``partial``
(half a reply, then the connection drops), ``lose_tail`` (``download`` never serves the last
``count`` points of the channel's test: a gap only the channel's ``.ndax`` fills).  ``on``
restricts a fault to one command, ``skip`` lets that many pass first.

Data files: with ``data_dir`` set, a channel whose test ends (``finish``, ``stop``,
``protect``) writes the test's record as ``<barcode>_<devid>-<subdevid>-<chlid>-<testid>.ndax``
into that folder (:mod:`labctl.simulators.emulators.ndax`), as a BTS PC writes into its data
folder, before the channel reports the end.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labctl.drivers.cycler import CyclerCC, CyclerCV, CyclerLoop, CyclerProgram, CyclerRest
from labctl.drivers.neware.bts import TERMINATOR, frame
from labctl.drivers.neware.driver import ndax_file_name
from labctl.drivers.neware.stepfile import StepFileError, parse_step_xml
from labctl.drivers.techniques import ConstantCurrent, ConstantPotential, Limits, OpenCircuit, Technique

__all__ = ["EmulatorFault", "NewareEmulator"]

COLUMNS = ("testtime", "steptime", "volt", "curr", "cap", "eng", "cycleid", "stepid", "stepseq")


@dataclass
class EmulatorFault:
    kind: str  # start_false | protect | wrong_subdevid | slow | partial | lose_tail
    on: str | None = None  # command name, None = any
    channel: int | None = None  # chlid, None = any
    count: int = 1
    delay: float = 0.0  # s of wall time (slow)
    after: float = 0.0  # s of test time (protect)
    skip: int = 0  # let this many matching commands pass first


class _Columns:
    """Growable float64 columns (amortised appends, O(1) slices for download pages)."""

    def __init__(self) -> None:
        self.n = 0
        self.data = {k: np.empty(1024) for k in COLUMNS}

    def append(self, cols: dict[str, np.ndarray]) -> None:
        m = len(cols["testtime"])
        if self.n + m > len(self.data["testtime"]):
            size = max(2 * len(self.data["testtime"]), self.n + m)
            for k in COLUMNS:
                new = np.empty(size)
                new[: self.n] = self.data[k][: self.n]
                self.data[k] = new
        for k in COLUMNS:
            self.data[k][self.n : self.n + m] = cols[k]
        self.n += m


class Channel:
    def __init__(self, owner: NewareEmulator, chlid: int) -> None:
        self.owner = owner
        self.chlid = chlid
        self.state = "finish"
        self.testid = 0
        self.barcode = ""
        self.step = 0
        self.cycle = 0
        self.protect_info = ""
        self.cols = _Columns()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: dict[str, float] = {}
        self.step_path = ""
        self.step_xml = ""
        self.start_unix = 0.0
        self.ndax: str | None = None  # the last data file written

    # ------------------------------------------------------------------ commands
    def start(self, program: CyclerProgram, barcode: str, step_path: str = "", step_xml: str = "") -> bool:
        if self.state == "working":
            return False
        with self.lock:
            self.testid += 1
            self.barcode = barcode
            self.step_path, self.step_xml = step_path, step_xml
            self.ndax = None
            self.cols = _Columns()
            self.state = "working"
            self.protect_info = ""
            self.step = self.cycle = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(program,), name=f"neware-ch{self.chlid}", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> bool:
        if self.state != "working":
            return self.state in ("stop", "finish", "protect")
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout=10.0)
        return True

    # ------------------------------------------------------------------ the state machine
    def _clock(self) -> Any:
        clock = self.owner.clock
        if getattr(clock, "horizon", lambda: 0.0)() == float("inf"):
            from labctl.core.clock import VirtualClock

            return VirtualClock(start_unix=clock.unix(clock.now()))
        return clock

    def _run(self, program: CyclerProgram) -> None:
        from labctl.simulators.potentiostat import SimulatedPotentiostat

        try:
            cell = _cell_of(program.remark)
            clock = self._clock()
            pot = SimulatedPotentiostat(
                clock,
                preset=self.owner.preset,
                cell_kind=cell.get("kind", "symmetric"),
                area_cm2=float(cell.get("area_cm2", 1.267)),
                cathode_mass_g=None if cell.get("cathode_mass_g") in (None, "None") else float(cell["cathode_mass_g"]),
                seed=self.owner.seed,
                replicate=int(cell.get("replicate", 0)),
                noise=self.owner.noise,
            )
            pot.connect()
            t0 = clock.now()
            self.start_unix = float(clock.unix(t0))
            end_state = self._execute(program, pot, clock, t0)
        except Exception as e:
            end_state = "protect"
            self.protect_info = f"emulator error: {type(e).__name__}: {e}"
        if self.owner.data_dir is not None:
            try:
                self.ndax = str(self.write_ndax(program))
            except Exception as e:  # a full disk on the BTS PC: the test still ends, without its file
                self.owner.log.append(f"ndax: channel {self.chlid} test {self.testid}: {type(e).__name__}: {e}")
                print(f"neware emulator: no .ndax for channel {self.chlid}: {e}", file=sys.stderr)
        with self.lock:
            self.state = end_state

    def write_ndax(self, program: CyclerProgram) -> Path:
        """Write this channel's test as an ``.ndax`` into the emulator's data folder; its path."""
        from labctl.simulators.emulators.ndax import STATUS, NdaxTest, write_ndax

        o = self.owner
        assert o.data_dir is not None
        with self.lock:
            n = self.cols.n
            c = {k: self.cols.data[k][:n].copy() for k in COLUMNS}
        sid = c["stepid"].astype(np.int64)
        curr = c["curr"]
        kinds = [program.steps[k - 1] if 0 < k <= len(program.steps) else None for k in range(max(sid, default=0) + 1)]
        status = np.empty(n, dtype=np.int64)
        for k in np.unique(sid):
            m = sid == k
            step = kinds[int(k)]
            if isinstance(step, CyclerCC):
                status[m] = STATUS["CC_Chg"] if step.current > 0 else STATUS["CC_DChg"]
            elif isinstance(step, CyclerCV):
                status[m] = STATUS["CV_Chg"] if float(np.mean(curr[m])) >= 0 else STATUS["CV_DChg"]
            else:
                status[m] = STATUS["Rest"]
        charge = np.isin(status, (STATUS["CC_Chg"], STATUS["CV_Chg"]))
        dis = np.isin(status, (STATUS["CC_DChg"], STATUS["CV_DChg"]))
        test = NdaxTest(
            o.devtype, o.devid, o.subdevid, self.chlid, self.testid, self.barcode,
            Path(self.step_path.replace("\\", "/")).name, self.step_xml, program.remark, self.start_unix,
        )  # fmt: skip
        name = ndax_file_name(self.barcode, o.devid, o.subdevid, self.chlid, self.testid)
        return write_ndax(
            Path(o.data_dir) / name,
            test,
            step_seq=c["stepseq"].astype(np.int64),
            step_id=sid,
            cycle=c["cycleid"].astype(np.int64),
            status=status,
            step_time=c["steptime"],
            test_time=c["testtime"],
            voltage=c["volt"],
            current_ma=curr,
            charge_mah=np.where(charge, c["cap"], 0.0),
            discharge_mah=np.where(dis, c["cap"], 0.0),
            charge_mwh=np.where(charge, c["eng"], 0.0),
            discharge_mwh=np.where(dis, c["eng"], 0.0),
        )

    def _execute(self, program: CyclerProgram, pot: Any, clock: Any, t0: float) -> str:
        steps = program.steps
        counts: dict[int, int] = {}
        pc, seq, cycle = 0, 0, 1
        safety = program.safety
        while pc < len(steps):
            step = steps[pc]
            if isinstance(step, CyclerLoop):
                counts[pc] = counts.get(pc, 0) + 1
                if counts[pc] < step.count:
                    for k in list(counts):
                        if step.first - 1 <= k < pc:
                            del counts[k]  # loops nested in this one start afresh
                    pc = step.first - 1
                    cycle += 1
                else:
                    counts[pc] = 0
                    pc += 1
                continue
            seq += 1
            with self.lock:
                self.step, self.cycle = pc + 1, cycle
            tech = _technique(step)
            t_start = clock.now()
            q, e_acc = 0.0, 0.0
            t_prev: float | None = t_start
            i_prev: float | None = None
            v_prev: float | None = None
            for block in pot.run(tech):
                if self._stop.is_set():
                    pot.cell_off()
                    return "stop"
                n = len(block)
                if n == 0:
                    continue
                t, v, i = block.t, block.voltage, block.current
                tp = np.concatenate((np.array([t_start if t_prev is None else t_prev]), t[:-1]))
                ip = np.concatenate(([i[0] if i_prev is None else i_prev], i[:-1]))
                vp = np.concatenate(([v[0] if v_prev is None else v_prev], v[:-1]))
                qs = q + np.cumsum((t - tp) * (i + ip) * 0.5)
                es = e_acc + np.cumsum(np.abs((t - tp) * (i * v + ip * vp) * 0.5))
                keep = n
                trip = ""
                after = self.owner.protect_after(self.chlid)
                if after is not None:
                    over = np.nonzero(t - t0 >= after)[0]
                    if len(over):
                        keep, trip = int(over[0]) + 1, f"protection tripped at {after:g} s (injected)"
                lo, hi = safety.voltage_min, safety.voltage_max
                out = np.zeros(n, dtype=bool)
                if lo is not None:
                    out |= v < lo
                if hi is not None:
                    out |= v > hi
                bad = np.nonzero(out)[0]
                if len(bad) and int(bad[0]) + 1 <= keep:
                    keep, trip = int(bad[0]) + 1, f"voltage {v[int(bad[0])]:.4f} V outside the protection limits"
                cols = {
                    "testtime": t[:keep] - t0,
                    "steptime": t[:keep] - t_start,
                    "volt": v[:keep],
                    "curr": i[:keep] * 1e3,
                    "cap": np.abs(qs[:keep]) / 3.6,
                    "eng": es[:keep] / 3.6,
                    "cycleid": np.full(keep, cycle, dtype=float),
                    "stepid": np.full(keep, pc + 1, dtype=float),
                    "stepseq": np.full(keep, seq, dtype=float),
                }
                with self.lock:
                    self.cols.append(cols)
                    self.last = {k: float(cols[k][-1]) for k in COLUMNS}
                if trip:
                    pot.cell_off()
                    self.protect_info = trip
                    return "protect"
                q, e_acc = float(qs[-1]), float(es[-1])
                t_prev, i_prev, v_prev = float(t[-1]), float(i[-1]), float(v[-1])
            pc += 1
        return "finish"

    # ------------------------------------------------------------------ replies
    def page(self, startpos: int, count: int) -> dict[str, np.ndarray]:
        lost = self.owner.lost_tail(self.chlid)
        with self.lock:
            lo = max(0, startpos - 1)
            hi = max(lo, min(self.cols.n - lost, lo + max(0, count)))
            return {k: self.cols.data[k][lo:hi].copy() for k in COLUMNS} | {
                "seqid": np.arange(lo + 1, hi + 1, dtype=float)
            }


def _technique(step: Any) -> Technique:
    if isinstance(step, CyclerRest):
        return OpenCircuit(step.duration, step.record)
    if isinstance(step, CyclerCC):
        up = step.voltage_limit if step.current > 0 else None
        down = step.voltage_limit if step.current < 0 else None
        limits = Limits(duration=step.duration, charge=step.charge, voltage_above=up, voltage_below=down)
        return ConstantCurrent(step.current, limits, step.record)
    if isinstance(step, CyclerCV):
        limits = Limits(duration=step.duration, current_below=step.current_below)
        return ConstantPotential(step.voltage, limits, record=step.record)
    raise StepFileError(f"step {step!r} is not emulated")


def _cell_of(remark: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if "labctl cell:" in remark:
        for part in remark.split("labctl cell:", 1)[1].split():
            k, _, v = part.partition("=")
            if v:
                out[k] = v
    return out


# ---------------------------------------------------------------------------------- the server
class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(0.2)
        buf = b""
        while not owner._closing.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while TERMINATOR in buf:
                msg, buf = buf.split(TERMINATOR, 1)
                reply, fault = owner.dispatch(msg)
                try:
                    if fault is not None and fault.kind == "slow":
                        time.sleep(fault.delay)
                    if fault is not None and fault.kind == "partial":
                        sock.sendall(reply[: len(reply) // 2])
                        sock.close()
                        return
                    sock.sendall(reply)
                except OSError:
                    return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: NewareEmulator


class NewareEmulator:
    """A BTS API server with ``channels`` channels on device ``devid``, sub-device ``subdevid``."""

    def __init__(
        self,
        *,
        clock: Any,
        preset: Any,
        seed: int = 0,
        channels: int = 8,
        devid: int = 27,
        subdevid: int = 1,
        devtype: int = 24,
        noise: bool = True,
        port: int = 0,
        data_dir: str | Path | None = None,
    ) -> None:
        self.clock = clock
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.preset = preset
        self.seed = int(seed)
        self.noise = bool(noise)
        self.devid, self.subdevid, self.devtype = int(devid), int(subdevid), int(devtype)
        self.chl = {c: Channel(self, c) for c in range(1, int(channels) + 1)}
        self.faults: list[EmulatorFault] = []
        self.log: list[str] = []
        self.starts: list[tuple[int, str, str]] = []  # (chlid, barcode, step file) of every start answered ok
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._srv = _Server(("127.0.0.1", int(port)), _Handler)
        self._srv.owner = self
        self._thread = threading.Thread(
            target=self._srv.serve_forever, kwargs={"poll_interval": 0.05}, name="neware-emulator", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._srv.server_address[1])

    def channel_names(self) -> list[str]:
        return [f"{self.devid}-{self.subdevid}-{c}" for c in self.chl]

    def close(self) -> None:
        self._closing.set()
        for ch in self.chl.values():
            ch._stop.set()
        self._srv.shutdown()
        self._srv.server_close()

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str, **kw: Any) -> EmulatorFault:
        f = EmulatorFault(kind, **kw)
        with self._lock:
            self.faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take(self, kind: str, cmd: str, chlid: int | None = None) -> EmulatorFault | None:
        with self._lock:
            for f in self.faults:
                if f.kind == kind and f.on in (None, cmd) and (f.channel is None or f.channel == chlid):
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                    return f
        return None

    def lost_tail(self, chlid: int) -> int:
        """Points at the end of ``chlid``'s test that ``download`` never serves (fault ``lose_tail``)."""
        with self._lock:
            for f in self.faults:
                if f.kind == "lose_tail" and f.channel in (None, chlid):
                    return max(0, int(f.count))
        return 0

    def protect_after(self, chlid: int) -> float | None:
        with self._lock:
            for f in self.faults:
                if f.kind == "protect" and f.channel in (None, chlid):
                    return f.after
        return None

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, msg: bytes) -> tuple[bytes, EmulatorFault | None]:
        try:
            root = ET.fromstring(msg)
            cmd = (root.findtext("cmd") or "").strip()
        except ET.ParseError:
            return frame("<cmd>error</cmd><result>malformed request</result>"), None
        self.log.append(cmd)
        fault = self._take("slow", cmd) or self._take("partial", cmd)
        wrong = self._take("wrong_subdevid", cmd) is not None
        handler = getattr(self, f"_cmd_{cmd}", None)
        body = f"<cmd>{cmd}</cmd><result>unknown command</result>" if handler is None else handler(root, wrong)
        return frame(body), fault

    def _addr(self, chlid: int, wrong: bool) -> str:
        sub = self.subdevid + 1 if wrong else self.subdevid
        return f'ip="127.0.0.1" devtype="{self.devtype}" devid="{self.devid}" subdevid="{sub}" chlid="{chlid}"'

    def _target(self, el: ET.Element) -> Channel | None:
        try:
            if int(el.get("devid", -1)) != self.devid or int(el.get("subdevid", -1)) != self.subdevid:
                return None
            return self.chl.get(int(el.get("chlid", -1)))
        except ValueError:
            return None

    def _cmd_connect(self, root: ET.Element, wrong: bool) -> str:
        return "<cmd>connect</cmd><result>ok</result>"

    def _cmd_getdevinfo(self, root: ET.Element, wrong: bool) -> str:
        items = "".join(
            f'<channel ip="127.0.0.1" devtype="{self.devtype}" devid="{self.devid}" subdevid="{self.subdevid}" '
            f'Channelid="{c}">true</channel>'
            for c in self.chl
        )
        return f'<cmd>getdevinfo</cmd><middle count="{len(self.chl)}">{items}</middle>'

    def _each(self, root: ET.Element, cmd: str, wrong: bool, fn: Any) -> str:
        lst = root.find("list")
        out = []
        for el in [] if lst is None else list(lst):
            if el.tag == "backup":
                continue
            ch = self._target(el)
            chlid = int(el.get("chlid", -1) or -1)
            if ch is None:
                out.append(f"<{el.tag} {self._addr(chlid, wrong)}>false</{el.tag}>")
            else:
                attrs, text = fn(ch, el)
                out.append(f"<{el.tag} {self._addr(ch.chlid, wrong)}{attrs}>{text}</{el.tag}>")
        return f'<cmd>{cmd}</cmd><list count="{len(out)}">{"".join(out)}</list>'

    def _cmd_getchlstatus(self, root: ET.Element, wrong: bool) -> str:
        return self._each(root, "getchlstatus", wrong, lambda ch, el: ("", ch.state))

    def _cmd_inquire(self, root: ET.Element, wrong: bool) -> str:
        def one(ch: Channel, el: ET.Element) -> tuple[str, str]:
            with ch.lock:
                last = ch.last
                volt, curr = float(last.get("volt", 0.0)), float(last.get("curr", 0.0))
                attrs = (
                    f' workstatus="{ch.state}" testid="{ch.testid}" barcode="{_esc(ch.barcode)}" step="{ch.step}"'
                    f' cycle="{ch.cycle}" volt="{volt!r}" curr="{curr!r}"'
                    f' testtime="{float(last.get("testtime", 0.0))!r}" count="{ch.cols.n}"'
                    f' protectinfo="{_esc(ch.protect_info)}"'
                )
            return attrs, "true"

        return self._each(root, "inquire", wrong, one)

    def _cmd_inquiredf(self, root: ET.Element, wrong: bool) -> str:
        def one(ch: Channel, el: ET.Element) -> tuple[str, str]:
            with ch.lock:
                return f' testid="{ch.testid}" count="{ch.cols.n}"', "true"

        return self._each(root, "inquiredf", wrong, one)

    def _cmd_start(self, root: ET.Element, wrong: bool) -> str:
        def one(ch: Channel, el: ET.Element) -> tuple[str, str]:
            if self._take("start_false", "start", ch.chlid) is not None:
                return "", "false"
            path = (el.text or "").strip()
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                program = parse_step_xml(text)
            except (OSError, StepFileError):
                return "", "false"
            barcode = el.get("barcode", "")
            if not ch.start(program, barcode, path, text):
                return "", "false"
            self.starts.append((ch.chlid, barcode, path))
            return f' testid="{ch.testid}"', "ok"

        return self._each(root, "start", wrong, one)

    def _cmd_stop(self, root: ET.Element, wrong: bool) -> str:
        return self._each(root, "stop", wrong, lambda ch, el: ("", "ok" if ch.stop() else "false"))

    def _cmd_continue(self, root: ET.Element, wrong: bool) -> str:
        return self._each(root, "continue", wrong, lambda ch, el: ("", "false"))

    def _cmd_download(self, root: ET.Element, wrong: bool) -> str:
        el = root.find("download")
        ch = None if el is None else self._target(el)
        if el is None or ch is None:
            return f'<cmd>download</cmd><list count="0" testid="0" {self._addr(-1, wrong)}></list>'
        try:
            start, count, testid = int(el.get("startpos", 1)), int(el.get("count", 0)), int(el.get("testid", 0))
        except ValueError:
            start, count, testid = 1, 0, 0
        if testid not in (0, ch.testid):
            count = 0  # only the latest test's points are kept
        cols = ch.page(start, count)
        n = len(cols["seqid"])
        c = {k: v.tolist() for k, v in cols.items()}
        rows = [
            f'<name seqid="{int(c["seqid"][j])}" testtime="{c["testtime"][j]!r}" '
            f'steptime="{c["steptime"][j]!r}" volt="{c["volt"][j]!r}" curr="{c["curr"][j]!r}" '
            f'cap="{c["cap"][j]!r}" eng="{c["eng"][j]!r}" cycleid="{int(c["cycleid"][j])}" '
            f'stepid="{int(c["stepid"][j])}" steptype="0" stepseq="{int(c["stepseq"][j])}"/>'
            for j in range(n)
        ]
        head = f'<cmd>download</cmd><list count="{n}" testid="{ch.testid}" {self._addr(ch.chlid, wrong)}>'
        return head + "".join(rows) + "</list>"


def _esc(s: str) -> str:
    return str(s).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
