"""Messages at the end of a run: an e-mail and a JSON POST to each webhook of the config.

``notify_run_end(config, event)`` sends one run's end to every target of
``config.notify`` (when ``notify.on`` names how the run ended) and returns one
:class:`Delivery` per target.  It never raises: a target that fails after its
retries is a ``Delivery`` with ``ok=False``, logged (``labctl.notify``) without any
secret.  :class:`RunNotifier` does the same in a background thread, so a run (or a
campaign worker) hands the end over and goes on; ``join()`` waits for the
deliveries (tests, the end of ``labctl run``, a worker shutting down).

Both channels use the standard library (``smtplib``/``email``, ``urllib``): no new
dependency, explicit timeouts on every connection, and full control of what is
retried and of what reaches a log line.  A larger library such as apprise would
bring dozens of services labctl does not need and its own logging of URLs, which
for webhooks often contain the token.

Retries: ``1 + notify.retries`` attempts per target, waiting ``backoff``, then twice
that, ...  Connection errors, timeouts, HTTP 5xx/408/429 and SMTP 4xx replies are
retried; a refusal that another attempt cannot change (HTTP 4xx, SMTP 5xx, a
rejected login) is not.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from labctl.app.config import EmailConfig, LabConfig, NotifyEvent, WebhookConfig, bare_address, load_config

__all__ = [
    "Delivery",
    "RunEndEvent",
    "RunNotifier",
    "email_message",
    "notify_run_end",
    "notify_test",
    "parse_safety_trip",
    "webhook_payload",
]

log = logging.getLogger("labctl.notify")
log.addHandler(logging.NullHandler())  # the application decides where warnings go (labctl run prints its own)

_TEXT_LIMIT = 2000  # characters of a reason kept in a message


# --------------------------------------------------------------------------- what is sent


@dataclass(frozen=True)
class RunEndEvent:
    """How one run ended, as the messages tell it.

    ``status`` is a ``runs.status`` value (``completed``, ``aborted``, ``failed``,
    ``safety``, ``interrupted``); ``started``/``ended`` are Unix times; ``safety``
    holds the values of a safety trip (see :func:`parse_safety_trip`).
    """

    run_id: int | None
    status: str
    reason: str | None = None
    protocol: str | None = None
    cell: str | None = None
    channel: str | None = None
    station: str | None = None
    started: float | None = None
    ended: float | None = None
    n_samples: int | None = None
    safety: Mapping[str, Any] | None = None
    simulated: bool | None = None
    test: bool = False
    host: str = field(default_factory=socket.gethostname)

    @property
    def event(self) -> NotifyEvent | None:
        return NotifyEvent.from_status(self.status)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)

    @classmethod
    def from_run(cls, outcome: Any | None = None, row: Mapping[str, Any] | None = None) -> RunEndEvent:
        """The event of a finished run from its ``RunOutcome`` and/or its database row
        (``Database.run(run_id)``); the outcome's status and reason win, the row adds the rest."""
        row = dict(row or {})
        meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
        status = getattr(outcome, "status", None) or row.get("status") or "failed"
        reason = getattr(outcome, "end_reason", None) or row.get("end_reason")
        n = getattr(outcome, "n_samples", None)
        started = row.get("started", row.get("started_unix"))
        ended = row.get("ended", row.get("ended_unix"))
        if ended is None and started is not None and outcome is not None and getattr(outcome, "duration", None):
            ended = float(started) + float(outcome.duration)
        status = str(getattr(status, "value", status))
        return cls(
            run_id=getattr(outcome, "run_id", None) if outcome is not None else row.get("id", row.get("run_id")),
            status=status,
            reason=reason,
            protocol=row.get("protocol"),
            cell=row.get("cell"),
            channel=row.get("channel"),
            station=(meta or {}).get("station"),
            started=float(started) if started is not None else None,
            ended=float(ended) if ended is not None else None,
            n_samples=int(n if n is not None else row.get("n_samples") or 0),
            safety=parse_safety_trip(reason) if NotifyEvent.from_status(status) is NotifyEvent.SAFETY_TRIP else None,
            simulated=row.get("simulated"),
        )

    # ------------------------------------------------------------------ texts
    def headline(self) -> str:
        """One line: ``run 42 safety_trip: voltage 2.5 V outside ... (cell S-1, channel A)``."""
        what = self.event.value if self.event is not None else self.status
        run = f"run {self.run_id}" if self.run_id is not None else "run"
        where = ", ".join(
            f"{k} {v}" for k, v in (("cell", self.cell), ("channel", self.channel), ("station", self.station)) if v
        )
        text = f"{run} {what}"
        if self.reason:
            text += f": {_one_line(self.reason, 160)}"
        if where:
            text += f" ({where})"
        return ("[test] " if self.test else "") + text

    def fields(self) -> list[tuple[str, str]]:
        """The message body as (name, value) lines."""
        rows: list[tuple[str, str]] = [
            ("run", str(self.run_id) if self.run_id is not None else "-"),
            ("status", self.status),
            ("reason", _clip(self.reason or "-")),
            ("protocol", self.protocol or "-"),
            ("cell", self.cell or "-"),
            ("channel", self.channel or "-"),
        ]
        if self.station:
            rows.append(("station", self.station))
        rows += [
            ("started", _when(self.started)),
            ("ended", _when(self.ended)),
            ("duration", _duration(self.duration)),
            ("samples", f"{self.n_samples:,}" if self.n_samples is not None else "-"),
        ]
        if self.simulated is not None:
            rows.append(("simulated", "yes" if self.simulated else "no"))
        if self.safety:
            s = self.safety
            limit = s.get("limit")
            lim = f"[{limit[0]:g}, {limit[1]:g}]" if isinstance(limit, (list, tuple)) else f"{limit:g}"
            value = f"{s['value']:g} {s.get('unit', '')}".strip() if s.get("value") is not None else "-"
            rows.append(("safety trip", f"{s.get('quantity')} {value}, limit {lim} {s.get('unit', '')}".rstrip()))
            if s.get("t") is not None:
                rows.append(("trip at", f"t = {s['t']:g} s"))
        rows.append(("host", self.host))
        return rows


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    from labctl.core.formatting import fmt_duration

    return fmt_duration(s)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TRIPS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(
            rf"voltage (?P<value>{_NUM}) V outside the safety window \[(?P<lo>{_NUM}), (?P<hi>{_NUM})\] V"
            rf"(?: at t = (?P<t>{_NUM}) s)?"
        ),
        "voltage",
        "V",
    ),
    (
        re.compile(
            rf"current (?P<value>{_NUM}) mA above the safety limit (?P<limit>{_NUM}) mA(?: at t = (?P<t>{_NUM}) s)?"
        ),
        "current",
        "mA",
    ),
    (
        re.compile(
            rf"temperature (?P<value>{_NUM}) degC above the safety limit (?P<limit>{_NUM}) degC"
            rf"(?: at t = (?P<t>{_NUM}) s)?"
        ),
        "temperature",
        "degC",
    ),
    (re.compile(rf"maximum duration of (?P<limit>{_NUM}) h"), "duration", "h"),
)


