"""Real spectra from other projects (tests/data/README.md) against impedance.py's fits.

For every case (file, circuit, the initial guess a user would give) two references
computed with impedance.py 1.7.1 are stored below (``bench/eis_fit.py --references``
recomputes them; impedance.py is not imported here):

* ``user``: impedance.py's ``CustomCircuit.fit`` from the case's initial guess (for
  the impedance.py examples, the guess of its documentation, whose printed results it
  reproduces);
* ``best``: the lowest sum of squares impedance.py reaches from that guess, 10
  log-uniform random starts around it, and labctl's automatic fit as a start
  (impedance.py must converge there itself; it did lower than its own starts in
  several cases, e.g. a W that the data do not support driven to 0).

labctl, from the same guess, must land inside the ``user`` reference's 1-sigma bands
with a sum of squares no larger; where its own check finds that fit degenerate (a
parameter run 12 decades away) and its automatic search does better, it must match
``best`` instead.  Without a guess it must match ``best``.  Parameters of arcs of the
same structure are compared after sorting by tau (labctl's order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.analysis import fit_circuit, parse_circuit, read_eis_file
from labctl.analysis.eis import _sort_arcs

DATA = Path(__file__).parent / "data"

# name: (file, keep inductive points?, circuit, user's initial guess, constants)
CASES = {
    "ex_two_arcs_wo": (
        "ipy_exampleData.csv",
        False,
        "R0-p(R1,C1)-p(R2-Wo1,C2)",
        [0.01, 0.01, 100, 0.01, 0.05, 100, 1],
        None,
    ),
    "ex_two_cpe_wo": (
        "ipy_exampleData.csv",
        False,
        "R0-p(R1,CPE1)-p(R2-Wo1,CPE2)",
        [0.01, 0.01, 100, 0.9, 0.01, 0.05, 100, 1, 0.9],
        None,
    ),
    "ex_randles_cpe": ("ipy_exampleData.csv", False, "R0-p(R1-Wo1,CPE1)", [0.01, 0.005, 0.001, 200, 0.1, 0.9], None),
    "ex_two_cpe_w": (
        "ipy_exampleData.csv",
        False,
        "R0-p(R1,CPE1)-p(R2,CPE2)-W1",
        [0.015, 0.01, 10, 0.8, 0.01, 1, 0.8, 0.01],
        None,
    ),
    "ex_inductive_l": (
        "ipy_exampleData.csv",
        True,
        "L0-R0-p(R1,C1)-p(R2-Wo1,C2)",
        [1e-7, 0.01, 0.01, 100, 0.01, 0.05, 100, 1],
        None,
    ),
    "ex_constants": (
        "ipy_exampleData.csv",
        False,
        "R_0-p(R_1,C_1)-p(R_2,C_2)-Wo_1",
        [0.005, 0.1, 0.005, 0.1, 0.001],
        {"R_0": 0.02, "Wo_1_1": 200},
    ),
    "dummy_rc1": ("ipy_Circuit1_EIS_1.z", True, "R0-p(R1,C1)", [100, 400, 1e-5], None),
    "dummy_rc2": ("ipy_Circuit2_EIS_1.z", True, "R0-p(R1,C1)", [100, 400, 1e-5], None),
    "dummy_rc3": ("ipy_Circuit3_EIS_1.z", True, "R0-p(R1,C1)", [100, 400, 1e-5], None),
    "lib2_two_cpe": (
        "pyDRTtools_LIB_data_2.txt",
        False,
        "R0-p(R1,CPE1)-p(R2,CPE2)",
        [0.11, 0.01, 1, 0.8, 0.02, 100, 0.7],
        None,
    ),
    "lib2_two_cpe_w": (
        "pyDRTtools_LIB_data_2.txt",
        False,
        "R0-p(R1,CPE1)-p(R2,CPE2)-W1",
        [0.11, 0.01, 1, 0.8, 0.01, 10, 0.8, 0.01],
        None,
    ),
    "lib2_inductive_l": (
        "pyDRTtools_LIB_data_2.txt",
        True,
        "L0-R0-p(R1,CPE1)-p(R2,CPE2)",
        [1e-6, 0.11, 0.01, 1, 0.8, 0.02, 100, 0.7],
        None,
    ),
    "lib3_inductive_l": (
        "pyDRTtools_data_1.csv",
        True,
        "L0-R0-p(R1,CPE1)-p(R2,CPE2)",
        [1e-6, 0.11, 0.01, 1, 0.8, 0.02, 100, 0.7],
        None,
    ),
    "lib3_ws": (
        "pyDRTtools_data_1.csv",
        False,
        "R0-p(R1,CPE1)-p(R2-Ws1,CPE2)",
        [0.11, 0.01, 1, 0.8, 0.02, 0.05, 100, 100, 0.8],
        None,
    ),
    "lib1_inductive_l": (
        "eis_li_ion_pyDRTtools.txt",
        True,
        "L0-R0-p(R1,CPE1)-p(R2,CPE2)",
        [1e-6, 0.11, 0.01, 1, 0.8, 0.02, 100, 0.7],
        None,
    ),
    "biologic_cpe": ("ipy_exampleDataBioLogic.mpt", False, "R0-p(R1,CPE1)", [60, 50, 0.01, 0.9], None),
    "biologic_c": ("ipy_exampleDataBioLogic.mpt", False, "R0-p(R1,C1)", [60, 50, 0.01], None),
    "versastudio_two_cpe": (
        "ipy_exampleDataVersaStudio.par",
        False,
        "R0-p(R1,CPE1)-p(R2,CPE2)",
        [50, 20, 1e-5, 0.8, 1500, 1e-3, 0.8],
        None,
    ),
    "gamry_two_cpe": (
        "ipy_exampleDataGamry.DTA",
        False,
        "R0-p(R1,CPE1)-p(R2,CPE2)",
        [100, 4000, 1e-9, 0.9, 2e4, 1e-4, 0.8],
        None,
    ),
    "autolab_l_w": (
        "ipy_exampleDataAutolab.txt",
        True,
        "L0-R0-p(R1,CPE1)-p(R2,CPE2)-W1",
        [1e-7, 0.013, 0.01, 1, 0.8, 0.01, 10, 0.8, 0.001],
        None,
    ),
}


def load(name):
    """Frequencies and Z of a case, read by labctl's reader; without inductive points
    unless kept (as impedance.py's ignoreBelowX: only Z'' < 0)."""
    file, keep, *_ = CASES[name]
    d = read_eis_file(DATA / file)
    if keep:
        return d.frequency, d.z
    m = d.z.imag < 0
    return d.frequency[m], d.z[m]


# impedance.py 1.7.1 references: (values, 1-sigma, sum of squares |Z_fit - Z|^2), printed by
# bench/eis_fit.py --references on 2026-11-25 (see the module docstring and tests/data/README.md)
REF = {
    # R0-p(R1,C1)-p(R2-Wo1,C2), 57 points; best from labctl's automatic fit (2 s)
    "ex_two_arcs_wo": {
        "user": (
            [0.0165187, 0.00867655, 3.32143, 0.00538996, 0.0630927, 232.52, 0.219542],
            [0.000154, 0.000191, 0.19, 0.000206, 0.00194, 16.2, 0.0175],
            1.94302e-05,
        ),
        "best": (
            [0.0165051, 0.00533585, 0.220391, 0.00914548, 0.140009, 1262.23, 2.76531],
            [0.000132, 0.000177, 0.0153, 0.000157, 0.116, 2.08e03, 0.124],
            1.40314e-05,
        ),
    },
    # R0-p(R1,CPE1)-p(R2-Wo1,CPE2), 57 points; best from labctl's automatic fit (115 s)
    "ex_two_cpe_wo": {
        "user": (
            [0.0159033, 0.00878556, 4.59742, 0.912875, 0.0062904, 0.139209, 1251.39, 0.672991, 0.809213],
            [0.000258, 0.000736, 0.38, 0.0323, 0.000912, 0.0952, 1.7e03, 0.305, 0.0728],
            9.55422e-06,
        ),
        "best": (
            [0.0153537, 0.0208232, 745.999, 0.819441, 0.0203266, 9.9948e-05, 0.372619, 6.57259, 0.503387],
            [0.000195, 0.00202, 95.2, 0.034, 0.00154, 0.00292, 10.9, 0.762, 0.0211],
            7.26612e-06,
        ),
    },
    # R0-p(R1-Wo1,CPE1), 57 points; best from random start 1 (2 s)
    "ex_randles_cpe": {
        "user": (
            [0.0162133, 0.0156914, 0.131645, 1165.48, 3.69441, 0.625468],
            [0.000251, 0.000385, 0.135, 2.37e03, 0.316, 0.0214],
            3.04338e-05,
        ),
        "best": (
            [0.0162133, 0.0156914, 0.131561, 1164, 3.69438, 0.62547],
            [0.000251, 0.000385, 0.134, 2.35e03, 0.316, 0.0214],
            3.04338e-05,
        ),
    },
    # R0-p(R1,CPE1)-p(R2,CPE2)-W1, 57 points; best from labctl's automatic fit (18 s)
    "ex_two_cpe_w": {
        "user": (
            [0.0158442, 0.00638071, 0.792579, 0.790048, 0.00871225, 4.66073, 0.915977, 0.00278471],
            [0.000262, 0.000922, 0.351, 0.0719, 0.000758, 0.405, 0.0322, 1.72e-05],
            9.56899e-06,
        ),
        "best": (
            [0.0158436, 0.00638368, 0.793684, 0.789823, 0.00870985, 4.6616, 0.916061, 0.00278472],
            [0.000263, 0.000923, 0.351, 0.0719, 0.000759, 0.406, 0.0322, 1.72e-05],
            9.56899e-06,
        ),
    },
    # L0-R0-p(R1,C1)-p(R2-Wo1,C2), 66 points; best from random start 0 (4 s)
    "ex_inductive_l": {
        "user": (
            [1.59093e-07, 0.0155586, 0.00913144, 2.88987, 0.00585054, 0.0633361, 233.476, 0.128158],
            [4.44e-09, 0.000119, 0.000178, 0.15, 0.000184, 0.00208, 17.4, 0.00869],
            2.55485e-05,
        ),
        "best": (
            [1.59125e-07, 0.0155539, 0.00583762, 0.128806, 0.00953922, 0.141083, 1275.38, 2.45629],
            [3.93e-09, 0.000105, 0.000164, 0.00779, 0.000154, 0.133, 2.39e03, 0.106],
            1.99783e-05,
        ),
    },
    # R_0-p(R_1,C_1)-p(R_2,C_2)-Wo_1, 57 points; best from user guess (1 s)
    "ex_constants": {
        "user": (
            [0.02, 0.0039092, 1.36044, 0.00679234, 5.61747, 0.0588241, 200],
            [0, 0.00109, 0.261, 0.00108, 1.96, 0.00125, 0],
            0.000129537,
        ),
        "best": (
            [0.02, 0.0039092, 1.36044, 0.00679234, 5.61747, 0.0588241, 200],
            [0, 0.00109, 0.261, 0.00108, 1.96, 0.00125, 0],
            0.000129537,
        ),
    },
    # R0-p(R1,C1), 48 points; best from labctl's automatic fit (0 s)
    "dummy_rc1": {
        "user": ([29.1411, 46.6526, 1.04283e-05], [0.0363, 0.0469, 2.95e-08], 2.44319),
        "best": ([29.1411, 46.6526, 1.04282e-05], [0.0363, 0.0469, 2.95e-08], 2.44319),
    },
    # R0-p(R1,C1), 56 points; best from labctl's automatic fit (0 s)
    "dummy_rc2": {
        "user": ([150.376, 502.384, 3.11608e-08], [0.323, 0.357, 7.79e-11], 164.635),
        "best": ([150.274, 502.481, 3.11307e-08], [0.323, 0.357, 7.77e-11], 164.331),
    },
    # R0-p(R1,C1), 53 points; best from labctl's automatic fit (0 s)
    "dummy_rc3": {
        "user": ([1507.03, 4630.26, 2.01932e-08], [2.62, 3.14, 5.39e-11], 13976.7),
        "best": ([1505.73, 4631.73, 2.01832e-08], [2.61, 3.14, 5.38e-11], 13944.6),
    },
    # R0-p(R1,CPE1)-p(R2,CPE2), 93 points; best from random start 0 (31 s)
    "lib2_two_cpe": {
        "user": (
            [0.110743, 0.0244005, 9.00954, 0.532073, 0.0439893, 815.735, 0.991504],
            [0.000194, 0.00054, 0.345, 0.0128, 0.00496, 71.9, 0.0303],
            3.75554e-05,
        ),
        "best": (
            [0.110743, 0.0243999, 9.00919, 0.532083, 0.0439937, 815.656, 0.991472],
            [0.000194, 0.00054, 0.345, 0.0128, 0.00496, 71.9, 0.0303],
            3.75554e-05,
        ),
    },
    # R0-p(R1,CPE1)-p(R2,CPE2)-W1, 93 points; best from labctl's automatic fit (88 s)
    "lib2_two_cpe_w": {
        "user": (
            [0.111041, 0.00689507, 1.1129, 0.847397, 0.00951756, 7.67454, 1, 0.00349949],
            [0.000296, 0.000861, 0.411, 0.0716, 0.000704, 0.59, 0.0341, 4.43e-05],
            5.02516e-05,
        ),
        "best": (
            [0.110743, 0.0243998, 9.00909, 0.532086, 0.043995, 815.632, 0.991462, 1e-10],
            [0.000232, 0.00201, 0.56, 0.021, 0.0267, 551, 0.118, 0.00126],
            3.75554e-05,
        ),
    },
    # L0-R0-p(R1,CPE1)-p(R2,CPE2), 100 points; best from user guess (13 s)
    "lib2_inductive_l": {
        "user": (
            [6.1898e-07, 0.109118, 0.0271223, 9.2513, 0.468083, 0.0448855, 873.942, 1],
            [4.18e-08, 0.000258, 0.000763, 0.406, 0.0145, 0.00625, 94, 0.0362],
            4.9108e-05,
        ),
        "best": (
            [6.1898e-07, 0.109118, 0.0271223, 9.2513, 0.468083, 0.0448855, 873.942, 1],
            [4.18e-08, 0.000258, 0.000763, 0.406, 0.0145, 0.00625, 94, 0.0362],
            4.9108e-05,
        ),
    },
    # L0-R0-p(R1,CPE1)-p(R2,CPE2), 107 points; best from user guess (12 s)
    "lib3_inductive_l": {
        "user": (
            [6.21384e-07, 0.109816, 0.02179, 8.89764, 0.497645, 0.062782, 651.633, 0.878207],
            [3.69e-08, 0.000212, 0.000533, 0.39, 0.0141, 0.00407, 42.2, 0.0189],
            4.1676e-05,
        ),
        "best": (
            [6.21384e-07, 0.109816, 0.02179, 8.89764, 0.497645, 0.062782, 651.633, 0.878207],
            [3.69e-08, 0.000212, 0.000533, 0.39, 0.0141, 0.00407, 42.2, 0.0189],
            4.1676e-05,
        ),
    },
    # R0-p(R1,CPE1)-p(R2-Ws1,CPE2), 99 points; best from labctl's automatic fit (253 s)
    "lib3_ws": {
        "user": (
            [0.111474, 0.0189842, 8.35758, 0.581212, 2.93876e-13, 0.0688849, 5.0058, 545.029, 0.839653],
            [0.000197, 0.00164, 0.724, 0.0248, 1.55, 1.55, 193, 1.27e03, 0.263],
            2.89942e-05,
        ),
        "best": (
            [0.111255, 0.0943642, 398.429, 0.746942, 0.00745322, 0.00949395, 0.162942, 2.12778, 0.743806],
            [0.000115, 0.00386, 9.66, 0.00799, 0.00034, 0.0002, 0.0053, 0.256, 0.0225],
            7.06115e-06,
        ),
    },
    # L0-R0-p(R1,CPE1)-p(R2,CPE2), 107 points; best from user guess (17 s)
    "lib1_inductive_l": {
        "user": (
            [4.26101e-07, 0.113516, 0.029839, 9.50865, 0.553507, 0.0269955, 1485.7, 1],
            [6e-08, 0.00023, 0.000741, 0.413, 0.0155, 0.00304, 254, 0.0462],
            0.000128776,
        ),
        "best": (
            [4.26101e-07, 0.113516, 0.029839, 9.50865, 0.553507, 0.0269955, 1485.7, 1],
            [6e-08, 0.00023, 0.000741, 0.413, 0.0155, 0.00304, 254, 0.0462],
            0.000128776,
        ),
    },
    # R0-p(R1,CPE1), 39 points; best from user guess (0 s)
    "biologic_cpe": {
        "user": ([63.6574, 47.8882, 0.00925327, 0.924427], [0.285, 0.621, 0.00023, 0.0144], 115.467),
        "best": ([63.6574, 47.8882, 0.00925327, 0.924427], [0.285, 0.621, 0.00023, 0.0144], 115.467),
    },
    # R0-p(R1,C1), 39 points; best from user guess (0 s)
    "biologic_c": {
        "user": ([64.2783, 45.8055, 0.00890406], [0.295, 0.508, 0.000234], 158.317),
        "best": ([64.2783, 45.8055, 0.00890406], [0.295, 0.508, 0.000234], 158.317),
    },
    # R0-p(R1,CPE1)-p(R2,CPE2), 59 points; best from random start 1 (3 s)
    "versastudio_two_cpe": {
        "user": (
            [62.9786, 3.22564, 7.0585e-05, 0.730492, 1542.29, 0.000306053, 0.714946],
            [8.22, 9.11, 0.00111, 1.78, 4.77, 1.56e-06, 0.00274],
            4551.69,
        ),
        "best": (
            [69.0023, 624.88, 0.00031121, 0.777985, 875.57, 0.000781322, 0.82769],
            [0.604, 65.6, 9.67e-06, 0.00794, 67.1, 8.96e-05, 0.0107],
            1031.26,
        ),
    },
    # R0-p(R1,CPE1)-p(R2,CPE2), 72 points; best from labctl's automatic fit (2 s)
    "gamry_two_cpe": {
        "user": (
            [0.00397802, 4134.12, 4.56996e-09, 0.829074, 20635.7, 0.000169773, 0.651719],
            [373, 385, 1.34e-09, 0.0215, 994, 3.88e-06, 0.0179],
            1.61313e07,
        ),
        "best": (
            [1e-10, 4124.61, 3.75614e-09, 0.844026, 20689.4, 0.000169414, 0.650423],
            [357, 368, 1.13e-09, 0.02, 999, 3.87e-06, 0.0179],
            1.61163e07,
        ),
    },
    # L0-R0-p(R1,CPE1)-p(R2,CPE2)-W1, 41 points; best from user guess (50 s)
    "autolab_l_w": {
        "user": (
            [1.2054e-07, 0.0130647, 0.00724159, 0.455878, 0.767917, 0.0109106, 3.82348, 0.822819, 0.0028651],
            [1.43e-09, 7.61e-05, 0.000368, 0.0748, 0.0232, 0.000371, 0.125, 0.0145, 6.1e-05],
            9.19745e-07,
        ),
        "best": (
            [1.2054e-07, 0.0130647, 0.00724159, 0.455878, 0.767917, 0.0109106, 3.82348, 0.822819, 0.0028651],
            [1.43e-09, 7.61e-05, 0.000368, 0.0748, 0.0232, 0.000371, 0.125, 0.0145, 6.1e-05],
            9.19745e-07,
        ),
    },
}


# impedance.py's documentation (docs/source/getting-started.rst, the getting-started
# notebook and examples/looping_files_example.ipynb, fitting_example.ipynb at commit
# 0b302ca9): the printed fit parameters (3 significant digits) and 1-sigma
DOCUMENTED = {
    "ex_two_arcs_wo": {
        "R0": (1.65e-02, 1.54e-04),
        "R1": (8.68e-03, 1.91e-04),
        "C1": (3.32e00, 1.90e-01),
        "R2": (5.39e-03, 2.06e-04),
        "Wo1_R": (6.31e-02, 1.94e-03),
        "Wo1_tau": (2.33e02, 1.62e01),
        "C2": (2.20e-01, 1.75e-02),
    },
    "ex_constants": {
        "R_1": (6.79e-03, 1.08e-03),
        "C_1": (5.62e00, 1.96e00),
        "R_2": (3.91e-03, 1.09e-03),
        "C_2": (1.36e00, 2.61e-01),
        "Wo_1_R": (5.88e-02, 1.25e-03),
    },
    "dummy_rc1": {"R0": (2.91e01, 3.63e-02), "R1": (4.67e01, 4.69e-02), "C1": (1.04e-05, 2.95e-08)},
    "dummy_rc2": {"R0": (1.50e02, 3.23e-01), "R1": (5.02e02, 3.57e-01), "C1": (3.12e-08, 7.79e-11)},
    "dummy_rc3": {"R0": (1.51e03, 2.62e00), "R1": (4.63e03, 3.14e00), "C1": (2.02e-08, 5.39e-11)},
}
# labctl's check replaces the fit from these cases' guesses (VersaStudio: it runs R1 12
# decades down, the first arc vanishes; data_1 + Ws: no convergence in 2000 evaluations),
# and its automatic search finds the lower minimum that impedance.py reaches from other starts
REPLACED = {"versastudio_two_cpe", "lib3_ws"}
# the sums of squares are stored to 6 digits
SSR_TOL = 1e-5


def _inside(fit, ref):
    p, s = np.asarray(ref[0]), np.asarray(ref[1])
    off = [
        f"{n} = {v:.6g}, reference {r:.6g} +- {e:.3g}"
        for n, v, r, e in zip(fit.names, fit.values, p, s)
        if not abs(v - r) <= e + 1e-9 * abs(r)
    ]
    return off


@pytest.mark.parametrize("name", list(CASES))
def test_user_guess_matches_impedance_py(name):
    _, _, circuit, guess, constants = CASES[name]
    f, z = load(name)
    fit = fit_circuit(f, z, circuit, guess, constants=constants)
    if name in REPLACED:
        assert fit.initial_source.startswith("automatic"), fit.initial_source
        assert "the fit from the user's guess" in fit.initial_source
        ref = REF[name]["best"]
        assert fit.stats["ssr"] < REF[name]["user"][2]  # better than impedance.py from the same guess
    else:
        assert fit.initial_source == "user"
        ref = REF[name]["user"]
    assert fit.stats["ssr"] <= ref[2] * (1 + SSR_TOL), (fit.stats["ssr"], ref[2])
    assert not _inside(fit, ref), _inside(fit, ref)


@pytest.mark.parametrize("name", list(CASES))
def test_automatic_guess_reaches_the_best_reference(name):
    _, _, circuit, _, constants = CASES[name]
    f, z = load(name)
    fit = fit_circuit(f, z, circuit, constants=constants)
    assert fit.initial_source.startswith("automatic")
    ref = REF[name]["best"]
    assert fit.stats["ssr"] <= ref[2] * (1 + SSR_TOL), (fit.stats["ssr"], ref[2])
    assert not _inside(fit, ref), _inside(fit, ref)


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_documented_impedance_py_results_reproduced(name):
    """The numbers impedance.py's documentation prints, from its documented guesses."""
    _, _, circuit, guess, constants = CASES[name]
    f, z = load(name)
    fit = fit_circuit(f, z, circuit, guess, constants=constants)
    c = parse_circuit(circuit)
    doc, doc_s = np.zeros(c.n_params), np.zeros(c.n_params)
    for pname, (v, s) in DOCUMENTED[name].items():
        doc[c.param_index(pname)], doc_s[c.param_index(pname)] = v, s
    for pname, v in (constants or {}).items():
        doc[c.param_index(pname)] = v
    # same-structure arcs in labctl's order (fastest first), whatever labels impedance.py gave
    doc, cov, _ = _sort_arcs(c, doc, np.diag(doc_s**2))
    doc_s = np.sqrt(np.diag(cov))
    for k, pname in enumerate(fit.names):
        if pname in fit.fixed:
            assert fit.values[k] == doc[k]
            continue
        rounding = 0.5 * 10 ** (np.floor(np.log10(abs(doc[k]))) - 2)  # printed to 3 digits
        assert abs(fit.values[k] - doc[k]) <= doc_s[k] + rounding, (pname, fit.values[k], doc[k], doc_s[k])
        # the 1-sigma too, to 25 %: impedance.py stops (xtol 1e-8) a little before the minimum
        # labctl reaches (sum of squares 0.01-0.23 % higher), and at its point the 1-sigma differ
        # by up to 22 % (dummy_rc3's C1); labctl's equal curve_fit's formula at its own point
        # (test_real_spectrum_lands_in_impedance_py_bands: within 5 % where both converge)
        assert fit.sigmas[k] == pytest.approx(doc_s[k], rel=0.25), (pname, fit.sigmas[k], doc_s[k])


def test_documented_fit_is_a_local_minimum_and_labctl_says_which():
    """impedance.py's documented exampleData fit (SSR 1.94e-5) is a local minimum: the
    same circuit with the Randles block as the slower arc reaches 1.40e-5.  labctl
    reproduces the documented fit from the documented guess and finds the lower one
    without a guess; both report the Wo as not determined beyond R/sqrt(tau)."""
    f, z = load("ex_two_arcs_wo")
    user = fit_circuit(f, z, CASES["ex_two_arcs_wo"][2], CASES["ex_two_arcs_wo"][3])
    auto = fit_circuit(f, z, CASES["ex_two_arcs_wo"][2])
    assert auto.stats["ssr"] < 0.75 * user.stats["ssr"]
    # the Warburg coefficient R/sqrt(tau) agrees between the two within 10 %
    w = [fit.params["Wo1_R"] / np.sqrt(fit.params["Wo1_tau"]) for fit in (user, auto)]
    assert w[0] == pytest.approx(w[1], rel=0.1)
    assert any("Wo1_tau" in m and "not determined" in m for m in auto.warnings), auto.warnings


def test_fit_reports_misfit_against_lin_kk():
    f, z = load("dummy_rc1")
    fit = fit_circuit(f, z, "R0-p(R1,C1)")
    assert fit.stats["kk_rel_rms"] < 0.001  # a dummy cell: Kramers-Kronig consistent to 0.03 %
    assert fit.stats["misfit_ratio"] > 10  # an ideal RC leaves the measured dispersion: said so
    assert any("systematic misfit" in w for w in fit.warnings)
    assert "systematic misfit" in fit.quality
    with pytest.raises(Exception, match="Lin-KK"):
        fit_circuit(f, z, "R0-p(R1,C1)", on_misfit="raise")
    good = fit_circuit(*load("biologic_cpe"), "R0-p(R1,CPE1)")  # noisy thin-film data
    assert good.stats["misfit_ratio"] < 3 and "within the scatter" in good.quality
    assert not any("misfit" in w for w in good.warnings)
