"""The FastAPI server: rater and admin JSON API (bearer tokens), the static UI and the videos.

Every endpoint runs its work in one explicit transaction that is committed before the response
leaves, so a 201 always means the rating is on disk.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from videolift.core.errors import VideoliftError
from videolift.data.annotate import admin, guideline, pairwise, rater_routes
from videolift.data.annotate.dependencies import Credentials, authenticate, bearer, writing
from videolift.data.annotate.models import Video
from videolift.data.annotate.project import Project, add_user
from videolift.data.annotate.tasks import TaskError
from videolift.data.annotate.videos import UnsafePath, resolve_video, subdirectory

STATIC = Path(__file__).parent / "static"
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


def create_app(project: Project) -> FastAPI:
    app = FastAPI(
        # No Swagger page: it loads its scripts from a CDN, which the app's own CSP (and an offline lab)
        # refuses. The schema is served for any OpenAPI viewer.
        title="videolift annotate",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.project = project
    app.state.guideline = guideline.load(project.directory)
    settings = project.settings

    @app.exception_handler(VideoliftError)
    def _error(_request: Request, exc: VideoliftError) -> JSONResponse:
        status = exc.status if isinstance(exc, TaskError) else 400
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
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

    app.add_middleware(BodyLimit)  # added first, so it runs inside _headers: a 413 has the headers too

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    # ---- UI and videos -------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/media/{key}", include_in_schema=False)
    def media(key: str) -> FileResponse:
        """A video by its opaque key. The stored path is resolved again on every request, so a file later
        replaced by a symlink out of the videos root is refused too."""
        with project.session(readonly=True) as session:
            relative = session.scalar(select(Video.video).where(Video.key == key))
        try:
            path = resolve_video(project.videos_root, relative) if relative else None
        except UnsafePath:
            path = None
        if path is None or not path.is_file():
            raise TaskError(404, "no such video")
        response = FileResponse(
            path, stat_result=path.stat(), headers={"Cache-Control": "private, max-age=3600"}
        )
        # When a file was written would tell a pairwise rater which model made it (the second model's
        # videos are generated later); the ETag (an opaque hash) still serves conditional requests.
        del response.headers["last-modified"]
        return response

    app.include_router(rater_routes.router)

    # ---- admin API -----------------------------------------------------------------------------
    @app.get("/api/admin/progress")
    def progress(credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
        with project.session(readonly=True) as session:
            authenticate(session, credentials, "admin")
            return admin.progress(session, settings)

    @app.get("/api/admin/export")
    def export(with_reviews: bool = False, credentials: Credentials = Depends(bearer)) -> Response:
        """The HRA export as JSONL, one record per (video, annotator)."""
        with project.session(readonly=True) as session:
            authenticate(session, credentials, "admin")
            records = admin.export_records(session, with_reviews=with_reviews)
        text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
        return Response(
            text,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="hra.jsonl"'},
        )

    @app.get("/api/admin/agreement")
    def agreement(credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
        with project.session(readonly=True) as session:
            authenticate(session, credentials, "admin")
            return admin.agreement(admin.export_records(session))

    @app.post("/api/admin/annotators", status_code=201)
    def add_annotator(
        body: dict[str, Any] = Body(...), credentials: Credentials = Depends(bearer)
    ) -> dict[str, str]:
        with writing(project, credentials, "admin") as (session, _):
            name = body.get("name") or ""
            if not isinstance(name, str):  # str() would name the user "['a']"
                raise TaskError(422, f"name: expected a string, got {name!r}")
            reissue = body.get("reissue", False)
            if not isinstance(reissue, bool):  # bool("false") is True: it would revoke the rater's token
                raise TaskError(422, f"reissue: expected true or false, got {reissue!r}")
            token = add_user(session, name, "annotator", reissue=reissue)
            return {"name": name.strip(), "token": token}

    @app.post("/api/admin/critic", status_code=201)
    async def import_critic(
        request: Request, critic: str = "critic", dir: str = "", credentials: Credentials = Depends(bearer)
    ) -> Any:
        """Critic scores as a JSONL request body (see docs/annotate.md), at most MAX_UPLOAD bytes. ``dir``:
        the folder inside the videos root their paths are relative to, as `add-videos --dir` took it."""
        try:  # the checks video paths get: relative, no '..', no symlink leading out
            base = (
                subdirectory(project.videos_root, resolve_video(project.videos_root, dir))
                if dir.strip()
                else ""
            )
        except VideoliftError as exc:  # UnsafePath among them
            raise HTTPException(400, f"dir: {exc}") from None

        def check() -> None:
            with project.session(readonly=True) as session:
                authenticate(session, credentials, "admin")

        def work(path: Path) -> dict[str, int]:
            with writing(project, credentials, "admin") as (session, _):
                return admin.import_critic(session, path, critic, base=base)

        # Blocking database work runs off the event loop. The token is checked before the body is read,
        # and the body goes to disk as it arrives, not into memory.
        await run_in_threadpool(check)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "critic_scores.jsonl"
            with path.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
            return await run_in_threadpool(work, path)

    @app.get("/api/admin/review")
    def review(
        critic: str | None = None, min_gap: float = 1.0, credentials: Credentials = Depends(bearer)
    ) -> Any:
        with project.session(readonly=True) as session:
            authenticate(session, credentials, "admin")
            return {"critics": admin.critics(session), "items": admin.disagreements(session, critic, min_gap)}

    @app.put("/api/admin/review/{video_id:path}")
    def adjudicate(
        video_id: str, body: dict[str, Any] = Body(...), credentials: Credentials = Depends(bearer)
    ) -> Any:
        with writing(project, credentials, "admin") as (session, user):
            admin.save_review(session, user.name, video_id, body.get("ratings"))
            return {"video_id": video_id, "status": "reviewed"}

    @app.get("/api/admin/pairs")
    def pairs(credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
        with project.session(readonly=True) as session:
            authenticate(session, credentials, "admin")
            return pairwise.pair_results(session)

    return app
