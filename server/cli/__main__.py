"""``python -m server.cli``: the same command as ``voxlane``."""

from server.cli import main

raise SystemExit(main())
