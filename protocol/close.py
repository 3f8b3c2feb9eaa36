"""The WebSocket close codes every voxlane socket ends with: one vocabulary for the native, Realtime and Deepgram
protocols, so a client's retry logic reads the same code the same way whichever protocol it speaks.

The 1xxx codes are RFC 6455's; the 44xx ones mirror the HTTP status a REST call would get (401, 403, 404), in
the private range a WebSocket close may use.
"""

from __future__ import annotations

CLOSE_NORMAL = 1000
"""The session ended as asked (its finals out), or the transcript completed."""
CLOSE_POLICY = 1008
"""The client broke the protocol: too many bad messages, an oversized frame, a bad parameter."""
CLOSE_INTERNAL = 1011
"""The server could not go on (a bug, or storage that failed): the client may reconnect."""
CLOSE_MOVED = 1012
"""This node no longer serves the transcript: another node took its stream over while this one was stalled or cut
off. Reconnect (through the load balancer) to go on; the finals stored so far stay."""
CLOSE_TRY_AGAIN = 1013
"""The server is at capacity, or the client read too slowly and fell behind: reconnect after ``retry_after_s``."""
CLOSE_UNAUTHORIZED = 4401
"""No valid credentials."""
CLOSE_FORBIDDEN = 4403
"""The credentials lack the scope the action needs."""
CLOSE_NOT_FOUND = 4404
"""No such transcript or job, or not one the caller may see."""
