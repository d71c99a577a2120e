"""mypy on the ``labctl`` package as installed: ``python tools/typecheck.py [mypy options]``.

Builds the link tree of :mod:`package_tree` (``build/package-tree``, which ``mypy_path``
in ``[tool.mypy]`` points at), runs mypy with the settings of ``[tool.mypy]`` and prints
every path as the file in the repository (``drivers/contracts.py:12: error: ...``).
Exit code: mypy's.
"""

from __future__ import annotations

import os
import sys

from package_tree import ROOT, build_tree, to_repo_paths


def main(argv: list[str]) -> int:
    from mypy import api

    os.chdir(ROOT)
    folders = build_tree()
    stdout, stderr, code = api.run(["--config-file", str(ROOT / "pyproject.toml"), *argv])
    sys.stdout.write(to_repo_paths(stdout, folders))
    sys.stderr.write(to_repo_paths(stderr, folders))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
