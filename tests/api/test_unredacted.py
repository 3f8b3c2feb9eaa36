"""The text as spoken of a redacted transcript: only its owner, with the ``transcripts:unredacted`` scope, reads it.

Runs in both access modes (SQLite in public mode, PostgreSQL in private mode), so the store's queries run on both.
"""

from __future__ import annotations

from server.http.auth import parse_scopes
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)
READ_WRITE = ["transcripts:read", "transcripts:write"]
SPOKEN = {"id": "seg-1", "text": "call me at five five five one two three four", "start": 1.0, "end": 4.0,
          "words": [{"text": "call", "start": 1.0, "end": 1.2, "probability": 0.9, "final": True}]}


async def _transcript_with_a_redacted_segment(api: Api, owner: str) -> str:
    r = await api.client.post("/v1/transcripts/", json={"name": "pii"}, headers=api.auth(owner, READ_WRITE))
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    store = api.svc.store
    await store.save_segment(tid, {"id": f"{tid}-seg-1", "text": "call me at [PHONE]", "start": 1.0, "end": 4.0})
    await store.save_unredacted(tid, {**SPOKEN, "id": f"{tid}-seg-1"})
    await store.save_unredacted(tid, {**SPOKEN, "id": f"{tid}-seg-1", "text": SPOKEN["text"] + "."})  # replaced
    await store.save_unredacted(tid, {**SPOKEN, "id": f"{tid}-seg-0", "start": 0.0, "end": 0.5, "text": "hi"})
    return tid


async def test_only_the_owner_with_the_scope_reads_the_unredacted_text(api: Api):
    tid = await _transcript_with_a_redacted_segment(api, "olive")
    path = f"/v1/transcripts/{tid}/unredacted"
    r = await api.client.get(path, headers=api.auth("olive", READ_WRITE))
    assert r.status_code == 403 and r.json()["error"]["details"]["required"] == "transcripts:unredacted"
    r = await api.client.get(path, headers=api.auth("olive"))  # a JWT naming no scope gets the defaults: not this
    assert r.status_code == 403
    owner = api.auth("olive", ["transcripts:unredacted"])
    r = await api.client.get(path, headers=owner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 2 and body["kept"] is False and r.headers["cache-control"] == "no-store"
    assert [s["text"] for s in body["items"]] == ["hi", SPOKEN["text"] + "."]  # in time order, the last write
    assert body["items"][1]["words"] == SPOKEN["words"]
    page = (await api.client.get(path, params={"size": 1, "page": 2}, headers=owner)).json()
    assert [s["id"] for s in page["items"]] == [f"{tid}-seg-1"] and page["total"] == 2
    assert (await api.client.get(path, params={"size": 0}, headers=owner)).status_code == 422
    # the redacted transcript is all the owner's ordinary token shows
    shown = (await api.client.get(f"/v1/transcripts/{tid}", headers=api.auth("olive", READ_WRITE))).json()
    assert [s["text"] for s in shown["segments"]] == ["call me at [PHONE]"]
    # anyone else, whatever their scopes, finds nothing there
    r = await api.client.get(path, headers=api.auth("mallory", ["transcripts:unredacted", *READ_WRITE]))
    assert r.status_code == 404 and r.json()["error"]["code"] == "TRANSCRIPT_NOT_FOUND"
    r = await api.client.get(path)  # anonymous: no token (private), or no such scope (public)
    assert r.status_code == (401 if api.private else 403)
    # re-transcribing drops the old spoken texts with the old segments
    assert await api.svc.store.delete_segments(tid) == 1
    assert (await api.client.get(path, headers=owner)).json()["total"] == 0


async def test_an_ownerless_transcript_has_no_unredacted_reader(public_api: Api):
    r = await public_api.client.post("/v1/transcripts/", json={"name": "anonymous"})
    tid = r.json()["id"]
    await public_api.svc.store.save_unredacted(tid, {**SPOKEN, "id": f"{tid}-seg-1"})
    r = await public_api.client.get(f"/v1/transcripts/{tid}/unredacted",
                                    headers=public_api.auth("olive", ["transcripts:unredacted"]))
    assert r.status_code == 404


def test_the_scope_can_be_granted_by_name():
    assert parse_scopes("transcripts:read,transcripts:unredacted") == ["transcripts:read", "transcripts:unredacted"]
