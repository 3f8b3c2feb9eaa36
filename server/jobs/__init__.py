"""Recorded files (uploads, kiosk chunks, jobs): one durable queue through the inference loop."""
