"""The labctl config file (minimal: the shape ``labctl serve`` reads).

Only what the dashboard needs: ``load_config(path=None) -> LabConfig`` with ``db.url`` and
``dashboard.token`` (``SecretStr``), ``.host``, ``.port``.  The full module (notifications,
``${ENV}`` expansion) comes from another branch; this commit can be dropped at merge.
Looked for at ``path``, else ``$LABCTL_CONFIG``, else ``~/.config/labctl/config.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from labctl.core.errors import ProtocolError, validate_with_positions
from labctl.core.yamlio import load_yaml

CONFIG_ENV = "LABCTL_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DbConfig(_Section):
    url: str | None = Field(default=None, description="database URL")


class DashboardConfig(_Section):
    token: SecretStr | None = Field(default=None, description="the token a browser must present")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8765, ge=1, le=65535, description="TCP port")


class LabConfig(_Section):
    db: DbConfig = Field(default=DbConfig())
    dashboard: DashboardConfig = Field(default=DashboardConfig())


def load_config(path: str | Path | None = None) -> LabConfig:
    """The labctl config (defaults when no file is named and the default file does not exist)."""
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    p = Path(path or os.environ.get(CONFIG_ENV) or Path.home() / ".config" / "labctl" / "config.yaml").expanduser()
    if not p.exists():
        if explicit:
            raise ProtocolError.single(str(p), "no such config file", "check the path given")
        return LabConfig()
    data, positions = load_yaml(p.read_text(encoding="utf-8"), str(p))
    if data is None:
        return LabConfig()
    return validate_with_positions(LabConfig, data, positions, str(p))
