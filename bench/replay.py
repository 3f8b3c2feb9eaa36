"""``voxlane bench --replay``: the live pipeline on simulated time, for comparing settings exactly.

Two real-time runs of the same code on a shared machine differ by more than most policy changes
move the figures (N=4 commit p95 from 3.65 to 4.99 s on one 2-core machine). The replay runs the
same files through the same ``StreamSession`` and the same ``InferenceLoop`` scheduling, with the
real model decoding every window, but on a simulated clock: audio arrives at real-time pace and a
decode takes a modelled time (a fixed cost plus a cost per second of window, as measured on the
machine one cares about). A run is reproducible to the word, so a change to the commit policy can
be judged on its own effect, and its latencies are those of a machine with that decode speed.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.backends import AsrBackend, DecodeRequest, DecodeResult
from asr.inference import Build, InferenceLoop, Priority
from asr.session import StreamConfig, StreamSession
from asr.vad import SileroModel
from media import SAMPLE_RATE
from protocol import Error, Status, Transcription, envelope
from server.cli.live_client import Received, StreamRecord
from server.pipeline.convert import wire_emit, wire_report


@dataclass(frozen=True)
class DecodeCost:
    """Modelled time of one decode: ``fixed`` seconds (the 30 s encoder pass and the decoder's start)
    plus ``per_second`` for each second of audio in the window; a batch costs the sum of its requests
    (a CPU's figure: on a GPU a batch of eight small-model windows cost three to five single decodes, so a
    replay of GPU costs overcharges batches; ``voxlane bench --decode-costs`` measures both)."""

    fixed: float = 0.3
    per_second: float = 0.015

    @classmethod
    def parse(cls, text: str) -> DecodeCost:
        fixed, per_second = (float(x) for x in text.split(","))
        return cls(fixed, per_second)

    def of(self, samples: int, passes: int = 1, encoded_s: float = 30.0) -> float:
        """A re-decoded tail or a retry without prompt is one more fixed cost (its audio is small; a retry
        reuses the encoder's output, but its looping first reading generated its whole token budget). The
        fixed cost is the encoder's pass over ``encoded_s`` seconds: a hurried decode encodes less than 30."""
        return self.fixed * passes * min(1.0, encoded_s / 30) + self.per_second * samples / SAMPLE_RATE


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


class _SimulatedSelector(selectors.DefaultSelector):
    """Where the event loop would block until its next timer, time jumps there instead."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("replay stalled: every task waits and no timer is set")
        self._clock.now += timeout
        return []


def simulated_loop() -> asyncio.AbstractEventLoop:
    clock = _Clock()
    loop = asyncio.SelectorEventLoop(_SimulatedSelector(clock))
    loop.time = clock.time  # type: ignore[method-assign]
    return loop


class SimulatedInferenceLoop(InferenceLoop):
    """The inference loop's scheduling, run as a task on the simulated clock instead of a thread."""

    def __init__(self, backend: AsrBackend, cost: DecodeCost, partial_max_wait: float = 1.5,
                 step_s: float = 0.0) -> None:
        self.cost = cost  # before the loop's start asks it for the warm-up decode
        super().__init__(backend, partial_max_wait=partial_max_wait, clock=asyncio.get_running_loop().time,
                         step_s=step_s)
        self.busy = 0.0  # simulated seconds spent decoding
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _warm_up_full_decode(self) -> float | None:
        """The modelled machine's, not this one's: the backend's warm-up timing would make the replay depend on
        where it runs. The warm-up reads quiet noise, which the decoder writes next to nothing for, so it costs
        the model's fixed part: the encoder's pass (a 2-core Xeon, ``0.45,0.012``: 0.45 s, where the server
        timed 0.35 s; the AVX2 EPYC's line from ``--decode-costs``, ``0.437,0.0743``: 0.44 s against 0.63)."""
        return self.cost.of(0)

    @property
    def lanes(self) -> int:
        """The simulated clock charges one decode at a time, whatever the backend could run at once."""
        return 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def stop(self, timeout: float = 0.0) -> None:
        if self._task is not None:
            self._task.cancel()

    def schedule(self, key: str, priority: Priority, build: Build) -> asyncio.Future:
        future = super().schedule(key, priority, build)
        self._ready.set()
        return future

    def _spent(self, built: list[Any], results: list[DecodeResult], measured: float) -> float:
        """The modelled time of the batch, not the time the real model took here: stats, observers and the
        clock all see the machine being modelled."""
        encoded = self._encoded_seconds([req for _, req, _ in built])
        charged = sum(self.cost.of(len(req.audio), res.passes, encoded)
                      for (_, req, _), res in zip(built, results, strict=True))
        self.busy += charged
        return charged

    def _encoded_seconds(self, reqs: list[DecodeRequest]) -> float:
        """What the backend's encoder reads for this batch: one span for all its requests, as it pads them."""
        seconds = getattr(self.backend, "encoder_seconds", None)  # a backend that encodes less when hurried
        return seconds(reqs) if seconds is not None else 30.0

    async def _serve(self) -> None:
        while True:
            with self._cond:
                batch, hurried = self._take_batch() if self._waiting() else ([], False)
            if not batch:
                self._ready.clear()
                await self._ready.wait()
                continue
            try:
                built = self._build(batch, hurried)
                if built:
                    busy = self.busy
                    results = self._decode(built)
                    await asyncio.sleep(self.busy - busy)  # what _decode charged (see _spent)
                    self._deliver(built, results)
            finally:
                self._served(batch)


async def replay_stream(name: str, audio: np.ndarray, engine: InferenceLoop, vad_model: SileroModel,
                        config: StreamConfig, chunk_ms: int = 100, status_interval: float = 1.0) -> StreamRecord:
    """Feed ``audio`` at real-time pace as the bench client sends it, recording what a subscriber gets."""
    loop = asyncio.get_running_loop()
    rec = StreamRecord(name, audio_seconds=len(audio) / SAMPLE_RATE)

    def record(body: Any) -> None:
        rec.received.append(Received(loop.time(), envelope(body)))

    async def deliver(msg: Transcription | Error) -> None:
        record(msg)

    session = StreamSession(engine=engine, vad_model=vad_model, emit=wire_emit(deliver), config=config, key=name,
                            report=wire_report(deliver))
    session.start()
    step = int(SAMPLE_RATE * chunk_ms / 1000)
    rec.started = loop.time()
    next_status = status_interval
    for i in range(0, len(audio), step):
        await asyncio.sleep(max(0.0, rec.started + i / SAMPLE_RATE - loop.time()))
        chunk = audio[i:i + step]
        session.feed(chunk)
        rec.sent.append(((i + len(chunk)) / SAMPLE_RATE, loop.time()))
        if loop.time() - rec.started >= next_status:
            next_status += status_interval
            record(Status(status="processing", stage="transcription", message="live",
                          lag_seconds=round(session.lag_seconds, 3)))
    rec.stopped = loop.time()
    await session.finish()
    rec.completed = loop.time()
    return rec


async def replay_level(n: int, files: list[str], audio: dict[str, np.ndarray], backend: AsrBackend,
                       vad_model: SileroModel, config: StreamConfig, cost: DecodeCost,
                       chunk_ms: int = 100) -> tuple[list[str], list[StreamRecord], float]:
    """N streams at once (files repeat when N is larger than the list); returns the files, their records
    and the share of simulated time the model was busy."""
    chosen = files if n <= len(files) else [files[i % len(files)] for i in range(n)]
    queue = list(enumerate(chosen))
    records: list[Any] = [None] * len(chosen)
    engine = SimulatedInferenceLoop(backend, cost, step_s=config.min_step_s)  # as the server sizes it
    engine.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def slot() -> None:
        while queue:
            i, f = queue.pop(0)
            records[i] = await replay_stream(f"{i}:{f}", audio[f], engine, vad_model, config, chunk_ms)

    await asyncio.gather(*(slot() for _ in range(n)))
    engine.stop()
    elapsed = loop.time() - t0
    return chosen, records, engine.busy / elapsed if elapsed else 0.0


def replay_config(overrides: list[str]) -> StreamConfig:
    """The server's stream settings (``VOXLANE_*`` variables apply), then ``FIELD=VALUE`` overrides."""
    from server.pipeline.configs import stream_config
    from server.settings import Settings

    config = stream_config(Settings.from_sources())
    for item in overrides:
        name, _, value = item.partition("=")
        if not hasattr(config, name) or name in ("vad", "priority"):
            raise SystemExit(f"voxlane bench: --set {item}: no stream setting {name!r}")
        current = getattr(config, name)
        kind = type(current) if current is not None else str
        setattr(config, name, kind(value) if kind is not bool else value.lower() in ("1", "true", "on"))
    return config


def run_replay(args: Any, levels: list[int], files: list[str], refs: dict[str, Any],
               audio: dict[str, np.ndarray]) -> dict[str, Any]:
    from asr.backends import make_backend
    from bench.metrics import fmt, level_figures
    from server.pipeline.configs import backend_config
    from server.settings import Settings

    settings = Settings.from_sources()
    config = replay_config(args.set)
    cost = DecodeCost.parse(args.decode_cost)
    backend = make_backend(backend_config(settings))
    vad_model = SileroModel()
    result: dict[str, Any] = {"replay": True, "decode_cost": [cost.fixed, cost.per_second], "set": args.set,
                              "label": args.label, "levels": []}
    for n in levels:
        loop = simulated_loop()
        try:
            chosen, records, busy = loop.run_until_complete(
                replay_level(n, files, audio, backend, vad_model, config, cost, args.chunk_ms))
        finally:
            loop.close()
        level = level_figures(n, chosen, records, refs, args.max_seconds)
        level.update(diarization=False, cpu_avg_percent=round(100 * busy, 1), rss_max_mb=None)
        result["levels"].append(level)
        print(f"N={n} replay: WER {fmt(level['wer'], 4)}, commit p50/p95 {fmt(level['commit_latency_p50'])}/"
              f"{fmt(level['commit_latency_p95'])} s, segment final p50/p95 {fmt(level['segment_final_latency_p50'])}/"
              f"{fmt(level['segment_final_latency_p95'])} s, model busy {100 * busy:.0f} %", file=sys.stderr)
    return result
