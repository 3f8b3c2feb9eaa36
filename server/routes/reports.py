"""``/api/projects/{project_id}/reports``: start a project report, follow its progress, read it as JSON,
Markdown (``{report_id}.md``) or PDF (``{report_id}.pdf``), as the project's other exports are named.

Starting (and deleting) one needs ``projects:admin``; reading needs ``export`` (see
:func:`server.http.auth.required_scope`). Only the project's owner sees its reports: anyone else gets 404,
for the project and for each report. The work itself runs on the job runner
(:mod:`server.features.reports`).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.features import reports
from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import Page, document, page_params
from server.routes.common import json_body, page_of, paging, services
from server.routes.projects import load_project, load_project_part

TAG = "reports"
MAX_TAGS = 20

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=300,
                              description="default: the project's title and 'report'")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS,
                            description="only conversations carrying at least one of these tags (any case)")
    since: datetime | None = Field(default=None, description="only conversations started at or after (ISO 8601;"
                                                             " UTC when no offset is given)")
    until: datetime | None = Field(default=None, description="only conversations started before")

    @model_validator(mode="after")
    def _range(self) -> ReportCreate:
        self.since, self.until = _utc(self.since), _utc(self.until)
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


def _utc(instant: datetime | None) -> datetime | None:
    if instant is None:
        return None
    try:
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    except OverflowError:  # year 9999 with a negative offset
        raise ValueError("date out of range") from None


class ReportProgress(BaseModel):
    phase: str | None = Field(description="summaries (phase one) | report (phase two) | null when finished")
    done: int = Field(description="conversations whose summary phase finished")
    total: int = Field(description="conversations in the report")
    summaries: dict[str, int] = Field(description="how each finished: reused (it had one), summarized, empty (no"
                                                  " text), missing (deleted since), failed")


class Report(BaseModel):
    id: str
    project_id: str
    title: str
    status: str = Field(description="summarizing | generating | completed | failed")
    filters: dict[str, Any]
    progress: ReportProgress
    error: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    links: dict[str, str] = Field(description="self, markdown, pdf")
    result: dict[str, Any] | None = Field(default=None, description="once completed: title, overview, topics (with"
                                          " conversations and mentions), key_points, action_items, quotes (each"
                                          " with conversation_id, start seconds, time and url), conversations")


class ReportPage(Page[Report]):
    pass


def report_out(row: dict[str, Any], with_result: bool = True) -> dict[str, Any]:
    total, done = len(row["conversations"]), len(row["progress"])
    phase = {"summarizing": "summaries", "generating": "report"}.get(row["status"])
    base = f"/api/projects/{row['project_id']}/reports/{row['id']}"
    out = Report(id=row["id"], project_id=row["project_id"], title=row["title"], status=row["status"],
                 filters=row["filters"], error=row.get("error"), created_at=row["created_at"],
                 updated_at=row["updated_at"], completed_at=row.get("completed_at"),
                 progress=ReportProgress(phase=phase, done=done, total=total,
                                         summaries=dict(Counter(row["progress"].values()))),
                 links={"self": base, "markdown": base + ".md", "pdf": base + ".pdf"},
                 result=row.get("result") if with_result else None).model_dump()
    if not with_result:
        out.pop("result")
    return out


async def _report(request: Request) -> dict[str, Any]:
    return await load_project_part(request, "report", services(request).store.get_report)


async def _finished(request: Request) -> dict[str, Any]:
    row = await _report(request)
    if row["status"] == "failed":
        raise ApiError(409, f"the report failed: {row.get('error')}", "REPORT_FAILED", {"status": "failed"})
    if row["status"] != "completed" or not row.get("result"):
        raise ApiError(409, "the report is still being made", "REPORT_NOT_READY", {"status": row["status"]})
    return row


def _filename(row: dict[str, Any], ext: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", row["title"]).strip("-").lower()[:60] or "report"
    return f"{slug}-{row['id'][:8]}.{ext}"


# ------------------------------------------------------------ routes


async def start_report(request: Request) -> Response:
    """Start a report over the project's completed conversations (or those with a tag, or from a date range)."""
    project = await load_project(request)
    body = await json_body(request, ReportCreate)
    svc = services(request)
    filters = {"tags": body.tags, "since": body.since.isoformat() if body.since else None,
               "until": body.until.isoformat() if body.until else None}
    try:
        chosen = await reports.select_conversations(svc.store, project["id"], tags=body.tags, since=body.since,
                                                    until=body.until)
        row = await reports.start_report(svc, project_id=project["id"], owner=principal(request).user,
                                         title=body.title or f"{project['title']} report", filters=filters,
                                         conversation_ids=chosen)
    except reports.SelectionError as exc:
        status = 429 if exc.code == "REPORTS_BUSY" else 422
        raise ApiError(status, str(exc), exc.code, exc.details) from None
    return JSONResponse(report_out(row), status_code=202, headers={"Location": report_out(row)["links"]["self"]})


