"""import-linter on the ``labctl`` package as installed: ``python tools/lint_imports.py [lint-imports options]``.

Builds the link tree of :mod:`package_tree` and runs ``lint-imports`` from inside it
(import-linter puts the working directory first on ``sys.path``), with the contracts
of ``[tool.importlinter]`` in pyproject.toml.  Exit code: lint-imports'.
"""

from __future__ import annotations

import os
import sys

from package_tree import ROOT, TREE, build_tree


def main(argv: list[str]) -> int:
    from importlinter.cli import lint_imports_command

    build_tree()
    os.chdir(TREE)
    args = [str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".import_linter_cache"), *argv]
    try:
        lint_imports_command.main(args=args, prog_name="lint-imports", standalone_mode=False)
    except SystemExit as e:  # click's exit
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
