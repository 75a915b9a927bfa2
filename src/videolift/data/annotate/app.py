"""The FastAPI server: the routers of the UI's page and videos (ui_routes) and of the rater's and the
admin's JSON APIs (rater_routes, admin_routes; bearer tokens), the static files, and what every request
goes through: the body-size cap, the security headers and the error handlers.

Every endpoint runs its work in one explicit transaction that is committed before the response
leaves, so a 201 always means the rating is on disk.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from videolift.core.errors import VideoliftError
from videolift.data.annotate import admin_routes, guideline, rater_routes, ui_routes
from videolift.data.annotate.project import Project
from videolift.data.annotate.tasks import TaskError
from videolift.data.annotate.ui_routes import STATIC

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}

# Request bodies are capped before they are read: a rating is a few kB, so a large body is a mistake or
# an attack (it was read in full, into memory, before its token was even checked). Critic scores
# (POST /api/admin/critic) are a whole JSONL file and get a larger cap.
MAX_BODY = 1 << 20  # 1 MiB
MAX_UPLOAD = 100 << 20  # 100 MiB
UPLOAD_PATHS = {"/api/admin/critic"}


def body_cap(path: str) -> int:
    return MAX_UPLOAD if path in UPLOAD_PATHS else MAX_BODY


def too_large(size: int | None, cap: int) -> str:
    got = f"{size:,} bytes" if size is not None else f"over {cap:,} bytes (sent without a length)"
    return f"request body too large: {got}; at most {cap:,} bytes here"


class BodyLimit:
    """ASGI middleware: 413 for a body over the path's cap, by its Content-Length before anything is
    read, and by counting for a body sent without one (chunked)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = body_cap(scope["path"])
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            response = JSONResponse({"detail": too_large(int(length), cap)}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > cap:
                raise HTTPException(413, too_large(None, cap))
            return message

        await self.app(scope, counted, send)


def _error(_request: Request, exc: VideoliftError) -> JSONResponse:
    """The error as JSON: a TaskError with its status (a 401 asks for a bearer token), any other a 400."""
    status = exc.status if isinstance(exc, TaskError) else 400
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def _busy(_request: Request, exc: Exception) -> JSONResponse:
    """The database stayed locked past its busy timeout, or every pooled connection waited so: a JSON
    503 to retry. Any other database failure (a full disk, a damaged file) is a 500, logged."""
    why = getattr(exc, "orig", None) or exc
    if isinstance(exc, sqlalchemy.exc.OperationalError) and not any(
        sign in str(why) for sign in ("locked", "busy")
    ):
        raise exc
    return JSONResponse(
        {"detail": f"the database is busy ({why}); try again in a moment"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _crash(_request: Request, _exc: Exception) -> JSONResponse:
    """An unexpected failure (logged by the server) as a JSON 500. Starlette answers it outside every
    middleware, so the security headers are added here, not by ``_headers``."""
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500, headers=SECURITY_HEADERS)


async def _headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """SECURITY_HEADERS on every response."""
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def create_app(project: Project) -> FastAPI:
    app = FastAPI(
        # No Swagger page: it loads its scripts from a CDN, which the app's own CSP (and an offline lab)
        # refuses. The schema is served for any OpenAPI viewer.
        title="videolift annotate",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.project = project  # what the routes take as ServedProject
    app.state.guideline = guideline.load(project.directory)  # read once; ServedGuideline
    app.add_exception_handler(VideoliftError, _error)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _busy)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _busy)
    app.add_exception_handler(Exception, _crash)
    app.add_middleware(BodyLimit)  # added first, so it runs inside _headers: a 413 has the headers too
    app.add_middleware(BaseHTTPMiddleware, dispatch=_headers)
    app.include_router(ui_routes.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # on the app: see ui_routes
    app.include_router(rater_routes.router)
    app.include_router(admin_routes.router)
    return app
