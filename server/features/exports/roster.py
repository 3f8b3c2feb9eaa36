"""Who spoke: declared participants, or diarized speakers standing in for them, with their ids."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from protocol.messages import participant_key
from server.features.speakers import LABEL, rename_only, resolve_speakers, shown_speaker, speaker_names


@dataclass
class Person:
    """One participant in the meeting-bot shapes: integer id, name, host flag, platform, extra data.

    ``sent`` is a participant's id as its stream (or the ``participants`` list) gave it, with its JSON type; the
    shapes carry it as ``extra_data.participant_id``, and an integer one is also the shapes' ``id``."""

    key: tuple[str, str | None]
    id: int = 0
    name: str | None = None
    is_host: bool | None = None
    platform: str | None = None
    extra_data: dict[str, Any] | None = None
    sent: str | int | None = None

    def full(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "is_host": self.is_host, "platform": self.platform,
                "extra_data": self.extra_data}

    def short(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}

    @property
    def label(self) -> str:
        return self.name or (f"Participant {self.id}" if self.key[0] != "default" else "Speaker")

    @property
    def participant_id(self) -> str | int | None:
        """The participant id as sent (``None`` for a speaker standing in)."""
        return self.sent if self.key[0] == "participant" else None

    @property
    def participant_key(self) -> str | None:
        """Its text form: what file names and the segments column use."""
        return self.key[1] if self.key[0] == "participant" else None


def _is_participant(pid: Any) -> TypeGuard[str | int]:
    """Whether a stored value names a participant (``0`` does; ``None`` and ``""`` are the anonymous stream)."""
    return pid is not None and pid != ""


def segment_key(seg: dict[str, Any], names: dict[str, str] | None = None) -> tuple[str, str | None]:
    if _is_participant(seg.get("participant_id")):
        return ("participant", participant_key(seg["participant_id"]))
    speaker = shown_speaker(seg, names) if names is not None else seg.get("speaker")
    if speaker:
        return ("speaker", str(speaker))
    return ("default", None)


