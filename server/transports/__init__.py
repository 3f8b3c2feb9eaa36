"""Media transports that terminate in a publisher (WebRTC; the WebSocket is a route of its own)."""
