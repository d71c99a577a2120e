"""Run-end notifications: e-mail to a real SMTP server and JSON to a real HTTP receiver, both on
loopback; retries, failures without tracebacks, no secret in any log or output, `labctl run` wired."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl.app.config import LabConfig, load_config_text
from labctl.app.notify import (
    Delivery,
    RunEndEvent,
    RunNotifier,
    email_message,
    notify_run_end,
    notify_test,
    parse_safety_trip,
    webhook_payload,
)
from labctl.cli.application import app

PASSWORD = "smtp-PW-s3cret"
TOKEN = "hook-TOKEN-s3cret"
URL_TOKEN = "T000/B000/urlS3cret"
SECRETS = [PASSWORD, TOKEN, "urlS3cret"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- an SMTP server


class Inbox:
    """An aiosmtpd handler that keeps every message; ``fail_first`` answers 451 to that many DATA."""

    def __init__(self, fail_first: int = 0) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.fail_first = fail_first
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 try again later"
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, pw = auth_data.login.decode(), auth_data.password.decode()
            self.logins.append((user, pw))
            return AuthResult(success=user == "lab" and pw == PASSWORD, handled=False)
        return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    ctl = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
        auth_required=False,
        auth_exclude_mechanism=["LOGIN"],
    )
    ctl.start()
    try:
        yield inbox, port
    finally:
        ctl.stop()


# --------------------------------------------------------------------------- an HTTP receiver


class Receiver:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def config(text: str, **env: str) -> LabConfig:
    return load_config_text(text, "config.yaml", env={"PW": PASSWORD, "TOKEN": TOKEN, **env})


def email_cfg(port: int, extra: str = "") -> str:
    return f"""notify:
  on: all
  backoff: 0
  email:
    host: 127.0.0.1
    port: {port}
    username: lab
    password: ${{PW}}
    sender: labctl@lab.example.org
    to: [me@example.org, you@example.org]
    timeout: 5
{extra}"""


def hook_cfg(port: int, path: str = "/hook", retries: int = 2, timeout: float = 5) -> str:
    return f"""notify:
  on: all
  retries: {retries}
  backoff: 0
  webhooks:
    - url: http://127.0.0.1:{port}{path}
      headers: {{Authorization: "Bearer ${{TOKEN}}", X-Lab: bench-1}}
      timeout: {timeout}
