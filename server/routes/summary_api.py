"""``/api/summary`` and ``/api/chat``: summaries of a transcript (offline extractive, or an LLM when one is
configured) as background jobs, and questions answered with a transcript as context (needs an LLM).

The transcript comes in the body (``transcript`` segments and/or ``full_text``, as the transcription API
reference has it) or, as an extension, as ``transcript_id`` of a stored transcript: its summary is then
stored on it and published to its subscribers like the automatic one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features import summaries
from server.features.speakers import named_segments
from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import document
from server.http.visibility import visible_transcript
from server.routes.common import json_body, services

TAG = "summaries and chat"
NOT_FOUND = "Summary job not found or expired"


class TranscriptPiece(BaseModel):
    model_config = ConfigDict(extra="allow")
    start: float | None = None
    end: float | None = None
    text: str
    speaker: str | None = None


class SummaryRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    transcript: list[TranscriptPiece] = Field(default_factory=list, max_length=100_000)
    full_text: str | None = Field(default=None, max_length=5_000_000)
    transcript_id: str | None = Field(default=None, description="a stored transcript instead (its summary is"
                                                                  " stored on it)")
    model_name: str | None = Field(default=None, description="the LLM model (default VOXLANE_LLM_MODEL), or"
                                                             " 'extractive' for the offline method")
    max_length: int = Field(default=500, ge=10, le=10_000, description="most words in the summary")
    format: Literal["paragraph", "bullet_points", "key_points"] = "paragraph"


class SummaryJobCreated(BaseModel):
    job_id: str
    status: str
    message: str


class SummaryResultBody(BaseModel):
    summary: str
    topics: list[str]
    length: int = Field(description="words in the summary")
    model_used: str
    action_items: list[str]
    key_points: list[str]
    format: str


class SummaryJobStatus(BaseModel):
    job_id: str
    status: str = Field(description="processing | completed | failed")
    message: str
    progress: float


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    transcript: list[TranscriptPiece] = Field(default_factory=list, max_length=100_000)
    full_text: str | None = Field(default=None, max_length=5_000_000)
    transcript_id: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    model_name: str | None = None
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=500, ge=1, le=100_000)


class ChatUsage(BaseModel):
    prompt: int
    completion: int
    total: int


class ChatReply(BaseModel):
    message: ChatMessage
    model_used: str
    usage: ChatUsage


class ChatModel(BaseModel):
    id: str
    name: str
    description: str


class ChatModels(BaseModel):
    models: list[ChatModel]


# ------------------------------------------------------------ helpers


async def _texts(request: Request, body: SummaryRequest | ChatRequest) -> list[str]:
    """The transcript's lines: a stored transcript's segments, else the body's segments and full text."""
    if body.transcript_id:
        row = await visible_transcript(request, body.transcript_id)
        segments = await named_segments(services(request).store, row)
        return [summaries.transcript_text([s]) for s in segments]
    texts = [summaries.transcript_text([p.model_dump()]) for p in body.transcript]
    if not any(texts) and body.full_text:
        texts = [body.full_text]
    if not any(t.strip() for t in texts):
        raise ApiError(422, "send the transcript: `transcript` segments, `full_text`, or a `transcript_id`")
    return texts


async def _own_job(request: Request) -> dict[str, Any]:
    row = await services(request).store.get_summary_job(request.path_params["job_id"])
    if row is None or summaries.request_expired(row) or not principal(request).can_see(row["owner"]):
        raise ApiError(404, NOT_FOUND, "JOB_NOT_FOUND")
    return row


# ------------------------------------------------------------ routes


async def start_summary(request: Request) -> Response:
    """Start summarizing a transcript (segments, full text, or a stored transcript's id)."""
    body = await json_body(request, SummaryRequest)
    texts = await _texts(request, body)
    svc = services(request)
    method = "the LLM" if summaries.llm_configured(svc.settings) and body.model_name != summaries.EXTRACTIVE \
        else "the extractive method"
    job = await summaries.request_summary(svc, owner=principal(request).user, texts=texts, model_name=body.model_name,
                                          max_words=body.max_length, fmt=body.format,
                                          transcript_id=body.transcript_id, message=f"summarizing with {method}")
    return JSONResponse(SummaryJobCreated(job_id=job["id"], status="processing", message=job["message"]).model_dump(),
                        status_code=202)


