"""The dashboard's FastAPI app: JSON API under ``/api/`` (OpenAPI at ``/api/openapi.json``),
live updates by server-sent events, three pages (grid, run, campaigns) served as static files.

Read-only unless a token is configured; see :mod:`labctl.web.security`.  The database calls
are synchronous (SQLAlchemy), so the endpoints are plain ``def`` functions FastAPI runs in its
thread pool; the event streams poll the database from a thread.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from labctl import __version__
from labctl.app.control import ControlError, request_control
from labctl.app.grid import channel_grid
from labctl.web.security import check_token, secret_value
from labctl.web.trace import DEFAULT_BINS, RAW_LIMIT, TraceCache, voltage_trace
from labctl.web.trace import warm as warm_traces

RunId = PathParam(..., ge=1, le=(1 << 23) - 1, description="run id")
Num = float | None


# ---------------------------------------------------------------------------------------- models
class Channel(BaseModel):
    station: str | None
    channel: str
    cell: str | None
    run_id: int
    protocol: str
    status: str
    step: str | None
    step_index: int | None
    cycle: int | None
    voltage: Num
    current: Num
    elapsed_s: float
    estimated_end_unix: Num
    heartbeat_age_s: Num
    n_samples: int


class Grid(BaseModel):
    now_unix: float
    channels: list[Channel]


class RunSummary(BaseModel):
    id: int
    status: str
    protocol: str | None
    cell: str | None
    channel: str
    station: str | None = None
    simulated: bool
    preset: str | None
    started: float
    ended: Num
    end_reason: str | None
    n_samples: int


class Step(BaseModel):
    step_index: int
    path: str
    kind: str
    label: str | None
    cycle: int
    t_start: float
    t_end: Num
    end_reason: str | None
    n_samples: int | None
    charge: Num


class Event(BaseModel):
    t: float
    kind: str
    message: str


class Result(BaseModel):
    name: str
    value: Num
    unit: str | None
    uncertainty: Num
    method: str | None
    step_index: int | None


class Coating(BaseModel):
    cell_label: str
    step_index: int | None
    solution: str | None
    concentration: str | None
    rinse_solution: str | None
    immersion_start: Num
    immersion_end: Num
    rinse_start: Num
    rinse_end: Num
    operator: str | None
    planned_immersion_s: Num
    planned_rinse_s: Num
    mode: str | None
    notes: str | None


class RunDetail(BaseModel):
    run: RunSummary
    steps: list[Step]
    events: list[Event]
    results: list[Result]
    coatings: list[Coating]
    exports: dict[str, str]
    control: dict[str, Any] | None = Field(None, description="the latest control request")


class TraceOut(BaseModel):
    run_id: int
    n_samples: int
    bucket: int = Field(description="samples per bucket (1: every sample)")
    envelope: bool = Field(description="t/voltage are the min and max of each bucket")
    t: list[float]
    voltage: list[Num]


class Series(BaseModel):
    x: list[float]
    y: list[Num]


class Eis(BaseModel):
    step_index: int | None
    cycle: int | None
    frequency: list[float]
    z_re: list[float]
    z_im: list[float]
    fit: dict[str, list[float]] | None
    circuit: str | None
    fitted: dict[str, float]


class Tafel(BaseModel):
    step_index: int | None
    eta: list[float]
    log_j: list[Num]
    fit_line: list[Num] | None
    results: list[Result]


class Cycles(BaseModel):
    ce: Series | None
    hysteresis: Series | None


class ControlIn(BaseModel):
    action: Literal["pause", "resume", "cancel"]


class ControlOut(BaseModel):
    run_id: int
    action: str
    seq: int
    requested_unix: float


class ErrorOut(BaseModel):
    detail: str


R404: dict[int | str, dict[str, Any]] = {404: {"description": "no such run", "model": ErrorOut}}


class Campaigns(BaseModel):
    available: bool = Field(description="false when this database has no campaign tables")
    campaigns: list[dict[str, Any]]
    queue: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------- helpers
def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _floats(a: Any) -> list[float]:
    return [float(x) for x in np.asarray(a, float)]


def _nums(a: Any) -> list[float | None]:
    return [_num(x) for x in np.asarray(a, float)]


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _num(obj)
    return str(obj)


def _summary(r: dict) -> RunSummary:
    meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
    station = meta.get("station") if meta else None
    return RunSummary(
        id=int(r["id"]),
        status=str(r["status"]),
        protocol=r.get("protocol"),
        cell=r.get("cell"),
        channel=str(r["channel"]),
        station=None if station is None else str(station),
        simulated=bool(r.get("simulated")),
        preset=r.get("preset"),
        started=float(r.get("started") or 0.0),
        ended=_num(r.get("ended")),
        end_reason=r.get("end_reason"),
        n_samples=int(r.get("n_samples") or 0),
    )


def _result(r: dict) -> Result:
    return Result(
        name=str(r["name"]),
        value=_num(r.get("value")),
        unit=r.get("unit"),
        uncertainty=_num(r.get("uncertainty")),
        method=r.get("method"),
        step_index=r.get("step_index"),
    )


def _static_dir() -> Path:
    return Path(str(resources.files("labctl.web") / "static"))


# ---------------------------------------------------------------------------------------- the app
def create_app(db: Any, *, token: Any = None, poll_interval: float = 0.5, warm: bool = True) -> FastAPI:
    """The dashboard over ``db`` (a :class:`labctl.db.Database`).  ``token`` (str or SecretStr)
    enables the control endpoints; without one the dashboard is read-only.  ``warm``: prepare the
    trace of the latest run of each channel in a background thread at once (``trace.warm``), so
    its first page is fast even if the run was recorded before its envelope was stored."""
    expected = secret_value(token)
    cache = TraceCache()
    static = _static_dir()
    app = FastAPI(
        title="labctl dashboard",
        version=__version__,
        description="Live view of the labctl database: channels, runs, campaigns.  Read-only; "
        "control (pause, resume, cancel) needs the dashboard token in the X-Labctl-Token header.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI would load from a CDN: the spec itself is at /api/openapi.json
        redoc_url=None,
    )
    app.state.db = db
    app.state.trace_cache = cache
    app.state.warmed = threading.Event()

    def _warm() -> None:
        try:
            ids = [c.run_id for c in channel_grid(db) if c.n_samples > RAW_LIMIT]
            warm_traces(db, cache, ids)
        except Exception:  # a closed or unreachable database: the pages scan on demand
            pass
        finally:
            app.state.warmed.set()

    if warm:
        threading.Thread(target=_warm, name="labctl-dashboard-warm", daemon=True).start()
    else:
        app.state.warmed.set()

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        # pages load only their own scripts and styles; no framing; no referrer leaks
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def get_run(run_id: int) -> dict:
        try:
            return dict(db.run(run_id))
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no run {run_id}") from None

    # ------------------------------------------------------------------------ pages
    def page(name: str) -> FileResponse:
        return FileResponse(static / name, media_type="text/html")

    @app.get("/", include_in_schema=False)
    def grid_page() -> FileResponse:
        return page("index.html")

    @app.get("/runs/{run_id}", include_in_schema=False)
    def run_page(run_id: int) -> FileResponse:
        return page("run.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/campaigns", include_in_schema=False)
    def campaigns_page() -> FileResponse:
        return page("campaigns.html")

    app.mount("/static", StaticFiles(directory=static), name="static")

    # ------------------------------------------------------------------------ API
    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__, "database": db.dialect}

    @app.get("/api/grid", response_model=Grid, tags=["grid"])
    def grid() -> Grid:
        """One row per channel with its latest run: live status, step, cycle, last V and I."""
        now = time.time()
        return Grid(now_unix=now, channels=[Channel(**_clean(c.to_dict())) for c in channel_grid(db, now=now)])

    @app.get("/api/runs", response_model=list[RunSummary], tags=["runs"])
    def list_runs(limit: int = Query(200, ge=1, le=5000)) -> list[RunSummary]:
        return [_summary(r) for r in db.runs(limit=limit)]

    @app.get("/api/runs/{run_id}", response_model=RunDetail, tags=["runs"], responses=R404)
    def run_detail(run_id: int = RunId) -> RunDetail:
        r = get_run(run_id)
        coat = []
        if r.get("cell"):
            coat = [c for c in db.coatings(r["cell"]) if c.get("run_id") in (None, run_id)]
        meta: dict = r["meta"] if isinstance(r.get("meta"), dict) else {}
        return RunDetail(
            run=_summary(r),
            steps=[Step(**_clean({k: s.get(k) for k in Step.model_fields})) for s in db.steps(run_id)],
            events=[Event(t=float(e["t"]), kind=str(e["kind"]), message=str(e["message"])) for e in db.events(run_id)],
            results=[_result(x) for x in db.results(run_id)],
            coatings=[Coating(**_clean({k: c.get(k) for k in Coating.model_fields})) for c in coat],
            exports={
                "csv": f"/api/runs/{run_id}/export.csv",
                "parquet": f"/api/runs/{run_id}/export.parquet",
            },
            control=_clean(meta.get("control")) if isinstance(meta.get("control"), dict) else None,
        )

    @app.get("/api/runs/{run_id}/trace", response_model=TraceOut, tags=["runs"], responses=R404)
    def trace(run_id: int = RunId, bins: int = Query(DEFAULT_BINS, ge=10, le=10000)) -> TraceOut:
        """Voltage against test time: every sample, or the min and max of each bucket (extremes kept)."""
        try:
            tr = voltage_trace(db, run_id, bins=bins, cache=cache)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no run {run_id}") from None
        return TraceOut(
            run_id=tr.run_id, n_samples=tr.n_samples, bucket=tr.bucket, envelope=tr.envelope, t=tr.t, voltage=tr.voltage
        )

    @app.get("/api/runs/{run_id}/eis", response_model=Eis, tags=["runs"], responses=R404)
    def eis(run_id: int = RunId) -> Eis:
        """The run's latest impedance spectrum, with its fitted circuit when the results have one."""
        get_run(run_id)
        empty = Eis(step_index=None, cycle=None, frequency=[], z_re=[], z_im=[], fit=None, circuit=None, fitted={})
        steps = [s for s in db.steps(run_id) if s["kind"] == "eis" and (s.get("n_samples") is None or s["n_samples"])]
        if not steps:
            return empty
        if db.results(run_id):  # stored results: the report's view attaches the fits
            from labctl.reports.runview import RunView

            spectra = RunView(db, run_id).nonempty_spectra()
            if not spectra:
                return empty
            sp = spectra[-1]
            fit = sp.fit_curve()
            return Eis(
                step_index=sp.step_index,
                cycle=sp.cycle,
                frequency=_floats(sp.frequency),
                z_re=_floats(sp.z.real),
                z_im=_floats(sp.z.imag),
                fit=None
                if fit is None
                else {"frequency": _floats(fit[0]), "z_re": _floats(fit[1].real), "z_im": _floats(fit[1].imag)},
                circuit=sp.circuit,
                fitted={k: float(v) for k, v in sp.fitted.items() if _num(v) is not None},
            )
        for s in reversed(steps):
            d = db.samples(run_id, step_index=int(s["step_index"]), columns=["frequency", "z_re", "z_im"])
            ok = np.isfinite(d["frequency"]) & np.isfinite(d["z_re"]) & np.isfinite(d["z_im"]) & (d["frequency"] > 0)
            if ok.any():
                return Eis(
                    step_index=int(s["step_index"]),
                    cycle=int(s.get("cycle") or 0),
                    frequency=_floats(d["frequency"][ok]),
                    z_re=_floats(d["z_re"][ok]),
                    z_im=_floats(d["z_im"][ok]),
                    fit=None,
                    circuit=None,
                    fitted={},
                )
        return empty

    @app.get("/api/runs/{run_id}/tafel", response_model=Tafel, tags=["runs"], responses=R404)
    def tafel(run_id: int = RunId) -> Tafel:
        """The latest Tafel sweep: overpotential and log10 |j|, with the fitted Tafel line when stored."""
        get_run(run_id)
        from labctl.reports.runview import RunView

        if not db.results(run_id):
            view = RunView(db, run_id)
            steps = view.tafel_steps()
            if not steps:
                return Tafel(step_index=None, eta=[], log_j=[], fit_line=None, results=[])
            s = steps[-1]
            d = db.samples(run_id, step_index=int(s["step_index"]), columns=["voltage", "current"])
            if not d["voltage"].size:
                return Tafel(step_index=None, eta=[], log_j=[], fit_line=None, results=[])
            area = view.area_cm2 or 1.0
            i0 = int(np.argmin(np.abs(d["current"])))
            eta = d["voltage"] - d["voltage"][i0]
            with np.errstate(divide="ignore"):
                lj = np.log10(np.abs(d["current"] / area))
            order = np.argsort(eta, kind="stable")
            return Tafel(
                step_index=int(s["step_index"]),
                eta=_floats(eta[order]),
                log_j=_nums(lj[order]),
                fit_line=None,
                results=[],
            )
        view = RunView(db, run_id)
        curves = view.tafel_curves()
        if not curves:
            return Tafel(step_index=None, eta=[], log_j=[], fit_line=None, results=[])
        c = curves[-1]
        order = np.argsort(c.eta, kind="stable")
        eta = c.eta[order]
        with np.errstate(divide="ignore"):
            lj = np.log10(np.abs(c.j[order]))
        from labctl.reports.tafel import tafel_model

        model = tafel_model(c.results)
        line = None if model is None else _nums(model[1](eta))
        return Tafel(
            step_index=c.step_index,
            eta=_floats(eta),
            log_j=_nums(lj),
            fit_line=line,
            results=[_result(r) for r in c.results.values()],
        )

    @app.get("/api/runs/{run_id}/cycles", response_model=Cycles, tags=["runs"], responses=R404)
    def cycles(run_id: int = RunId) -> Cycles:
        """Coulombic efficiency (%) and voltage hysteresis (mV) per cycle, from the stored results."""
        get_run(run_id)
        if not db.results(run_id):
            return Cycles(ce=None, hysteresis=None)
        from labctl.reports.runview import RunView
        from labctl.reports.series import ce_series, hysteresis_series

        view = RunView(db, run_id)
        out: dict[str, Series | None] = {}
        for name, fn in (("ce", ce_series), ("hysteresis", hysteresis_series)):
            s = fn(view)
            out[name] = None if s is None else Series(x=_floats(s.cycles), y=_nums(s.values))
        return Cycles(**out)

    @app.get(
        "/api/runs/{run_id}/export.{fmt}",
        tags=["runs"],
        response_class=FileResponse,
        responses={
            **R404,
            200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}, "description": "the file"},
            501: {"description": "parquet needs pyarrow", "model": ErrorOut},
        },
    )
    def export(run_id: int = RunId, fmt: Literal["csv", "parquet"] = PathParam(...)) -> FileResponse:
        """The run's samples with BDF column names (see ``labctl export``)."""
        get_run(run_id)
        from labctl.app.export import export_run

        tmpdir = Path(tempfile.mkdtemp(prefix="labctl-export-"))
        path = tmpdir / f"run-{run_id}.{fmt}"
        try:
            export_run(db, run_id, path, fmt)
        except ImportError:
            _rmtree(tmpdir)
            raise HTTPException(
                status_code=501, detail="parquet export needs pyarrow (pip install 'labctl[parquet]')"
            ) from None
        return FileResponse(
            path,
            filename=path.name,
            media_type="text/csv" if fmt == "csv" else "application/vnd.apache.parquet",
            background=BackgroundTask(_rmtree, tmpdir),
        )

    @app.get("/api/campaigns", response_model=Campaigns, tags=["campaigns"])
    def campaigns() -> Campaigns:
        """Campaigns and the queue of planned runs (empty, available=false, before the campaign tables exist)."""
        return Campaigns(**_clean(read_campaigns(db)))

    @app.post(
        "/api/runs/{run_id}/control",
        response_model=ControlOut,
        tags=["control"],
        responses={
            **R404,
            400: {"description": "the body is not JSON", "model": ErrorOut},
            401: {"description": "no token", "model": ErrorOut},
            403: {"description": "wrong token, or control disabled", "model": ErrorOut},
            409: {"description": "the run is not running", "model": ErrorOut},
        },
    )
    def control(request: Request, body: ControlIn, run_id: int = RunId) -> ControlOut:
        """Ask the worker that runs ``run_id`` to pause, resume or cancel it (needs the token)."""
        check_token(request, expected)
        try:
            req = request_control(db, run_id, body.action, source="dashboard")
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no run {run_id}") from None
        except ControlError as e:
            raise HTTPException(status_code=409, detail=str(e)) from None
        return ControlOut(run_id=req.run_id, action=req.action, seq=req.seq, requested_unix=req.requested_unix)

    # ------------------------------------------------------------------------ live (SSE)
    async def stream(request: Request, snapshot: Any) -> Any:
        last = None
        beat = time.monotonic()
        yield "retry: 1000\n\n"
        while True:
            if await request.is_disconnected():
                return
            try:
                data = await asyncio.to_thread(snapshot)
            except HTTPException as e:
                yield f"event: gone\ndata: {json.dumps({'detail': e.detail})}\n\n"
                return
            text = json.dumps(data, separators=(",", ":"))
            if text != last:
                last = text
                beat = time.monotonic()
                yield f"data: {text}\n\n"
            elif time.monotonic() - beat > 15:
                beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(poll_interval)

    sse_headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

    @app.get("/api/grid/stream", tags=["grid"], response_class=StreamingResponse)
    def grid_stream(request: Request) -> StreamingResponse:
        """Server-sent events: the grid (as ``/api/grid`` without ``now_unix``) whenever it changes."""

        def snap() -> Any:
            return [_clean(c.to_dict()) for c in channel_grid(db)]

        return StreamingResponse(stream(request, snap), media_type="text/event-stream", headers=sse_headers)

    @app.get("/api/runs/{run_id}/stream", tags=["runs"], response_class=StreamingResponse, responses=R404)
    def run_stream(request: Request, run_id: int = RunId) -> StreamingResponse:
        """Server-sent events: the run's status, samples, steps, events and results counts when they change."""
        get_run(run_id)

        def snap() -> Any:
            r = get_run(run_id)
            with db.transaction() as conn:
                from labctl.db.schema import events, results, steps

                n_ev = conn.execute(sa.select(sa.func.count()).where(events.c.run_id == run_id)).scalar()
                n_res = conn.execute(sa.select(sa.func.count()).where(results.c.run_id == run_id)).scalar()
                n_st = conn.execute(sa.select(sa.func.count()).where(steps.c.run_id == run_id)).scalar()
            return {
                "status": r["status"],
                "n_samples": int(r.get("n_samples") or 0),
                "steps": int(n_st or 0),
                "events": int(n_ev or 0),
                "results": int(n_res or 0),
            }

        return StreamingResponse(stream(request, snap), media_type="text/event-stream", headers=sse_headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # never a traceback or a configuration value in a response
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    return app


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def read_campaigns(db: Any) -> dict[str, Any]:
    """Campaigns with their planned runs counted by state, and the queue (planned runs not yet
    finished), read by reflection: ``available`` is False when the tables do not exist."""
    with db.transaction() as conn:
        insp = sa.inspect(conn)
        if not (insp.has_table("campaigns") and insp.has_table("planned_runs")):
            return {"available": False, "campaigns": [], "queue": []}
        md = sa.MetaData()
        camp = sa.Table("campaigns", md, autoload_with=conn)
        plan = sa.Table("planned_runs", md, autoload_with=conn)
        ccols = [c for c in ("id", "name", "source", "created_unix") if c in camp.c]
        rows = [dict(r) for r in conn.execute(sa.select(*(camp.c[c] for c in ccols)).order_by(camp.c.id)).mappings()]
        counts: dict[Any, dict[str, int]] = {}
        if "campaign_id" in plan.c and "state" in plan.c:
            q = sa.select(plan.c.campaign_id, plan.c.state, sa.func.count()).group_by(plan.c.campaign_id, plan.c.state)
            for cid, state, k in conn.execute(q):
                counts.setdefault(cid, {})[str(state)] = int(k)
        for r in rows:
            r["states"] = counts.get(r.get("id"), {})
        qcols = [
            c
            for c in (
                "id",
                "campaign_id",
                "key",
                "station",
                "channel",
                "state",
                "control",
                "run_id",
                "priority",
                "attempts",
                "claimed_by",
                "not_before_unix",
                "reason",
            )
            if c in plan.c
        ]
        q = sa.select(*(plan.c[c] for c in qcols))
        if "state" in plan.c:
            q = q.where(plan.c.state.not_in(("done", "completed", "failed", "cancelled", "skipped")))
        order: list[Any] = [plan.c[c] for c in ("priority", "id") if c in plan.c]
        if "priority" in plan.c:
            order[0] = plan.c.priority.desc()
        queue = [dict(r) for r in conn.execute(q.order_by(*order).limit(1000)).mappings()]
    names = {r.get("id"): r.get("name") for r in rows}
    for qrow in queue:
        qrow["campaign"] = names.get(qrow.get("campaign_id"))
    return {"available": True, "campaigns": rows, "queue": queue}