"""


TRIP = "voltage 2.613 V outside the safety window [-2.5, 2.5] V at t = 3725.0 s"
EVENT = RunEndEvent(
    run_id=42,
    status="safety",
    reason=f"safety limit: {TRIP}",
    protocol="short-symmetric",
    cell="S-TEST-1",
    channel="A",
    station="bench-1",
    started=1_700_000_000.0,
    ended=1_700_003_725.0,
    n_samples=1234,
    safety=parse_safety_trip(TRIP),
)


# --------------------------------------------------------------------------- e-mail


def test_email_reaches_the_server_with_subject_body_and_recipients(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    (d,) = notify_run_end(config(email_cfg(port)), EVENT)
    assert d.ok, d
    assert (d.channel, d.attempts, d.detail) == ("email", 1, "sent to 2 recipient(s)")
    ((mail_from, rcpt, msg),) = inbox.messages
    assert mail_from == "labctl@lab.example.org"
    assert rcpt == ["me@example.org", "you@example.org"]
    assert inbox.logins == [("lab", PASSWORD)]
    assert msg["Subject"].startswith("[labctl] run 42 safety_trip: safety limit: voltage 2.613 V outside")
    assert msg["Subject"].endswith("(cell S-TEST-1, channel A, station bench-1)")
    assert msg["To"] == "me@example.org, you@example.org"
    body = msg.get_content()
    for line in [
        "run:         42",
        "status:      safety",
        "protocol:    short-symmetric",
        "duration:    62.1 min",
        "samples:     1,234",
        "safety trip: voltage 2.613 V, limit [-2.5, 2.5] V",
        "trip at:     t = 3725 s",
        "labctl show 42",
    ]:
        assert line in body, body
    assert PASSWORD not in msg.as_string()


def test_smtp_temporary_failure_is_retried(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.fail_first = 1
    (d,) = notify_run_end(config(email_cfg(port)), EVENT)
    assert d.ok and d.attempts == 2
    assert len(inbox.messages) == 1


def test_a_refused_login_is_not_retried_and_names_no_password(
    smtp: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port = smtp
    caplog.set_level(logging.DEBUG, logger="labctl")
    (d,) = notify_run_end(config(email_cfg(port), PW="wrong-PW-s3cret"), EVENT)
    assert not d.ok and d.attempts == 1
    assert d.detail.startswith("login refused: 535")
    assert inbox.messages == []
    assert "wrong-PW-s3cret" not in caplog.text + repr(d)


def test_an_unreachable_smtp_server_is_a_failed_delivery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="labctl")
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    (d,) = notify_run_end(config(email_cfg(port)), EVENT)
    assert time.monotonic() - t0 < 5
    assert not d.ok and d.attempts == 3
    assert "ConnectionRefusedError" in d.detail
    assert "Traceback" not in caplog.text
    assert f"email 127.0.0.1:{port} to me@example.org, you@example.org: not delivered after 3 attempt(s)" in caplog.text
    assert PASSWORD not in caplog.text


# --------------------------------------------------------------------------- webhooks


def test_webhook_gets_the_json_payload_and_headers(receiver: Receiver) -> None:
    (d,) = notify_run_end(config(hook_cfg(receiver.port)), EVENT)
    assert d.ok and d.detail == "HTTP 200" and d.attempts == 1
    assert d.target == f"http://127.0.0.1:{receiver.port}/..."
    (req,) = receiver.requests
    assert req["path"] == "/hook"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["X-Lab"] == "bench-1"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["User-Agent"].startswith("labctl/")
    p = json.loads(req["body"])
    assert p == webhook_payload(EVENT)
    assert p["kind"] == "run_end" and p["run_id"] == 42 and p["status"] == "safety" and p["event"] == "safety_trip"
    assert (p["protocol"], p["cell"], p["channel"], p["station"]) == ("short-symmetric", "S-TEST-1", "A", "bench-1")
    assert p["n_samples"] == 1234 and p["duration_s"] == 3725.0
    assert p["started_unix"] == 1_700_000_000.0 and p["ended"].startswith("2023-11-1")
    assert p["safety"] == {"quantity": "voltage", "value": 2.613, "unit": "V", "limit": [-2.5, 2.5], "t": 3725.0}
    assert p["text"].startswith("run 42 safety_trip")


def test_500_then_200_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    waits: list[float] = []
    cfg = config(hook_cfg(receiver.port).replace("backoff: 0", "backoff: 0.25"))
    (d,) = notify_run_end(cfg, EVENT, sleep=waits.append)
    assert d.ok and d.attempts == 3
    assert waits == [0.25, 0.5]
    assert len(receiver.requests) == 3
    assert receiver.payloads[0] == receiver.payloads[2]


def test_retries_are_bounded_and_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500, 500]
    (d,) = notify_run_end(config(hook_cfg(receiver.port, retries=1)), EVENT)
    assert not d.ok and d.attempts == 2 and d.detail == "HTTP 500 Internal Server Error"
    receiver.statuses = [404]
    receiver.requests.clear()
    (d,) = notify_run_end(config(hook_cfg(receiver.port)), EVENT)
    assert not d.ok and d.attempts == 1 and d.detail == "HTTP 404 Not Found"
    assert len(receiver.requests) == 1


def test_unreachable_and_silent_webhooks_fail_without_traceback(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="labctl")
    port = free_port()
    (d,) = notify_run_end(config(hook_cfg(port, path=f"/services/{URL_TOKEN}")), EVENT)
    assert not d.ok and d.attempts == 3 and "Connection refused" in d.detail
    # a server that accepts the connection and never answers: the timeout ends each attempt
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        t0 = time.monotonic()
        (d,) = notify_run_end(config(hook_cfg(silent.getsockname()[1], retries=1, timeout=0.3)), EVENT)
        assert 0.5 < time.monotonic() - t0 < 3
    finally:
        silent.close()
    assert not d.ok and d.attempts == 2 and d.detail == "timed out"
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret not in text


def test_email_and_webhooks_together_and_one_failing_does_not_stop_the_others(
    smtp: tuple[Inbox, int], receiver: Receiver
) -> None:
    inbox, port = smtp
    dead = free_port()
    text = (
        email_cfg(port)
        + f"""  webhooks:
    - url: http://127.0.0.1:{receiver.port}/a
    - url: http://127.0.0.1:{dead}/b
      timeout: 1