def parse_safety_trip(reason: str | None) -> dict[str, Any] | None:
    """The values of a safety trip from its end reason (the engine's SafetyTrip message):
    ``{"quantity", "value", "unit", "limit", "t"}`` (limit a [low, high] pair for voltage),
    or ``None`` when the reason is not one the engine writes."""
    if not reason:
        return None
    for pattern, quantity, unit in _TRIPS:
        m = pattern.search(reason)
        if m is None:
            continue
        g = m.groupdict()
        limit: Any = [float(g["lo"]), float(g["hi"])] if g.get("lo") is not None else float(g["limit"])
        return {
            "quantity": quantity,
            "value": float(g["value"]) if g.get("value") is not None else None,
            "unit": unit,
            "limit": limit,
            "t": float(g["t"]) if g.get("t") is not None else None,
        }
    return None


def email_message(cfg: EmailConfig, event: RunEndEvent) -> EmailMessage:
    """The e-mail for ``event``: subject ``[labctl] <headline>``, a plain-text body."""
    msg = EmailMessage()
    msg["Subject"] = _one_line(f"[labctl] {event.headline()}", 200)
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=bare_address(cfg.sender).rsplit("@", 1)[-1])
    width = max(len(k) for k, _ in event.fields())
    lines = [event.headline(), ""]
    lines += [f"{k + ':':<{width + 1}} {v}" for k, v in event.fields()]
    if event.run_id is not None and not event.test:
        lines += ["", f"labctl show {event.run_id}    # steps, events and results of this run"]
    if event.test:
        lines += ["", "This is a test message from `labctl config notify-test`."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def webhook_payload(event: RunEndEvent) -> dict[str, Any]:
    """The JSON body POSTed to each webhook (``text`` is what chat webhooks show)."""
    return {
        "source": "labctl",
        "kind": "test" if event.test else "run_end",
        "text": event.headline(),
        "run_id": event.run_id,
        "status": event.status,
        "event": event.event.value if event.event is not None else None,
        "reason": _clip(event.reason) if event.reason else None,
        "protocol": event.protocol,
        "cell": event.cell,
        "channel": event.channel,
        "station": event.station,
        "started": _iso(event.started),
        "ended": _iso(event.ended),
        "started_unix": event.started,
        "ended_unix": event.ended,
        "duration_s": event.duration,
        "n_samples": event.n_samples,
        "simulated": event.simulated,
        "safety": dict(event.safety) if event.safety else None,
        "host": event.host,
    }


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Delivery:
    """One target's result: ``channel`` (email | webhook), ``target`` (no secret in it),
    ``ok``, ``attempts``, ``detail`` (the server's answer or the error), ``elapsed`` s."""

    channel: str
    target: str
    ok: bool
    attempts: int
    detail: str
    elapsed: float = 0.0


class _Retry(Exception):
    """A failure another attempt may fix."""


class _GiveUp(Exception):
    """A failure no further attempt will fix."""


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (_Retry, _GiveUp)):
        return str(exc)
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(exc, socket.timeout | TimeoutError):
            return "timed out"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read that timed out as a closed connection
        return "timed out" if "timed out" in str(exc) else "the server closed the connection"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _attempts(
    channel: str,
    target: str,
    send: Callable[[], str],
    *,
    retries: int,
    backoff: float,
    secrets: Iterable[str],
    sleep: Callable[[float], Any],
) -> Delivery:
    """Call ``send`` up to ``1 + retries`` times; never raises."""
    secrets = list(secrets)
    t0 = time.monotonic()
    detail = ""
    for attempt in range(1, retries + 2):
        try:
            answer = send()
        except _GiveUp as e:
            detail = _scrub(_describe(e), secrets)
            break
        except Exception as e:  # a delivery never raises into the run
            detail = _scrub(_describe(e), secrets)
            if attempt <= retries:
                wait = backoff * 2 ** (attempt - 1)
                log.info("%s %s: attempt %d failed (%s); retrying in %.3g s", channel, target, attempt, detail, wait)
                sleep(wait)
                continue
            break
        else:
            d = Delivery(channel, target, True, attempt, _scrub(answer, secrets), time.monotonic() - t0)
            log.info("%s %s: delivered (%s, attempt %d)", channel, target, d.detail, attempt)
            return d
    d = Delivery(channel, target, False, attempt, detail, time.monotonic() - t0)
    log.warning("%s %s: not delivered after %d attempt(s): %s", channel, target, attempt, detail)
    return d


