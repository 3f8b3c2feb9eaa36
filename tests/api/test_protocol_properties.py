"""Properties of everything a live client can send: control messages, audio bytes, and both over a real socket.

* :func:`protocol.messages.parse_client_message` either returns one of the client action models or raises
  :class:`ProtocolError` with one of the parse codes, whatever it is given (any JSON value, any text, any bytes,
  each action with arbitrary or subtly wrong params); its error becomes a well-formed ``error`` message; a valid
  message survives a dump and a parse unchanged.
* Every decoder :func:`media.make_decoder` makes, for every format of ``AUDIO_FORMATS``, fed arbitrary bytes (and
  damaged real audio) in arbitrary splits, raises nothing but :class:`media.DecodeError` and only ever returns
  16 kHz mono float32 samples within [-1, 1].
* Over a real WebSocket, a client sending random text and binary messages only ever gets well-formed server
  messages back, keeps its connection, and a second subscriber of the same transcript is not disturbed.

Example counts are bounded (``settings(max_examples=...)``) so the file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from typing import Any

import av
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from media import DecodeError, make_decoder
from protocol.messages import (
    AUDIO_FORMATS,
    CLIENT_ACTIONS,
    SERVER_BODIES,
    ErrorCode,
    ProtocolError,
    encode,
    parse_client_message,
)
from tests.rest_support import AUDIO, Api, read_wav

pytest_plugins = ("tests.rest_fixtures",)

PARSE_CODES = {ErrorCode.INVALID_JSON, ErrorCode.INVALID_MESSAGE, ErrorCode.UNKNOWN_ACTION, ErrorCode.INVALID_PARAMS,
               ErrorCode.MESSAGE_TOO_LARGE}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
"""Any JSON value (infinities included: Python's json writes and reads them)."""


def check_parse(raw: str | bytes) -> BaseModel | None:
    """Parse, and hold the result to the contract: a client action model, or a ProtocolError with a parse code
    whose ``error`` message encodes to JSON."""
    try:
        message = parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.code in PARSE_CODES, exc.code
        wire = json.loads(encode(exc.to_message()))
        assert wire["type"] == "error" and wire["data"]["code"] == exc.code.value and wire["data"]["message"]
        return None
    assert type(message) in CLIENT_ACTIONS.values()
    return message


def assert_round_trips(message: BaseModel) -> None:
    again = parse_client_message(json.dumps(message.model_dump(mode="json")))
    assert again == message


# ---------------------------------------------------------------- control messages


@FAST
@given(json_values)
def test_any_json_value_is_an_action_or_a_protocol_error(value: Any) -> None:
    check_parse(json.dumps(value))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_numbers_json_does_not_have_are_refused(constant: str) -> None:
    """Python's JSON reader takes these, no JSON writer gives them back: a client sending them gets INVALID_JSON."""
    for raw in (f'{{"action": "participant_event", "params": {{"type": "x", "data": {{"v": {constant}}}}}}}',
                f'{{"action": "start", "params": {{"extra_data": {{"v": [{constant}]}}}}}}'):
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(raw)
        assert caught.value.code == ErrorCode.INVALID_JSON


@FAST
@given(st.integers(65, 30000), st.sampled_from(["[", '{"a":']), st.booleans())
def test_deeply_nested_json_is_invalid_json_not_a_crash(depth: int, opener: str, as_bytes: bool) -> None:
    """json.loads raised RecursionError on such a message, which escaped the receive loop and dropped the socket."""
    closer = "]" if opener == "[" else "}"
    raw = '{"action":"start","params":' + opener * depth + "1" + closer * depth + "}"
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw.encode() if as_bytes else raw)
    assert caught.value.code in (ErrorCode.INVALID_JSON, ErrorCode.MESSAGE_TOO_LARGE)


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_text_or_bytes_is_an_action_or_a_protocol_error(raw: str | bytes) -> None:
    check_parse(raw)


@FAST
@given(st.sampled_from(sorted(CLIENT_ACTIONS)), json_values, st.dictionaries(st.text(max_size=8), json_values,
                                                                              max_size=2))
def test_each_action_with_any_params(action: str, params: Any, extra: dict[str, Any]) -> None:
    message = check_parse(json.dumps({**extra, "action": action, "params": params}))
    if message is not None:
        assert message.action == action  # type: ignore[attr-defined]
        assert_round_trips(message)


