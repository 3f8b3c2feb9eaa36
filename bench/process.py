"""The server process a benchmark watches: found by its port, its CPU and memory sampled in a thread."""

from __future__ import annotations

import threading
import time

import psutil


class ProcessSampler:
    """CPU (% of one core) and RSS of the server process, sampled in a thread."""

    def __init__(self, pid: int | None) -> None:
        self.proc = psutil.Process(pid) if pid else None
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        if self.proc is not None:
            self.proc.cpu_percent(None)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with self.proc.oneshot():  # type: ignore[union-attr]
                    cpu = self.proc.cpu_percent(None)  # type: ignore[union-attr]
                    rss = self.proc.memory_info().rss / 2**20  # type: ignore[union-attr]
                    rss += sum(c.memory_info().rss for c in self.proc.children(recursive=True)) / 2**20  # type: ignore[union-attr]
            except psutil.Error:
                return
            self.samples.append((time.monotonic(), cpu, rss))

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"cpu_avg_percent": None, "cpu_max_percent": None, "rss_max_mb": None, "rss_p90_mb": None}
        cpu = [s[1] for s in self.samples]
        rss = sorted(s[2] for s in self.samples)
        return {"cpu_avg_percent": round(sum(cpu) / len(cpu), 1), "cpu_max_percent": round(max(cpu), 1),
                "rss_max_mb": round(rss[-1], 1), "rss_p90_mb": round(rss[int(0.9 * (len(rss) - 1))], 1)}


def find_server_pid(url: str) -> int | None:
    port = int(url.rsplit(":", 1)[-1].split("/")[0]) if url.count(":") >= 2 else 80
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except psutil.Error:
        return None
    return None
