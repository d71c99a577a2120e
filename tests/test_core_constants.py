"""One place for physical constants: the values, and no module redefines them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labctl.core import constants as c

ROOT = Path(__file__).resolve().parents[1]


def test_values_are_the_si_exact_ones():
    n_a, e, k_b = 6.02214076e23, 1.602176634e-19, 1.380649e-23  # SI defining constants
    assert pytest.approx(n_a * e, rel=1e-10) == c.FARADAY
    assert pytest.approx(n_a * k_b, rel=1e-10) == c.GAS_CONSTANT
    assert c.ZERO_CELSIUS_K == 273.15
    assert c.SECONDS_PER_HOUR == 3600.0
    assert pytest.approx(1e-3 * c.SECONDS_PER_HOUR) == c.COULOMBS_PER_MAH


def test_mo6s8_capacity_is_four_electrons_per_formula_unit():
    molar_mass = 6 * 95.95 + 8 * 32.06  # g/mol, Mo6S8
    assert (
        pytest.approx(4 * c.FARADAY / molar_mass / c.COULOMBS_PER_MAH, rel=2e-3) == c.MO6S8_THEORETICAL_CAPACITY_MAH_G
    )


def test_the_core_module_imports_nothing_of_labctl():
    src = (ROOT / "labctl" / "core" / "constants.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+(labctl|\.)", src, re.M)


def test_no_module_defines_the_constants_again():
    literal = re.compile(r"96485|8\.314|273\.15")
    offenders = []
    for top in ("labctl", "simulators", "protocols", "drivers", "db"):
        for path in (ROOT / top).rglob("*.py"):
            if path == ROOT / "labctl" / "core" / "constants.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if literal.search(line.split("#")[0]) and not line.lstrip().startswith(('"', "'")):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "import these from labctl.core.constants:\n" + "\n".join(offenders)
