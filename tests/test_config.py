"""The labctl config file: where it is found, every field, errors with positions, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl.app.config import (
    DEFAULT_EVENTS,
    LabConfig,
    NotifyEvent,
    config_path,
    load_config,
    load_config_text,
    mask_url,
    masked,
)
from labctl.cli.application import app
from labctl.core.errors import ProtocolError

FULL = """\
db:
  url: postgresql://lab:dbpw@db.example.org/lab
dashboard:
  token: ${TOK}
  host: 0.0.0.0
  port: 9000
notify:
  on: [completed, failed, safety]
  retries: 3
  backoff: 500 ms
  email:
    host: smtp.example.org
    port: 587
    starttls: true
    username: lab
    password: ${PW}
    sender: labctl@example.org
    to: [me@example.org, you@example.org]
    timeout: 30 s
  webhooks:
    - url: https://hooks.example.org/services/T0/B0/hooksecret
      headers: {Authorization: "Bearer ${HOOK}", X-Lab: bench-1}
      timeout: 5
"""
ENV = {"TOK": "tok-SECRET-1", "PW": "pw-SECRET-2", "HOOK": "hook-SECRET-3"}
SECRETS = [*ENV.values(), "dbpw", "hooksecret"]


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ProtocolError) as exc:
        load_config_text(text, "c.yaml", env=env or {})
    return str(exc.value).splitlines()


# --------------------------------------------------------------------------- lookup


def test_lookup_order_explicit_then_env_then_xdg(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "LABCTL_CONFIG": str(tmp_path / "env.yaml")}
    assert config_path("given.yaml", env) == (Path("given.yaml"), True)
    assert config_path(None, env) == (tmp_path / "env.yaml", True)
    assert config_path(None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}) == (
        tmp_path / "xdg" / "labctl" / "config.yaml",
        False,
    )
    assert config_path(None, {}) == (Path.home() / ".config" / "labctl" / "config.yaml", False)


def test_files_are_read_in_that_order(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg" / "labctl"
    xdg.mkdir(parents=True)
    (xdg / "config.yaml").write_text("dashboard: {port: 1001}\n")
    (tmp_path / "env.yaml").write_text("dashboard: {port: 1002}\n")
    (tmp_path / "given.yaml").write_text("dashboard: {port: 1003}\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert load_config(env=env).dashboard.port == 1001
    assert load_config(env=env).source == str(xdg / "config.yaml")
    env["LABCTL_CONFIG"] = str(tmp_path / "env.yaml")
    assert load_config(env=env).dashboard.port == 1002
    assert load_config(tmp_path / "given.yaml", env=env).dashboard.port == 1003


def test_no_default_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert cfg == LabConfig()
    assert cfg.source is None
    assert cfg.db.url is None
    assert (cfg.dashboard.host, cfg.dashboard.port, cfg.dashboard.token) == ("127.0.0.1", 8765, None)
    assert cfg.notify.on == list(DEFAULT_EVENTS)
    assert cfg.notify.email is None and cfg.notify.webhooks == [] and not cfg.notify.enabled


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="no such config file"):
        load_config(tmp_path / "nope.yaml", env={})
    with pytest.raises(ProtocolError, match=r"no such config file \(hint: check \$LABCTL_CONFIG"):
        load_config(env={"LABCTL_CONFIG": str(tmp_path / "nope.yaml")})
    with pytest.raises(ProtocolError, match="not a file"):
        load_config(tmp_path, env={})


def test_binary_and_empty_files(tmp_path: Path) -> None:
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProtocolError, match=r"bin.yaml:1:1: not UTF-8"):
        load_config(bad, env={})
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert load_config(empty, env={}).source == str(empty)
    assert load_config(empty, env={}).notify == LabConfig().notify


# --------------------------------------------------------------------------- fields


def test_every_field_of_a_full_file() -> None:
    cfg = load_config_text(FULL, "c.yaml", env=ENV)
    assert cfg.db.url == "postgresql://lab:dbpw@db.example.org/lab"
    assert cfg.dashboard.token is not None and cfg.dashboard.token.get_secret_value() == "tok-SECRET-1"
    assert (cfg.dashboard.host, cfg.dashboard.port) == ("0.0.0.0", 9000)
    n = cfg.notify
    assert n.on == [NotifyEvent.COMPLETED, NotifyEvent.FAILED, NotifyEvent.SAFETY_TRIP]
    assert (n.retries, n.backoff) == (3, 0.5)
    e = n.email
    assert e is not None
    assert (e.host, e.port, e.starttls, e.ssl, e.username) == ("smtp.example.org", 587, True, False, "lab")
    assert e.password is not None and e.password.get_secret_value() == "pw-SECRET-2"
    assert (e.sender, e.to, e.timeout) == ("labctl@example.org", ["me@example.org", "you@example.org"], 30.0)
    (w,) = n.webhooks
    assert w.url.endswith("/hooksecret") and w.timeout == 5.0
    assert {k: v.get_secret_value() for k, v in w.headers.items()} == {
        "Authorization": "Bearer hook-SECRET-3",
        "X-Lab": "bench-1",
    }
    assert n.enabled and n.wants("safety") and n.wants("failed") and not n.wants("aborted")
    assert not n.wants("running")


def test_email_defaults_and_a_single_recipient() -> None:
    cfg = load_config_text("notify:\n  email: {host: 127.0.0.1, sender: a@b.org, to: c@d.org}\n", env={})
    e = cfg.notify.email
    assert e is not None
    assert (e.port, e.starttls, e.ssl, e.username, e.password, e.timeout) == (25, False, False, None, None, 10.0)
    assert e.to == ["c@d.org"]


def test_on_all_and_the_default_events() -> None:
    assert load_config_text("notify: {on: all}\n", env={}).notify.on == list(NotifyEvent)
    assert [e.value for e in DEFAULT_EVENTS] == ["failed", "safety_trip", "interrupted"]
    assert NotifyEvent.from_status("safety") is NotifyEvent.SAFETY_TRIP
    assert NotifyEvent.from_status("paused") is None


def test_numeric_secret_is_text_and_never_echoed() -> None:
    cfg = load_config_text(
        "notify:\n  email: {host: h, sender: a@b.org, to: c@d.org, username: u, password: 982734}\n", env={}
    )
    assert cfg.notify.email is not None and cfg.notify.email.password is not None
    assert cfg.notify.email.password.get_secret_value() == "982734"
    lines = errors_of("dashboard: {token: [982734]}\n")
    assert lines == [
        "c.yaml:1:20: dashboard.token: expected text (hint: write the secret as text, e.g. ${LABCTL_SECRET})"
    ]
    assert "982734" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dashboard: {port: 0}\n", "c.yaml:1:19: dashboard.port: input should be greater than or equal to 1"),
        ("dashboard: {port: http}\n", "c.yaml:1:19: dashboard.port: expected a whole number, got 'http'"),
        ("dashboard: {host: 'a b'}\n", "c.yaml:1:19: dashboard.host: 'a b' is not a host name"),
        ("dashboard: {tokn: x}\n", "c.yaml:1:13: dashboard.tokn: unknown key 'tokn' (hint: did you mean 'token'?"),
        ("dbs: {url: x}\n", "c.yaml:1:1: dbs: unknown key 'dbs' (hint: did you mean 'db'?"),
        ("db: {url: runs.db}\n", "c.yaml:1:11: db.url: 'runs.db' is not a database URL"),
        ("notify: {on: [done]}\n", "c.yaml:1:15: notify.on[0]: 'done' is not a run end"),
        ("notify: {on: [safty_trip]}\n", "did you mean 'safety_trip'?"),
        ("notify: {retries: 11}\n", "c.yaml:1:19: notify.retries: input should be less than or equal to 10"),
        ("notify: {backoff: 2 V}\n", "c.yaml:1:19: notify.backoff: '2 V' is a voltage, not a time"),
        (
            "notify: {email: {sender: a@b.org, to: [c@d.org]}}\n",
            "c.yaml:1:10: notify.email.host: missing required field 'host' (hint: the SMTP server, e.g. host:",
        ),
        ("notify: {email: {host: h, to: [c@d.org]}}\n", "notify.email.sender: missing required field 'sender'"),
        ("notify: {email: {host: h, sender: a@b.org}}\n", "notify.email.to: missing required field 'to'"),
        ("notify: {email: {host: h, sender: a@b.org, to: []}}\n", "notify.email.to: list should have at least 1 item"),
        (
            "notify: {email: {host: h, sender: nobody, to: [c@d.org]}}\n",
            "c.yaml:1:35: notify.email.sender: 'nobody' is not an e-mail address",
        ),
        (
            'notify: {email: {host: h, sender: a@b.org, to: [c@d.org, "x@y.org\\nBcc: z@w.org"]}}\n',
            "notify.email.to[1]: 'x@y.org\\nBcc: z@w.org' is not an e-mail address",
        ),
        (
            "notify: {email: {host: h, sender: a@b.org, to: [c@d.org], port: 70000}}\n",
            "notify.email.port: input should be less than or equal to 65535",
        ),
        (
            "notify: {email: {host: h, sender: a@b.org, to: [c@d.org], ssl: true, starttls: true}}\n",
            "notify.email.starttls: ssl and starttls exclude each other",
        ),
        (
            "notify: {email: {host: h, sender: a@b.org, to: [c@d.org], password: x}}\n",
            "notify.email.password: a password without a username",
        ),
        (
            "notify: {email: {host: h, sender: a@b.org, to: [c@d.org], timeout: 0}}\n",
            "notify.email.timeout: input should be greater than 0",
        ),
        (
            "notify: {email: {host: h, sender: a@b.org, to: [c@d.org], starttls: maybe}}\n",
            "notify.email.starttls: expected true or false, got 'maybe'",
        ),
        (
            "notify: {webhooks: [{url: 'ftp://x/y'}]}\n",
            "c.yaml:1:27: notify.webhooks[0].url: 'ftp://x/y' is not an http(s) URL",
        ),
        ("notify: {webhooks: [{}]}\n", "notify.webhooks[0].url: missing required field 'url'"),
        ("notify: {webhooks: {url: 'http://h/'}}\n", "notify.webhooks: expected a list"),
        (
            "notify: {webhooks: [{url: 'http://h/', headers: {'a b': c}}]}\n",
            "notify.webhooks[0].headers.a b: 'a b' is not an HTTP header name",
        ),
        (
            "notify: {webhooks: [{url: 'http://h/', headers: {X: \"a\\r\\nY: b\"}}]}\n",
            "notify.webhooks[0].headers.X: a header value must be one line",
        ),
        ("notify: {webhooks: [{url: 'http://h/', timeout: -1}]}\n", "notify.webhooks[0].timeout: input should be"),
        ("- a\n- b\n", "c.yaml:1:1: a config file is a mapping of sections"),
        ("db: {url: x\n", "c.yaml:"),
    ],
)
def test_each_mistake_names_line_column_field_and_fix(text: str, expected: str) -> None:
    lines = errors_of(text)
    assert any(expected in line for line in lines), lines


def test_env_references() -> None:
    cfg = load_config_text(
        "db: {url: 'postgresql://${U}@h/${DB}'}\ndashboard: {token: 'a$${b}'}\n", env={"U": "lab", "DB": "x"}
    )
    assert cfg.db.url == "postgresql://lab@h/x"
    assert cfg.dashboard.token is not None and cfg.dashboard.token.get_secret_value() == "a${b}"
    assert errors_of("dashboard:\n  token: ${NOPE}\n") == [
        "c.yaml:2:10: dashboard.token: environment variable NOPE is not set "
        "(hint: export NOPE=... before running labctl, or write the value here)"
    ]
    assert "is not an environment variable reference" in errors_of("dashboard: {token: '${a-b}'}\n")[0]


def test_every_mistake_at_once() -> None:
    lines = errors_of("dashboard: {port: 0, host: 'a b'}\nnotify: {on: [x], webhooks: [{url: 'x'}]}\n")
    assert len(lines) == 4
    assert [line.split(":")[1] for line in lines] == ["1", "1", "2", "2"]


# --------------------------------------------------------------------------- secrets


def test_secrets_are_masked_in_repr_str_and_show() -> None:
    cfg = load_config_text(FULL, "c.yaml", env=ENV)
    views = [repr(cfg), str(cfg), json.dumps(masked(cfg)), repr(cfg.notify.email), repr(cfg.notify.webhooks)]
    for view in views:
        for secret in ENV.values():
            assert secret not in view
    shown = json.dumps(masked(cfg))
    for secret in SECRETS:
        assert secret not in shown
    m = masked(cfg)
    assert m["dashboard"]["token"] == "***"
    assert m["notify"]["email"]["password"] == "***"
    assert m["notify"]["webhooks"][0]["headers"] == {"Authorization": "***", "X-Lab": "***"}
    assert m["notify"]["webhooks"][0]["url"] == "https://hooks.example.org/..."
    assert m["db"]["url"] == "postgresql://lab:***@db.example.org/lab"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T/B/XYZ", "https://hooks.slack.com/..."),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
        ("http://u:p@h:1/x?token=1", "http://u:***@h:1/..."),
        ("sqlite:///runs.db", "sqlite:///runs.db"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("postgresql://a:b@[::1]:5432/t", "postgresql://a:***@[::1]:5432/t"),
        ("http://[bad", "***"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_cli_show_and_check(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(FULL)
    runner = CliRunner()
    r = runner.invoke(app, ["config", "show", "--config", str(f)], env=ENV)
    assert r.exit_code == 0, r.output
    assert "token: '***'" in r.output and "smtp.example.org" in r.output
    for secret in SECRETS:
        assert secret not in r.output
    r = runner.invoke(app, ["config", "show", "--config", str(f), "--json"], env=ENV)
    assert r.exit_code == 0
    assert json.loads(r.stdout)["config"]["notify"]["email"]["password"] == "***"
    r = runner.invoke(app, ["config", "check", "--config", str(f)], env=ENV)
    assert r.exit_code == 0, r.output
    assert "ok (notify on completed, failed, safety_trip: e-mail to 2 recipient(s)" in r.output
    r = runner.invoke(app, ["config", "check"], env={"XDG_CONFIG_HOME": str(tmp_path / "none"), "LABCTL_CONFIG": ""})
    assert r.exit_code == 0 and "the defaults apply" in r.output


def test_cli_check_a_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text('notify:\n  email: {host: h, sender: a@b.org, to: [c@d.org], password: "${PW}"}\n')
    r = CliRunner().invoke(app, ["config", "check", "--config", str(f)], env={"PW": "pw-SECRET"})
    assert r.exit_code == 2
    assert f"{f}:2:62: notify.email.password: a password without a username" in r.output
    assert "Traceback" not in r.output and "pw-SECRET" not in r.output


# --------------------------------------------------------------------------- garbage in


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.sampled_from(["${X}", "${}", "$${", "all", "safety", "a@b.org", "http://h/", "10 s", "5 kg"]),
)
_keys = st.sampled_from(
    [
        "db",
        "url",
        "dashboard",
        "token",
        "host",
        "port",
        "notify",
        "on",
        "email",
        "webhooks",
        "headers",
        "sender",
        "to",
        "timeout",
        "ssl",
        "starttls",
        "username",
        "password",
        "retries",
        "backoff",
        "x",
    ]
)
_docs = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_docs)
def test_any_structure_gives_a_config_or_a_protocol_error(doc: object) -> None:
    text = json.dumps(doc)  # JSON is YAML: the structure is what is being tested
    try:
        cfg = load_config_text(text, "fuzz.yaml", env={"X": "x"})
    except ProtocolError as exc:
        assert exc.issues and all(str(i).startswith("fuzz.yaml") for i in exc.issues)
    else:
        assert isinstance(cfg, LabConfig)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_any_text_gives_a_config_or_a_protocol_error(text: str) -> None:
    try:
        load_config_text("notify:\n  " + text, "fuzz.yaml", env={})
    except ProtocolError as exc:
        assert str(exc).startswith("fuzz.yaml")


# --------------------------------------------------------------------------- db.url is the commands' default


def test_db_url_of_the_config_is_the_default_database(tmp_path: Path) -> None:
    db = tmp_path / "from-config.sqlite"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"db:\n  url: sqlite:///{db}\n")
    proto = tmp_path / "rest.yaml"
    proto.write_text(
        "name: rest-only\ncell: {kind: symmetric, id: S-C-1, working: Mg, area: 1 cm2}\n"
        "steps:\n  - rest: {duration: 10 s, record_every: 5 s}\n"
    )
    env = {"LABCTL_CONFIG": str(cfg), "LABCTL_DB": None}
    runner = CliRunner()
    r = runner.invoke(app, ["run", str(proto), "--sim", "--preset", "bare-mg"], env=env)  # type: ignore[arg-type]
    assert r.exit_code == 0, r.output
    assert db.exists()
    r = runner.invoke(app, ["runs", "--json"], env=env)  # type: ignore[arg-type]
    assert [row["protocol"] for row in json.loads(r.stdout)] == ["rest-only"]
    # --db still wins over the config file
    other = tmp_path / "other.sqlite"
    r = runner.invoke(app, ["runs", "--json", "--db", f"sqlite:///{other}"], env=env)  # type: ignore[arg-type]
    assert json.loads(r.stdout) == []


def test_a_bad_config_file_stops_database_commands_with_its_position(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("db:\n  url: runs.db\n")
    r = CliRunner().invoke(app, ["runs"], env={"LABCTL_CONFIG": str(cfg), "LABCTL_DB": None})  # type: ignore[dict-item]
    assert r.exit_code == 2
    assert f"{cfg}:2:8: db.url: 'runs.db' is not a database URL" in r.output
    cfg.write_text("db:\n  url: postgresql://lab:pw-SECRET@127.0.0.1:1/lab\n")
    r = CliRunner().invoke(app, ["runs"], env={"LABCTL_CONFIG": str(cfg), "LABCTL_DB": None})  # type: ignore[dict-item]
    assert r.exit_code == 2
    assert "cannot open database postgresql://lab:***@127.0.0.1:1/lab" in r.output
    assert f"check db.url in {cfg}" in r.output and "pw-SECRET" not in r.output