class Roster:
    """The people of a transcript, in order of appearance.

    Live publishers that declared a ``participant`` are participants (their metadata from the transcript's
    ``participants`` list or their recorded ``join`` event); otherwise each diarized speaker stands in for
    one, and speech with no speaker at all belongs to one default participant (named ``default_name``,
    e.g. the kiosk conversation's participant). An integer participant id is its ``id``, and so is a text one
    that is a plain decimal; others are numbered from 1. ``extra_data.participant_id`` is the id as it was
    sent, JSON type kept: ``1`` stays ``1``, ``"007"`` stays ``"007"``. ``1`` and ``"1"`` are one participant.
    """

    def __init__(self, transcript: dict[str, Any], segments: list[dict[str, Any]],
                 default_name: str | None = None) -> None:
        self.names = speaker_names(transcript)  # renames: read-time, never written into segments
        segments = resolve_speakers(transcript, segments)
        events = participant_event_log(transcript)
        # the id as sent, by key: a stream's own (recorded events, then segments: resolved to the type sent)
        # before what the participants list says of it
        sent: dict[str, str | int] = {}
        for pid in [e.get("participant_id") for e in events] + [s.get("participant_id") for s in segments]:
            if _is_participant(pid):
                sent.setdefault(participant_key(pid), pid)
        renames = rename_only(transcript, segments, set(sent))
        declared: dict[str, dict[str, Any]] = {}
        for p in transcript.get("participants") or []:
            key = participant_key(p["id"]) if isinstance(p, dict) and p.get("id") is not None else None
            if key is not None and key not in renames:
                declared[key] = p
                sent.setdefault(key, p["id"])
        keys: list[tuple[str, str | None]] = [("participant", pid) for pid in declared]
        for ev in events:
            if _is_participant(ev.get("participant_id")):
                pid = participant_key(ev["participant_id"])
                keys.append(("participant", pid))
                if isinstance(ev.get("participant"), dict):  # what the stream declared, under what was set since
                    declared[pid] = {**ev["participant"], **declared.get(pid, {})}
        keys += [segment_key(s) for s in segments]
        self.people: dict[tuple[str, str | None], Person] = {}
        for key in dict.fromkeys(keys):
            self.people[key] = self._person(key, declared.get(key[1] or "", {}), segments, default_name,
                                            sent.get(key[1] or ""))
        taken = {number for p in self.people.values() if (number := meeting_number(p)) is not None}
        n = 0
        for person in self.people.values():
            number = meeting_number(person)
            if number is not None:
                person.id = number
                continue
            n += 1
            while n in taken:
                n += 1
            person.id = n

    @staticmethod
    def _person(key: tuple[str, str | None], meta: dict[str, Any], segments: list[dict[str, Any]],
                default_name: str | None, sent: str | int | None) -> Person:
        kind, value = key
        if kind == "participant":
            mine = [s for s in segments if participant_key(s.get("participant_id")) == value]
            spoken = next((s["speaker"] for s in mine if s.get("speaker")), None)  # resolved: renames included
            renamed = next((s["speaker"] for s in mine if s.get("speaker") != s.get(LABEL)), None)
            extra = meta.get("extra_data")
            extra = extra if isinstance(extra, dict) else {}
            is_host, platform = meta.get("is_host"), meta.get("platform")  # as declared, which may be anything
            return Person(key, name=_text(renamed or meta.get("name") or spoken or value),
                          is_host=is_host if isinstance(is_host, bool) else None, platform=_text(platform),
                          extra_data={**extra, "participant_id": sent}, sent=sent)
        if kind == "speaker":
            labels = sorted({s[LABEL] for s in segments if segment_key(s) == key and s.get(LABEL)})
            return Person(key, name=value, extra_data={"speaker": labels[0] if len(labels) == 1 else value})
        return Person(key, name=default_name)

    def of(self, seg: dict[str, Any]) -> Person:
        return self.people[segment_key(seg, self.names)]

    def by_participant_id(self, participant_id: str | int | None) -> Person | None:
        if participant_id is None:  # an event of the anonymous stream: the default participant's
            return self.people.get(("default", None))
        return self.people.get(("participant", participant_key(participant_id)))

    def __iter__(self):
        return iter(self.people.values())

    def __len__(self) -> int:
        return len(self.people)


MAX_PARTICIPANT_ID = 256
"""Longest participant id the API accepts (a live stream's is shorter still): any text up to it round-trips."""
_NUMERIC_ID = re.compile(r"0|[1-9][0-9]{0,8}")


def numeric_id(participant_id: str | None) -> int | None:
    """The number a text participant id keeps in the meeting downloads: only a plain decimal (ASCII digits, no
    leading zero, below 10^9). Not ``str.isdigit``: it is true of "²" and "٣", which ``int`` refuses or reads
    as another number, and "007" would take the number of "7"."""
    return int(participant_id) if participant_id is not None and _NUMERIC_ID.fullmatch(participant_id) else None


def meeting_number(person: Person) -> int | None:
    """The ``id`` a participant has in the meeting downloads, where it has one of its own: an integer id as it
    was sent (the protocol bounds it to JavaScript's safe integers), or a text id that is a plain decimal."""
    if person.key[0] != "participant":
        return None
    if isinstance(person.sent, int) and not isinstance(person.sent, bool):
        return person.sent
    return numeric_id(person.sent if isinstance(person.sent, str) else person.key[1])


def _text(value: Any) -> str | None:
    """A declared name or platform as text (a participants list is free-form JSON)."""
    return None if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def participant_event_log(transcript: dict[str, Any]) -> list[dict[str, Any]]:
    """Events recorded on the transcript (bot-sent ones, and join/leave of live participants)."""
    events = (transcript.get("meta") or {}).get("participant_events") or []
    return [e for e in events if isinstance(e, dict) and isinstance(e.get("type"), str)]