"""
    )
    ds = notify_run_end(config(text), EVENT)
    assert [(d.channel, d.ok) for d in ds] == [("email", True), ("webhook", True), ("webhook", False)]
    assert len(inbox.messages) == 1 and len(receiver.requests) == 1


def test_notify_on_filters_the_run_ends(receiver: Receiver) -> None:
    cfg = config(hook_cfg(receiver.port).replace("on: all", "on: [failed, safety_trip]"))
    assert notify_run_end(cfg, RunEndEvent(run_id=1, status="completed")) == []
    assert notify_run_end(cfg, RunEndEvent(run_id=2, status="aborted")) == []
    assert [d.ok for d in notify_run_end(cfg, RunEndEvent(run_id=3, status="failed", reason="boom"))] == [True]
    assert [p["run_id"] for p in receiver.payloads] == [3]
    assert notify_run_end(LabConfig(), EVENT) == []  # nowhere to send


def test_a_reason_with_line_breaks_makes_a_one_line_subject(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    ev = RunEndEvent(run_id=7, status="failed", reason="DeviceError: no answer\r\nBcc: evil@example.org\n" + "x" * 500)
    (d,) = notify_run_end(config(email_cfg(port)), ev)
    assert d.ok
    ((_, rcpt, msg),) = inbox.messages
    assert rcpt == ["me@example.org", "you@example.org"]
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and len(msg["Subject"]) <= 200


# --------------------------------------------------------------------------- in the background


def test_run_notifier_returns_at_once_and_join_waits(receiver: Receiver) -> None:
    gate = threading.Event()
    original = receiver.server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

    def slow(self: Any) -> None:
        gate.wait(5)
        original(self)

    receiver.server.RequestHandlerClass.do_POST = slow  # type: ignore[attr-defined]
    notifier = RunNotifier(config(hook_cfg(receiver.port)))
    t0 = time.monotonic()
    assert notifier.run_ended(None, {"id": 5, "status": "failed", "end_reason": "x", "channel": "B"}) is not None
    assert time.monotonic() - t0 < 0.2
    assert notifier.join(0.1) == []  # still waiting for the slow server
    gate.set()
    (d,) = notifier.join(5)
    assert d.ok
    assert receiver.payloads[0]["run_id"] == 5 and receiver.payloads[0]["channel"] == "B"
    assert notifier.run_ended(None, {"id": 6, "status": "running"}) is None


def test_close_cuts_the_backoff_short() -> None:
    port = free_port()
    notifier = RunNotifier(config(hook_cfg(port, retries=5).replace("backoff: 0", "backoff: 30")))
    notifier.send(RunEndEvent(run_id=1, status="failed"))
    time.sleep(0.2)
    t0 = time.monotonic()
    (d,) = notifier.close(timeout=5)
    assert time.monotonic() - t0 < 3
    assert not d.ok


def test_notifier_never_raises_into_the_run() -> None:
    class BrokenDb:
        def run(self, run_id: int) -> dict:
            raise RuntimeError("database is gone")

    notifier = RunNotifier(config(hook_cfg(free_port(), retries=0)))
    t = notifier.run_ended_in(BrokenDb(), 9)  # the row cannot be read: still notifies, with what it has
    assert t is not None
    (d,) = notifier.join(5)
    assert isinstance(d, Delivery) and not d.ok
    assert RunNotifier.from_config(config=LabConfig()) is None


def test_event_from_outcome_and_row() -> None:
    from labctl.engine.runner import RunOutcome

    outcome = RunOutcome(3, "safety", f"safety limit: {TRIP}", 3725.0, 99)
    row = {"id": 3, "status": "safety", "protocol": "p", "cell": "S-1", "channel": "A", "started": 100.0}
    row |= {"ended": 3825.0, "n_samples": 99, "meta": {"station": "bench-1"}, "simulated": True}
    ev = RunEndEvent.from_run(outcome, row)
    assert (ev.run_id, ev.status, ev.protocol, ev.cell, ev.channel, ev.station) == (
        3,
        "safety",
        "p",
        "S-1",
        "A",
        "bench-1",
    )
    assert ev.duration == 3725.0 and ev.n_samples == 99 and ev.simulated is True
    assert ev.safety is not None and ev.safety["value"] == 2.613


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (TRIP, {"quantity": "voltage", "value": 2.613, "unit": "V", "limit": [-2.5, 2.5], "t": 3725.0}),
        (
            "safety limit: current 25.5 mA above the safety limit 20 mA at t = 12.0 s",
            {"quantity": "current", "value": 25.5, "unit": "mA", "limit": 20.0, "t": 12.0},
        ),
        (
            "temperature 71.20 degC above the safety limit 70 degC at t = 1.5 s",
            {"quantity": "temperature", "value": 71.2, "unit": "degC", "limit": 70.0, "t": 1.5},
        ),
        (
            "run exceeded its maximum duration of 0.5 h",
            {"quantity": "duration", "value": None, "unit": "h", "limit": 0.5, "t": None},
        ),
        ("something else", None),
        (None, None),
    ],
)
def test_parse_safety_trip(reason: str | None, expected: dict | None) -> None:
    assert parse_safety_trip(reason) == expected


# --------------------------------------------------------------------------- the CLI


def test_cli_notify_test(smtp: tuple[Inbox, int], receiver: Receiver, tmp_path: Path) -> None:
    inbox, port = smtp
    f = tmp_path / "config.yaml"
    f.write_text(email_cfg(port) + f"  webhooks:\n    - url: http://127.0.0.1:{receiver.port}/services/{URL_TOKEN}\n")
    r = CliRunner().invoke(app, ["config", "notify-test", "--config", str(f)], env={"PW": PASSWORD})
    assert r.exit_code == 0, r.output
    assert "ok     email 127.0.0.1:" in r.output and "ok     webhook http://127.0.0.1:" in r.output
    for secret in SECRETS:
        assert secret not in r.output
    assert inbox.messages[0][2]["Subject"].startswith("[labctl] [test] run completed")
    assert receiver.payloads[0]["kind"] == "test"
    # nowhere to send: a user error
    f.write_text("notify: {on: all}\n")
    r = CliRunner().invoke(app, ["config", "notify-test", "--config", str(f)])
    assert r.exit_code == 2 and "no email: or webhooks: configured" in r.output


def test_cli_notify_test_failure_exits_1(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(hook_cfg(free_port(), retries=0))
    r = CliRunner().invoke(app, ["config", "notify-test", "--config", str(f)], env={"TOKEN": TOKEN})
    assert r.exit_code == 1
    assert "FAILED webhook http://127.0.0.1:" in r.output and "Traceback" not in r.output
    assert TOKEN not in r.output
    assert notify_test(LabConfig()) == []


PROTOCOL = """name: notify-trip
cell: {kind: symmetric, id: S-N-1, working: Br-Mg, area: 1.267 cm2}
safety: {voltage: [-0.02 V, 0.02 V], current: 20 mA}
steps:
  - rest: {duration: 10 s, record_every: 5 s}
  - galvanostatic: {current_density: 2 mA/cm2, duration: 1 h, record_every: 10 s}
