"""File-like objects that let FFmpeg, running on a worker thread, read bytes that arrive later.

PyAV only decodes from something with ``read()``; a stream that arrives chunk by chunk over a socket
becomes such a thing by making ``read()`` block until the producer pushes more or says it is done.
"""

from __future__ import annotations

import threading


class _PushedBytes:
    """What both streams share: a producer pushes bytes and ends (or aborts), a reader blocks for them."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._aborted = False
        self._received = 0

    @property
    def received(self) -> int:
        """Bytes pushed so far."""
        return self._received

    def push(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if self._aborted:
                return  # the reader is gone; nothing will consume this
            if self._eof:
                raise ValueError("push() after end()")
            self._data += data
            self._received += len(data)
            self._cond.notify_all()

    def end(self) -> None:
        """No more data: readers get what is buffered, then EOF."""
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Give up: readers get EOF immediately, dropping anything still buffered."""
        with self._cond:
            self._eof = True
            self._aborted = True
            self._data.clear()
            self._cond.notify_all()

    def readable(self) -> bool:
        return True


class ByteStream(_PushedBytes):
    """Non-seekable pipe: bytes are dropped once read, so a long live stream does not grow memory."""

    def read(self, size: int = -1) -> bytes:
        """Block until at least one byte or EOF; returns b"" only at EOF (what FFmpeg expects)."""
        with self._cond:
            while not self._data and not self._eof:
                self._cond.wait()
            n = len(self._data) if size is None or size < 0 else min(size, len(self._data))
            out = bytes(self._data[:n])
            del self._data[:n]
            return out


class RetainedByteStream(_PushedBytes):
    """Seekable variant that keeps everything; needed for MP4, whose index may sit after the audio.

    A seek beyond the bytes received so far is allowed and the following read waits for them, so a
    fragmented MP4 (Safari's MediaRecorder) still decodes progressively while a classic one decodes once
    its index arrives.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        with self._cond:
            if whence == 0:
                target = offset
            elif whence == 1:
                target = self._pos + offset
            elif whence == 2:
                while not self._eof:  # the end is unknown until the producer says so
                    self._cond.wait()
                target = len(self._data) + offset
            else:
                raise ValueError(f"unsupported whence {whence}")
            if target < 0:
                raise ValueError("negative seek position")
            self._pos = target
            return target

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while len(self._data) <= self._pos and not self._eof:
                self._cond.wait()
            end = len(self._data) if size is None or size < 0 else min(self._pos + size, len(self._data))
            out = bytes(self._data[self._pos:end])
            self._pos += len(out)
            return out
