"""CH Instruments potentiostats through hardpotato (the optional ``chi`` extra, GPL-3.0).

CH Instruments are driven by macros that the vendor's ``chi.exe`` (Windows) runs; the
macro text comes from hardpotato's model modules (``chi601e``, ``chi760e``, ``chi1205b``,
``chi1242b``).  This adapter maps labctl's techniques onto them:

===========================  ===================================================
labctl technique             CHI macro (hardpotato)
===========================  ===================================================
``OpenCircuit``              ``tech=ocpt`` (OCP vs time)
``ConstantPotential``        ``tech=i-t`` (amperometric i-t)
``LinearSweep`` (Tafel)      ``tech=lsv``; vs OCP: an OCP measurement first
``CyclicSweep``              ``tech=cv``
``Impedance``                ``tech=imp`` (760E only)
===========================  ===================================================

What it cannot do, declared in its capabilities so preflight refuses a protocol before
anything starts (exit 2): galvanostatic steps (hardpotato has no chronopotentiometry),
and any cut-off (voltage, current, charge) since chi.exe runs a macro to its end and
returns the data afterwards (``streams=False``, ``native_limits=False``).  ``connect()``
refuses to run anywhere but Windows with the path of ``chi.exe``.

Sign: CH Instruments files report currents in the "US" convention (cathodic
positive); like hardpotato's readers, the adapter negates them to labctl's anodic-positive.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .contracts import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Capabilities,
    DeviceError,
    TechniqueState,
)
from .techniques import (
    ConstantPotential,
    CyclicSweep,
    EndInfo,
    Impedance,
    LinearSweep,
    OpenCircuit,
    SampleBlock,
    Technique,
)

MODELS = ("chi601e", "chi760e", "chi1205b", "chi1242b")
_KIND = {"OCP": "ocp", "CA": "ca", "LSV": "lsv", "CV": "cv", "EIS": "eis"}
#: hardpotato's current sensitivity (A/V) when the technique gives no hint
DEFAULT_SENS = 1e-4
OCP_BEFORE_SWEEP_S = 10.0


def _module(model: str) -> Any:
    if model not in MODELS:
        raise DeviceError(f"CH Instruments model {model!r} is not supported; use one of {', '.join(MODELS)}")
    try:
        import importlib

        return importlib.import_module(f"hardpotato.{model}")
    except ImportError:
        raise DeviceError("the CH Instruments driver needs hardpotato: pip install 'labctl[chi]' (GPL-3.0)") from None


def techniques_of(model: str) -> frozenset[str]:
    m = _module(model)
    # a technique counts when hardpotato lists it and has its macro (chi601e lists EIS without one)
    return frozenset(_KIND[t] for t in m.Info().tech if t in _KIND and hasattr(m, t))


def _quiet(fn: Any, *args: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _r(x: float) -> float:
    """Nine significant digits: what a CHI macro line needs, without binary noise (0.15, not 0.15000000000000002)."""
    return float(f"{x:.9g}")


def macro(
    model: str, tech: Technique, *, folder: str, name: str, e_ocp: float = 0.0, sens: float = DEFAULT_SENS
) -> str:
    """The CHI macro text hardpotato generates for ``tech`` (potentials vs OCP shifted by ``e_ocp``)."""
    m = _module(model)
    header = f"labctl {tech.kind}"
    if isinstance(tech, OpenCircuit):
        dt = tech.record.dt or 1.0
        return str(_quiet(m.OCP, tech.duration, dt, folder, name, header, "").text)
    if isinstance(tech, ConstantPotential):
        e = tech.potential + (e_ocp if tech.vs_ocp else 0.0)
        dt = tech.record.dt or 1.0
        return str(_quiet(m.CA, _r(e), dt, tech.limits.duration or 0.0, sens, folder, name, header, "").text)
    if isinstance(tech, LinearSweep):
        off = e_ocp if tech.vs_ocp else 0.0
        return str(
            _quiet(
                m.LSV,
                _r(tech.start + off),
                _r(tech.end + off),
                tech.scan_rate,
                tech.step,
                sens,
                folder,
                name,
                header,
                "",
            ).text
        )
    if isinstance(tech, CyclicSweep):
        off = e_ocp if tech.vs_ocp else 0.0
        return str(
            _quiet(
                m.CV,
                _r(tech.start + off),
                _r(tech.vertex1 + off),
                _r(tech.vertex2 + off),
                _r(tech.start + off),
                tech.scan_rate,
                tech.step,
                2 * tech.cycles,
                sens,
                folder,
                name,
                header,
                "",
            ).text
        )
    if isinstance(tech, Impedance):
        if not hasattr(m, "EIS"):
            raise DeviceError(f"{model} has no impedance technique in hardpotato")
        e = tech.e_dc + (e_ocp if tech.vs_ocp else 0.0)
        lo, hi = sorted((tech.f_start, tech.f_end))
        # labctl's amplitude is rms; the macro's amp is taken as the peak amplitude
        return str(_quiet(m.EIS, _r(e), lo, hi, _r(tech.amplitude * np.sqrt(2)), sens, folder, name, header, "").text)
    raise DeviceError(f"CH Instruments cannot run {getattr(tech, 'kind', tech)!r} (no galvanostatic mode)")


def read_chi_text(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a CHI text export (``Time/sec``, ``Potential/V``, ``Current/A``, ``Freq/Hz``, ``Z'/ohm`` ...)."""
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    for k, line in enumerate(lines):
        head = [h.strip() for h in line.split(",")]
        if head and head[0] in ("Time/sec", "Potential/V", "Freq/Hz"):
            rows = [r for r in lines[k + 1 :] if r.strip()]
            data = np.array([[float(x) for x in r.split(",")[: len(head)]] for r in rows], dtype=float)
            data = data.reshape(-1, len(head))
            return {h: data[:, j] for j, h in enumerate(head)}
    raise DeviceError(f"{path}: no data header (Time/sec, Potential/V or Freq/Hz) in the CHI file")