async def get_summary(request: Request) -> Response:
    """A finished summary: text, topics, length, model (409 while it is still being written)."""
    job = await _own_job(request)
    if job["status"] == "failed":
        raise ApiError(409, f"the summary failed: {job['message']}", "JOB_FAILED", {"status": "failed"})
    if job["status"] != "completed" or job["result"] is None:
        raise ApiError(409, "the summary is still being written", "JOB_NOT_READY", {"status": job["status"]})
    return JSONResponse(job["result"])


async def summary_status(request: Request) -> Response:
    """A summary job's status."""
    job = await _own_job(request)
    return JSONResponse(SummaryJobStatus(job_id=job["id"], status=job["status"], message=job["message"] or "",
                                         progress=job["progress"]).model_dump())


CHAT_PROMPT = ("You answer questions about the transcript of a spoken conversation below. Use only what the"
               " transcript says, and say so when it does not contain the answer.\n\nTranscript:\n{transcript}")


async def chat(request: Request) -> Response:
    """Answer questions with a transcript as context (needs VOXLANE_LLM_URL: 503 without)."""
    body = await json_body(request, ChatRequest)
    settings = services(request).settings
    if not summaries.llm_configured(settings):
        raise ApiError(503, "chat needs a language model, and none is configured on this server: set"
                            " VOXLANE_LLM_URL (an OpenAI-compatible /v1 endpoint) and VOXLANE_LLM_MODEL",
                       "LLM_NOT_CONFIGURED")
    texts = await _texts(request, body)
    messages = [{"role": "system", "content": CHAT_PROMPT.format(transcript=summaries.clip_context("\n".join(texts)))}]
    messages += [m.model_dump() for m in body.messages]
    try:
        content, usage, model = await summaries.chat_completion(
            settings, messages, model=body.model_name, temperature=body.temperature, max_tokens=body.max_tokens)
    except summaries.LlmNotConfigured as exc:
        raise ApiError(503, str(exc), "LLM_NOT_CONFIGURED") from None
    except summaries.LlmError as exc:
        raise ApiError(502, str(exc), "LLM_ERROR") from None
    reply = ChatReply(message=ChatMessage(role="assistant", content=content), model_used=model,
                      usage=ChatUsage(**usage))
    return JSONResponse(reply.model_dump())


async def chat_models(request: Request) -> Response:
    """The configured chat model (none without VOXLANE_LLM_URL)."""
    settings = services(request).settings
    models = []
    if summaries.llm_configured(settings) and settings.llm_model:
        models.append(ChatModel(id=settings.llm_model, name=settings.llm_model,
                                description="the OpenAI-compatible endpoint configured by VOXLANE_LLM_URL"))
    return JSONResponse(ChatModels(models=models).model_dump())


S, C = "/api/summary", "/api/chat"
routes = [
    Route(S + "/", start_summary, methods=["POST"]),
    Route(S, start_summary, methods=["POST"]),
    Route(S + "/status/{job_id}", summary_status, methods=["GET"]),
    Route(S + "/{job_id}", get_summary, methods=["GET"]),
    Route(C + "/models", chat_models, methods=["GET"]),
    Route(C + "/", chat, methods=["POST"]),
    Route(C, chat, methods=["POST"]),
]

document("POST", S + "/", "Start a summary", TAG, body=SummaryRequest,
         description="Offline extractive summary by default; the configured LLM (VOXLANE_LLM_URL) when there is"
                     " one. `max_length` is in words.",
         responses={202: (SummaryJobCreated, "the job; poll its status"), 404: (None, "unknown transcript_id")})
document("GET", S + "/status/{job_id}", "Summary job status", TAG, responses={200: (SummaryJobStatus, "status")})
document("GET", S + "/{job_id}", "Summary result", TAG,
         responses={200: (SummaryResultBody, "summary, topics, length, model_used"),
                    409: (None, "not finished yet, or failed")})
document("GET", C + "/models", "Chat models", TAG, responses={200: (ChatModels, "the configured model, if any")})
document("POST", C + "/", "Chat with a transcript as context", TAG, body=ChatRequest,
         responses={200: (ChatReply, "the assistant's answer"), 502: (None, "the LLM endpoint failed"),
                    503: (None, "no LLM configured")})