participants = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=40)},
    optional={"name": st.none() | st.text(max_size=40), "is_host": st.none() | st.booleans(),
              "platform": st.none() | st.text(max_size=10), "extra_data": st.none() | st.dictionaries(
                  st.text(max_size=5), json_values, max_size=2)})
valid_start = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(AUDIO_FORMATS).flatmap(lambda f: st.sampled_from([f, f.upper()])),
    "sample_rate": st.integers(8000, 48000), "channels": st.integers(1, 8), "participant": st.none() | participants,
    "language": st.none() | st.text(max_size=16), "diarization": st.none() | st.booleans()})
START_FIELDS = ("format", "sample_rate", "channels", "participant", "split_channels", "channel_names", "language",
                "diarization")


@FAST
@given(valid_start)
def test_valid_start_messages_parse_and_round_trip(params: dict[str, Any]) -> None:
    message = parse_client_message(json.dumps({"action": "start", "params": params}))
    assert message.params is not None  # type: ignore[attr-defined]
    assert message.params.format == params.get("format", "pcm_s16le").lower()  # type: ignore[attr-defined]
    assert_round_trips(message)


@FAST
@given(valid_start, st.sampled_from(START_FIELDS), json_values, st.booleans(), st.lists(st.text(max_size=5),
                                                                                       max_size=10))
def test_start_with_one_wrong_field(params: dict[str, Any], field: str, wrong: Any, split: bool,
                                    names: list[str]) -> None:
    """Well-formed messages whose params are almost right: one field of any JSON value, channel options that
    contradict each other. Valid ones round-trip; the rest are INVALID_PARAMS."""
    params = {**params, field: wrong}
    if split:
        params.update(split_channels=True, channel_names=names)
    message = check_parse(json.dumps({"action": "start", "params": params}))
    if message is None:
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(json.dumps({"action": "start", "params": params}))
        assert caught.value.code == ErrorCode.INVALID_PARAMS
    else:
        assert_round_trips(message)


@FAST
@given(st.text(max_size=80), json_values)
def test_participant_events_round_trip_or_invalid_params(kind: str, data: Any) -> None:
    message = check_parse(json.dumps({"action": "participant_event", "params": {"type": kind, "data": data}}))
    if message is not None:
        assert 1 <= len(kind) <= 64 and isinstance(data, dict)
        assert_round_trips(message)
    else:
        assert not (1 <= len(kind) <= 64 and isinstance(data, dict))


# ---------------------------------------------------------------- audio decoders

ENCODINGS = {  # declared format -> (PyAV container, codec, rate) of a real encoding of it
    "webm": ("webm", "libopus", 48000), "ogg": ("ogg", "libopus", 48000), "opus": ("ogg", "libopus", 48000),
    "mp3": ("mp3", "libmp3lame", 16000), "wav": ("wav", "pcm_s16le", 16000), "flac": ("flac", "flac", 16000),
    "m4a": ("ipod", "aac", 16000), "mp4": ("mp4", "aac", 16000), "aac": ("adts", "aac", 16000),
}
_encoded: dict[str, bytes] = {}


def real_audio(fmt: str) -> bytes:
    """One second of real speech in ``fmt`` (raw PCM for the PCM formats), made once."""
    if fmt not in _encoded:
        samples, rate = read_wav(AUDIO / "single" / "librispeech_61-70968-0000.wav")
        pcm = samples[rate // 2: rate + rate // 2].astype(np.float32) / 32768
        if fmt == "pcm_s16le":
            _encoded[fmt] = (pcm * 32767).astype("<i2").tobytes()
        elif fmt == "pcm_f32le":
            _encoded[fmt] = pcm.astype("<f4").tobytes()
        else:
            container, codec, out_rate = ENCODINGS[fmt]
            buf = io.BytesIO()
            with av.open(buf, mode="w", format=container) as out:
                stream = out.add_stream(codec, rate=out_rate, layout="mono")
                resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
                frame = av.AudioFrame.from_ndarray(pcm[None, :], format="fltp", layout="mono")
                frame.sample_rate = rate
                for resampled in resampler.resample(frame) + resampler.resample(None):
                    for packet in stream.encode(resampled):
                        out.mux(packet)
                for packet in stream.encode(None):
                    out.mux(packet)
            _encoded[fmt] = buf.getvalue()
    return _encoded[fmt]


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """Real audio cut short and with a few bytes overwritten: the decoder gets past the header into the codec."""
    data = bytearray(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_decoder_contract(fmt: str, rate: int, channels: int, pieces: list[bytes]) -> None:
    decoder = make_decoder(fmt, rate, channels)
    try:
        outputs = []
        try:
            for piece in pieces:
                outputs.append(decoder.feed(piece))
            outputs.append(decoder.flush())
        except DecodeError as exc:
            assert exc.message
        for out in outputs:
            assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1, (out.dtype, out.shape)
            assert np.all(np.isfinite(out)) and (out.size == 0 or float(np.abs(out).max()) <= 1.0)
    finally:
        decoder.close()


formats = st.sampled_from(AUDIO_FORMATS)
rates = st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]) | st.integers(8000, 48000)
cut_lists = st.lists(st.integers(0, 1 << 20), max_size=6)


