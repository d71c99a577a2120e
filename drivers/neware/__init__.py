"""Neware BTS battery cyclers: the BTS API client, step files, and the :class:`NewareCycler` driver."""

from .bts import BtsClient, BtsError, ChannelAddress, WrongChannel
from .driver import NewareCycler, StartRefused
from .stepfile import parse_step_xml, to_step_xml

__all__ = [
    "BtsClient",
    "BtsError",
    "ChannelAddress",
    "NewareCycler",
    "StartRefused",
    "WrongChannel",
    "parse_step_xml",
    "to_step_xml",
]
