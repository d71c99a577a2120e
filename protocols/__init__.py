"""labctl protocols: declarative YAML files validated into pydantic models.

>>> from labctl.protocols import load_protocol
>>> p = load_protocol("symmetric-0.5mA")          # a file path, or a library name
>>> p.steps[1].steps[0].current                    # resolved: A, signed
-0.0006335

Every field of a validated protocol holds an SI float (s, V, A, C, Hz, ohm;
degC for temperatures).  Errors are :class:`ProtocolError` with one
``file:line:col: field: message (hint: ...)`` line per problem.  The language is
described in docs/protocols.md.

Modules: :mod:`.fields` (quantity, text and C-rate field types), :mod:`.cell`
(:class:`CellSpec`), :mod:`.safety`, the step families :mod:`.electrochem`
(rest, galvanostatic, potentiostatic, aurbach_ce), :mod:`.sweeps` (tafel, lsv,
cv), :mod:`.eis`, :mod:`.environment` (temperature, dip_coat), :mod:`.structure`
(repeat, group), :mod:`.steps` (the step union), :mod:`.protocol`
(:class:`Protocol`), :mod:`.loader` (files, library, JSON schema) and
:mod:`.expand` (for_each) and :mod:`.limits` (steps, samples and database growth,
estimated before anything runs).
"""

from labctl.core.errors import Issue, ProtocolError, validate_with_positions
from labctl.core.units import UnitError, parse_quantity, ureg
from labctl.core.yamlio import load_yaml

from .base import RecordEvery
from .cell import EIS_ELEMENTS, CellSpec, circuit_syntax_error
from .eis import EisStep
from .electrochem import AurbachStep, GalvanostaticStep, PotentiostaticStep, RestStep
from .environment import DipCoatStep, TemperatureStep
from .loader import (
    json_schema,
    library,
    library_dirs,
    load_protocol,
    load_protocol_text,
    register_library_dir,
    unregister_library_dir,
)
from .limits import RunEstimate, check_limits, estimate_run
from .protocol import Protocol
from .safety import Safety
from .steps import STEP_TYPES, Step
from .structure import GroupStep, RepeatStep, ShortCircuit
from .sweeps import CvStep, LsvStep, TafelStep

__all__ = [
    "load_protocol",
    "load_protocol_text",
    "json_schema",
    "library",
    "library_dirs",
    "register_library_dir",
    "unregister_library_dir",
    "ProtocolError",
    "Issue",
    "validate_with_positions",
    "load_yaml",
    "parse_quantity",
    "UnitError",
    "ureg",
    "Protocol",
    "RunEstimate",
    "check_limits",
    "estimate_run",
    "CellSpec",
    "Safety",
    "RecordEvery",
    "ShortCircuit",
    "Step",
    "STEP_TYPES",
    "RestStep",
    "GalvanostaticStep",
    "RepeatStep",
    "GroupStep",
    "TafelStep",
    "LsvStep",
    "CvStep",
    "EisStep",
    "PotentiostaticStep",
    "TemperatureStep",
    "AurbachStep",
    "DipCoatStep",
    "EIS_ELEMENTS",
    "circuit_syntax_error",
]
