"""Readers for external EIS and Tafel files."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.analysis import AnalysisError, read_eis_file, read_tafel_file

DATA = Path(__file__).parent / "data" / "eis_li_ion_pyDRTtools.txt"  # DATA.parent: tests/data


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


# --- the real instrument exports in tests/data (impedance.py's example files) ------------
# name: (points, first frequency / Hz, first Z / ohm as measured, a note expected)
REAL_FILES = {
    "ipy_exampleData.csv": (66, 1.0e4 * 0 + 3.1623e-03, 0.0494998977640506 - 0.0204386985444189j, None),
    "ipy_exampleDataBioLogic.mpt": (43, 1000.3201, 65.470886 - 0.38998979j, "is -Z''"),
    "ipy_exampleDataCHInstruments.txt": (73, 9.961e4, 98.91 - 2.748j, None),
    "ipy_exampleDataGamry.DTA": (72, 200015.6, None, "'Zreal'"),
    "ipy_exampleDataParstat.txt": (31, 10000.0, -0.00049816280376104 + 0.0175143479976367j, "rows with frequency 0"),
    "ipy_exampleDataPowersuite.txt": (30, 0.1, 423929.46 - 49014.063j, None),
    "ipy_exampleDataVersaStudio.par": (61, 100000.0, 55.31571 + 4.575431j, "'Z Real'"),
    "ipy_exampleDataAutolab.txt": (41, 10000.0, 0.013785863964281 + 0.007191946305823j, "Z''(b)"),
    "ipy_Circuit1_EIS_1.z": (48, 50000.0, 29.036 + 0.63662j, "Z''(b)"),
    "pyDRTtools_data_1.csv": (107, 999.040405, 0.109963283 + 0.003569859j, None),
}


@pytest.mark.parametrize("name", list(REAL_FILES))
def test_real_instrument_exports(name):
    n, f0, z0, note = REAL_FILES[name]
    d = read_eis_file(DATA.parent / name)
    assert d.frequency.size == n
    assert d.frequency[0] == pytest.approx(f0, rel=1e-6)
    if z0 is not None:
        assert d.z[0] == pytest.approx(z0, rel=1e-9)
    assert np.all(d.frequency > 0) and np.all(np.isfinite(d.z))
    # capacitive spectra: most points have Z'' < 0 once the sign convention is applied
    assert np.mean(d.z.imag < 0) > 0.6
    if note:
        assert any(note in m for m in d.notes), d.notes


def test_biologic_mpt_read_without_galvani_and_matches_its_columns():
    d = read_eis_file(DATA.parent / "ipy_exampleDataBioLogic.mpt")
    # line 62 of the file: the first data row; -Im(Z) = 3.8998979E-001 becomes Z'' = -0.39
    assert d.z[0].imag == pytest.approx(-0.38998979)
    assert d.frequency[-1] == pytest.approx(1.6895540e-2)


def test_gamry_picks_the_impedance_table_not_the_ocv_table():
    d = read_eis_file(DATA.parent / "ipy_exampleDataGamry.DTA")
    assert d.z[-1] == pytest.approx(17007.49 - 6635.557j)
    assert "(line 447)" in d.notes[0]


def test_units_signs_and_decimal_commas(tmp_path):
    p = tmp_path / "khz.txt"
    p.write_text("Freq/kHz\tZ'/kOhm\t-Z''/kOhm\n1,5\t2,0\t0,5\n0,1\t3,0\t1,5\n")
    d = read_eis_file(p)
    np.testing.assert_allclose(d.frequency, [1500.0, 100.0])
    np.testing.assert_allclose(d.z, [2000 - 500j, 3000 - 1500j])
    assert any("converted to Hz" in m for m in d.notes) and any("negated" in m for m in d.notes)
    q = tmp_path / "mohm.csv"
    q.write_text("Frequency (mHz), Re(Z) (mOhm), Im(Z) (mOhm)\n500, 10, -2\n100, 20, -5\n")
    d = read_eis_file(q)
    np.testing.assert_allclose(d.frequency, [0.5, 0.1])
    np.testing.assert_allclose(d.z, [0.01 - 0.002j, 0.02 - 0.005j])
    r = tmp_path / "pos.txt"  # named Z'' (as measured) but positive: kept, with a note
    r.write_text("f Zre Zim\n100 1 0.5\n10 2 1\n1 3 0.7\n")
    d = read_eis_file(r)
    assert np.all(d.z.imag > 0) and "imag_sign='negated'" in d.notes[0]


def test_header_errors_name_file_line_and_column(tmp_path):
    p = tmp_path / "polar.txt"
    p.write_text("Freq/Hz\t|Z|/Ohm\tPhase/deg\n100\t5\t-10\n10\t6\t-20\n")
    with pytest.raises(AnalysisError, match=r"polar.txt:1: .*\|Z\| and phase without Z' and Z''"):
        read_eis_file(p)
    q = tmp_path / "noim.txt"
    q.write_text("# export\nFrequency (Hz)\tZ' (ohm)\tTime (s)\n100\t5\t0\n10\t6\t1\n")
    with pytest.raises(AnalysisError, match=r"noim.txt:2: no column for Z''"):
        read_eis_file(q)
    r = tmp_path / "mid.csv"
    r.write_text("freq,Zre,Zim\n100,1,-1\n10,1,x\n")
    with pytest.raises(AnalysisError, match=r"mid.csv:3: column 3 is not a number: 'x'"):
        read_eis_file(r)
    m = tmp_path / "bad.mpt"
    m.write_text("EC-Lab ASCII FILE\nNb header lines : 3\n\nfreq/Hz\tRe(Z)/Ohm\t-Im(Z)/Ohm\n1\t2\t3\n")
    with pytest.raises(AnalysisError, match=r"bad.mpt:3: no column for the frequency"):
        read_eis_file(m)  # the header count points at the blank line above the names
    m.write_text("EC-Lab ASCII FILE\nNb header lines : 3\nfreq/Hz\tRe(Z)/Ohm\t-Im(Z)/Ohm\n1\t2\t3\n2\t2,5x\t3\n")
    with pytest.raises(AnalysisError, match=r"bad.mpt:5: column 2 is not a number: '2,5x'"):
        read_eis_file(m)
