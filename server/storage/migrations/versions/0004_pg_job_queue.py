"""The PostgreSQL job queue: procrastinate's own tables, types, functions and triggers (PostgreSQL only).

The schema is the one the installed procrastinate ships (``SchemaManager.get_schema()``), applied in the same
transaction as voxlane's own tables, so one ``voxlane db upgrade`` (or any node's start) brings both. The library
is pinned to the version this revision was written for: a later version of it comes with a revision of ours that
applies its own migration files (procrastinate/sql/migrations) from this one on. Its objects are all named
``procrastinate_*``; schema comparisons leave them out (``server.storage.migrate.ours``).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_only

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PROCRASTINATE = "3.10.0"

_DROP = """
DO $$
DECLARE item record;
BEGIN
    FOR item IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
                AND tablename LIKE 'procrastinate\\_%' LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.tablename);
    END LOOP;
    FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%' LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', item.signature);
    END LOOP;
    FOR item IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%' AND t.typtype IN ('e', 'c')
                LOOP
        EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.typname);
    END LOOP;
END;
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite runs its jobs in-process (the jobs table of revision 0003)
    from importlib.metadata import version

    from procrastinate.schema import SchemaManager

    installed = version("procrastinate")
    if installed != PROCRASTINATE:
        raise RuntimeError(f"revision 0004 installs procrastinate {PROCRASTINATE}'s schema, but {installed} is"
                           " installed: install the version voxlane pins")
    _run(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _run(_DROP)


def _run(script: str) -> None:
    """Many statements in one string: asyncpg's simple query protocol takes them (a prepared statement does not),
    on the migration's own connection, so inside its transaction."""
    await_only(op.get_bind().connection.driver_connection.execute(script))
