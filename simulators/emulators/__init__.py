"""Instrument emulators on loopback links, driven by the simulator's models (for driver tests and demos)."""