@settings(max_examples=80, deadline=None)
@given(formats, rates, st.integers(1, 8), st.binary(max_size=600), cut_lists)
def test_decoders_take_arbitrary_bytes(fmt: str, rate: int, channels: int, data: bytes, cuts: list[int]) -> None:
    check_decoder_contract(fmt, rate, channels, splits(data, cuts))


@settings(max_examples=80, deadline=None)
@given(formats.flatmap(lambda f: st.tuples(st.just(f), damaged(real_audio(f)))), cut_lists)
def test_decoders_take_damaged_real_audio(fmt_data: tuple[str, bytes], cuts: list[int]) -> None:
    fmt, data = fmt_data
    check_decoder_contract(fmt, 16000, 1, splits(data, cuts))


# ---------------------------------------------------------------- a live WebSocket

SERVER_MODELS = {body.TYPE: body for body in SERVER_BODIES}

control_messages = st.one_of(
    st.text(max_size=100),
    json_values.map(json.dumps),
    st.builds(lambda a, p: json.dumps({"action": a, "params": p}), st.sampled_from(sorted(CLIENT_ACTIONS)),
              json_values),
    valid_start.map(lambda p: json.dumps({"action": "start", "params": p})),
)
client_messages = st.lists(st.one_of(control_messages, st.binary(max_size=2000)), min_size=1, max_size=8)


def well_formed(raw: str) -> dict[str, Any]:
    message = json.loads(raw)
    assert set(message) == {"type", "data"}, message
    SERVER_MODELS[message["type"]].model_validate(message["data"])  # a known type, a valid body
    if message["type"] == "error":
        assert message["data"]["code"] in {c.value for c in ErrorCode}, message
    return message


def read_until_barrier(ws: Any, barrier: str) -> list[dict[str, Any]]:
    """Messages until the error answering the barrier: control messages are answered in order."""
    got = []
    while True:
        message = well_formed(ws.recv(timeout=30))
        got.append(message)
        data = message["data"]
        if message["type"] == "error" and data.get("details", {}).get("action") == barrier:
            return got


def new_transcript(base: str) -> str:
    r = httpx.post(f"{base}/v1/transcripts/", json={"name": "fuzzed live"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def fuzz_socket(base: str) -> None:
    ws_base = base.replace("http://", "ws://")

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(client_messages)
    def run(messages: list[str | bytes]) -> None:
        tid = new_transcript(base)
        url = f"{ws_base}/v1/transcripts_websocket/{tid}"
        with connect(url, max_size=None) as fuzzer, connect(url, max_size=None) as other:
            for message in messages:
                fuzzer.send(message)
            barrier = f"barrier-{uuid.uuid4().hex}"
            fuzzer.send(json.dumps({"action": barrier}))
            seen = read_until_barrier(fuzzer, barrier)
            assert seen[-1]["data"]["code"] == ErrorCode.UNKNOWN_ACTION
            # still open and answering: the fuzzer's connection, and the other subscriber's
            for ws in (fuzzer, other):
                mark = f"barrier-{uuid.uuid4().hex}"
                ws.send(json.dumps({"action": mark}))
                others = read_until_barrier(ws, mark)
                if ws is other:  # errors answer their sender only: the other one saw none of the fuzzer's
                    assert [m for m in others if m["type"] == "error"] == [others[-1]], others
            fuzzer.send(json.dumps({"action": "stop"}))

    try:
        run()
    except ConnectionClosed as exc:  # pragma: no cover - a failure's message, not a path
        raise AssertionError(f"the server closed a fuzzed connection: {exc!r}") from exc


async def test_random_messages_over_a_live_websocket(public_api: Api) -> None:
    base = await public_api.serve()
    await asyncio.to_thread(fuzz_socket, base)
