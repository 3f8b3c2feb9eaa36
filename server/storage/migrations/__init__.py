"""Alembic migrations of the voxlane database, run from code by :mod:`server.storage.migrate` (no alembic.ini)."""
