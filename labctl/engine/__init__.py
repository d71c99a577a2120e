"""The engine: runs a compiled protocol on one or many channels through the driver contracts."""
