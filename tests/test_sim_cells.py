"""The cell-model package: shared physics (one Butler-Volmer, one Arrhenius, one hysteresis)
behaves the same for every cell kind, and the simulators have no default preset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.clock import VirtualClock
from labctl.core.constants import FARADAY, GAS_CONSTANT, ZERO_CELSIUS_K
from labctl.simulators import cells
from labctl.simulators.cells import KINDS, AsymmetricCell, FullCell, SymmetricCell, simulate_cell
from labctl.simulators.cells.asymmetric import plated_inventory, stripped_inventory
from labctl.simulators.cells.kinetics import arrhenius_exponent, butler_volmer, butler_volmer_ir, bv_factor
from labctl.simulators.cells.tables import interp_scalar
from labctl.simulators.potentiostat import SimulatedPotentiostat
from labctl.simulators.presets import load_preset


def test_the_names_used_elsewhere_are_exported():
    for name in (
        "CellModel",
        "simulate_cell",
        "interp_table",
        "interp_scalar",
        "linear_table",
        "cpe_rc",
        "calibrate_asymmetric",
        "KINDS",
        "SymmetricCell",
        "AsymmetricCell",
        "FullCell",
    ):
        assert hasattr(cells, name), name
    assert {"symmetric": SymmetricCell, "asymmetric": AsymmetricCell, "full": FullCell} == KINDS


@pytest.mark.parametrize(
    "build",
    [
        lambda: SimulatedPotentiostat(VirtualClock(0.0)),
        lambda: simulate_cell("symmetric"),
        lambda: SymmetricCell(),
        lambda: AsymmetricCell(),
        lambda: FullCell(),
    ],
)
def test_there_is_no_default_preset(build):
    with pytest.raises(TypeError, match="preset"):
        build()


def test_unknown_kind_names_the_kinds():
    with pytest.raises(ValueError, match="symmetric, asymmetric, full"):
        simulate_cell("triple", "br-mg")


def test_butler_volmer_is_the_sinh_law_for_alpha_half():
    b = bv_factor(2, 22.0)
    assert b == 2 * FARADAY / (2 * GAS_CONSTANT * (22.0 + ZERO_CELSIUS_K))
    eta = np.linspace(-0.3, 0.3, 61)
    i, di = butler_volmer(eta, 1e-6, 0.5, b)
    np.testing.assert_allclose(i, 2e-6 * np.sinh(b * eta / 2), rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(di, 1e-6 * b * np.cosh(b * eta / 2), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(e=st.floats(-2.0, 2.0), i0=st.floats(1e-9, 1e-3), alpha=st.floats(0.2, 0.8), rs=st.floats(0.1, 500.0))
def test_butler_volmer_with_ir_solves_its_equation(e, i0, alpha, rs):
    b = bv_factor(2, 25.0)
    cur = butler_volmer_ir(np.array([e]), i0, alpha, b, rs)
    f, _ = butler_volmer(np.array([e]) - cur * rs, i0, alpha, b)
    assert cur[0] == pytest.approx(f[0], rel=1e-8, abs=1e-14)
    assert abs(cur[0]) <= abs(e) / rs * (1 + 1e-12)  # never more than the ohmic limit
    assert cur[0] * e >= 0


def test_arrhenius_is_zero_at_the_reference_and_follows_ea():
    assert arrhenius_exponent(50e3, 25.0, 25.0) == 0.0
    x = arrhenius_exponent(50e3, 35.0, 25.0)
    assert x == pytest.approx(50e3 / GAS_CONSTANT * (1 / 308.15 - 1 / 298.15), rel=1e-12)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_shares_the_temperature_dependence(kind):
    p = load_preset("br-mg")
    cell = simulate_cell(kind, p)
    ea = p.impedance.activation_energy
    for t in (0.0, 40.0, 60.0):
        ratio = float(cell.rct(t) / cell.rct(p.impedance.reference_temperature))
        assert ratio == pytest.approx(
            math.exp(ea / GAS_CONSTANT * (1 / (t + 273.15) - 1 / (p.impedance.reference_temperature + 273.15))),
            rel=1e-12,
        )
        # j0 has the same activation energy as 1/Rct
        j_ratio = float(cell.j0(t) / cell.j0(p.kinetics.j0_temperature))
        assert j_ratio == pytest.approx(
            math.exp(-ea / GAS_CONSTANT * (1 / (t + 273.15) - 1 / (p.kinetics.j0_temperature + 273.15))), rel=1e-12
        )


def test_the_asymmetric_plateau_carries_half_the_symmetric_hysteresis():
    p = load_preset("bare-mg")
    sym, asym = simulate_cell("symmetric", p), simulate_cell("asymmetric", p)
    for cycles in (0, 10, 200):
        sym.cycles = asym.cycles = cycles
        for j in (0.5e-3, 2e-3, 5e-3):
            al_c = interp_scalar(p.asymmetric.overpotential, j)
            assert asym.eta(j) - al_c == pytest.approx(0.5 * sym.plateau(j), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    q0=st.floats(0.0, 10.0), src=st.floats(1e-6, 1e-2), k=st.just(0.0) | st.floats(1e-8, 1e-3), t=st.floats(0.0, 1e5)
)
def test_inventory_equations_are_the_same_for_scalars_and_arrays(q0, src, k, t):
    """The calibration (math.exp on floats) and the cell (np.exp on arrays) integrate one ODE.

    (k: 0 or a physical corrosion rate; below ~1e-10 /s the closed form loses its digits to
    cancellation of source / k.)
    """
    a = plated_inventory(q0, src, k, t, math.exp)
    b = plated_inventory(q0, src, k, np.array([t]), np.exp)[0]
    scale = q0 + src * t + (src / k if k > 0 else 0.0)  # the closed form's largest term
    assert a == pytest.approx(b, rel=1e-12, abs=1e-13 * scale)
    if k > 0:  # dQ/dt = src - k Q: approaches src / k
        assert min(q0, src / k) - 1e-13 * scale <= a <= max(q0, src / k) + 1e-13 * scale
    s = stripped_inventory(q0, src, k, t, math.exp)
    assert s <= q0 - src * t * math.exp(-k * t) + 1e-13 * scale  # stripping and corrosion both remove Mg