def to_block(kind: str, cols: dict[str, np.ndarray], t0: float, tech: Technique) -> SampleBlock:
    """A CHI data file as a SampleBlock (SI, anodic current positive, clock time from ``t0``)."""
    if kind == "eis":
        f = cols["Freq/Hz"]
        zre, zim = cols["Z'/ohm"], cols['Z"/ohm']
        n = len(f)
        t = t0 + np.cumsum(np.maximum(1.0 / f, 0.1))
        return SampleBlock(t, np.full(n, np.nan), np.zeros(n), frequency=f, z_re=zre, z_im=zim)
    if "Time/sec" in cols:
        t = t0 + cols["Time/sec"]
        v = cols.get("Potential/V")
        i = cols.get("Current/A")
        if v is None:
            assert isinstance(tech, ConstantPotential)
            v = np.full(len(t), tech.potential)
        return SampleBlock(t, v, np.zeros(len(t)) if i is None else -i)
    v = cols["Potential/V"]
    rate = getattr(tech, "scan_rate", 1.0)
    t = t0 + np.concatenate(([0.0], np.cumsum(np.abs(np.diff(v)) / rate)))
    return SampleBlock(t, v, -cols["Current/A"])


class _MacroRun:
    """A macro running in chi.exe: the handle of one technique (blocks arrive when it ends)."""

    def __init__(self, owner: CHIPotentiostat, tech: Technique) -> None:
        self.owner = owner
        self.tech = tech
        self._state = TechniqueState.RUNNING
        self._end: EndInfo | None = None
        self._t0 = owner.clock.now()
        self._name = f"labctl_{owner._counter}"
        owner._counter += 1
        e_ocp = owner._measure_ocp() if getattr(tech, "vs_ocp", False) and not isinstance(tech, OpenCircuit) else 0.0
        text = macro(owner.model, tech, folder=str(owner.folder), name=self._name, e_ocp=e_ocp)
        path = Path(owner.folder) / f"{self._name}.mcr"
        path.write_bytes(text.encode("ascii"))
        self._proc = owner._launch(path)

    @property
    def state(self) -> TechniqueState:
        return self._state

    @property
    def end(self) -> EndInfo | None:
        return self._end

    def read(self, timeout: float = READ_TIMEOUT) -> SampleBlock:
        if self._state is not TechniqueState.RUNNING:
            return SampleBlock.empty()
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return SampleBlock.empty()
        if code != 0:
            self._state = TechniqueState.FAILED
            raise DeviceError(f"chi.exe ended with code {code} running {self._name}.mcr")
        cols = read_chi_text(Path(self.owner.folder) / f"{self._name}.txt")
        self._state = TechniqueState.ENDED
        return to_block(self.tech.kind, cols, self._t0, self.tech)

    def stop(self) -> None:
        if self._state is TechniqueState.RUNNING:
            self._state = TechniqueState.STOPPED
            self._proc.kill()
            self._proc.wait(timeout=10)


class CHIPotentiostat:
    """A CH Instruments potentiostat run through chi.exe (Windows) with hardpotato's macros.

    Options: ``model`` (chi601e, chi760e, chi1205b, chi1242b), ``chi_exe`` (path of chi.exe),
    ``folder`` (where macros and data files go; a temporary folder by default).
    """

    def __init__(
        self, clock: Any, *, model: str = "chi760e", chi_exe: str | None = None, folder: str | None = None
    ) -> None:
        self.clock = clock
        self.model = model
        self.chi_exe = chi_exe
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="labctl-chi-"))
        self.capabilities = Capabilities(
            techniques=techniques_of(model),
            current_range=(-0.25, 0.25),
            voltage_range=(-10.0, 10.0),
            frequency_range=(1e-5, 1e6),
            native_limits=False,
            streams=False,
            model=f"CH Instruments {model[3:]}",
        )
        self._counter = 0
        self.cell_on = False

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        if sys.platform != "win32":
            raise DeviceError(
                "CH Instruments run through the vendor's chi.exe, which runs on Windows only "
                "(hint: run this channel from the Windows PC attached to the instrument)"
            )
        if not self.chi_exe or not Path(self.chi_exe).is_file():
            raise DeviceError(f"chi.exe not found at {self.chi_exe!r} (hint: give chi_exe: C:/CHI/chi760e.exe)")

    def identify(self) -> str:
        return f"CH Instruments {self.model} via hardpotato ({self.chi_exe})"

    def start(self, technique: Technique) -> _MacroRun:
        kind = getattr(technique, "kind", None)
        if kind not in self.capabilities.techniques:
            raise DeviceError(
                f"CH Instruments {self.model} cannot run {kind!r}; it runs "
                f"{', '.join(sorted(self.capabilities.techniques))}"
            )
        return _MacroRun(self, technique)

    def _launch(self, macro_path: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(self.chi_exe), f"/runmacro:{macro_path}"])

    def _measure_ocp(self) -> float:
        run = _MacroRun(self, OpenCircuit(OCP_BEFORE_SWEEP_S))
        block = run.read(timeout=OCP_BEFORE_SWEEP_S + 60)
        if not len(block):
            raise DeviceError("no open-circuit potential measured before the sweep")
        return float(block.voltage[-1])

    def cell_off(self) -> None:
        self.cell_on = False

    def close(self) -> None:
        self.cell_off()

    def release(self) -> None:
        """Nothing is held open between macros."""
