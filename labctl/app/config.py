"""The labctl config file: default database, dashboard, notifications.

``load_config()`` finds the file in this order:

1. the ``path`` argument (``labctl --config``-style options pass it on);
2. the environment variable ``LABCTL_CONFIG``;
3. ``$XDG_CONFIG_HOME/labctl/config.yaml`` (``~/.config/labctl/config.yaml`` when
   ``XDG_CONFIG_HOME`` is not set).

A file named explicitly (1 or 2) must exist; when the default file does not exist
the defaults apply.  The file is YAML read with positions, so every mistake is a
:class:`~labctl.core.errors.ProtocolError` naming ``file:line:col``, the field and
the fix.  Any string value may refer to an environment variable as ``${NAME}``
(``$${`` writes a literal ``${``), which is how secrets stay out of the file::

    notify:
      email:
        password: ${LABCTL_SMTP_PASSWORD}

Secrets (the dashboard token, the SMTP password, webhook header values) are
:class:`pydantic.SecretStr`: their ``repr`` and ``str`` are masked, and
:func:`masked` gives a printable view of the whole config (webhook URLs, which
often carry a token in their path, and database URL passwords are masked too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from labctl.core.errors import (
    Issue,
    ProtocolError,
    custom_error,
    did_you_mean,
    format_path,
    issues_error,
    validate_with_positions,
)
from labctl.core.yamlio import load_yaml

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_EVENTS",
    "DashboardConfig",
    "DbConfig",
    "EmailConfig",
    "LabConfig",
    "NotifyConfig",
    "NotifyEvent",
    "WebhookConfig",
    "bare_address",
    "config_path",
    "is_address",
    "load_config",
    "load_config_text",
    "mask_url",
    "masked",
]

CONFIG_ENV = "LABCTL_CONFIG"
MAX_CONFIG_BYTES = 1_000_000


class NotifyEvent(StrEnum):
    """How a run ended, as a notification rule names it."""

    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"
    SAFETY_TRIP = "safety_trip"
    INTERRUPTED = "interrupted"

    @classmethod
    def from_status(cls, status: str) -> NotifyEvent | None:
        """The event of a run status (``runs.status``); ``None`` for a run still going."""
        s = str(getattr(status, "value", status)).lower()
        if s in ("safety", "safety_trip"):
            return cls.SAFETY_TRIP
        try:
            return cls(s)
        except ValueError:
            return None


#: The default of ``notify.on``: the ends someone has to act on.  ``aborted`` is left out
#: because an abort is an operator's own action (Ctrl-C, ``Engine.abort``), ``completed``
#: because a campaign of many runs would send one message per run; add either to ``on:``.
DEFAULT_EVENTS: tuple[NotifyEvent, ...] = (NotifyEvent.FAILED, NotifyEvent.SAFETY_TRIP, NotifyEvent.INTERRUPTED)

_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOST = re.compile(r"^[A-Za-z0-9_.:\-\[\]]+$")
_ENV_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _seconds(v: Any) -> Any:
    """A timeout: a number of seconds or a quantity such as '30 s' / '2 min'."""
    if isinstance(v, str):
        from labctl.core.units import UnitError, parse_quantity

        try:
            return parse_quantity(v, "time")
        except UnitError as e:
            raise custom_error(e.message, e.hint or "write e.g. 10 s") from None
    return v


def _secret(v: Any) -> Any:
    """A secret written as a number (``password: 12345``) is its text; never echo it in an error."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if v is not None and not isinstance(v, (str, SecretStr)):
        raise custom_error("expected text", "write the secret as text, e.g. ${LABCTL_SECRET}")
    return v


def is_address(text: str) -> bool:
    """``lab@example.org`` or ``Night shift <lab@example.org>`` (one address, one line)."""
    text = text.strip()
    if "\r" in text or "\n" in text:
        return False
    if text.endswith(">") and "<" in text:
        name, _, addr = text[:-1].rpartition("<")
        return '"' not in name and not any(c in name for c in "<>@,;") and bool(_ADDRESS.match(addr.strip()))
    return bool(_ADDRESS.match(text))


