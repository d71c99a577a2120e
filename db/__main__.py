"""``python -m db``: migration commands (see :mod:`db.migrate`)."""

from db.migrate import main

main()
