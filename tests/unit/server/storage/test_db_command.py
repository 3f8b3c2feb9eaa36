"""``voxlane db upgrade`` on both databases: an empty database gets the schema; running it again changes nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from server.storage import SqlStore

pytest_plugins = ("tests.db_support",)
REPO = Path(__file__).resolve().parents[4]


async def voxlane_db(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLANE_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server.cli", "db", *args, cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_db_upgrade_makes_the_schema_once(empty_database_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        rc, out = await voxlane_db("upgrade", "--database-url", empty_database_url, "--data-dir", str(tmp_path))
        assert rc == 0, out
        assert "current schema" in out
    store = SqlStore(empty_database_url)
    await store.open()
    try:
        row = await store.create_transcript(name="after upgrade")
        assert (await store.get_transcript(row["id"]))["name"] == "after upgrade"
    finally:
        await store.close()


async def test_db_upgrade_defaults_to_the_data_dir(tmp_path: Path) -> None:
    rc, out = await voxlane_db("upgrade", "--data-dir", str(tmp_path / "data"))
    assert rc == 0, out
    assert (tmp_path / "data" / "voxlane.db").is_file()