def bare_address(text: str) -> str:
    """The address of ``Name <addr>`` (what the SMTP envelope needs)."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        return text[:-1].rpartition("<")[2].strip()
    return text


def _address(v: Any) -> Any:
    if isinstance(v, str) and not is_address(v):
        raise custom_error(f"{v!r} is not an e-mail address", "write e.g. lab@example.org or 'Lab <lab@example.org>'")
    return v.strip() if isinstance(v, str) else v


def _host(v: Any) -> Any:
    if isinstance(v, str) and (not v.strip() or not _HOST.match(v.strip())):
        raise custom_error(f"{v!r} is not a host name", "write e.g. smtp.example.org or 127.0.0.1")
    return v.strip() if isinstance(v, str) else v


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class DbConfig(_Section):
    """``db:`` the database commands use when neither ``--db`` nor ``LABCTL_DB`` names one."""

    url: str | None = Field(
        default=None,
        description="database URL, e.g. sqlite:///runs.db or postgresql://user@host/lab",
        json_schema_extra={"examples": ["postgresql://lab@127.0.0.1/lab"]},
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise custom_error(
                f"{v if '@' not in v else '***'!r} is not a database URL",
                "write e.g. sqlite:///runs.db or postgresql://user@host/lab",
            )
        return v


class DashboardConfig(_Section):
    """``dashboard:`` where the web dashboard listens and the token it asks for."""

    token: SecretStr | None = Field(default=None, description="the token a browser must present; e.g. ${LABCTL_TOKEN}")
    host: str = Field(default="127.0.0.1", description="address to listen on, e.g. 127.0.0.1")
    port: int = Field(default=8765, ge=1, le=65535, description="TCP port, e.g. 8765")

    _h = field_validator("host", mode="before")(_host)
    _k = field_validator("token", mode="before")(_secret)


class EmailConfig(_Section):
    """``notify.email:`` an SMTP server and who gets the messages."""

    host: str = Field(description="the SMTP server", json_schema_extra={"examples": ["smtp.example.org"]})
    port: int = Field(default=25, ge=1, le=65535, description="SMTP port: 25, 587 with starttls, 465 with ssl")
    starttls: bool = Field(default=False, description="upgrade the connection with STARTTLS (port 587)")
    ssl: bool = Field(default=False, description="connect with TLS from the start (port 465)")
    username: str | None = Field(default=None, description="log in as this user")
    password: SecretStr | None = Field(default=None, description="the user's password, e.g. ${LABCTL_SMTP_PASSWORD}")
    sender: str = Field(description="the From address", json_schema_extra={"examples": ["labctl@example.org"]})
    to: list[str] = Field(
        min_length=1, description="who gets the messages", json_schema_extra={"examples": ["[me@example.org]"]}
    )
    timeout: float = Field(default=10.0, gt=0, le=600, description="seconds per connection attempt, e.g. 10 s")

    _h = field_validator("host", mode="before")(_host)
    _t = field_validator("timeout", mode="before")(_seconds)
    _s = field_validator("sender", mode="before")(_address)
    _p = field_validator("password", mode="before")(_secret)

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            errors = []
            for i, a in enumerate(v):
                if isinstance(a, str) and not is_address(a):
                    errors.append(((i,), f"{a!r} is not an e-mail address", "write e.g. me@example.org"))
            if errors:
                raise issues_error(errors)
            return [a.strip() if isinstance(a, str) else a for a in v]
        return v

    @model_validator(mode="after")
    def _consistent(self) -> EmailConfig:
        if self.ssl and self.starttls:
            raise custom_error(
                "ssl and starttls exclude each other",
                "use ssl: true for port 465 or starttls: true for port 587, not both",
                "starttls",
            )
        if self.password is not None and not self.username:
            raise custom_error(
                "a password without a username", "add username: (the SMTP login) or remove password:", "password"
            )
        return self


class WebhookConfig(_Section):
    """``notify.webhooks[]``: a URL that gets a JSON POST at each notified run end."""

    url: str = Field(description="http(s) URL to POST to", json_schema_extra={"examples": ["https://example.org/hook"]})
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra HTTP headers, e.g. {Authorization: 'Bearer ${HOOK_TOKEN}'}"
    )
    timeout: float = Field(default=10.0, gt=0, le=600, description="seconds per attempt, e.g. 10 s")

    _t = field_validator("timeout", mode="before")(_seconds)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok or any(c in v for c in "\r\n \t"):
            raise custom_error(
                f"{mask_url(v)!r} is not an http(s) URL",
                "write e.g. https://example.org/hook or http://127.0.0.1:9000/",
            )
        return v

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        errors = []
        out: dict[Any, Any] = {}
        for k, val in v.items():
            if not isinstance(k, str) or not _HEADER_NAME.match(k):
                errors.append(((k,), f"{k!r} is not an HTTP header name", "write e.g. Authorization or X-Token"))
                continue
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                val = str(val)
            if not isinstance(val, str):
                errors.append(((k,), "expected text", "write the header value as text, e.g. 'Bearer ${HOOK_TOKEN}'"))
                continue
            if isinstance(val, str) and ("\r" in val or "\n" in val):
                errors.append(((k,), "a header value must be one line", "remove the line break"))
                continue
            out[k] = val
        if errors:
            raise issues_error(errors)
        return out

    @property
    def label(self) -> str:
        """The webhook as logs and messages name it: scheme, host and port (the path may hold a token)."""
        return mask_url(self.url)


class NotifyConfig(_Section):
    """``notify:`` which run ends send a message, and where to."""

    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="run ends that send a message: completed, aborted, failed, safety_trip, interrupted (or all)",
    )
    email: EmailConfig | None = Field(default=None, description="an SMTP server and recipients")
    webhooks: list[WebhookConfig] = Field(default_factory=list, description="URLs that get a JSON POST")
    retries: int = Field(default=2, ge=0, le=10, description="further attempts after a failed one, e.g. 2")
    backoff: float = Field(default=1.0, ge=0, le=60, description="seconds before the first retry; doubles each time")

    _b = field_validator("backoff", mode="before")(_seconds)

    @field_validator("on", mode="before")
    @classmethod
    def _on(cls, v: Any) -> Any:
        if v == "all" or v == ["all"]:
            return [e.value for e in NotifyEvent]
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            v = ["safety_trip" if x == "safety" else x for x in v]
            names = [e.value for e in NotifyEvent]
            errors = []
            for i, x in enumerate(v):
                if x not in names:
                    dym = did_you_mean(str(x), names)
                    errors.append(
                        (
                            (i,),
                            f"{x!r} is not a run end",
                            (dym + " " if dym else "") + "use one of: " + ", ".join(names),
                        )
                    )
            if errors:
                raise issues_error(errors)
        return v

    @property
    def enabled(self) -> bool:
        """True when there is somewhere to send to."""
        return self.email is not None or bool(self.webhooks)

    def wants(self, status: str) -> bool:
        """Whether a run that ended with ``status`` sends a message."""
        ev = NotifyEvent.from_status(status)
        return ev is not None and ev in self.on


class LabConfig(_Section):
    """The whole config file; :func:`load_config` reads it."""

    db: DbConfig = Field(default=DbConfig(), description="the default database")
    dashboard: DashboardConfig = Field(default=DashboardConfig(), description="the web dashboard")
    notify: NotifyConfig = Field(default=NotifyConfig(), description="messages at the end of runs")

    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file this config came from, ``None`` for the defaults."""
        return self._source


