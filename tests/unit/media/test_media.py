"""media/: every accepted input becomes 16 kHz mono float32, checked on real speech."""

from __future__ import annotations

import io
import struct
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from media import (
    SAMPLE_RATE,
    AudioTooLong,
    ContainerDecoder,
    DecodeError,
    PcmDecoder,
    Resampler,
    WavAppender,
    decode_file,
    downmix,
    float_to_s16,
    iter_decode_file,
    make_decoder,
    pcm_bytes_to_float,
    probe_file,
    read_wav_range,
    s16_to_float,
)
from media.frames import BUDGET_SLACK_SAMPLES, decode_blocks
from tests.decode_bombs import flac_bomb, opus_bomb, wav_bomb

AUDIO = Path(__file__).resolve().parents[4] / "shared" / "audio"
SPEECH = AUDIO / "single" / "librispeech_2412-153948-0000.wav"
STEREO = AUDIO / "multi" / "stereo_2spk_one_per_channel.wav"

assert SPEECH.exists(), f"real speech corpus missing at {AUDIO}"


def _read_wav(path: Path) -> tuple[bytes, int, int]:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()


@pytest.fixture(scope="module")
def speech_bytes() -> bytes:
    data, rate, channels = _read_wav(SPEECH)
    assert (rate, channels) == (16000, 1)
    return data


@pytest.fixture(scope="module")
def speech(speech_bytes: bytes) -> np.ndarray:
    return s16_to_float(speech_bytes)


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def _aligned_correlation(ref: np.ndarray, got: np.ndarray, max_lag: int = 1600) -> float:
    """Pearson correlation at the best lag within +-100 ms: codecs and resamplers may shift audio a little."""
    n = min(len(ref), len(got))
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(got[:n], size) * np.conj(np.fft.rfft(ref[:n], size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(np.r_[xc[: max_lag + 1], xc[-max_lag:]])])
    a, b = (ref[: n - lag], got[lag:n]) if lag >= 0 else (ref[-lag:n], got[: n + lag])
    return float(np.corrcoef(a, b)[0, 1])


