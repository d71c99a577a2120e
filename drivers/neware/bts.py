"""The Neware BTS API: XML commands over TCP, and a client with a timeout on every call.

Framing (as the BTS 8 API and the aurora-neware client use it): every message is
``<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">`` + body + ``</bts>`` followed by
the terminator ``"\\n\\n#\\r\\n"``; replies have the same frame.  A body is ``<cmd>NAME</cmd>``
plus the command's elements; commands that address channels carry a ``<list count="n">`` of
elements with ``ip``, ``devtype``, ``devid``, ``subdevid`` and ``chlid`` attributes.  A
channel is named ``devid-subdevid-chlid`` (``27-1-3``).

The client (:class:`BtsClient`) reads a reply until its terminator within the call's
timeout (a silent or half-sent reply is a :class:`~labctl.drivers.contracts.DeviceTimeout`,
a closed link a :class:`~labctl.drivers.transport.TransportError`), and checks that every
reply element names the channel it asked about (a reply for another sub-device is a
:class:`WrongChannel` error, never data filed under the wrong cell).
"""

from __future__ import annotations

import contextlib
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..contracts import DeviceError, DeviceTimeout, WrongChannelReply
from ..transport import TransportError

HEADER = '<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
FOOTER = "</bts>"
TERMINATOR = b"\n\n#\r\n"

#: columns of a download record, as floats, in this order (see :func:`parse_download`)
DOWNLOAD_FIELDS = ("seqid", "testtime", "steptime", "volt", "curr", "cap", "eng", "cycleid", "stepid", "stepseq")


class BtsError(DeviceError):
    """The BTS answered, but not what was asked (an error reply, a malformed reply)."""


class WrongChannel(BtsError, WrongChannelReply):
    """A reply element names another channel (device, sub-device or channel id) than the request."""


def frame(body: str) -> bytes:
    return (HEADER + body + FOOTER).encode("utf-8") + TERMINATOR


def unframe(data: bytes) -> ET.Element:
    """The ``<bts>`` element of one framed message (without its terminator)."""
    if data.endswith(TERMINATOR):
        data = data[: -len(TERMINATOR)]
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise BtsError(f"malformed reply from the BTS ({e}): {data[:120]!r}") from None
    if root.tag != "bts":
        raise BtsError(f"reply is not a <bts> message: <{root.tag}>")
    return root


@dataclass(frozen=True)
class ChannelAddress:
    """One cycler channel as the BTS names it."""

    ip: str
    devtype: int
    devid: int
    subdevid: int
    chlid: int

    @property
    def name(self) -> str:
        return f"{self.devid}-{self.subdevid}-{self.chlid}"

    def attrs(self) -> str:
        return (
            f'ip="{self.ip}" devtype="{self.devtype}" devid="{self.devid}" '
            f'subdevid="{self.subdevid}" chlid="{self.chlid}"'
        )

    def matches(self, el: ET.Element) -> bool:
        try:
            return (int(el.get("devid", -1)), int(el.get("subdevid", -1)), int(el.get("chlid", -1))) == (
                self.devid,
                self.subdevid,
                self.chlid,
            )
        except ValueError:
            return False


def parse_channel_name(text: str) -> tuple[int, int, int]:
    """``"27-1-3"`` -> (27, 1, 3); ValueError otherwise."""
    parts = str(text).strip().split("-")
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not a Neware channel: write devid-subdevid-chlid, e.g. 27-1-3")
    try:
        a, b, c = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a Neware channel: write devid-subdevid-chlid, e.g. 27-1-3") from None
    return a, b, c


def parse_download(root: ET.Element) -> tuple[int, dict[str, np.ndarray]]:
    """(testid, columns) of a ``download`` reply; columns as float64 arrays (ints for ids)."""
    lst = root.find("list")
    if lst is None:
        raise BtsError("download reply without <list>")
    try:
        testid = int(lst.get("testid", "0"))
    except ValueError:
        raise BtsError(f"download reply: testid {lst.get('testid')!r} is not a number") from None
    rows = list(lst)
    n = len(rows)
    out = {k: np.empty(n) for k in DOWNLOAD_FIELDS}
    try:
        for j, el in enumerate(rows):
            a = el.attrib
            for k in DOWNLOAD_FIELDS:
                out[k][j] = float(a[k])
    except (KeyError, ValueError) as e:
        raise BtsError(f"download reply: record {j + 1} lacks or garbles {e}") from None
    return testid, out