# --------------------------------------------------------------------------- finding and reading


def config_path(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """``(path, explicit)``: the file :func:`load_config` reads and whether it was named."""
    env = os.environ if env is None else env
    if path is not None and str(path) != "":
        return Path(path).expanduser(), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), True
    base = env.get("XDG_CONFIG_HOME") or ""
    root = Path(base).expanduser() if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "labctl" / "config.yaml", False


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> LabConfig:
    """The labctl config (see the module docstring for where it is looked for)."""
    env = os.environ if env is None else env
    p, explicit = config_path(path, env)
    source = str(p)
    if not p.exists():
        if explicit:
            how = f"${CONFIG_ENV}" if path is None else "the path given"
            raise ProtocolError.single(
                source, "no such config file", f"check {how}, or create it (docs/notifications.md shows one)"
            )
        return LabConfig()
    if not p.is_file():
        raise ProtocolError.single(source, "the config path is not a file", "name a YAML file, e.g. config.yaml")
    try:
        raw = p.read_bytes()[: MAX_CONFIG_BYTES + 1]
    except OSError as e:
        raise ProtocolError.single(
            source, f"cannot read the config file: {e.strerror or e}", "check its permissions"
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ProtocolError.single(source, "the config file is larger than 1 MB", "a config file is a few lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError.single(
            source, f"not UTF-8 text (byte {e.start})", "save the file as UTF-8", line=1, col=1
        ) from None
    return load_config_text(text, source, env=env)


def load_config_text(text: str, source: str = "<config>", *, env: Mapping[str, str] | None = None) -> LabConfig:
    """The config written in ``text`` (``source`` names it in errors)."""
    env = os.environ if env is None else env
    data, positions = load_yaml(text, source)
    if data is None:
        cfg = LabConfig()
        cfg._source = source
        return cfg
    if not isinstance(data, dict):
        raise ProtocolError.single(
            source,
            "a config file is a mapping of sections",
            "start with one of: db:, dashboard:, notify:",
            line=1,
            col=1,
        )
    issues: list[Issue] = []
    data = _expand(data, (), env, positions, source, issues)
    cfg = validate_with_positions(LabConfig, data, positions, source, extra_issues=issues)
    cfg._source = source
    return cfg


def _expand(
    value: Any,
    path: tuple[Any, ...],
    env: Mapping[str, str],
    positions: Any,
    source: str,
    issues: list[Issue],
) -> Any:
    """Replace ``${NAME}`` in every string by the environment variable's value."""
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), env, positions, source, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, positions, source, issues) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name = m.group(1)
        line, col = positions.nearest(path) if hasattr(positions, "nearest") else (None, None)
        if not _ENV_NAME.match(name):
            issues.append(
                Issue(
                    source,
                    line,
                    col,
                    format_path(path),
                    f"'${{{name}}}' is not an environment variable reference",
                    "write ${NAME} with letters, digits and _ (or $${ for a literal ${)",
                )
            )
            return ""
        if name not in env:
            issues.append(
                Issue(
                    source,
                    line,
                    col,
                    format_path(path),
                    f"environment variable {name} is not set",
                    f"export {name}=... before running labctl, or write the value here",
                )
            )
            return ""
        return env[name]

    return _ENV_REF.sub(sub, value)


# --------------------------------------------------------------------------- printing


def mask_url(url: str) -> str:
    """``url`` with anything that may be a secret hidden: the password, and the path and query.

    Database URLs keep their path (a database name) but lose the password; http(s)
    URLs keep scheme, host and port only (webhook paths often are the token).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "***"
    if not parts.scheme or (host is None and not parts.path):
        return "***" if url else url
    user = parts.username
    netloc = ""
    if user:
        netloc = user + (":***" if parts.password is not None else "") + "@"
    if host:
        netloc += f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.scheme in ("http", "https"):
        rest = "/..." if (parts.path not in ("", "/") or parts.query) else parts.path
        return f"{parts.scheme}://{netloc}{rest}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: _mask(getattr(value, name), name) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, Enum):
        return value.value
    if key == "url" and isinstance(value, str):
        return mask_url(value)
    return value


def masked(config: LabConfig) -> dict[str, Any]:
    """The config as plain data with every secret replaced by ``***``: safe to print."""
    out: dict[str, Any] = _mask(config)
    return out