"""


def test_labctl_run_notifies_at_the_end(receiver: Receiver, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(hook_cfg(receiver.port).replace("on: all", "on: [safety_trip]"))
    proto = tmp_path / "trip.yaml"
    proto.write_text(PROTOCOL)
    db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    env = {"LABCTL_CONFIG": str(cfg), "TOKEN": TOKEN}
    r = CliRunner().invoke(app, ["run", str(proto), "--sim", "--preset", "br-mg", "--db", db], env=env)
    assert r.exit_code == 1, r.output  # a safety trip is a failed run for the shell
    (p,) = receiver.payloads
    assert p["status"] == "safety" and p["event"] == "safety_trip" and p["run_id"] == 1
    assert p["protocol"] == "notify-trip" and p["cell"] == "S-N-1" and p["channel"] == "sim-1"
    assert p["simulated"] is True and p["n_samples"] > 0 and p["ended_unix"] >= p["started_unix"]
    assert p["safety"]["quantity"] == "voltage" and p["safety"]["limit"] == [-0.02, 0.02]
    assert "notified by webhook: http://127.0.0.1:" in r.output
    assert TOKEN not in r.output
    # a run that ends in a way notify.on does not name sends nothing
    proto.write_text(PROTOCOL.replace("[-0.02 V, 0.02 V]", "[-2 V, 2 V]").replace("1 h", "30 s"))
    r = CliRunner().invoke(app, ["run", str(proto), "--sim", "--preset", "br-mg", "--db", db], env=env)
    assert r.exit_code == 0, r.output
    assert len(receiver.payloads) == 1 and "notified" not in r.output


def test_labctl_run_with_a_bad_config_file_stops_before_the_run(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("notify:\n  on: [sometimes]\n")
    proto = tmp_path / "p.yaml"
    proto.write_text(PROTOCOL)
    db = tmp_path / "lab.sqlite"
    r = CliRunner().invoke(
        app, ["run", str(proto), "--sim", "--db", f"sqlite:///{db}"], env={"LABCTL_CONFIG": str(cfg)}
    )
    assert r.exit_code == 2
    assert f"{cfg}:2:8: notify.on[0]: 'sometimes' is not a run end" in r.output
    assert not db.exists()


def test_the_smtp_fixture_runs_its_own_loop() -> None:
    # aiosmtpd's controller runs its own event loop in a thread; the test thread has none
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


# --------------------------------------------------------------------------- TLS: ssl and starttls


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl; a second or so)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, crt


def tls_smtp(cert: tuple[Path, Path], *, implicit: bool) -> tuple[Inbox, Controller, int]:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[1]), str(cert[0]))
    inbox, port = Inbox(), free_port()
    # implicit TLS: the whole connection is TLS (aiosmtpd does not know it, so it is told AUTH is fine);
    # STARTTLS: aiosmtpd refuses mail and AUTH before the upgrade
    kw: dict[str, Any] = (
        {"ssl_context": ctx, "auth_require_tls": False} if implicit else {"tls_context": ctx, "require_starttls": True}
    )
    ctl = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_exclude_mechanism=["LOGIN"],
        **kw,
    )
    ctl.start()
    return inbox, ctl, port


@pytest.mark.parametrize("implicit", [True, False], ids=["ssl", "starttls"])
def test_tls_is_used_and_its_certificate_checked(
    cert: tuple[Path, Path], implicit: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, ctl, port = tls_smtp(cert, implicit=implicit)
    option = "ssl: true" if implicit else "starttls: true"
    cfg = config(email_cfg(port).replace("    timeout: 5\n", f"    timeout: 5\n    {option}\n"))
    try:
        # the server's certificate is not one the system trusts: refused at once, not retried
        (d,) = notify_run_end(cfg, EVENT)
        assert not d.ok and d.attempts == 1, d
        assert d.detail.startswith("TLS certificate not accepted: self")
        # trusted through SSL_CERT_FILE (how a lab with its own CA points labctl at it)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert[1]))
        (d,) = notify_run_end(cfg, EVENT)
        assert d.ok, d
        assert inbox.logins == [("lab", PASSWORD)]
        assert len(inbox.messages) == 1
    finally:
        ctl.stop()


def test_https_webhook_certificate_is_checked(cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    r = Receiver()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[1]), str(cert[0]))
    r.server.socket = ctx.wrap_socket(r.server.socket, server_side=True)
    try:
        cfg = config(hook_cfg(r.port).replace("http://", "https://"))
        (d,) = notify_run_end(cfg, EVENT)
        assert not d.ok and d.attempts == 1 and d.detail.startswith("TLS certificate not accepted")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert[1]))
        (d,) = notify_run_end(cfg, EVENT)
        assert d.ok and r.payloads[-1]["run_id"] == 42
    finally:
        r.close()


# --------------------------------------------------------------------------- odd input


def test_display_names_in_addresses(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    text = email_cfg(port).replace("sender: labctl@lab.example.org", "sender: 'Lab robot <labctl@lab.example.org>'")
    text = text.replace("to: [me@example.org, you@example.org]", "to: ['Night shift <ns@example.org>', me@example.org]")
    (d,) = notify_run_end(config(text), EVENT)
    assert d.ok
    ((mail_from, rcpt, msg),) = inbox.messages
    assert mail_from == "labctl@lab.example.org" and rcpt == ["ns@example.org", "me@example.org"]
    assert msg["From"] == "Lab robot <labctl@lab.example.org>"
    assert msg["To"] == "Night shift <ns@example.org>, me@example.org"


_free_text = st.one_of(st.none(), st.text(max_size=300))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    reason=_free_text,
    protocol=_free_text,
    cell=_free_text,
    channel=_free_text,
    status=st.sampled_from(["completed", "aborted", "failed", "safety", "interrupted", "weird"]),
    n=st.one_of(st.none(), st.integers(0, 10**12)),
)
def test_any_run_text_makes_a_valid_email_and_payload(
    reason: str | None, protocol: str | None, cell: str | None, channel: str | None, status: str, n: int | None
) -> None:
    ev = RunEndEvent(run_id=1, status=status, reason=reason, protocol=protocol, cell=cell, channel=channel, n_samples=n)
    cfg = config(email_cfg(25)).notify.email
    assert cfg is not None
    msg = email_message(cfg, ev)
    raw = msg.as_bytes()
    back = email.message_from_bytes(raw, policy=email.policy.default)
    assert "\n" not in back["Subject"] and back["To"] == "me@example.org, you@example.org"
    assert back["Bcc"] is None
    json.dumps(webhook_payload(ev))


def test_a_failed_delivery_in_labctl_run_is_a_warning_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(hook_cfg(free_port(), retries=0))
    proto = tmp_path / "trip.yaml"
    proto.write_text(PROTOCOL.replace("[-0.02 V, 0.02 V]", "[-2 V, 2 V]").replace("1 h", "20 s"))
    db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    r = CliRunner().invoke(
        app,
        ["run", str(proto), "--sim", "--preset", "br-mg", "--db", db],
        env={"LABCTL_CONFIG": str(cfg), "TOKEN": TOKEN},
    )
    assert r.exit_code == 0, r.output  # the run completed; its message did not get out
    (line,) = [ln for ln in r.output.splitlines() if "notification" in ln]
    assert line.startswith("warning: notification by webhook failed: http://127.0.0.1:")
    assert "Connection refused" in line and "Traceback" not in r.output


def test_labctl_run_notifies_when_the_run_raises(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that ends in an exception (recorded as failed, then re-raised) still sends its message."""
    import labctl.app.controller as controller

    def crashing_run_protocol(*args: Any, on_start: Any = None, **kwargs: Any) -> Any:
        on_start(77)
        raise RuntimeError("driver bug")

    monkeypatch.setattr(controller, "run_protocol", crashing_run_protocol)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(hook_cfg(receiver.port))
    proto = tmp_path / "p.yaml"
    proto.write_text(PROTOCOL)
    db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    r = CliRunner().invoke(
        app,
        ["run", str(proto), "--sim", "--preset", "br-mg", "--db", db],
        env={"LABCTL_CONFIG": str(cfg), "TOKEN": TOKEN},
    )
    assert isinstance(r.exception, RuntimeError)  # the bug still surfaces
    (p,) = receiver.payloads
    assert p["run_id"] == 77 and p["status"] == "failed"  # no row to read: what is known is sent