def _email_target(cfg: EmailConfig) -> str:
    n = len(cfg.to)
    return f"{cfg.host}:{cfg.port} to {', '.join(cfg.to) if n <= 3 else f'{n} recipients'}"


def _send_email(cfg: EmailConfig, msg: EmailMessage) -> str:
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    try:
        if cfg.ssl:
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
    except smtplib.SMTPConnectError as e:
        raise _Retry(f"server refused the connection: {e.smtp_code} {_smtp_text(e.smtp_error)}") from None
    except ssl.SSLCertVerificationError as e:
        raise _GiveUp(f"TLS certificate not accepted: {e.verify_message or e}") from None
    sent = False
    try:
        try:
            if cfg.starttls:
                smtp.ehlo()
                smtp.starttls(context=context)
                smtp.ehlo()
            if cfg.username:
                password = cfg.password.get_secret_value() if cfg.password is not None else ""
                smtp.login(cfg.username, password)
            refused = smtp.send_message(
                msg, from_addr=bare_address(cfg.sender), to_addrs=[bare_address(a) for a in cfg.to]
            )
            sent = True
        except ssl.SSLCertVerificationError as e:
            raise _GiveUp(f"TLS certificate not accepted: {e.verify_message or e}") from None
        except smtplib.SMTPAuthenticationError as e:
            raise _GiveUp(f"login refused: {e.smtp_code} {_smtp_text(e.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError as e:
            raise _GiveUp(f"the server does not support this: {e}") from None
        except smtplib.SMTPRecipientsRefused as e:
            raise _GiveUp(f"every recipient refused: {', '.join(e.recipients)}") from None
        except smtplib.SMTPResponseException as e:
            text = f"{e.smtp_code} {_smtp_text(e.smtp_error)}"
            raise (_Retry if 400 <= e.smtp_code < 500 else _GiveUp)(f"server answered {text}") from None
    finally:
        # after a failure, just hang up (a silent server would make QUIT wait out the timeout again);
        # after the message is out, a server that drops the line at QUIT must not turn a delivered
        # message into a retry (a duplicate)
        try:
            if sent:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()
    if refused:
        return f"sent; refused: {', '.join(refused)}"
    return f"sent to {len(cfg.to)} recipient(s)"


def _smtp_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return _one_line(str(raw), 200)


def _post_webhook(hook: WebhookConfig, body: bytes, user_agent: str) -> str:
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    headers.update({k: v.get_secret_value() for k, v in hook.headers.items()})
    req = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=hook.timeout) as resp:
            resp.read(65536)
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        code, why = e.code, e.reason
        e.close()
        if code >= 500 or code in (408, 429):
            raise _Retry(f"HTTP {code} {why}") from None
        raise _GiveUp(f"HTTP {code} {why}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise _GiveUp(f"TLS certificate not accepted: {e.reason.verify_message or e.reason}") from None
        raise


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is an error to see, not a POST to resend elsewhere with our headers."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def _secrets_of(config: LabConfig) -> list[str]:
    out: list[str] = []
    n = config.notify
    if n.email is not None and n.email.password is not None:
        out.append(n.email.password.get_secret_value())
    for h in n.webhooks:
        out.extend(v.get_secret_value() for v in h.headers.values())
        path = h.url.split("://", 1)[-1].split("/", 1)
        if len(path) == 2 and len(path[1]) >= 8:
            out.append(path[1])  # the path of a webhook URL is often its token
        out.append(h.url)
    if config.dashboard.token is not None:
        out.append(config.dashboard.token.get_secret_value())
    return out


def _send_all(config: LabConfig, event: RunEndEvent, sleep: Callable[[float], Any]) -> list[Delivery]:
    from labctl import __version__

    n = config.notify
    secrets = _secrets_of(config)
    jobs: list[Callable[[], Delivery]] = []
    early: list[Delivery] = []
    if n.email is not None:
        email = n.email
        try:
            msg = email_message(email, event)
        except Exception as e:  # e.g. a header the email package refuses
            early.append(Delivery("email", _email_target(email), False, 0, _scrub(_describe(e), secrets)))
            log.warning("email %s: not delivered: %s", early[-1].target, early[-1].detail)
        else:
            jobs.append(
                lambda: _attempts(
                    "email",
                    _email_target(email),
                    lambda: _send_email(email, msg),
                    retries=n.retries,
                    backoff=n.backoff,
                    secrets=secrets,
                    sleep=sleep,
                )
            )
    if n.webhooks:
        body = json.dumps(webhook_payload(event), default=str).encode("utf-8")
        for hook in n.webhooks:
            jobs.append(
                lambda hook=hook: _attempts(  # type: ignore[misc]
                    "webhook",
                    hook.label,
                    lambda: _post_webhook(hook, body, f"labctl/{__version__}"),
                    retries=n.retries,
                    backoff=n.backoff,
                    secrets=secrets,
                    sleep=sleep,
                )
            )
    if len(jobs) <= 1:
        return early + [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=min(8, len(jobs)), thread_name_prefix="labctl-notify") as pool:
        return early + list(pool.map(lambda job: job(), jobs))


def notify_run_end(
    config: LabConfig, event: RunEndEvent, *, sleep: Callable[[float], Any] = time.sleep
) -> list[Delivery]:
    """Send ``event`` to every target of ``config.notify`` when ``notify.on`` names how the run
    ended (always, for a test event); one :class:`Delivery` per target.  Never raises."""
    try:
        n = config.notify
        if not n.enabled:
            return []
        if not event.test and not n.wants(event.status):
            log.debug("run %s ended %s: not in notify.on, no message", event.run_id, event.status)
            return []
        return _send_all(config, event, sleep)
    except Exception as e:  # the caller is a run; a bug here must not end it
        detail = _scrub(_describe(e), _secrets_of(config))
        log.warning("notification of run %s failed: %s", event.run_id, detail)
        return [Delivery("notify", "-", False, 0, detail)]


def notify_test(config: LabConfig, *, timeout: float | None = 60.0) -> list[Delivery]:
    """Send a test message to every target (whatever ``notify.on`` says) and wait for it."""
    event = RunEndEvent(
        run_id=None,
        status="completed",
        reason="a test of the notification settings",
        protocol="notify-test",
        started=time.time(),
        ended=time.time(),
        n_samples=0,
        test=True,
    )
    notifier = RunNotifier(config)
    notifier.send(event)
    return notifier.join(timeout)


# --------------------------------------------------------------------------- in the background


class RunNotifier:
    """Sends run ends in background threads, so the run or the worker never waits for a server.

    ``run_ended(outcome, row)`` (or ``send(event)``) returns at once; ``join(timeout)`` waits
    for every message handed over so far and returns their deliveries.  ``RunNotifier.from_config()``
    gives ``None`` when the config has nowhere to send to.
    """

    def __init__(self, config: LabConfig, *, sleep: Callable[[float], Any] | None = None) -> None:
        self.config = config
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait  # close() cuts a backoff short
        self._threads: list[threading.Thread] = []
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, path: Any = None, config: LabConfig | None = None) -> RunNotifier | None:
        """A notifier for the config file (see :func:`labctl.app.config.load_config`), or ``None``
        when it sends nowhere.  A bad config file raises its ProtocolError (before any run)."""
        cfg = config if config is not None else load_config(path)
        return cls(cfg) if cfg.notify.enabled else None

    @property
    def max_wait(self) -> float:
        """Seconds one message can take at most: every attempt timing out, with the backoffs."""
        n = self.config.notify
        timeouts = [h.timeout for h in n.webhooks] + ([n.email.timeout] if n.email is not None else [])
        # an SMTP exchange is several socket operations, each with the timeout: count a few
        per_attempt = max(timeouts, default=0.0) * (4 if n.email is not None else 1)
        return (n.retries + 1) * per_attempt + n.backoff * (2**n.retries - 1) + 1.0

    @property
    def pending(self) -> int:
        """Messages still being sent."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def wants(self, status: str) -> bool:
        return self.config.notify.wants(status)

    def send(self, event: RunEndEvent) -> threading.Thread | None:
        """Hand ``event`` to a background thread (``None`` when it sends nothing)."""
        if not self.config.notify.enabled or not (event.test or self.wants(event.status)):
            return None

        def work() -> None:
            found = notify_run_end(self.config, event, sleep=self._sleep)
            with self._lock:
                self._deliveries.extend(found)

        t = threading.Thread(target=work, name=f"labctl-notify-{event.run_id}", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()
        return t

    def run_ended(self, outcome: Any | None = None, row: Mapping[str, Any] | None = None) -> threading.Thread | None:
        """A run ended: its ``RunOutcome`` and/or its database row (``Database.run``).  Never raises."""
        try:
            event = RunEndEvent.from_run(outcome, row)
        except Exception as e:  # a run's end is never spoiled by its message
            log.warning("cannot describe the end of run %s: %s", getattr(outcome, "run_id", None), _describe(e))
            return None
        return self.send(event)

    def run_ended_in(self, db: Any, run_id: int, outcome: Any | None = None) -> threading.Thread | None:
        """Like :meth:`run_ended`, reading the row of ``run_id`` from ``db`` (a failed read still notifies)."""
        row: dict[str, Any] = {"id": run_id}
        try:
            row = dict(db.run(run_id))
        except Exception as e:  # the database may be the reason the run failed
            log.warning("run %s: cannot read its row for the notification: %s", run_id, _describe(e))
        return self.run_ended(outcome, row)

    def join(self, timeout: float | None = None) -> list[Delivery]:
        """Wait (at most ``timeout`` s in all) for every message handed over; their deliveries."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return list(self._deliveries)

    def close(self, timeout: float | None = 5.0) -> list[Delivery]:
        """Stop waiting between retries (attempts under way finish) and join."""
        self._stop.set()
        return self.join(timeout)
