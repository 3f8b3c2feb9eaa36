"""``VOXLANE_REDIS_URL``: accepted for redis://, rediss:// and unix://, refused with a line that names the setting
and never repeats the URL (it may hold a password), and logged without its credentials."""

from __future__ import annotations

import pytest

from server.node import claim_node_id, node_id
from server.redis_client import describe
from server.settings import Settings, SettingsError


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@cache.internal:6380/2",
                                 "redis://localhost", "unix:///run/redis/redis.sock"])
def test_redis_urls_are_accepted(url: str):
    Settings(redis_url=url).validate()


@pytest.mark.parametrize("url", ["http://:hunter2@h:6379", "redis://:hunter2@h:99999", "redis://:hunter2@h/x",
                                 "unix://", "hunter2", "redis://:hunter2@h:0"])
def test_bad_redis_urls_are_refused_without_repeating_them(url: str):
    with pytest.raises(SettingsError) as refused:
        Settings(redis_url=url).validate()
    assert str(refused.value).startswith("VOXLANE_REDIS_URL: ") and "hunter2" not in str(refused.value)


def test_logs_name_the_redis_without_credentials():
    assert describe("rediss://user:hunter2@cache.internal:6380/2") == "rediss://cache.internal:6380/2"
    assert describe("redis://localhost") == "redis://localhost:6379"
    assert describe("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_each_node_built_in_one_process_has_an_id_of_its_own():
    first, second = claim_node_id(), claim_node_id()
    assert first != second and first.startswith(node_id()) and second.startswith(node_id() + ".")
    assert node_id() == node_id(), "stable for the process"
