"""``/api/projects``: the projects kiosks record into (scope ``projects:admin`` in private mode)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.messages import KeyTerms
from server.http.auth import principal
from server.http.errors import ApiError
from server.http.openapi import Page, document, page_params
from server.http.visibility import visible_project
from server.routes.common import json_body, owned_page, patch_body, services

TAG = "projects"


class Portal(BaseModel):
    """What the participant portal shows and asks before recording."""

    model_config = ConfigDict(extra="forbid")
    welcome_text: str = Field(default="", max_length=10000)
    ask_name: bool = False
    ask_email: bool = False
    participant_report: bool = Field(default=False, description="Each participant may read their own"
                                     " conversation's report (summary, transcript, PDF) through the participant API")


class PortalUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    welcome_text: str | None = Field(default=None, max_length=10000)
    ask_name: bool | None = None
    ask_email: bool | None = None
    participant_report: bool | None = None


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=300)
    language: str | None = Field(default=None, max_length=16)
    portal: Portal = Field(default_factory=Portal)
    key_terms: KeyTerms = Field(default_factory=list)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=300)
    language: str | None = Field(default=None, max_length=16)
    portal: PortalUpdate | None = None
    key_terms: KeyTerms | None = None


class ProjectPublic(BaseModel):
    """What anyone holding the project id may read."""

    id: str
    title: str
    language: str | None
    portal: Portal


class Project(ProjectPublic):
    key_terms: list[str] = Field(description="names and jargon its conversations spell as given (not shown to"
                                             " participants)")
    created_at: str
    updated_at: str


class ProjectPage(Page[Project]):
    pass


def project_out(row: dict[str, Any]) -> dict[str, Any]:
    return Project(id=row["id"], title=row["title"], language=row.get("language"),
                   portal=Portal(**(row.get("portal") or {})), key_terms=row.get("key_terms") or [],
                   created_at=row["created_at"],
                   updated_at=row["updated_at"]).model_dump()


def public_project(row: dict[str, Any]) -> dict[str, Any]:
    return ProjectPublic(id=row["id"], title=row["title"], language=row.get("language"),
                         portal=Portal(**(row.get("portal") or {}))).model_dump()


async def load_project(request: Request) -> dict[str, Any]:
    return await visible_project(request)


async def load_project_part(request: Request, what: str,
                            get: Callable[[str], Awaitable[dict[str, Any] | None]]) -> dict[str, Any]:
    """The path's ``{what}_id`` of the path's project, read with ``get``: a 404 ``{WHAT}_NOT_FOUND`` for none,
    or one of another project (after the project's own 404)."""
    project = await load_project(request)
    row = await get(request.path_params[f"{what}_id"])
    if row is None or row["project_id"] != project["id"]:
        raise ApiError(404, f"{what} not found", f"{what.upper()}_NOT_FOUND")
    return row


async def create_project(request: Request) -> Response:
    """Create a project."""
    body = await json_body(request, ProjectCreate)
    row = await services(request).store.create_project(title=body.title, language=body.language,
                                                       portal=body.portal.model_dump(), owner=principal(request).user,
                                                       key_terms=body.key_terms)
    return JSONResponse(project_out(row), status_code=201)


async def list_projects(request: Request) -> Response:
    """List your projects, newest first."""
    return await owned_page(request, services(request).store.list_projects, project_out)


async def get_project(request: Request) -> Response:
    """Read a project."""
    return JSONResponse(project_out(await load_project(request)))


async def update_project(request: Request) -> Response:
    """Change a project's title, language, portal settings or key terms."""
    row = await load_project(request)
    fields = await patch_body(request, ProjectUpdate, "title")
    if "portal" in fields:
        portal = {**(row.get("portal") or {}), **{k: v for k, v in (fields["portal"] or {}).items() if v is not None}}
        fields["portal"] = Portal(**portal).model_dump()
    if "key_terms" in fields and fields["key_terms"] is None:
        fields["key_terms"] = []
    updated = await services(request).store.update_project(row["id"], **fields)
    assert updated is not None
    return JSONResponse(project_out(updated))


async def delete_project(request: Request) -> Response:
    """Delete a project; its conversations stay (as transcripts) but no new ones can start."""
    row = await load_project(request)
    await services(request).store.delete_project(row["id"])
    return Response(status_code=204)


routes = [
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects/{project_id}", get_project, methods=["GET"]),
    Route("/api/projects/{project_id}", update_project, methods=["PATCH"]),
    Route("/api/projects/{project_id}", delete_project, methods=["DELETE"]),
]

_PAGE = page_params()
document("GET", "/api/projects", "List projects", TAG, responses={200: (ProjectPage, "a page of your projects")},
         query=_PAGE)
document("POST", "/api/projects", "Create a project", TAG, body=ProjectCreate,
         responses={201: (Project, "the project with its id: share the id with kiosks")})
document("GET", "/api/projects/{project_id}", "Read a project", TAG, responses={200: (Project, "the project")})
document("PATCH", "/api/projects/{project_id}", "Update a project", TAG, body=ProjectUpdate,
         responses={200: (Project, "the updated project")})
document("DELETE", "/api/projects/{project_id}", "Delete a project", TAG, responses={204: (None, "deleted")})
