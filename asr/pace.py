"""Whether this machine reads a live stream in full within its step, measured from the loop's own decodes.

A live stream is read again every ``step_s`` of new audio, and a word is committed once two readings agree
with a second of audio after it. When one full decode (Whisper's 30 s encoder pass) takes longer than the
step, the stream waits for the model instead of the model for the stream: the readings come a whole decode
apart, and every commit waits for two of them. On a 2-core CPU without AVX-512, a lone stream's full decodes
took 0.54 s for a 2 s window and 1.16 s for a 10 s one against a 0.5 s step, and a two-voice phone call's
words were final 2.3-3.9 s after they were spoken; read hurried (the window and some seconds of silence
instead of 30 s, 0.23 and 0.32 s), 1.5-2.4 s. Such a machine hurries every live reading, a pause's reading and a
segment's final too: a hurried reading is a little less sure, but on the AVX2 EPYC (replay of the six-file
subset at N=1, full decodes of 0.56-0.72 s) it made the words before a pause final at p50/p95 0.93/1.30 s
instead of 1.20/1.46 s, for 32 errors of 526 against 29. A machine that keeps to the step (an AVX-512 CPU with
short windows, a GPU) reads everything in full.

The judgement uses full decodes of one live window with no other lane busy: the machine's own pace, not the
load's (a loaded loop already hurries what other streams wait for). It is taken on the median of recent
ones, so one slow decode (a cold cache, a fallback at a higher temperature) does not decide it, and it is
kept once made: hurried decodes say nothing of what a full one costs, and a machine too slow for the step
does not become faster. A restart measures again, and starts from the backend's own timing of a full decode
alone at warm-up (``seed``): a fresh server whose first load is a burst of streams never decodes alone, so
without it a slow machine read every refresh in full under that burst (2-core AVX2 EPYC, twelve streams at
once on a fresh server: 47 % of decodes full, commit p95 16 s).
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asr.batch_report import BatchReport

log = logging.getLogger("voxlane.inference")

SAMPLES = 5
"""Full decodes whose median decides: enough that one outlier does not, few enough to decide in seconds."""


class LivePace:
    """An observer of the inference loop (``loop.observers``); ``behind`` tells the loop to hurry live refreshes."""

    def __init__(self, step_s: float, samples: int = SAMPLES) -> None:
        self.step_s = step_s  # 0 or less: never behind (every live decode alone is read in full)
        self._recent: deque[float] = deque(maxlen=samples)
        self._behind = False
        self._lock = threading.Lock()  # fed from the loop's threads

    @property
    def behind(self) -> bool:
        return self._behind

    def seed(self, full_decode_s: float | None) -> None:
        """The backend's full decode of a live-sized window, timed alone at warm-up: slower than the step, the
        machine is behind from the start. Its window is quiet noise, which the decoder writes little for, so it
        errs fast: a machine it passes may still be found behind by the live decodes."""
        if full_decode_s is None or self.step_s <= 0 or full_decode_s <= self.step_s:
            return
        self._behind = True
        log.info("a full decode took %.2f s at warm-up, more than the %.2f s step: live refreshes are hurried",
                 full_decode_s, self.step_s)

    def observe(self, report: BatchReport) -> None:
        """Called after every batch: a full decode of one live window, alone on the machine, is a sample."""
        if self._behind or self.step_s <= 0:
            return
        if not (report.live and report.size == 1 and not report.hurried and report.lanes_busy <= 1):
            return
        with self._lock:
            self._recent.append(report.seconds)
            if len(self._recent) < (self._recent.maxlen or 1):
                return
            median = statistics.median(self._recent)
            if median > self.step_s:
                self._behind = True
                log.info("a full live decode takes %.2f s here (median of %d), more than the %.2f s step: live"
                         " refreshes are hurried from now on", median, len(self._recent), self.step_s)