def _upsample_48k(speech: np.ndarray) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
    frame = av.AudioFrame.from_ndarray(speech.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 16000
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def _encode(speech_bytes: bytes, container: str, codec: str, rate: int) -> bytes:
    pcm = np.frombuffer(speech_bytes, dtype="<i2").astype(np.float32) / 32768
    return _encode_frames(pcm[None, :], container, codec, rate)


def _encode_frames(frames: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    """(channels, samples) float32 at 16 kHz, encoded into a container as a 1- or 2-channel stream."""
    layout = "mono" if frames.shape[0] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(frames, dtype=np.float32), format="fltp",
                                           layout=layout)
        frame.sample_rate = 16000
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# ---------------------------------------------------------------- PCM helpers


def test_s16_float_round_trip_is_exact(speech_bytes: bytes) -> None:
    assert float_to_s16(s16_to_float(speech_bytes)) == speech_bytes
    clipped = float_to_s16(np.array([2.0, -2.0, 1.0], dtype=np.float32))
    assert clipped == struct.pack("<3h", 32767, -32768, 32767)


def test_pcm_bytes_to_float_shapes_and_partial_frames() -> None:
    data = struct.pack("<4h", 16384, -16384, 8192, 0) + b"\x01"  # two stereo frames + a stray byte
    x = pcm_bytes_to_float(data, "pcm_s16le", 2)
    assert x.shape == (2, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x, [[0.5, -0.5], [0.25, 0.0]])
    f = pcm_bytes_to_float(np.array([0.5, np.nan, 3.0], dtype="<f4").tobytes(), "pcm_f32le", 1)
    np.testing.assert_array_equal(f[:, 0], [0.5, 0.0, 1.0])
    with pytest.raises(DecodeError, match="unsupported PCM format"):
        pcm_bytes_to_float(b"", "pcm_u8", 1)


def test_downmix_keeps_unity_gain_and_range() -> None:
    mono = np.linspace(-1, 1, 101, dtype=np.float32)
    np.testing.assert_array_equal(downmix(np.stack([mono, mono], axis=1)), mono)
    loud = np.ones((10, 2), dtype=np.float32)
    assert downmix(loud).max() == 1.0
    assert downmix(mono) is mono


# ---------------------------------------------------------------- resampling


def test_resampler_streaming_matches_one_shot_and_length(speech: np.ndarray) -> None:
    one = Resampler(16000, 44100)
    whole = np.concatenate([one.process(speech), one.flush()])
    chunked = Resampler(16000, 44100)
    parts = [chunked.process(speech[i:i + 777]) for i in range(0, len(speech), 777)]
    streamed = np.concatenate([*parts, chunked.flush()])
    assert abs(len(whole) - len(speech) * 44100 / 16000) <= 4
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    assert abs(_rms_db(whole) - _rms_db(speech)) < 0.2


def test_resampler_same_rate_is_passthrough(speech: np.ndarray) -> None:
    r = Resampler(16000)
    assert r.passthrough
    assert np.array_equal(r.process(speech), speech)
    assert r.flush().size == 0


# ---------------------------------------------------------------- PcmDecoder


def test_pcm_s16_16k_passes_through_exactly(speech_bytes: bytes, speech: np.ndarray) -> None:
    dec = PcmDecoder("pcm_s16le", 16000, 1)
    out = np.concatenate([dec.feed(speech_bytes), dec.flush()])
    assert out.dtype == np.float32
    assert np.array_equal(out, speech)


def test_pcm_odd_sized_chunks_equal_one_feed(speech_bytes: bytes) -> None:
    stereo = np.repeat(np.frombuffer(speech_bytes, dtype="<i2")[:48000], 2).tobytes()
    one = make_decoder("pcm_s16le", 44100, 2)
    whole = np.concatenate([one.feed(stereo), one.flush()])
    dec = make_decoder("pcm_s16le", 44100, 2)
    parts = [dec.feed(stereo[i:i + 333]) for i in range(0, len(stereo), 333)]
    chunked = np.concatenate([*parts, dec.flush()])
    assert len(chunked) == len(whole)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_48k_stereo_comes_back_as_16k_mono_at_unity_gain(speech: np.ndarray) -> None:
    up = _upsample_48k(speech)
    stereo = float_to_s16(np.repeat(up, 2))
    dec = PcmDecoder("pcm_s16le", 48000, 2)
    chunk = 960 * 2 * 2  # 20 ms of 48 kHz stereo s16
    parts = [dec.feed(stereo[i:i + chunk]) for i in range(0, len(stereo), chunk)]
    out = np.concatenate([*parts, dec.flush()])
    assert (dec.input_sample_rate, dec.input_channels) == (48000, 2)
    assert abs(len(out) - len(speech)) <= 0.02 * SAMPLE_RATE
    assert abs(_rms_db(out) - _rms_db(speech)) < 1.0
    assert _aligned_correlation(speech, out) > 0.95


def test_pcm_f32_and_split_channels() -> None:
    data, _, _ = _read_wav(STEREO)
    frames = s16_to_float(data).reshape(-1, 2)
    dec = make_decoder("pcm_f32le", 16000, 2, split_channels=True)
    assert isinstance(dec, PcmDecoder)
    raw = frames.astype("<f4").tobytes()
    parts = [dec.feed_channels(raw[i:i + 1001]) for i in range(0, len(raw), 1001)]
    left = np.concatenate([p[0] for p in parts])
    right = np.concatenate([p[1] for p in parts])
    np.testing.assert_array_equal(left, frames[:, 0])
    np.testing.assert_array_equal(right, frames[:, 1])


# ---------------------------------------------------------------- ContainerDecoder


@pytest.mark.parametrize(
    ("fmt", "container", "codec", "rate"),
    [
        ("ogg", "ogg", "libopus", 48000),
        ("webm", "webm", "libopus", 48000),
        ("mp3", "mp3", "libmp3lame", 16000),
        ("m4a", "ipod", "aac", 16000),
        ("flac", "flac", "flac", 16000),
    ],
)
def test_container_stream_decodes_real_speech(
    speech_bytes: bytes, speech: np.ndarray, fmt: str, container: str, codec: str, rate: int
) -> None:
    encoded = _encode(speech_bytes, container, codec, rate)
    dec = ContainerDecoder(fmt)
    parts = [dec.feed(encoded[i:i + 4000]) for i in range(0, len(encoded), 4000)]
    out = np.concatenate([*parts, dec.flush()])
    dec.close()
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(speech)) / SAMPLE_RATE < 0.1 + (0.1 if fmt == "m4a" else 0)
    assert dec.input_sample_rate == rate and dec.input_channels == 1
    assert np.abs(out).max() <= 1.0
    assert abs(_rms_db(out) - _rms_db(speech)) < 1.0
    assert _aligned_correlation(speech, out) > (0.99 if fmt == "flac" else 0.9)


