"""How big a protocol is, estimated without running (or even expanding) it.

Three checks, in the order they can be made, each cheap and bounded in memory:

1. :func:`prescan_text`: the file's text, before YAML parsing: the step keys written in it
   (a regular-expression count).  A 26 MB file of a million steps is refused in well under
   a second instead of being parsed.
2. :func:`count_expanded_steps`: the parsed YAML, before ``for_each`` expansion: the steps
   the expansion *would* produce, by multiplying loop sizes (nested loops of 30 values four
   deep: 810,000, refused without building one of them).
3. :func:`estimate_run` on the validated protocol: program steps (``aurbach_ce`` cycles
   unrolled), the samples the run would record (duration / ``record_every`` per step,
   times the iterations of its enclosing repeats, bounded by ``max_duration`` limits),
   the test time, and :meth:`RunEstimate.db_bytes`.  :func:`check_limits` compares that to
   :class:`labctl.core.limits.ResourceLimits` and to the free space of the database's folder.

Each refusal is a :class:`ProtocolError` naming the file, line and column, the numbers, and
the option that raises the limit.  The campaign scheduler calls :func:`check_limits` the
same way ``labctl run`` does.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.core.errors import Issue, ProtocolError, format_path
from labctl.core.formatting import fmt_duration
from labctl.core.limits import ENV_MAX_SAMPLES, ENV_MAX_STEPS, SAMPLE_BYTES, ResourceLimits
from labctl.core.yamlio import Positions

from .steps import INPUT_STEP_KINDS

__all__ = [
    "RunEstimate",
    "StepEstimate",
    "check_limits",
    "count_expanded_steps",
    "estimate_run",
    "free_bytes",
    "human_bytes",
    "prescan_text",
]

STEPS_HINT = (
    "write the repetition as a 'repeat' (not unrolled), or split the protocol; to allow it: "
    f"--max-steps N (or ${ENV_MAX_STEPS})"
)
SAMPLES_HINT = (
    f"record less often (record_every) or shorten the step; to allow it: --max-samples N (or ${ENV_MAX_SAMPLES})"
)

_LEAF_KINDS = [k for k in INPUT_STEP_KINDS if k not in ("repeat", "group", "for_each")]
_KINDS = "|".join(re.escape(k) for k in sorted(_LEAF_KINDS, key=len, reverse=True))
# a step key: '- rest:' (block) or '{rest:' / ', rest:' / '[{rest:' (flow)
_STEP_KEY = re.compile(rf"(?:^[ \t]*-[ \t]*|[{{,][ \t]*)[\"']?(?P<kind>{_KINDS})[\"']?[ \t]*:", re.MULTILINE)


def _n(x: float) -> str:
    """A count for a message: 810,000 or 3.15e+24."""
    if not math.isfinite(x):
        return "unbounded"
    return f"{x:,.0f}" if x < 1e15 else f"{x:.3g}"


def human_bytes(n: float) -> str:
    """1.3 GB, 512 kB (decimal units, like df -H)."""
    if not math.isfinite(n):
        return "unbounded"
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


# --------------------------------------------------------------------------- 1. the text


def prescan_text(text: str, source: str, max_steps: int) -> int:
    """The step keys written in ``text``; more than ``max_steps`` is refused before parsing.

    Returns the count (a lower bound of the expanded steps: ``for_each`` multiplies them).
    """
    count = 0
    for m in _STEP_KEY.finditer(text):
        count += 1
        if count > max_steps:
            at = m.start("kind")
            line = text.count("\n", 0, at) + 1
            col = at - (text.rfind("\n", 0, at) + 1) + 1
            # the rest of the file by plain substring counts (C speed; an estimate, never below what was seen)
            total = max(count, sum(text.count(f"{k}:") for k in _LEAF_KINDS))
            raise ProtocolError.single(
                source,
                f"the file has about {_n(total)} steps written out ({len(text):,} bytes), over the limit of "
                f"{_n(max_steps)} steps; this is step {_n(max_steps + 1)}",
                STEPS_HINT,
                line=line,
                col=col,
                field="steps",
            )
    return count


# --------------------------------------------------------------------------- 2. the parsed YAML


def _raw_count(items: Any) -> tuple[int, list[int]]:
    """Steps ``items`` (a raw step list) expands to, and the for_each sizes of its biggest chain."""
    if not isinstance(items, list):
        return 1, []
    total = 0
    chain: list[int] = []
    for item in items:
        n, c = _raw_item(item)
        total += n
        if c and math.prod(c) > math.prod(chain):
            chain = c
    return total, chain


def _raw_item(item: Any) -> tuple[int, list[int]]:
    if not (isinstance(item, dict) and len(item) == 1):
        return 1, []
    ((kind, inner),) = item.items()
    if not isinstance(inner, dict):
        return 1, []
    if kind == "for_each":
        values = inner.get("values")
        k = len(values) if isinstance(values, list) and values else 1
        body, chain = _raw_count(inner.get("steps"))
        return k * body, [k, *chain]  # one group per value, holding the body
    if kind in ("repeat", "group"):
        return _raw_count(inner.get("steps"))
    if kind == "aurbach_ce":
        cycles = inner.get("cycles")
        if isinstance(cycles, int) and not isinstance(cycles, bool) and cycles > 0:
            return 2 + 2 * cycles, []  # reservoir, strip + plate per cycle, final strip
    return 1, []


def count_expanded_steps(data: Any, positions: Positions, source: str, max_steps: int) -> int:
    """The steps the protocol expands to, counted on the parsed YAML *before* expanding ``for_each``.

    Loop sizes are multiplied, nothing is built: time and memory are those of the file.
    More than ``max_steps`` raises :class:`ProtocolError` at the biggest top-level loop.
    """
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return 0
    total = 0
    worst: tuple[int, int, list[int]] = (0, 0, [])
    for i, item in enumerate(steps):
        n, chain = _raw_item(item)
        total += n
        if n > worst[0]:
            worst = (n, i, chain)
    if total <= max_steps:
        return total
    n, i, chain = worst
    path = ("steps", i)
    line, col = positions.get(path) or positions.nearest(path)
    shape = ""
    if chain:
        shape = f"; this step alone: {' x '.join(str(k) for k in chain)} for_each values = {_n(n)} steps"
    raise ProtocolError.single(
        source,
        f"the protocol expands to {_n(total)} steps, over the limit of {_n(max_steps)}{shape}",
        STEPS_HINT,
        line=line,
        col=col,
        field=format_path(path),
    )


# --------------------------------------------------------------------------- 3. the validated protocol


@dataclass
class StepEstimate:
    """One leaf step: its test time (None: open-ended) and the samples it records, per execution."""

    step: Any
    path: str
    duration: float | None
    samples: float
    dt: float | None  # recording interval (s)
    multiplicity: float = 1.0  # executions (iterations of the enclosing repeats)

    @property
    def total_samples(self) -> float:
        return self.samples * self.multiplicity


@dataclass
class RunEstimate:
    """What a run of a protocol would take, estimated from its steps (upper bounds)."""

    steps: int  # steps as written once for_each is expanded (not repeat), aurbach_ce cycles unrolled
    samples: float  # samples the run would record (upper bound; inf when unbounded)
    duration: float | None  # test time (s), None when a step is open-ended and nothing bounds it
    open_ended: list[str] = field(default_factory=list)  # steps whose length is unknown beforehand
    leaves: list[StepEstimate] = field(default_factory=list)

    def db_bytes(self, sample_bytes: int = SAMPLE_BYTES) -> float:
        """Database growth (bytes) of the samples."""
        return self.samples * sample_bytes

    def biggest(self) -> StepEstimate | None:
        """The step that records the most samples."""
        return max(self.leaves, key=lambda s: s.total_samples, default=None)

    def as_dict(self) -> dict[str, Any]:
        fin = math.isfinite(self.samples)
        return {
            "steps": self.steps,
            "samples": round(self.samples) if fin else None,
            "db_bytes": round(self.db_bytes()) if fin else None,
            "duration_s": self.duration,
            "open_ended_steps": self.open_ended,
        }


def _samples(duration: float, dt: float | None) -> float:
    return duration / (dt if dt else 1.0) + 1.0


def _leaf(step: Any) -> tuple[float | None, float, float | None, int]:
    """(duration s or None, samples per execution, recording interval, program steps)."""
    kind = step.kind
    if kind == "rest":
        return step.duration, _samples(step.duration, step.record_every), step.record_every, 1
    if kind == "galvanostatic":
        d = step.duration
        if step.capacity is not None and step.current:
            by_q = abs(step.capacity / step.current)
            d = by_q if d is None else min(d, by_q)
        dt = step.record_every_s
        return d, (math.inf if d is None else _samples(d, dt)), dt, 1
    if kind == "potentiostatic":
        return step.duration, _samples(step.duration, step.record_every), step.record_every, 1
    if kind == "tafel":
        span = 2 * step.span
        rest_dt = max(step.rest / 600, 1.0)
        n = span / step.step + 1 + (step.rest / rest_dt + 1 if step.rest > 0 else 0)
        return step.rest + span / step.scan_rate, n, None, 2 if step.rest > 0 else 1
    if kind == "lsv":
        span = abs(step.end - step.start)
        return span / step.scan_rate, span / step.step + 1, None, 1
    if kind == "cv":
        span = (abs(step.vertex1 - step.start) + abs(step.vertex2 - step.vertex1) + abs(step.start - step.vertex2)) * (
            step.cycles
        )
        return span / step.scan_rate, span / step.step + 1, None, 1
    if kind == "eis":
        decades = math.log10(step.f_start / step.f_end)
        points = math.ceil(decades * step.points_per_decade) + 1
        # one period per frequency, a geometric series dominated by the lowest frequency
        ratio = 10 ** (-1 / step.points_per_decade)
        return (1 / step.f_end) / (1 - ratio), float(points), None, 1
    if kind == "temperature":
        d = step.timeout + step.hold
        return d, _samples(d, step.record_every), step.record_every, 1
    if kind == "dip_coat":
        return step.immersion + step.rinse, 0.0, None, 1
    if kind == "aurbach_ce":
        i = abs(step.current) if step.current else 0.0
        if not i:
            return None, math.inf, step.record_every_s, 2 + 2 * step.cycles
        d = step.reservoir / i + step.cycles * 2 * step.cycle_capacity / i + step.max_strip_duration
        return d, _samples(d, step.record_every_s), step.record_every_s, 2 + 2 * step.cycles
    return None, 0.0, None, 1


class _Estimator:
    def __init__(self) -> None:
        self.leaves: list[StepEstimate] = []
        self.open_ended: list[str] = []
        self.steps = 0

    def walk(self, steps: Sequence[Any], path: tuple[Any, ...], mult: float) -> tuple[float, float | None, float]:
        """(samples of ``mult`` executions, duration of one execution or None, smallest recording interval)."""
        samples, duration, min_dt = 0.0, 0.0, math.inf
        d_known = True
        for i, step in enumerate(steps):
            p = (*path, i, step.kind)
            d: float | None
            if step.kind == "group":
                s, d, m = self.walk(step.steps, (*p, "steps"), mult)
            elif step.kind == "repeat":
                iters = step.times if step.times is not None else step.max_cycles
                first = len(self.leaves)
                s, d1, m = self.walk(step.steps, (*p, "steps"), mult * (iters or 1))
                d = None if d1 is None or iters is None else d1 * iters
                if iters is None:  # until, bounded by max_duration only
                    s = math.inf
                    if d1:
                        for leaf in self.leaves[first:]:
                            leaf.multiplicity *= max(step.max_duration / d1, 1.0)
                if step.max_duration is not None:
                    d = step.max_duration if d is None else min(d, step.max_duration)
                    if math.isfinite(m):
                        s = min(s, mult * (step.max_duration / m + len(step.steps)))
            else:
                dur, n, dt, ops = _leaf(step)
                self.steps += ops
                self.leaves.append(StepEstimate(step, format_path(p), dur, n, dt, mult))
                if dur is None:
                    self.open_ended.append(format_path(p))
                s, d, m = n * mult, dur, (dt if dt else (1.0 if n else math.inf))
            samples += s
            min_dt = min(min_dt, m)
            if d is None:
                d_known = False
            else:
                duration += d
        return samples, (duration if d_known else None), min_dt


def estimate_run(protocol: Any) -> RunEstimate:
    """Steps, samples, test time of a run of ``protocol`` (a validated :class:`Protocol`), without running it.

    Samples are upper bounds: a step recording every ``dt`` for ``duration`` records
    ``duration / dt + 1`` (1 s for a step that records on voltage changes only); a step
    ended by a voltage cut-off counts its full duration; ``repeat: {until: ...}`` counts
    ``max_cycles`` iterations; ``max_duration`` (of a repeat or of ``safety``) bounds what it
    encloses.  Steps with no bound at all are listed in ``open_ended`` (samples ``inf``).
    """
    est = _Estimator()
    samples, duration, min_dt = est.walk(protocol.steps, ("steps",), 1.0)
    cap = getattr(protocol.safety, "max_duration", None)
    if cap is not None:
        duration = cap if duration is None else min(duration, cap)
        if math.isfinite(min_dt):
            samples = min(samples, cap / min_dt + est.steps)
    return RunEstimate(est.steps, samples, duration, est.open_ended, est.leaves)


def free_bytes(folder: str | Path) -> int | None:
    """Free bytes of the file system holding ``folder`` (its nearest existing parent); None if unknown."""
    p = Path(folder).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            try:
                return shutil.disk_usage(q).free
            except OSError:
                return None
    return None


def _where(protocol: Any, leaf: StepEstimate | None) -> tuple[int | None, int | None, str]:
    if leaf is None:
        return None, None, "steps"
    line = getattr(leaf.step, "line", 0) or None
    col = getattr(leaf.step, "col", 0) or None
    return line, col, leaf.path


def _describe(leaf: StepEstimate) -> str:
    what = f"{leaf.step.kind}"
    if leaf.duration is not None:
        years = leaf.duration / 31_557_600
        what += f" of {years:.4g} years" if years >= 2 else f" of {fmt_duration(leaf.duration)}"
    if leaf.dt:
        what += f" recording every {_fmt_dt(leaf.dt)}"
    what += f": {_n(leaf.samples)} samples"
    if leaf.multiplicity != 1:
        what += f" x {_n(leaf.multiplicity)} iterations"
    return what


def _fmt_dt(dt: float) -> str:
    if dt >= 1:
        return fmt_duration(dt)
    for unit, f in (("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if dt >= f:
            return f"{dt / f:.3g} {unit}"
    return f"{dt:.3g} s"


def check_limits(
    protocol: Any,
    limits: ResourceLimits | None = None,
    *,
    db_folder: str | Path | None = None,
    free: int | None = None,
) -> RunEstimate:
    """Refuse ``protocol`` when a run of it would exceed ``limits``; return the estimate otherwise.

    ``db_folder``: the folder of a local (SQLite) database; its free space (or ``free``
    bytes, when given) must hold the estimated growth.  Raises :class:`ProtocolError`.
    """
    limits = limits or ResourceLimits.from_env()
    src = getattr(protocol, "source", None) or "<protocol>"
    est = estimate_run(protocol)
    if est.steps > limits.max_steps:
        raise ProtocolError.single(
            src,
            f"the protocol has {_n(est.steps)} steps once expanded (for_each values, aurbach_ce cycles unrolled), "
            f"over the limit of {_n(limits.max_steps)}",
            STEPS_HINT,
            line=1,
            col=1,
            field="steps",
        )
    big = est.biggest()
    if est.samples > limits.max_samples:
        line, col, path = _where(protocol, big)
        detail = f"; the biggest, {_describe(big)}" if big is not None and math.isfinite(big.total_samples) else ""
        raise ProtocolError(
            Issue(
                src,
                line,
                col,
                path,
                f"a run would record about {_n(est.samples)} samples "
                f"({human_bytes(est.db_bytes())} of database), over the limit of {_n(limits.max_samples)}{detail}",
                SAMPLES_HINT,
            )
        )
    if limits.check_disk and (db_folder is not None or free is not None):
        avail = free if free is not None else free_bytes(db_folder)  # type: ignore[arg-type]
        need = est.db_bytes()
        if avail is not None and need > avail:
            line, col, path = _where(protocol, big)
            place = f"{db_folder}" if db_folder is not None else "the database's disk"
            raise ProtocolError(
                Issue(
                    src,
                    line,
                    col,
                    path,
                    f"a run would write about {human_bytes(need)} to the database ({_n(est.samples)} samples x "
                    f"{SAMPLE_BYTES} B), but {place} has {human_bytes(avail)} free",
                    "free disk space, use another --db, or record less often; "
                    "--no-disk-check skips this check (the run then stops when the disk is full)",
                )
            )
    return est
