"""What the tests of the dead-node sweep share (tests/unit/server/pipeline/test_recovery.py and
test_ownership.py)."""

from __future__ import annotations


class FailingFinish:
    """``finish_abandoned`` for a sweep under test: records each transcript it is asked to finish, and fails on
    one of them as a store that refused the write would."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.tried: list[str] = []

    async def __call__(self, services: object, transcript_id: str) -> bool:
        self.tried.append(transcript_id)
        if transcript_id == self.failing:
            raise OSError("the store refused it")
        return True
