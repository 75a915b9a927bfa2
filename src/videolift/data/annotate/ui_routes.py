"""The web UI's page and the videos it plays, by opaque key; neither is in the OpenAPI schema.

The page's scripts and styles (STATIC) are served under /static by a mount that create_app makes on the
app itself: the older FastAPI releases pyproject allows drop a mount made on an APIRouter when the
router is included.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import select

from videolift.data.annotate.dependencies import ServedProject
from videolift.data.annotate.models import Video
from videolift.data.annotate.tasks import TaskError
from videolift.data.annotate.videos import UnsafePath, resolve_video

STATIC = Path(__file__).parent / "static"

router = APIRouter()

# Keys the videos' ETags: Starlette's own is the MD5 of "mtime-size", from which a rater could search out
# when each file was written (one day is some 10^12 guesses), what leaving out Last-Modified hides. A
# new key at each start only makes browsers fetch a video again once.
ETAG_KEY = secrets.token_bytes(16)


class MediaResponse(FileResponse):
    """A video without its Last-Modified: when a file was written would tell a pairwise rater which
    model made it (the second model's videos are generated later). The ETag (an opaque hash) stands in
    for it, also for If-Range, which is decided here: Starlette compares it with the Last-Modified too
    (a 500 without one), and a date that matched would give the file's time away."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        asked = [(name, value) for name, value in scope["headers"] if name != b"if-range"]
        if_range = next((value for name, value in scope["headers"] if name == b"if-range"), None)
        if if_range is not None and if_range.decode("latin-1") != self.headers.get("etag"):
            asked = [(name, value) for name, value in asked if name != b"range"]  # changed: all of it

        async def undated(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message["headers"] if k.lower() != b"last-modified"]
            await send(message)

        await super().__call__(scope | {"headers": asked}, receive, undated)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.api_route("/media/{key}", methods=["GET", "HEAD"], include_in_schema=False)
def media(project: ServedProject, key: str) -> MediaResponse:
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
    stat = path.stat()
    version = hashlib.blake2b(f"{stat.st_mtime_ns}-{stat.st_size}".encode(), key=ETAG_KEY, digest_size=16)
    headers = {"Cache-Control": "private, max-age=3600", "ETag": f'"{version.hexdigest()}"'}
    return MediaResponse(path, stat_result=stat, headers=headers)