async def list_reports(request: Request) -> Response:
    """The project's reports, newest first (without their results)."""
    project = await load_project(request)
    page, size = paging(request)
    rows, total = await services(request).store.list_reports(project["id"], page=page, size=size)
    return JSONResponse(page_of([report_out(r, with_result=False) for r in rows], total, page, size))


async def get_report(request: Request) -> Response:
    """A report's progress and, once completed, its result."""
    return JSONResponse(report_out(await _report(request)))


async def report_markdown(request: Request) -> Response:
    """A completed report as Markdown (409 while it is being made)."""
    row = await _finished(request)
    text = await asyncio.to_thread(reports.report_markdown, row)
    return Response(text, media_type="text/markdown; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{_filename(row, "md")}"'})


async def report_pdf(request: Request) -> Response:
    """A completed report as a PDF (409 while it is being made)."""
    row = await _finished(request)
    data = await asyncio.to_thread(reports.report_pdf, row)
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(row, "pdf")}"'})


async def delete_report(request: Request) -> Response:
    """Delete a report (one still being made stops)."""
    row = await _report(request)
    await services(request).store.delete_report(row["id"])
    return Response(status_code=204)


R = "/api/projects/{project_id}/reports"
routes = [
    Route(R, list_reports, methods=["GET"]),
    Route(R, start_report, methods=["POST"]),
    Route(R + "/{report_id}.md", report_markdown, methods=["GET"]),
    Route(R + "/{report_id}.pdf", report_pdf, methods=["GET"]),
    Route(R + "/{report_id}", get_report, methods=["GET"]),
    Route(R + "/{report_id}", delete_report, methods=["DELETE"]),
]

document("GET", R, "List a project's reports", TAG, responses={200: (ReportPage, "a page of reports, newest first")},
         query=page_params())
document("POST", R, "Start a project report", TAG, body=ReportCreate,
         description=f"Phase one summarizes each chosen conversation (one that has a summary keeps it), phase two"
                     f" generates the report; `report.generated` fires when it is ready. At most"
                     f" {reports.MAX_CONVERSATIONS} conversations per report and {reports.MAX_UNFINISHED} reports"
                     f" being made per project.",
         responses={202: (Report, "the report, summarizing; poll it"),
                    422: (None, "bad filters, no conversation matches (NO_CONVERSATIONS), or too many"
                                " (REPORT_TOO_LARGE)"),
                    429: (None, "the project has too many reports being made (REPORTS_BUSY)")})
document("GET", R + "/{report_id}", "Read a report", TAG,
         responses={200: (Report, "progress, and the result once completed")})
document("GET", R + "/{report_id}.md", "A report as Markdown", TAG, content_type="text/markdown",
         responses={200: (None, "text/markdown"), 409: (None, "not completed (REPORT_NOT_READY, REPORT_FAILED)")})
document("GET", R + "/{report_id}.pdf", "A report as PDF", TAG, content_type="application/pdf",
         responses={200: (None, "application/pdf"), 409: (None, "not completed (REPORT_NOT_READY, REPORT_FAILED)")})
document("DELETE", R + "/{report_id}", "Delete a report", TAG, responses={204: (None, "deleted")})
