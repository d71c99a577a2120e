"""labctl protocols: declarative YAML files validated into pydantic models.

>>> from protocols import load_protocol
>>> p = load_protocol("symmetric-0.5mA")          # a file path, or a library name
>>> p.steps[1].steps[0].current                    # resolved: A, signed
-0.0006335

Every field of a validated protocol holds an SI float (s, V, A, C, Hz, ohm;
degC for temperatures).  Errors are :class:`ProtocolError` with one
``file:line:col: field: message (hint: ...)`` line per problem.  The language is
described in docs/protocols.md.
"""

from labctl.core.errors import Issue, ProtocolError, validate_with_positions
from .loader import (
    json_schema,
    library,
    library_dirs,
    load_protocol,
    load_protocol_text,
    register_library_dir,
    unregister_library_dir,
)
from .models import (
    STEP_TYPES,
    AurbachStep,
    CellSpec,
    CvStep,
    DipCoatStep,
    EisStep,
    GalvanostaticStep,
    GroupStep,
    LsvStep,
    PotentiostaticStep,
    Protocol,
    RecordEvery,
    RepeatStep,
    RestStep,
    Safety,
    ShortCircuit,
    Step,
    TafelStep,
    TemperatureStep,
)
from labctl.core.units import UnitError, parse_quantity, ureg
from labctl.core.yamlio import load_yaml

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
]
