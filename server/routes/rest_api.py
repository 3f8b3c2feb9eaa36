"""The REST path's routes in one list: uploads, projects, the participant API, jobs, the API docs."""

from server.routes import (
    docs,
    openai_api,
    participant,
    participant_reports,
    projects,
    reports,
    transcribe,
    transcripts_audio,
    unredacted,
    webhooks,
)

routes = [*transcripts_audio.routes, *unredacted.routes, *projects.routes, *reports.routes, *webhooks.routes,
          *participant.routes, *participant_reports.routes, *transcribe.routes, *openai_api.routes, *docs.routes]
