"""Readers for external EIS and Tafel files."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.analysis import AnalysisError, read_eis_file, read_tafel_file

DATA = Path(__file__).parent / "data" / "eis_li_ion_pyDRTtools.txt"


def test_reads_reference_file():
    d = read_eis_file(DATA)
    assert d.frequency.size == 107
    assert d.frequency[0] == pytest.approx(999.040405)
    assert d.z[0] == pytest.approx(0.112362966 + 0.00318273902j)  # inductive, sign kept
    assert np.sum(d.z.imag <= 0) == 100
    assert d.notes == []


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(st.floats(1e-3, 1e6), finite, st.floats(-1e6, -1e-3)), min_size=1, max_size=20),
    sep=st.sampled_from([" ", "\t", ",", ";", "  ", ", "]),
    header=st.sampled_from([None, "freq Zre Zim", "Frequency (Hz), Z' (ohm), Z'' (ohm)", "f\tRe\tIm"]),
    comment=st.booleans(),
)
def test_eis_columns_any_separator_and_header(tmp_path, rows, sep, header, comment):
    lines = []
    if comment:
        lines.append("# exported by some instrument")
    if header:
        lines.append(header)
    lines += [sep.join(repr(float(x)) for x in r) for r in rows]
    p = tmp_path / "s.txt"
    p.write_text("\n".join(lines) + "\n")
    d = read_eis_file(p)
    arr = np.array(rows)
    np.testing.assert_array_equal(d.frequency, arr[:, 0])
    np.testing.assert_array_equal(d.z.real, arr[:, 1])
    np.testing.assert_array_equal(d.z.imag, arr[:, 2])


def test_negated_imaginary_column(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("freq/Hz,Re(Z)/Ohm,-Im(Z)/Ohm\n100,1.0,0.5\n10,2.0,1.0\n")
    d = read_eis_file(p)
    np.testing.assert_array_equal(d.z.imag, [-0.5, -1.0])
    assert "negated" in d.notes[0]
    q = tmp_path / "b.txt"
    q.write_text("100 1.0 0.5\n10 2.0 1.0\n1 3.0 0.7\n")
    assert np.all(read_eis_file(q).z.imag < 0)  # mostly positive without a header: taken as -Z''
    assert np.all(read_eis_file(q, imag_sign="as-measured").z.imag > 0)
    assert np.all(read_eis_file(p, imag_sign="negated").z.imag < 0)
    with pytest.raises(AnalysisError, match="imag_sign"):
        read_eis_file(q, imag_sign="maybe")


def test_eis_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("f zr zi\n100 1 -1\n10 2\n")
    with pytest.raises(AnalysisError, match=r"bad.txt:3: expected at least 3 columns"):
        read_eis_file(p)
    p.write_text("100 1 -1\n10 abc -2\n")
    with pytest.raises(AnalysisError, match=r"bad.txt:2: column 2 is not a number: 'abc'"):
        read_eis_file(p)
    p.write_text("100 1 -1\n-10 1 -2\n")
    with pytest.raises(AnalysisError, match=r"bad.txt:2: frequency must be positive"):
        read_eis_file(p)
    p.write_text("# nothing\n100 1 -1\n10 1 -2\n1 1 -3\n")
    with pytest.raises(AnalysisError, match=r"bad.txt: only 3 data points \(lines 2-4\).*at least 7"):
        read_eis_file(p, min_points=7)
    p.write_text("")
    with pytest.raises(AnalysisError, match=r"only 0 data points \(no data lines\)"):
        read_eis_file(p)
    with pytest.raises(AnalysisError, match="no such file"):
        read_eis_file(tmp_path / "missing.txt")


def test_tafel_file_units(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("E/V\tI/mA\n-0.1\t-2.0\n0.0\t0.0\n0.1\t3.0\n")
    d = read_tafel_file(p)
    np.testing.assert_allclose(d.current, [-2e-3, 0.0, 3e-3])
    np.testing.assert_allclose(d.potential, [-0.1, 0.0, 0.1])
    assert "converted to A" in d.notes[0]
    p.write_text("E (mV), I (uA)\n-100, -2\n100, 3\n")
    d = read_tafel_file(p)
    np.testing.assert_allclose(d.potential, [-0.1, 0.1])
    np.testing.assert_allclose(d.current, [-2e-6, 3e-6])
    p.write_text("-0.1 -2e-6\n0.1 3e-6\n")
    np.testing.assert_allclose(read_tafel_file(p).current, [-2e-6, 3e-6])
    p.write_text("-0.1\n")
    with pytest.raises(AnalysisError, match=r"t.txt:1: expected at least 2 columns"):
        read_tafel_file(p)


def _mpt(path: Path, header_cols, rows):
    lines = ["EC-Lab ASCII FILE", "Nb header lines : 4", "Some comment line", "\t".join(header_cols)]
    lines += ["\t".join(f"{x:.6E}" for x in r) for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


def test_biologic_mpt_via_galvani(tmp_path):
    pytest.importorskip("galvani")
    p = tmp_path / "peis.mpt"
    _mpt(p, ["freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm", "time/s"], [(1e3, 1.0, 0.2, 0.0), (1e2, 2.0, 0.9, 1.0)])
    d = read_eis_file(p)
    np.testing.assert_allclose(d.frequency, [1e3, 1e2])
    np.testing.assert_allclose(d.z, [1.0 - 0.2j, 2.0 - 0.9j])
    q = tmp_path / "lsv.mpt"
    _mpt(q, ["time/s", "Ewe/V", "<I>/mA"], [(0.0, -0.1, -1.0), (1.0, 0.1, 2.0)])
    s = read_tafel_file(q)
    np.testing.assert_allclose(s.current, [-1e-3, 2e-3])
    np.testing.assert_allclose(s.potential, [-0.1, 0.1])
    r = tmp_path / "junk.mpt"
    r.write_text("not an EC-Lab file\n")
    with pytest.raises(AnalysisError, match="not a readable BioLogic file"):
        read_eis_file(r)
    with pytest.raises(AnalysisError, match="no column"):
        read_tafel_file(p)
