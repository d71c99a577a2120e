"""The core layer: what every other part of labctl may import, and which imports nothing of labctl.

Clock, units, YAML with positions, error formatting, conventions and the small
Protocols (recorder, operator) the engine depends on.  Import the submodules
directly (``from labctl.core.clock import VirtualClock``): this package imports
nothing at start-up, so ``labctl --help`` stays fast.
"""
