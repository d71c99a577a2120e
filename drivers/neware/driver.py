"""The Neware BTS cycler driver: the :class:`~labctl.drivers.contracts.Cycler` contract over the BTS API.

Station entry::

    instruments:
      bts1: {driver: neware, host: 192.168.1.20, port: 502,
             step_folder: /mnt/bts/steps,          # where labctl writes step files
             bts_folder: 'C:\\labctl\\steps',      # the same folder as the BTS PC sees it
             backup_dir: 'C:\\Neware data',
             data_dir: /mnt/bts/data,              # the BTS PC's data folder, as labctl sees it (a share)
             ndax_timeout: 60}                     # s to wait at a job's end for its .ndax
    channels:
      N1: {cycler: bts1, address: 27-1-1}

A job id is ``devid-subdevid-chlid:testid``; a harvest cursor is the number of the last
data point taken (the BTS numbers a test's points from 1).  Live data come from
``download`` pages; with ``data_dir`` set, :meth:`NewareCycler.data_file` finds the test's
``.ndax`` there (named ``<barcode>_<devid>-<subdevid>-<chlid>-<testid>.ndax``, BTS's barcode +
channel + test id naming; check it against your BTS's file-name setting), which
:mod:`labctl.app.cycler_run` reads at the job's end (a driver reads no vendor files itself).
Download columns (units): ``testtime``/``steptime`` s, ``volt`` V, ``curr`` mA, ``cap`` mAh
(the step's, unsigned), ``eng`` mWh, ``cycleid``, ``stepid`` (step number in the step file),
``stepseq`` (the how-many-th step the test is in).
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from ..contracts import CONNECT_TIMEOUT, DeviceError, Harvest, JobRefused, JobState, JobStatus
from ..cycler import CyclerProgram
from ..techniques import SampleBlock
from .bts import BtsClient, BtsError, ChannelAddress, parse_channel_name
from .stepfile import to_step_xml

WORKSTATUS = {
    "working": JobState.RUNNING,
    "start": JobState.RUNNING,
    "pause": JobState.PAUSED,
    "finish": JobState.COMPLETED,
    "stop": JobState.STOPPED,
    "protect": JobState.FAILED,
}


class NewareCycler:
    """Every channel of one BTS API server (one BTS PC), as a :class:`Cycler`."""

    supports_pause = False  # the BTS API has ``continue`` but no documented pause command
    supports_continue = True

    def __init__(
        self,
        *,
        clock: Any = None,
        host: str = "127.0.0.1",
        port: int = 502,
        step_folder: str = ".",
        bts_folder: str | None = None,
        backup_dir: str = "",
        timeout: float = 5.0,
        page_size: int = 5000,
        username: str = "admin",
        password: str = "neware",
        channels: int | None = None,
        poll: float = 10.0,
        data_dir: str | None = None,
        ndax_timeout: float = 60.0,
    ) -> None:
        self.clock = clock
        self.client = BtsClient(str(host), int(port), timeout=float(timeout))
        self.step_folder = Path(step_folder)
        self.bts_folder = None if bts_folder is None else str(bts_folder)
        self.backup_dir = str(backup_dir)
        self.page_size = int(page_size)
        self.username, self.password = str(username), str(password)
        self.expected_channels = None if channels is None else int(channels)
        self.poll = float(poll)
        self.data_dir = None if data_dir in (None, "") else Path(str(data_dir))
        self.ndax_timeout = float(ndax_timeout)
        self._channels: dict[str, ChannelAddress] = {}
        self.last_step_file: str | None = None

    # ------------------------------------------------------------------ link
    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        self.client.open(timeout)
        self.client.connect(self.username, self.password, timeout=timeout)
        self._channels = {a.name: a for a in self.client.getdevinfo()}
        if not self._channels:
            raise DeviceError(f"the BTS at {self.client.address} lists no channels (are its devices online?)")
        if self.expected_channels is not None and len(self._channels) < self.expected_channels:
            raise DeviceError(
                f"the BTS at {self.client.address} lists {len(self._channels)} channels, the station expects "
                f"{self.expected_channels}"
            )

    def reconnect(self) -> None:
        self.connect(self.client.timeout)

    def identify(self) -> str:
        return f"Neware BTS API at {self.client.address}, {len(self._channels)} channels"

    def read_state(self) -> dict[str, str]:
        """Work status of every channel, by one ``inquire`` (nothing is changed)."""
        addrs = list(self._channels.values())
        infos = self.client.inquire(addrs) if addrs else []
        by: dict[str, list[str]] = {}
        for a, info in zip(addrs, infos, strict=True):
            by.setdefault(str(info.get("workstatus", "?")), []).append(a.name)
        return {"channels": str(len(addrs)), **{state: ", ".join(names) for state, names in sorted(by.items())}}

    def channels(self) -> list[str]:
        return list(self._channels)

    def address(self, channel: str) -> ChannelAddress:
        parse_channel_name(channel)
        if channel not in self._channels:
            raise DeviceError(
                f"the BTS at {self.client.address} has no channel {channel}; it has {', '.join(self._channels)}"
            )
        return self._channels[channel]

    def close(self) -> None:
        """Release the link; jobs go on running on the cycler (it keeps the cells safe)."""
        self.client.close()

    release = close

    # ------------------------------------------------------------------ jobs
    def step_file_text(self, program: CyclerProgram) -> str:
        """The Neware step XML of ``program``."""
        return to_step_xml(program)

    def write_step_file(self, program: CyclerProgram, barcode: str) -> tuple[str, str, str]:
        """Write the step file into ``step_folder``: (local path, path on the BTS PC, sha256)."""
        text = to_step_xml(program)
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        name = f"labctl-{_safe(barcode)}-{sha[:12]}.xml"
        self.step_folder.mkdir(parents=True, exist_ok=True)
        local = self.step_folder / name
        tmp = local.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(local)
        if self.bts_folder is None:
            remote = str(local.resolve())
        elif "\\" in self.bts_folder or ":" in self.bts_folder[:3]:
            remote = str(PureWindowsPath(self.bts_folder) / name)
        else:
            remote = str(Path(self.bts_folder) / name)
        self.last_step_file = str(local)
        return str(local), remote, sha

    def channel_state(self, channel: str) -> dict[str, Any]:
        return self.client.inquire([self.address(channel)])[0]

    def find_job(self, channel: str, barcode: str) -> str | None:
        """The job on ``channel`` started with ``barcode``, if its latest test is that one."""
        info = self.channel_state(channel)
        if info.get("barcode") != barcode:
            return None
        testid = int(info.get("testid", 0) or 0)
        return f"{channel}:{testid}" if testid else None

    def data_file(self, job: str, barcode: str = "") -> Path | None:
        """The job's ``.ndax`` in ``data_dir`` if it is there now (None without ``data_dir``).

        Looked up by channel and test id (``*<devid>-<subdevid>-<chlid>-<testid>.ndax``); of
        several, the one named with ``barcode``.  A ``.part`` file being written is not one."""
        if self.data_dir is None:
            return None
        channel, _, test = job.rpartition(":")
        try:
            devid, sub, chl = parse_channel_name(channel)
            testid = int(test)
        except ValueError:
            raise DeviceError(f"{job!r} is not a Neware job id (devid-subdevid-chlid:testid)") from None
        try:
            found = sorted(self.data_dir.glob(f"*{devid}-{sub}-{chl}-{testid}.ndax"))
        except OSError:
            return None
        tail = f"{devid}-{sub}-{chl}-{testid}.ndax"
        found = [p for p in found if p.name == tail or p.name.endswith("_" + tail)]
        if not found:
            return None
        named = [p for p in found if barcode and p.name.startswith(_safe(barcode) + "_")]
        return (named or found)[0]

    def submit(self, channel: str, program: Any, *, barcode: str = "", step_file: str | None = None) -> str:
        """Start ``program`` (a :class:`CyclerProgram`) on ``channel``; the job id.

        ``step_file``: the path on the BTS PC of an already written step file (from
        :meth:`write_step_file`); otherwise one is written now.  Raises :class:`DeviceError`
        when the channel is busy or the BTS answers the start with anything but ``ok``."""
        addr = self.address(channel)
        info = self.client.inquire([addr])[0]
        state = info.get("workstatus", "")
        if state not in ("finish", "stop", "protect", ""):
            raise DeviceError(f"channel {channel} is {state!r}: a job starts only on a finished or stopped channel")
        if step_file is None:
            _, step_file, _ = self.write_step_file(program, barcode)
        ok, text = self.client.start(addr, step_file, barcode, self.backup_dir)
        if not ok:
            raise StartRefused(f"the BTS refused to start channel {channel} (start answered {text!r})")
        testid, _ = self.client.inquiredf(addr)
        return f"{channel}:{testid}"

    def _job(self, job: str) -> tuple[ChannelAddress, int]:
        channel, _, test = job.rpartition(":")
        try:
            return self.address(channel), int(test)
        except ValueError:
            raise DeviceError(f"{job!r} is not a Neware job id (devid-subdevid-chlid:testid)") from None

    def status(self, job: str) -> JobStatus:
        addr, testid = self._job(job)
        info = self.client.inquire([addr])[0]
        current = int(info.get("testid", 0) or 0)
        if current and current != testid:
            return JobStatus(JobState.FAILED, detail=f"channel {addr.name} now runs test {current}, not {testid}")
        ws = info.get("workstatus", "")
        state = WORKSTATUS.get(ws)
        if state is None:
            return JobStatus(JobState.FAILED, detail=f"unknown work status {ws!r}")
        return JobStatus(
            state,
            step=_int(info.get("step")),
            cycle=_int(info.get("cycle")),
            voltage=_float(info.get("volt")),
            current=None if _float(info.get("curr")) is None else float(info["curr"]) * 1e-3,
            detail=ws if ws != "protect" else f"protect: {info.get('protectinfo', 'the channel protection tripped')}",
        )

    def stop(self, job: str) -> None:
        addr, _ = self._job(job)
        ok, text = self.client.stop(addr)
        if not ok:
            raise DeviceError(f"the BTS did not stop channel {addr.name} (stop answered {text!r})")

    def pause(self, job: str) -> None:
        raise DeviceError("the Neware BTS API offers no pause command; stop the job or pause it in BTS")

    def resume(self, job: str) -> None:
        addr, _ = self._job(job)
        ok, text = self.client.continue_(addr)
        if not ok:
            raise DeviceError(f"the BTS did not continue channel {addr.name} (continue answered {text!r})")

    def harvest(self, job: str, cursor: str | None) -> Harvest:
        """The next page of points after ``cursor`` (at most ``page_size``); an empty block when none is new."""
        addr, testid = self._job(job)
        after = int(cursor or 0)
        got, cols = self.client.download(addr, testid, after + 1, self.page_size)
        if got and got != testid:
            raise BtsError(f"download for test {testid} of {addr.name} returned test {got}")
        n = len(cols["seqid"])
        if n and not np.array_equal(cols["seqid"], np.arange(after + 1, after + 1 + n)):
            raise BtsError(
                f"download of {addr.name} from point {after + 1}: points {int(cols['seqid'][0])}.."
                f"{int(cols['seqid'][-1])} are not the ones asked for"
            )
        block = SampleBlock(cols["testtime"], cols["volt"], cols["curr"] * 1e-3)
        return Harvest(
            block,
            cols["stepid"].astype(np.int64),
            cols["cycleid"].astype(np.int64),
            str(after + n),
            extra={
                "step_seq": cols["stepseq"].astype(np.int64),
                "capacity_mAh": cols["cap"],
                "energy_mWh": cols["eng"],
                "step_time": cols["steptime"],
            },
        )


class StartRefused(JobRefused):
    """The cycler answered a start with something other than ``ok``."""


def ndax_file_name(barcode: str, devid: int, subdevid: int, chlid: int, testid: int) -> str:
    """The name a BTS gives a test's data file: ``<barcode>_<devid>-<subdevid>-<chlid>-<testid>.ndax``."""
    head = f"{_safe(barcode)}_" if barcode else ""
    return f"{head}{devid}-{subdevid}-{chlid}-{testid}.ndax"


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s) or "job"


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
