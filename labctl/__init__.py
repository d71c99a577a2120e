"""labctl: unattended electrochemistry lab control."""

__version__ = "0.1.0"
