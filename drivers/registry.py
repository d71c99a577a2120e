"""Driver registry: entry-point groups, so a third party adds a driver without touching labctl.

A package registers a factory (a class or function taking ``clock=`` and keyword
configuration) in its own ``pyproject.toml``::

    [project.entry-points."labctl.potentiostats"]
    my-pstat = "my_package.driver:MyPotentiostat"

and ``labctl`` finds it by name.  Groups: ``labctl.potentiostats``,
``labctl.temperature_stages``, ``labctl.dip_coaters``, ``labctl.cyclers`` (battery cyclers:
the :class:`~labctl.drivers.contracts.Cycler` contract, e.g. ``neware``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

GROUPS = {
    "potentiostat": "labctl.potentiostats",
    "temperature_stage": "labctl.temperature_stages",
    "dip_coater": "labctl.dip_coaters",
    "cycler": "labctl.cyclers",
}

# Registrations made at run time (tests, notebooks); they win over entry points.
_LOCAL: dict[str, dict[str, Callable[..., Any]]] = {g: {} for g in GROUPS.values()}


class UnknownDriver(LookupError):
    pass


def register(kind: str, name: str, factory: Callable[..., Any]) -> None:
    """Register ``factory`` under ``name`` for ``kind`` (see :data:`GROUPS`) in this process."""
    _LOCAL[GROUPS[kind]][name] = factory


def available(kind: str) -> list[str]:
    group = GROUPS[kind]
    names = {ep.name for ep in entry_points(group=group)} | set(_LOCAL[group])
    return sorted(names)


def load(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` for ``kind``."""
    group = GROUPS[kind]
    if name in _LOCAL[group]:
        return _LOCAL[group][name]
    for ep in entry_points(group=group):
        if ep.name == name:
            factory: Callable[..., Any] = ep.load()
            return factory
    raise UnknownDriver(f"no {kind} driver named {name!r}; available: {', '.join(available(kind)) or 'none'}")


def create(kind: str, name: str, **config: Any) -> Any:
    return load(kind, name)(**config)
