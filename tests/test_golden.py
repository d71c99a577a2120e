"""The data of simulated runs stays byte-identical across restructurings (same seeds, same samples).

The stored digests (tests/golden/digests.json) were computed on milestone 1's engine
before the package restructuring; they cover every sample column, every step's
start, end, reason and count, and each run's final status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.digest import CASES, run_digest

STORED = json.loads((Path(__file__).parent / "golden" / "digests.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=["/".join(map(str, c)) for c in CASES])
def test_simulated_run_is_byte_identical_to_milestone_1(case):
    digest, n = run_digest(*case)
    want = STORED["/".join(map(str, case))]
    assert n == want["samples"]
    assert digest == want["sha256"]
