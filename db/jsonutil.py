"""JSON for the ``meta``, ``params``, ``data`` and ``deviations`` columns.

Values are converted to plain JSON before they are queued, so a value that cannot
be stored fails in the caller's thread, not later in the writer.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict/list/str/int/float/bool/None).

    numpy scalars and arrays, tuples, enums, paths, datetimes and dataclasses are
    converted; non-finite floats become ``None`` (JSON has no NaN, and PostgreSQL's
    jsonb rejects it).  Anything else raises ``TypeError``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON: {obj!r}")


def _key(k: Any) -> str:
    if isinstance(k, Enum):
        k = k.value
    if isinstance(k, np.generic):
        k = k.item()
    return k if isinstance(k, str) else str(k)


def dumps(obj: Any) -> str:
    """The engine's JSON serializer: :func:`jsonable`, then strict ``json.dumps``."""
    return json.dumps(jsonable(obj), allow_nan=False, separators=(",", ":"))
