"""Conventions with one definition, written into every export and the docs.

Current sign, cycle definition, the states a run can be in, the step kinds of the
protocol language and the electrode roles of a cell.
"""

from __future__ import annotations

from enum import Enum

CURRENT_SIGN = (
    "positive current = anodic at the working electrode (oxidation, Mg stripping from the WE); "
    "negative = cathodic (plating onto the WE)"
)
CYCLE_DEFINITION = (
    "a cycle is one iteration of a repeat block that contains no other repeat (or one cycle of an "
    "aurbach_ce step); the counter is run-wide, 0 before the first cycle, and increments when an iteration starts"
)


class RunStatus(str, Enum):
    """The states of a run as stored in ``runs.status``."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"
    SAFETY = "safety"
    INTERRUPTED = "interrupted"  # its owner died; resumable from the last checkpoint

    @property
    def finished(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.ABORTED, RunStatus.FAILED, RunStatus.SAFETY)


class StepKind(str, Enum):
    """Every step kind of the protocol language."""

    REST = "rest"
    GALVANOSTATIC = "galvanostatic"
    POTENTIOSTATIC = "potentiostatic"
    TAFEL = "tafel"
    LSV = "lsv"
    CV = "cv"
    EIS = "eis"
    TEMPERATURE = "temperature"
    AURBACH_CE = "aurbach_ce"
    DIP_COAT = "dip_coat"
    REPEAT = "repeat"
    GROUP = "group"

    @property
    def structural(self) -> bool:
        """Steps that contain steps (no technique of their own)."""
        return self in (StepKind.REPEAT, StepKind.GROUP)


#: Technique kinds (``labctl.drivers.techniques``) each leaf step needs from a potentiostat.
STEP_TECHNIQUES: dict[str, frozenset[str]] = {
    "rest": frozenset({"ocp"}),
    "galvanostatic": frozenset({"cp"}),
    "aurbach_ce": frozenset({"cp"}),
    "potentiostatic": frozenset({"ca"}),
    "tafel": frozenset({"ocp", "lsv"}),
    "lsv": frozenset({"lsv"}),
    "cv": frozenset({"cv"}),
    "eis": frozenset({"eis"}),
    "temperature": frozenset(),
    "dip_coat": frozenset(),
}


class ElectrodeRole(str, Enum):
    """The role of an electrode in a cell (voltage is WE minus counter/reference)."""

    WORKING = "working"
    COUNTER = "counter"
    REFERENCE = "reference"