def test_labctl_resume_notifies_at_the_end(receiver: Receiver, tmp_path: Path) -> None:
    from labctl.app.controller import SimSettings, run_protocol
    from labctl.core.interrupts import Terminated
    from labctl.db import Database
    from labctl.protocols import load_protocol_text

    url = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    text = PROTOCOL.replace("[-0.02 V, 0.02 V]", "[-2 V, 2 V]").replace("1 h", "60 s")

    def stop(p: Any) -> None:
        if p.t_test > 30:
            raise Terminated(15)  # as SIGTERM would: the run is interrupted and resumable

    with Database(url) as db:
        out = run_protocol(load_protocol_text(text, source="p.yaml"), db=db, sim=SimSettings("br-mg"), on_progress=stop)
    assert out.status == "interrupted"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(hook_cfg(receiver.port))
    r = CliRunner().invoke(
        app, ["resume", str(out.run_id), "--db", url], env={"LABCTL_CONFIG": str(cfg), "TOKEN": TOKEN}
    )
    assert r.exit_code == 0, r.output
    (p,) = receiver.payloads
    assert p["run_id"] == out.run_id and p["status"] == "completed" and p["protocol"] == "notify-trip"
    assert "notified by webhook" in r.output


def test_a_silent_smtp_server_times_out_within_the_bound() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts the connection, never greets
    try:
        text = email_cfg(silent.getsockname()[1]).replace("timeout: 5", "timeout: 0.3")
        cfg = config(text.replace("backoff: 0", "backoff: 0\n  retries: 1"))
        notifier = RunNotifier(cfg)
        t0 = time.monotonic()
        notifier.send(EVENT)
        (d,) = notifier.join(notifier.max_wait)
        assert time.monotonic() - t0 < notifier.max_wait
        assert not d.ok and d.attempts == 2 and d.detail == "timed out"
    finally:
        silent.close()


def test_labctl_run_says_it_waits_for_a_slow_target(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(hook_cfg(silent.getsockname()[1], retries=1, timeout=0.8))
        proto = tmp_path / "p.yaml"
        proto.write_text(PROTOCOL.replace("[-0.02 V, 0.02 V]", "[-2 V, 2 V]").replace("1 h", "20 s"))
        db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
        env = {"LABCTL_CONFIG": str(cfg), "TOKEN": TOKEN}
        r = CliRunner().invoke(app, ["run", str(proto), "--sim", "--preset", "br-mg", "--db", db], env=env)
    finally:
        silent.close()
    assert r.exit_code == 0, r.output
    assert "sending notifications (at most " in r.output
    assert "warning: notification by webhook failed: http://127.0.0.1:" in r.output and "timed out" in r.output