def test_container_output_arrives_before_end_of_stream(speech_bytes: bytes) -> None:
    encoded = _encode(speech_bytes, "webm", "libopus", 48000)
    dec = ContainerDecoder("audio/webm;codecs=opus")
    got = sum(len(dec.feed(encoded[i:i + 4000])) for i in range(0, len(encoded) // 2, 4000))
    deadline = time.monotonic() + 5
    while got <= 2 * SAMPLE_RATE and time.monotonic() < deadline:
        time.sleep(0.01)
        got += len(dec.feed(b""))
    assert got > 2 * SAMPLE_RATE  # live audio flows without waiting for the end of the stream
    dec.close()


def test_mislabelled_container_is_decoded_as_what_it_is(speech_bytes: bytes) -> None:
    dec = ContainerDecoder("webm")
    out = np.concatenate([dec.feed(_encode(speech_bytes, "ogg", "libopus", 48000)), dec.flush()])
    assert dec.detected_format == "ogg"
    assert abs(len(out) - len(speech_bytes) // 2) < 0.1 * SAMPLE_RATE


def test_garbage_bytes_raise_decode_error_quickly(speech_bytes: bytes) -> None:
    start = time.monotonic()
    dec = ContainerDecoder("webm")
    with pytest.raises(DecodeError, match="does not look like webm"):
        for _ in range(10):
            dec.feed(b"\x00not audio at all" * 250)
    # A valid header followed by junk can only fail once the stream ends; it must not hang either.
    dec = ContainerDecoder("webm")
    dec.feed(_encode(speech_bytes, "webm", "libopus", 48000)[:300])
    with pytest.raises(DecodeError):
        dec.feed(b"\x00junk" * 2000)
        dec.flush()
    dec.close()
    assert time.monotonic() - start < 5


def test_unsupported_format_names_are_rejected() -> None:
    with pytest.raises(DecodeError, match="unsupported audio format"):
        make_decoder("avi", 16000, 1)
    with pytest.raises(DecodeError, match="unsupported sample rate"):
        make_decoder("pcm_s16le", 100, 1)


def _encode_stereo(frames: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    return _encode_frames(frames.T, container, codec, rate)


@pytest.mark.parametrize(("fmt", "codec", "rate"), [("flac", "flac", 16000), ("ogg", "libopus", 48000)])
def test_container_split_channels_keeps_each_channel(fmt: str, codec: str, rate: int) -> None:
    """An encoded stereo stream decoded per channel: each output is its own channel, not a downmix."""
    data, _, _ = _read_wav(STEREO)
    frames = s16_to_float(data).reshape(-1, 2)
    encoded = _encode_stereo(frames, fmt, codec, rate)
    dec = make_decoder(fmt, 16000, 2, split_channels=True)
    assert isinstance(dec, ContainerDecoder)
    parts = [dec.feed_channels(encoded[i:i + 3000]) for i in range(0, len(encoded), 3000)]
    parts.append(dec.flush_channels())
    dec.close()
    assert all(len(p) == 2 for p in parts)
    left, right = (np.concatenate([p[c] for p in parts]) for c in (0, 1))
    assert len(left) == len(right) and abs(len(left) - len(frames)) < 0.05 * SAMPLE_RATE
    for got, ref, other in ((left, frames[:, 0], frames[:, 1]), (right, frames[:, 1], frames[:, 0])):
        assert _aligned_correlation(ref, got) > (0.99 if fmt == "flac" else 0.9)
        assert _aligned_correlation(other, got) < 0.5
    # a stream whose channels are not the declared ones is refused rather than mislabelled
    mono = make_decoder(fmt, 16000, 1, split_channels=True)
    with pytest.raises(DecodeError, match="2 channel"):
        for i in range(0, len(encoded), 3000):
            mono.feed_channels(encoded[i:i + 3000])
        mono.flush_channels()
    mono.close()


def test_iter_decode_file_split_channels() -> None:
    data, _, _ = _read_wav(STEREO)
    frames = s16_to_float(data).reshape(-1, 2)
    chunks = list(iter_decode_file(STEREO, chunk_seconds=2.0, split_channels=2))
    assert [c.shape for c in chunks[:-1]] == [(2 * SAMPLE_RATE, 2)] * (len(chunks) - 1)
    np.testing.assert_array_equal(np.concatenate(chunks), frames)
    wider = np.concatenate(list(iter_decode_file(STEREO, chunk_seconds=2.0, split_channels=3)))
    np.testing.assert_array_equal(wider[:, :2], frames)
    assert not wider[:, 2].any()  # a channel the file does not have is silence


# ---------------------------------------------------------------- files


def test_decode_file_probe_and_chunked_iteration(speech: np.ndarray) -> None:
    out = decode_file(SPEECH)
    assert isinstance(out, np.ndarray)
    assert np.array_equal(out, speech)
    info = probe_file(SPEECH)
    assert info["sample_rate"] == 16000 and info["channels"] == 1 and info["codec"] == "pcm_s16le"
    assert info["duration"] == pytest.approx(len(speech) / 16000, abs=0.01)
    chunks = list(iter_decode_file(SPEECH, chunk_seconds=5.0))
    assert [len(c) for c in chunks[:-1]] == [5 * SAMPLE_RATE] * (len(chunks) - 1)
    assert np.array_equal(np.concatenate(chunks), speech)


def test_probe_measures_duration_of_streamed_webm(tmp_path: Path, speech_bytes: bytes) -> None:
    path = tmp_path / "rec.webm"
    path.write_bytes(_encode(speech_bytes, "webm", "libopus", 48000))
    info = probe_file(path)
    assert info["codec"] == "opus" and info["channels"] == 1
    assert info["duration"] == pytest.approx(len(speech_bytes) / 2 / 16000, abs=0.1)


def test_decode_file_split_channels_on_stereo_file() -> None:
    left, right = decode_file(STEREO, split_channels=True)
    data, _, _ = _read_wav(STEREO)
    frames = s16_to_float(data).reshape(-1, 2)
    np.testing.assert_array_equal(left, frames[:, 0])
    np.testing.assert_array_equal(right, frames[:, 1])
    assert abs(np.corrcoef(left, right)[0, 1]) < 0.5  # one speaker per channel
    mono = decode_file(STEREO)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)


def test_decode_file_rejects_corrupt_and_audio_less_files(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(SPEECH.read_bytes()[:30])
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(SPEECH.read_bytes()[:44])
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    for path in (truncated, header_only, garbage, tmp_path / "missing.wav"):
        with pytest.raises(DecodeError, match=path.name):
            decode_file(path)
    with pytest.raises(DecodeError):
        probe_file(garbage)

    video_only = tmp_path / "video.mkv"
    with av.open(str(video_only), mode="w") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        for packet in [*stream.encode(frame.reformat(format="yuvj420p")), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(DecodeError, match="no audio stream"):
        decode_file(video_only)


# ---------------------------------------------------------------- WAV recording


def test_wav_appender_syncs_valid_file_and_continues(tmp_path: Path, speech: np.ndarray) -> None:
    path = tmp_path / "rec.wav"
    rec = WavAppender(path)
    for i in range(0, 80000, 7919):
        rec.append(speech[i:min(i + 7919, 80000)])
    rec.sync()
    with wave.open(str(path)) as w:  # readable while still open for appending
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() == 80000
        assert w.readframes(80000) == float_to_s16(speech[:80000])
    rec.close()
    rec.close()  # idempotent

    with WavAppender(path) as more:
        assert more.frames == 80000
        more.append(speech[80000:])
        assert more.duration == pytest.approx(len(speech) / 16000)
    with wave.open(str(path)) as w:
        assert w.readframes(w.getnframes()) == float_to_s16(speech)
    np.testing.assert_array_equal(read_wav_range(path, 1.0, 2.5), speech[16000:40000])
    assert read_wav_range(path, 100.0, 200.0).size == 0


def test_wav_appender_recovers_audio_after_header_lag(tmp_path: Path, speech: np.ndarray) -> None:
    """A crash between syncs leaves a stale size in the header; the audio after it must not be lost."""
    path = tmp_path / "crashed.wav"
    with WavAppender(path) as rec:
        rec.append(speech[:16000])
    with open(path, "ab") as f:  # bytes written after the last sync, plus half a frame
        f.write(float_to_s16(speech[16000:24000]) + b"\x01")
    assert read_wav_range(path, 0, 10).size == 24000
    with WavAppender(path) as rec:
        assert rec.frames == 24000
        rec.append(speech[24000:32000])
    with wave.open(str(path)) as w:
        assert w.readframes(w.getnframes()) == float_to_s16(speech[:32000])
    with pytest.raises(DecodeError, match="cannot append"):
        WavAppender(path, sample_rate=8000)


# ---------------------------------------------------------------- decode budget (decompression bombs)

BOMBS = {"flac": flac_bomb, "wav": wav_bomb, "opus": opus_bomb}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_decode_budget_is_counted_from_decoded_samples_not_the_header(tmp_path: Path, kind: str) -> None:
    """A file whose header claims 1 s but holds 2 minutes stops at the budget: what is yielded stays within
    it, AudioTooLong carries the limit, and a budget the file fits decodes it whole."""
    path = BOMBS[kind](tmp_path / f"bomb.{kind}", seconds=120.0, claimed=1.0)
    assert path.stat().st_size < 2_000_000
    assert probe_file(path)["duration"] == pytest.approx(1.0, abs=0.1), "the header lies"

    got = 0
    with pytest.raises(AudioTooLong) as raised:
        for block in iter_decode_file(path, chunk_seconds=10.0, max_seconds=30.0):
            got += len(block)
    assert raised.value.limit_seconds == 30.0 and "30 s" in raised.value.message
    assert isinstance(raised.value, DecodeError), "callers that catch DecodeError refuse it too"
    assert 20 * SAMPLE_RATE <= got <= 30 * SAMPLE_RATE, "yielded up to the limit, never past it"

    with pytest.raises(AudioTooLong):
        decode_file(path, max_seconds=30.0)
    with pytest.raises(AudioTooLong):
        decode_file(path, split_channels=True, max_seconds=30.0)
    assert len(decode_file(path, max_seconds=121.0)) == pytest.approx(120 * SAMPLE_RATE, abs=SAMPLE_RATE // 10)


def test_decode_budget_stops_decoding_at_the_limit(tmp_path: Path) -> None:
    """The decoder itself stops: a one-hour bomb with a 5 s budget raises after about 5 s of blocks, and
    the limit applies to a file of exactly that length only past a few samples of slack."""
    path = flac_bomb(tmp_path / "hour.flac", seconds=3600.0, claimed=1.0)
    assert path.stat().st_size < 1_000_000
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        with pytest.raises(AudioTooLong):
            for block in decode_blocks(container, stream, "bomb", max_seconds=5.0):
                decoded += len(block)
        assert decoded <= 5 * SAMPLE_RATE + BUDGET_SLACK_SAMPLES
        next_packet = next(container.demux(stream))
        assert next_packet.pts is not None and next_packet.pts * next_packet.time_base < 10, \
            "the demuxer is still near the limit, not at the end of the hour"
    exact = flac_bomb(tmp_path / "exact.flac", seconds=5.0, claimed=5.0)
    assert len(decode_file(exact, max_seconds=5.0)) == 5 * SAMPLE_RATE


@pytest.mark.parametrize("fmt,bomb", [("flac", flac_bomb), ("ogg", opus_bomb)])
def test_a_live_stream_that_inflates_is_handed_over_in_bounded_pieces(tmp_path: Path, fmt: str, bomb) -> None:
    """A live frame of compressed silence can hold an hour: the decode thread inflated all of it into memory
    for the next feed() to return. It now waits while ``max_buffered_seconds`` are waiting for the caller,
    and flush() hands over at most that much more."""
    data = bomb(tmp_path / f"bomb.{fmt}", seconds=1200).read_bytes()
    assert len(data) < 400_000
    decoder = ContainerDecoder(fmt, max_buffered_seconds=5)
    try:
        sizes = []
        for i in range(0, len(data), 64 * 1024):
            sizes.append(len(decoder.feed(data[i:i + 64 * 1024])))
            time.sleep(0.2)  # the decode thread has time to run ahead, as between a live client's frames
        deadline = time.monotonic() + 20
        while sum(sizes) < 30 * 16000 and time.monotonic() < deadline:  # a loaded machine: wait for the thread
            sizes.append(len(decoder.feed(b"")))
            time.sleep(0.2)
        assert sum(sizes) >= 30 * 16000 and max(sizes) <= 5.5 * 16000
        assert len(decoder.flush()) <= 5.5 * 16000
    finally:
        decoder.close()
