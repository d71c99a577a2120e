"""Where the database lives: the default location and URL normalisation."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url

#: Environment variable that selects the database (a SQLAlchemy URL or a file path).
ENV_VAR = "LABCTL_DB"


def default_path() -> Path:
    """``<XDG_DATA_HOME or ~/.local/share>/labctl/labctl.sqlite`` (directory not created)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "labctl" / "labctl.sqlite"


def default_url() -> str:
    """The database labctl uses when none is given.

    ``$LABCTL_DB`` if set (a SQLAlchemy URL, or a plain file path meaning a SQLite
    file), else ``sqlite:///<XDG_DATA_HOME or ~/.local/share>/labctl/labctl.sqlite``.
    The directory of the default file is created.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return normalize_url(env)
    path = default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def normalize_url(url: str | URL) -> str:
    """A SQLAlchemy URL string; PostgreSQL without a driver gets psycopg 3.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``; a value
    without ``://`` is taken as the path of a SQLite file.
    """
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    url = str(url).strip()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def masked(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (a SQLite URL, which has none, as written)."""
    if isinstance(url, str) and url.startswith("sqlite"):
        return url
    return make_url(url).render_as_string(hide_password=True)
