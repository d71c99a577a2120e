"""The magnesium-anode study: bare Mg vs a bromine-rich interphase (Br-Mg).

What the study brings to labctl, registered through entry points in pyproject.toml
(so the core never names it):

* ``PRESET_DIR``: its simulator presets (``bare-mg``, ``br-mg``), group ``labctl.presets``;
* ``LIBRARY_DIR``: its experiments as protocol files, group ``labctl.protocol_libraries``;
* :mod:`.paper`: the paper's reference values; :mod:`.demo`: ``labctl demo``.

This module imports nothing: loading the entry points stays cheap.
"""

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent / "presets"
LIBRARY_DIR = Path(__file__).resolve().parent / "library"

__all__ = ["LIBRARY_DIR", "PRESET_DIR"]
