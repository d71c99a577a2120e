"""`labctl --help` and `labctl validate` start without the plotting and fitting libraries.

Each check runs the CLI in a fresh interpreter through a small wrapper that calls
``labctl.cli.main`` and then prints the names in ``sys.modules``: a module that any
command imports at start-up shows up there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TAFEL = ROOT / "labctl" / "studies" / "mg_anode" / "library" / "tafel.yaml"

WRAPPER = """
import json, sys
sys.argv = ["labctl", *json.loads(sys.argv[1])]
try:
    from labctl.cli import main
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
sys.stdout.flush()
print("\\n@@MODULES@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def modules_after(*args: str) -> tuple[int, set[str], str]:
    r = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(list(args))], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert "@@MODULES@@" in r.stdout, r.stderr[-3000:]
    text, _, tail = r.stdout.rpartition("@@MODULES@@")
    info = json.loads(tail)
    return info["code"], set(info["modules"]), text + r.stderr


def top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def bare_scipy_modules() -> set[str]:
    """What ``import scipy`` alone loads (pint imports the bare package when scipy is installed)."""
    r = subprocess.run(
        [sys.executable, "-c", "import json, sys, scipy; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {m for m in json.loads(r.stdout) if m == "scipy" or m.startswith("scipy.")}


HEAVY = {"matplotlib", "scipy", "numpy", "pint", "sqlalchemy", "pydantic", "pandas", "pyarrow", "psycopg"}


def test_help_imports_no_plotting_fitting_units_or_database_library():
    code, mods, output = modules_after("--help")
    assert code == 0, output
    assert "validate" in output and "fit-eis" in output and "demo" in output
    assert not (top(mods) & HEAVY), sorted(top(mods) & HEAVY)
    # nor labctl's own heavy layers
    assert not {
        m
        for m in mods
        if m.startswith(
            ("labctl.analysis", "labctl.reports", "labctl.engine", "labctl.db", "labctl.app", "labctl.studies")
        )
    }


def test_validate_imports_the_protocol_models_only():
    code, mods, output = modules_after("validate", str(TAFEL))
    assert code == 0, output
    assert "ok" in output and "tafel.yaml" in output
    assert "labctl.protocols" in mods and "pint" in mods  # validate checks units
    assert "matplotlib" not in top(mods)
    assert "sqlalchemy" not in top(mods)
    # pint imports the bare scipy package if it is installed; no fitting code is loaded
    scipy_loaded = {m for m in mods if m == "scipy" or m.startswith("scipy.")}
    assert scipy_loaded <= bare_scipy_modules(), sorted(scipy_loaded - bare_scipy_modules())
    assert not {
        m
        for m in mods
        if m.startswith(
            (
                "scipy.optimize",
                "scipy.stats",
                "scipy.linalg",
                "scipy.signal",
                "labctl.analysis",
                "labctl.reports",
                "labctl.engine",
            )
        )
    }


def test_a_bad_protocol_still_fails_with_exit_code_2_and_no_traceback(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TAFEL.read_text().replace("steps:", "stepz:", 1))
    code, mods, output = modules_after("validate", str(bad))
    assert code == 2
    assert f"{bad}:" in output and "Traceback" not in output
    assert "matplotlib" not in top(mods)


def test_fit_eis_help_lists_the_weightings_of_the_fitting_code():
    from labctl.analysis.eis import WEIGHTINGS
    from labctl.cli import analysis

    assert analysis.WEIGHTINGS == WEIGHTINGS


def test_version_prints_the_package_version():
    from importlib.metadata import version

    from labctl import __version__

    r = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "--version"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"labctl {__version__}"
    assert version("labctl") == __version__  # pyproject's dynamic version reads labctl.__version__


@pytest.mark.parametrize("args", [("runs", "--db", "nosuchdialect://x"), ("show", "1", "--db", "nosuchdialect://x")])
def test_a_bad_database_url_is_a_user_error(args: tuple[str, ...]):
    code, _, output = modules_after(*args)
    assert code == 2
    assert "cannot open database nosuchdialect://x" in output and "Traceback" not in output
