"""One module per schema revision; Alembic loads them by path, the package only makes them ship with voxlane."""
