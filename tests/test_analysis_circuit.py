"""Circuit strings: parser (valid and invalid, with positions), element impedances, Jacobian."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.analysis import AnalysisError, parse_circuit
from labctl.analysis.circuit import ELEMENTS

W = 2 * np.pi * np.logspace(-2, 5, 15)
F = W / (2 * np.pi)


def test_element_formulas():
    cases = {
        "R1": ([5.0], np.full(F.size, 5.0 + 0j)),
        "C1": ([1e-3], 1 / (1j * W * 1e-3)),
        "L1": ([1e-6], 1j * W * 1e-6),
        "CPE1": ([1e-3, 0.8], 1 / (1e-3 * (1j * W) ** 0.8)),
        "W1": ([20.0], 20.0 * (1 - 1j) / np.sqrt(W)),
        "Wo1": ([3.0, 2.0], 3.0 / np.tanh(np.sqrt(1j * W * 2.0)) / np.sqrt(1j * W * 2.0)),
        "Ws1": ([3.0, 2.0], 3.0 * np.tanh(np.sqrt(1j * W * 2.0)) / np.sqrt(1j * W * 2.0)),
        # impedance.py's La: the exponent applies to L as well, (L j w)^alpha
        "La1": ([2e-6, 0.8], (2e-6 * 1j * W) ** 0.8),
        "G1": ([3.0, 0.1], 3.0 / np.sqrt(1 + 1j * W * 0.1)),
        "K1": ([3.0, 0.1], 3.0 / (1 + 1j * W * 0.1)),
        "Zarc1": ([3.0, 0.1, 0.7], 3.0 / (1 + (1j * W * 0.1) ** 0.7)),
    }
    for text, (p, expected) in cases.items():
        np.testing.assert_allclose(parse_circuit(text).impedance(p, F), expected, rtol=1e-12, err_msg=text)


def test_series_parallel_and_names():
    c = parse_circuit("R0-p(R1,CPE1)-p(R2,CPE2)")
    assert c.n_params == 7
    assert c.param_names == ["R0", "R1", "CPE1_Q", "CPE1_alpha", "R2", "CPE2_Q", "CPE2_alpha"]
    assert c.param_units[0] == "ohm" and c.param_units[3] == ""
    p = [1.0, 2.0, 1e-3, 0.9, 3.0, 1e-2, 0.7]
    z1 = 2.0 / (1 + 2.0 * 1e-3 * (1j * W) ** 0.9)
    z2 = 3.0 / (1 + 3.0 * 1e-2 * (1j * W) ** 0.7)
    np.testing.assert_allclose(c.impedance(p, F), 1.0 + z1 + z2, rtol=1e-12)
    assert len(c.arcs()) == 2


def test_wide_frequency_range_is_finite():
    c = parse_circuit("R0-p(R1-Wo1,CPE1)-Ws1")
    f = np.logspace(-4, 8, 50)
    z, J = c.impedance_jacobian([1, 2, 3, 1e3, 1e-6, 0.9, 2, 1e4], f)
    assert np.all(np.isfinite(z)) and np.all(np.isfinite(J))


def test_whitespace_and_labels():
    c = parse_circuit(" R_s - p( R_ct , CPE_dl ) ")
    assert c.param_names == ["R_s", "R_ct", "CPE_dl_Q", "CPE_dl_alpha"]


@pytest.mark.parametrize(
    "text, pos, words",
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("R0-p(R1,CPE1", 5, "unbalanced"),
        ("R0-p(R1,CPE1))", 14, "unbalanced"),
        ("R0)", 3, "unbalanced"),
        ("R0-p(R1,X1)", 9, "unknown element 'X1'"),
        ("R0-Q1", 4, "unknown element"),
        ("R0--R1", 4, "expected an element"),
        ("R0-", 4, "string ends"),
        ("R0-R0", 4, "duplicate"),
        ("p(R1)", 1, "two branches"),
        ("R0 R1", 4, "unexpected"),
        ("R0-(R1)", 4, "'(' must follow 'p'"),
        ("R0-p(R1;C1)", 8, "expected ',' or ')'"),
    ],
)
def test_parser_errors_with_position(text, pos, words):
    with pytest.raises(AnalysisError) as e:
        parse_circuit(text)
    assert words in str(e.value)
    assert e.value.position == pos - 1 if pos else e.value.position == 0
    if pos:
        assert f"position {pos}" in str(e.value)
    assert isinstance(e.value, ValueError)


# --- property tests: random circuit trees ---------------------------------------------------


def _tree(draw, depth, counter):
    kind = draw(st.sampled_from(["el", "el", "series", "parallel"] if depth < 3 else ["el"]))
    if kind == "el":
        t = draw(st.sampled_from(sorted(ELEMENTS)))
        counter[0] += 1
        return f"{t}{counter[0]}"
    n = draw(st.integers(2, 3))
    kids = [_tree(draw, depth + 1, counter) for _ in range(n)]
    return "-".join(kids) if kind == "series" else "p(" + ",".join(kids) + ")"


@st.composite
def circuits(draw):
    return _tree(draw, 0, [0])


def _params(c, draw):
    out = []
    for k in c.param_kinds:
        out.append(draw(st.floats(0.2, 0.95)) if k == "frac" else 10 ** draw(st.floats(-3, 3)))
    return np.array(out)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(circuits(), st.data())
def test_random_circuits_parse_and_jacobian_matches_finite_differences(text, data):
    c = parse_circuit(text)
    assert c.n_params == sum(len(ELEMENTS[e.type][0]) for e in c.elements)
    p = _params(c, data.draw)
    z, J = c.impedance_jacobian(p, F)
    assert z.shape == F.shape and J.shape == (F.size, c.n_params)
    np.testing.assert_allclose(z, c.impedance(p, F))
    for k in range(c.n_params):
        h = 1e-6 * p[k]
        pp, pm = p.copy(), p.copy()
        pp[k] += h
        pm[k] -= h
        num = (c.impedance(pp, F) - c.impedance(pm, F)) / (2 * h)
        # central differences: truncation ~1e-12 relative, cancellation ~eps |Z| / h
        tol = 1e-5 * np.abs(J[:, k]) + 1e-9 * np.abs(z) / h
        assert np.all(np.abs(num - J[:, k]) <= tol), (text, c.param_names[k])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(circuits(), st.integers(0, 40), st.sampled_from(list("()-,p;$ ")))
def test_mutated_circuits_either_parse_or_raise_analysis_error(text, where, ch):
    where = min(where, len(text))
    bad = text[:where] + ch + text[where:]
    try:
        parse_circuit(bad)
    except AnalysisError as e:
        assert e.position is not None and 0 <= e.position <= len(bad)


def test_parameter_names_of_impedance_py_are_accepted():
    c = parse_circuit("R_0-p(R_1,CPE_1)-Wo_1-La1")
    assert c.param_names == ["R_0", "R_1", "CPE_1_Q", "CPE_1_alpha", "Wo_1_R", "Wo_1_tau", "La1_L", "La1_alpha"]
    assert c.param_index("Wo_1_1") == c.param_index("Wo_1_tau") == 5
    assert c.param_index("CPE_1_0") == 2 and c.param_index("R_0") == 0 and c.param_index("R_0_0") == 0
    assert c.param_kinds[-1] == "frac"  # La's alpha bounded by 1, as in impedance.py
    with pytest.raises(AnalysisError, match="no parameter 'Wo_1_2'"):
        c.param_index("Wo_1_2")
