"""The REST path's routes in one list: uploads, projects, the participant API, jobs, the API docs."""

from server.routes import docs, participant, projects, transcribe, transcripts_audio

routes = [*transcripts_audio.routes, *projects.routes, *participant.routes, *transcribe.routes, *docs.routes]
