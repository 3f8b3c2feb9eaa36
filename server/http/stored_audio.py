"""Sending stored audio over HTTP, from either audio store, whole or by byte range.

A file on this machine's disk goes out as a FileResponse (sendfile, ETag and Last-Modified, its own Range
handling), as it always did. A file in a bucket is streamed from the store a piece at a time, never held whole:
one range is answered 206 with its Content-Range, a range that cannot be met 416, and a request for several
ranges gets the whole file (RFC 9110 allows it), so an <audio> element seeks in either.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from server.http.errors import ApiError, error_response
from server.storage.audio import AudioStore

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def range_error(header: str | None, size: int) -> Response | None:
    """A 416 for a single ``Range`` that is malformed or starts beyond the file; None when it can be served."""
    if not header or "," in header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return error_response(416, "RANGE_NOT_SATISFIABLE", f"malformed Range header {header!r}",
                              {"size": size}, {"Content-Range": f"bytes */{size}"})
    start = int(m.group(1)) if m.group(1) else max(0, size - int(m.group(2)))
    if start >= size:
        return error_response(416, "RANGE_NOT_SATISFIABLE", f"range starts beyond the {size}-byte file",
                              {"size": size}, {"Content-Range": f"bytes */{size}"})
    return None


def _one_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a servable single range; None for the whole file (as for a backwards range,
    which a server may ignore)."""
    m = _RANGE.match(header.strip()) if header and "," not in header else None
    if m is None:
        return None
    if not m.group(1):
        return max(0, size - int(m.group(2))), size
    start, end = int(m.group(1)), min(size, int(m.group(2)) + 1) if m.group(2) else size
    return (start, end) if start < end else None


def _disposition(kind: str, filename: str) -> str:
    """As Starlette's FileResponse writes it: RFC 6266's ``filename*`` for a name that needs quoting."""
    quoted = quote(filename)
    return f"{kind}; filename*=utf-8''{quoted}" if quoted != filename else f'{kind}; filename="{filename}"'


async def audio_response(request: Request, audio: AudioStore, key: str, *, media_type: str, filename: str,
                         inline: bool = False, headers: dict[str, str] | None = None) -> Response:
    """The stored file of ``key`` as a download (``inline``: for an <audio> element)."""
    disposition = "inline" if inline else "attachment"
    path = audio.direct_path(key)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename, content_disposition_type=disposition,
                            headers=headers)
    size = await audio.size(key)
    if size is None:
        raise ApiError(404, "this transcript has no audio yet", "NO_AUDIO")
    header = request.headers.get("range")
    refused = range_error(header, size)
    if refused is not None:
        return refused
    start, end = _one_range(header, size) or (0, size)
    out = {**(headers or {}), "Accept-Ranges": "bytes", "Content-Length": str(end - start),
           "Content-Disposition": _disposition(disposition, filename)}
    status = 200
    if (start, end) != (0, size):
        status, out["Content-Range"] = 206, f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=out, media_type=media_type)
    return StreamingResponse(audio.read_range(key, start, end), status_code=status, headers=out,
                             media_type=media_type)
