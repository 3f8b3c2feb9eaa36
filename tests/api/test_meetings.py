"""Rooms and meetings through the API reference's shapes: settings, URLs, join tokens scoped to one meeting,
ending; visibility and scopes like every other route (another user gets 404, a read-only token cannot create or
join to publish), and a meeting token's audio pinned to its participant. Both access modes, both databases."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import websockets

from server.http.auth import READ, SCOPES
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)


def _key(url: str) -> str:
    return parse_qs(urlparse(url).query)["key"][0]


async def _room(api: Api, owner: dict[str, str], **body: object) -> dict:
    r = await api.client.post("/v1/rooms/", json={"name": "Standup", **body}, headers=owner)
    assert r.status_code == 201, r.text
    return r.json()


async def test_rooms_keep_their_settings_and_their_owner(api: Api) -> None:
    alice, bob = api.auth("alice-rooms"), api.auth("bob-rooms")
    r = await api.client.post("/api/projects", json={"title": "Meetings"}, headers=api.auth("alice-rooms",
                                                                                             list(SCOPES)))
    project = r.json()["id"]
    room = await _room(api, alice, language="en", key_terms=["Hester Prynne", "voxlane"], project_id=project,
                       is_shared=True)
    assert room["platform"] == "voxlane" and room["key_terms"] == ["Hester Prynne", "voxlane"]
    assert room["project_id"] == project and room["recording"] and not room["is_locked"]
    r = await api.client.patch(f"/v1/rooms/{room['id']}", json={"name": "Retro", "is_locked": True,
                                                                  "key_terms": ["Dimmesdale"]}, headers=alice)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["is_locked"], r.json()["key_terms"]) == ("Retro", True, ["Dimmesdale"])
    assert r.json()["language"] == "en" and r.json()["is_shared"]
    listed = (await api.client.get("/v1/rooms/", headers=alice)).json()
    assert [x["id"] for x in listed["items"]] == [room["id"]] and listed["total"] == 1
    # another user: not found, whatever the verb; their listing is empty
    for method, path in (("GET", f"/v1/rooms/{room['id']}"), ("PATCH", f"/v1/rooms/{room['id']}"),
                         ("POST", f"/v1/rooms/{room['id']}/meeting")):
        r = await api.client.request(method, path, json={}, headers=bob)
        assert r.status_code == 404, (method, path, r.text)
    assert (await api.client.get("/v1/rooms/", headers=bob)).json()["total"] == 0
    r = await api.client.post("/v1/meetings/", json={"room_id": room["id"]}, headers=bob)
    assert r.status_code == 404
    r = await api.client.post("/v1/rooms/", json={"name": "x", "project_id": project}, headers=bob)
    assert r.status_code == 404  # someone else's project's webhooks cannot be borrowed
    # a read-only token reads but cannot create or change
    ro = api.auth("alice-rooms", [READ])
    assert (await api.client.get(f"/v1/rooms/{room['id']}", headers=ro)).status_code == 200
    assert (await api.client.post("/v1/rooms/", json={"name": "x"}, headers=ro)).status_code == 403
    assert (await api.client.patch(f"/v1/rooms/{room['id']}", json={"name": "x"}, headers=ro)).status_code == 403
    # bounds
    for bad in ({"name": ""}, {"name": "x" * 201}, {"name": "x", "platform": "zoom"}, {"name": "x", "nope": 1},
                {"name": "x", "key_terms": ["k"] * 101}, {"name": "x", "key_terms": ["k" * 51]},
                {"name": "x", "key_terms": ["a\x00b"]}):
        r = await api.client.post("/v1/rooms/", json=bad, headers=alice)
        assert r.status_code == 422, (bad, r.text)
    r = await api.client.patch(f"/v1/rooms/{room['id']}", json={"name": None}, headers=alice)
    assert r.status_code == 422


async def test_a_meeting_from_start_to_end(api: Api) -> None:
    alice, bob = api.auth("alice-meet"), api.auth("bob-meet")
    r = await api.client.post("/api/projects", json={"title": "Meetings"}, headers=api.auth("alice-meet",
                                                                                             list(SCOPES)))
    project = r.json()["id"]
    room = await _room(api, alice, project_id=project)
    r = await api.client.post("/v1/meetings/", json={"room_id": room["id"], "name": "Monday"}, headers=alice)
    assert r.status_code == 201, r.text
    meeting = r.json()
    mid = meeting["id"]
    assert meeting["transcript_id"] == mid and meeting["status"] == "active" and meeting["room_name"] == "Standup"
    assert meeting["room_url"] != meeting["host_room_url"] and meeting["viewer_room_url"] is None  # not shared
    assert urlparse(meeting["room_url"]).path == "/room" and meeting["end_date"] > meeting["start_date"]
    assert (await api.client.get(f"/v1/transcripts/{mid}", headers=alice)).json()["name"] == "Monday"
    listed = (await api.client.get("/v1/meetings/?status=active", headers=alice)).json()
    assert [m["id"] for m in listed["items"]] == [mid]
    assert (await api.client.get(f"/v1/meetings/{mid}", headers=bob)).status_code == 404

    # joining: with the room URL's key (no account), or as the owner
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Ann", "key": _key(meeting["room_url"])})
    assert r.status_code == 200, r.text
    ann = r.json()
    assert ann["role"] == "participant" and ann["participant_id"] and ann["token"].startswith("vxm_")
    assert ann["websocket_url"].endswith(f"/v1/transcripts_websocket/{mid}")
    assert ann["webrtc_offer_url"].endswith(f"/v1/transcripts_webrtc/{mid}/offer")
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Host"}, headers=alice)
    assert r.status_code == 200 and r.json()["role"] == "host"
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Ro"}, headers=api.auth("alice-meet", [READ]))
    assert r.status_code == 403  # a read-only token cannot join to publish
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Bob"}, headers=bob)
    assert r.status_code == 404
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Eve", "key": "0" * 32})
    assert r.status_code == 404
    for bad in ({"name": ""}, {"name": "x" * 101}, {"name": "x", "key": "k" * 65}, {}):
        r = await api.client.post(f"/v1/meetings/{mid}/join", json=bad, headers=alice)
        assert r.status_code == 422, (bad, r.text)
    if api.private:
        r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Anon"})
        assert r.status_code == 401

    # a participant's token reaches this meeting only, and cannot end it
    mine = {"Authorization": f"Bearer {ann['token']}"}
    assert (await api.client.get(f"/v1/transcripts/{mid}", headers=mine)).status_code == 200
    other = (await api.client.post("/v1/transcripts/", json={"name": "private"}, headers=alice)).json()["id"]
    assert (await api.client.get(f"/v1/transcripts/{other}", headers=mine)).status_code == 403
    assert (await api.client.post("/v1/rooms/", json={"name": "x"}, headers=mine)).status_code == 403
    assert (await api.client.patch(f"/v1/transcripts/{mid}", json={"name": "x"}, headers=mine)).status_code == 403
    assert (await api.client.post(f"/v1/meetings/{mid}/end", headers=mine)).status_code == 403

    # the host's token ends it: the transcript completes, the project's conversation is finished
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Hosta", "key": _key(meeting["host_room_url"])})
    host = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await api.client.post(f"/v1/meetings/{mid}/end", headers=host)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ended" and r.json()["ended_at"]
    assert (await api.wait_transcript(mid, alice))["status"] == "completed"
    conv = await api.svc.store.get_conversation(mid)
    assert conv["project_id"] == project and conv["finished_at"] and conv["source"] == "meeting"
    assert (await api.client.post(f"/v1/meetings/{mid}/end", headers=alice)).json()["status"] == "ended"
    r = await api.client.post(f"/v1/meetings/{mid}/join", json={"name": "Late", "key": _key(meeting["room_url"])})
    assert r.status_code == 409


async def test_a_locked_room_admits_its_host_only(api: Api) -> None:
    alice = api.auth("alice-locked")
    room = await _room(api, alice, is_locked=True, is_shared=True)
    r = await api.client.post(f"/v1/rooms/{room['id']}/meeting", json={}, headers=alice)
    assert r.status_code == 201, r.text
    meeting = r.json()
    assert meeting["viewer_room_url"]
    r = await api.client.post(f"/v1/meetings/{meeting['id']}/join",
                              json={"name": "A", "key": _key(meeting["room_url"])})
    assert r.status_code == 403 and "ROOM_LOCKED" in r.text
    r = await api.client.post(f"/v1/meetings/{meeting['id']}/join",
                              json={"name": "V", "key": _key(meeting["viewer_room_url"])})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    viewer = r.json()["token"]
    r = await api.client.post(f"/v1/meetings/{meeting['id']}/join",
                              json={"name": "H", "key": _key(meeting["host_room_url"])})
    assert r.status_code == 200 and r.json()["role"] == "host"
    # a viewer's token listens but cannot publish
    base = await api.serve()
    url = base.replace("http", "ws") + f"/v1/transcripts_websocket/{meeting['id']}?token={viewer}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "start", "params": {}}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] == "error":
                assert msg["data"]["code"] == "INSUFFICIENT_SCOPE"
                break
    await api.client.post(f"/v1/meetings/{meeting['id']}/end", headers=alice)


async def test_a_meeting_token_speaks_as_its_own_participant(api: Api) -> None:
    """Whatever participant a client declares, its stream is the one it joined as."""
    alice = api.auth("alice-pin")
    room = await _room(api, alice)
    meeting = (await api.client.post(f"/v1/rooms/{room['id']}/meeting", json={}, headers=alice)).json()
    mid = meeting["id"]
    joined = (await api.client.post(f"/v1/meetings/{mid}/join",
                                    json={"name": "Dana", "key": _key(meeting["room_url"])})).json()
    base = await api.serve()
    url = joined["websocket_url"].replace("ws://testserver", base.replace("http", "ws")) + f"?token={joined['token']}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000,
                                                                "participant": {"id": "mallory", "name": "Mallory"}}}))
        await ws.send(np.zeros(16000, dtype=np.int16).tobytes())
        await ws.send(json.dumps({"action": "stop", "params": {}}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if msg["type"] == "status" and msg["data"]["status"] == "completed":
                break
    await api.client.post(f"/v1/meetings/{mid}/end", headers=alice)
    await api.wait_transcript(mid, alice)
    row = await api.svc.store.get_transcript(mid)
    joins = [e for e in row["meta"].get("participant_events", []) if e["type"] == "join"]
    assert [(e["participant_id"], e["participant"]["name"]) for e in joins] == [(joined["participant_id"], "Dana")]
    # another meeting's transcript is out of this token's reach
    other = (await api.client.post(f"/v1/rooms/{room['id']}/meeting", json={}, headers=alice)).json()["id"]
    bad = base.replace("http", "ws") + f"/v1/transcripts_websocket/{other}?token={joined['token']}"
    async with websockets.connect(bad) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 4403
    await api.client.post(f"/v1/meetings/{other}/end", headers=alice)


async def test_meeting_dates_are_bounded(api: Api) -> None:
    alice = api.auth("alice-dates")
    room = await _room(api, alice)
    for bad in ({"start_date": "9999-12-31T23:59:59Z"}, {"end_date": "2000-01-01T00:00:00Z"},
                {"start_date": "2030-01-01T00:00:00Z", "end_date": "2029-01-01T00:00:00Z"},
                {"end_date": "2099-01-01T00:00:00Z"}, {"start_date": "2030-01-01T00:00:00"}):
        r = await api.client.post("/v1/meetings/", json={"room_id": room["id"], **bad}, headers=alice)
        assert r.status_code == 422, (bad, r.text)
    assert (await api.client.get("/v1/meetings/", headers=alice)).json()["total"] == 0


async def test_a_room_without_auto_summary_gets_no_summary(api: Api) -> None:
    alice = api.auth("alice-summary")
    done = {}
    for auto in (False, True):
        room = await _room(api, alice, auto_summary=auto, key_terms=["budget"])
        mid = (await api.client.post(f"/v1/rooms/{room['id']}/meeting", json={}, headers=alice)).json()["id"]
        await api.svc.store.save_segment(mid, {
            "text": "We agreed on the budget for next year and the travel costs.", "start": 0.0, "end": 3.0,
            "speaker": "Ann", "participant_id": "p-1", "confidence": 0.9, "words": []})
        assert (await api.client.post(f"/v1/meetings/{mid}/end", headers=alice)).status_code == 200
        done[auto] = mid
    for _ in range(300):
        if (await api.svc.store.get_transcript(done[True]))["summary"]:
            break
        await asyncio.sleep(0.1)
    off = await api.svc.store.get_transcript(done[False])
    assert (await api.svc.store.get_transcript(done[True]))["summary"] and not off["summary"]
    assert off["meta"]["key_terms"] == ["budget"]
