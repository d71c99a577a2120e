"""labctl: unattended electrochemistry lab control."""

__version__ = "0.2.0.dev0"
