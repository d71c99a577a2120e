"""``python -m labctl.db``: migration commands (see :mod:`labctl.db.migrate`)."""

from labctl.db.migrate import main

main()