class BtsClient:
    """A connection to the BTS API server (the BTS PC, port 502 by default).

    ``timeout``: seconds of wall time one command may take, reply included.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 502, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = int(port)
        self.timeout = float(timeout)
        self._sock: socket.socket | None = None
        self._buf = b""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ link
    def open(self, timeout: float | None = None) -> None:
        self.close()
        t = self.timeout if timeout is None else timeout
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=t)
        except OSError as e:
            raise TransportError(f"cannot reach the BTS API at {self.address}: {e}") from None
        self._buf = b""

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buf = b""

    def command(self, body: str, timeout: float | None = None) -> ET.Element:
        """Send one command, return the ``<bts>`` element of its reply (within ``timeout``)."""
        if self._sock is None:
            self.open()
        assert self._sock is not None
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        self._buf = b""
        try:
            self._sock.settimeout(t)
            self._sock.sendall(frame(body))
            while TERMINATOR not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise TransportError(f"the BTS at {self.address} closed the connection mid-reply")
                self._buf += chunk
        except TimeoutError:
            got = len(self._buf)
            self.close()  # a late rest of this reply must not be read as the next one's
            raise DeviceTimeout(
                f"no complete reply from the BTS at {self.address} within {t:g} s ({got} bytes arrived)"
            ) from None
        except OSError as e:
            self.close()
            raise TransportError(f"link to the BTS at {self.address} failed: {e}") from None
        msg, _, rest = self._buf.partition(TERMINATOR)
        self._buf = rest
        return unframe(msg)

    # ------------------------------------------------------------------ commands
    def connect(self, username: str = "admin", password: str = "neware", timeout: float | None = None) -> None:
        root = self.command(
            f"<cmd>connect</cmd><username>{username}</username><password>{password}</password><type>bfgs</type>",
            timeout,
        )
        result = (root.findtext("result") or "").strip().lower()
        if result != "ok":
            raise BtsError(f"the BTS refused the connection (result {result or 'missing'!r})")

    def getdevinfo(self) -> list[ChannelAddress]:
        root = self.command("<cmd>getdevinfo</cmd>")
        middle = root.find("middle")
        if middle is None:
            raise BtsError("getdevinfo reply without <middle>")
        out = []
        for el in middle:
            try:
                out.append(
                    ChannelAddress(
                        el.get("ip", ""),
                        int(el.get("devtype", 0)),
                        int(el.get("devid", 0)),
                        int(el.get("subdevid", 0)),
                        int(el.get("Channelid", el.get("chlid", 0))),
                    )
                )
            except ValueError:
                raise BtsError(f"getdevinfo: garbled channel {el.attrib}") from None
        return out

    def _per_channel(
        self, cmd: str, tag: str, addrs: list[ChannelAddress], extra: str = "", text: str = "true"
    ) -> list[ET.Element]:
        items = "".join(f"<{tag} {a.attrs()}{extra}>{text}</{tag}>" for a in addrs)
        root = self.command(f'<cmd>{cmd}</cmd><list count="{len(addrs)}">{items}</list>')
        return self._check_list(root, addrs, cmd)

    @staticmethod
    def _check_list(root: ET.Element, addrs: list[ChannelAddress], cmd: str) -> list[ET.Element]:
        lst = root.find("list")
        if lst is None:
            raise BtsError(f"{cmd} reply without <list>")
        els = list(lst)
        if len(els) != len(addrs):
            raise BtsError(f"{cmd}: asked about {len(addrs)} channel(s), the reply has {len(els)}")
        for a, el in zip(addrs, els, strict=True):
            if not a.matches(el):
                raise WrongChannel(
                    f"{cmd}: asked about channel {a.name}, the BTS answered for "
                    f"{el.get('devid')}-{el.get('subdevid')}-{el.get('chlid')} (wrong device/sub-device id)"
                )
        return els

    def inquire(self, addrs: list[ChannelAddress]) -> list[dict[str, Any]]:
        els = self._per_channel("inquire", "inquire", addrs, extra=' aux="0" barcode="1"')
        return [dict(el.attrib) for el in els]

    def getchlstatus(self, addrs: list[ChannelAddress]) -> list[str]:
        els = self._per_channel("getchlstatus", "status", addrs)
        return [(el.text or "").strip() for el in els]

    def start(self, addr: ChannelAddress, step_file: str, barcode: str, backup_dir: str = "") -> tuple[bool, str]:
        """Start the step file (its path as the BTS PC sees it) on ``addr``; (ok, the reply text)."""
        item = f'<start {addr.attrs()} barcode="{_attr(barcode)}">{_text(step_file)}</start>'
        backup = (
            f'<backup backupdir="{_attr(backup_dir)}" remotedir="" filenametype="0" customfilename="" '
            'addtimewhenrepeat="0" createdirbydate="0" filetype="0" backupontime="1" '
            'backupontimeinterval="720" backupfree="1" />'
        )
        root = self.command(f'<cmd>start</cmd><list count="1">{item}{backup}</list>')
        el = self._check_list(root, [addr], "start")[0]
        text = (el.text or "").strip()
        return text.lower() == "ok", text

    def stop(self, addr: ChannelAddress) -> tuple[bool, str]:
        el = self._per_channel("stop", "stop", [addr])[0]
        text = (el.text or "").strip()
        return text.lower() == "ok", text

    def continue_(self, addr: ChannelAddress) -> tuple[bool, str]:
        """Resume a paused channel (``continue``)."""
        el = self._per_channel("continue", "continue", [addr])[0]
        text = (el.text or "").strip()
        return text.lower() == "ok", text

    def inquiredf(self, addr: ChannelAddress) -> tuple[int, int]:
        """(testid, number of data points) of the channel's latest test."""
        root = self.command(
            f'<cmd>inquiredf</cmd><list count="1"><chl devtype="{addr.devtype}" devid="{addr.devid}" '
            f'subdevid="{addr.subdevid}" chlid="{addr.chlid}" testid="0" /></list>'
        )
        el = self._check_list(root, [addr], "inquiredf")[0]
        try:
            return int(el.get("testid", "0")), int(el.get("count", "0"))
        except ValueError:
            raise BtsError(f"inquiredf: garbled reply {el.attrib}") from None

    def download(
        self, addr: ChannelAddress, testid: int, startpos: int, count: int
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Points ``startpos .. startpos+count-1`` (1-based) of test ``testid``: (testid, columns)."""
        root = self.command(
            f'<cmd>download</cmd><download devtype="{addr.devtype}" devid="{addr.devid}" '
            f'subdevid="{addr.subdevid}" chlid="{addr.chlid}" auxid="0" testid="{testid}" '
            f'startpos="{startpos}" count="{count}"/>'
        )
        lst = root.find("list")
        if lst is not None and not addr.matches(lst):
            raise WrongChannel(
                f"download: asked about channel {addr.name}, the BTS answered for "
                f"{lst.get('devid')}-{lst.get('subdevid')}-{lst.get('chlid')} (wrong device/sub-device id)"
            )
        return parse_download(root)


def _attr(s: str) -> str:
    return str(s).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _text(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;")
