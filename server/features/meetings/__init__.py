"""Rooms and meetings: a room keeps a meeting's settings, a meeting is one transcript with one stream per
participant.

The built-in platform is voxlane's own browser room (``/room``): each participant publishes their microphone
over WebRTC as a participant stream of the meeting's transcript, so every word is attributed by participant
without diarization. External platforms (Whereby, Daily) sit behind :class:`platforms.Platform`: voxlane creates
and deletes their rooms through their REST APIs.
"""
