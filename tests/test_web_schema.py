"""schemathesis against the dashboard's OpenAPI spec, in-process (ASGI): no 500s, every response
conforms to the spec (status codes, content types, bodies), for generated and edge-case inputs."""

from __future__ import annotations

import atexit
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from labctl.db import Database  # noqa: E402
from labctl.web import create_app  # noqa: E402

TOKEN = "schema-test-token"


def _app(tmp: Path):
    """A run with a rest, an EIS and a Tafel step, results and a coating; and an empty running run."""
    db = Database(f"sqlite:///{tmp / 'schema.sqlite'}")
    atexit.register(db.close)  # before the folder goes (atexit runs last-registered first)
    rec = db.open_run(
        protocol_name="schema", protocol_text="name: schema", cell_label="S-1", channel="bench-1", simulated=True
    )
    t = np.arange(1000.0)
    rec.step_started(0, path="1", kind="rest", label=None, cycle=0, params={}, t=0.0)
    rec.samples(0, 0, t, 0.1 + 0 * t, 0 * t, 0 * t)
    rec.step_ended(0, t=999.0, end_reason="duration", detail="", n_samples=1000, charge=0.0)
    f = np.geomspace(1e5, 1.0, 21)
    z = 10 + 100 / (1 + 1j * f / 100)
    rec.step_started(1, path="2", kind="eis", label=None, cycle=0, params={}, t=1000.0)
    rec.samples(1, 0, 1000 + np.arange(21.0), 0 * f, 0 * f, 0 * f, None, f, z.real, z.imag)
    rec.step_ended(1, t=1020.0, end_reason="complete", detail="", n_samples=21, charge=0.0)
    eta = np.linspace(-0.1, 0.1, 101)
    rec.step_started(2, path="3", kind="tafel", label=None, cycle=0, params={}, t=1100.0)
    rec.samples(2, 0, 1100 + np.arange(101.0), eta, 1e-6 * np.sinh(eta / 0.05), 0 * eta)
    rec.step_ended(2, t=1200.0, end_reason="complete", detail="", n_samples=101, charge=0.0)
    rec.event(5.0, "note", "a note", None)
    rec.finish("completed", "complete", 1.0e9)
    db.add_results(rec.run_id, [{"name": "Rs", "value": 10.0, "unit": "ohm", "step_index": 1, "method": "eis"}])
    db.add_coating(cell_label="S-1", run_id=rec.run_id, solution="DME", concentration="2 vol%")
    live = db.open_run(protocol_name="x", protocol_text="name: x", channel="live", simulated=True)
    live.flush()
    return create_app(db, token=TOKEN, warm=False)


import shutil  # noqa: E402
import tempfile  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="labctl-schema-"))
atexit.register(shutil.rmtree, _TMP, True)
APP = _app(_TMP)
# the event streams never end: they are checked by the browser tests
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP).exclude(path_regex=r".*/stream$")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_spec(case):
    if case.path.endswith("/control") and case.headers is not None and "X-Labctl-Token" in case.headers:
        case.headers["X-Labctl-Token"] = TOKEN  # also exercise the authorised path
    case.call_and_validate()
