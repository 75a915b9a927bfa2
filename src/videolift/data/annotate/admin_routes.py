"""The admin's JSON API: progress, the HRA export, agreement, annotators' tokens, critic scores, the
review of human/critic disagreements and its verdicts, pairwise results. Every route needs an admin's
bearer token.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from videolift.core.errors import DataError, VideoliftError
from videolift.data.annotate import admin, pairwise
from videolift.data.annotate.dependencies import Credentials, ServedProject, authenticate, bearer, writing
from videolift.data.annotate.project import add_user
from videolift.data.annotate.tasks import TaskError
from videolift.data.annotate.videos import resolve_video, subdirectory

router = APIRouter()

UPLOAD = "the uploaded scores"  # how errors name a critic upload's body


@router.get("/api/admin/progress")
def progress(project: ServedProject, credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
    with project.session(readonly=True) as session:
        authenticate(session, credentials, "admin")
        return admin.progress(session, project.settings)


@router.get("/api/admin/export")
def export(
    project: ServedProject, with_reviews: bool = False, credentials: Credentials = Depends(bearer)
) -> Response:
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


@router.get("/api/admin/agreement")
def agreement(project: ServedProject, credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
    with project.session(readonly=True) as session:
        authenticate(session, credentials, "admin")
        return admin.agreement(admin.export_records(session))


@router.post("/api/admin/annotators", status_code=201)
def add_annotator(
    project: ServedProject, body: dict[str, Any] = Body(...), credentials: Credentials = Depends(bearer)
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


@router.post("/api/admin/critic", status_code=201)
async def import_critic(
    request: Request,
    project: ServedProject,
    critic: str = "critic",
    dir: str = "",
    credentials: Credentials = Depends(bearer),
) -> Any:
    """Critic scores as a JSONL request body (see docs/annotate.md), at most MAX_UPLOAD bytes. ``dir``:
    the folder inside the videos root their paths are relative to, as `add-videos --dir` took it."""

    def check() -> None:
        with project.session(readonly=True) as session:
            authenticate(session, credentials, "admin")

    def work(path: Path) -> dict[str, int]:
        try:
            with writing(project, credentials, "admin") as (session, _):
                return admin.import_critic(session, path, critic, base=base)
        except DataError as exc:  # located in the server's temporary file: name the upload instead
            if exc.file is None or Path(exc.file) != path:
                raise
            raise DataError(
                exc.detail, file=UPLOAD, line=exc.line, record=exc.record, field=exc.field
            ) from None

    # Blocking database work runs off the event loop. The token is checked before the body is read,
    # and the body goes to disk as it arrives, not into memory; and before `dir` is resolved, so that
    # a caller without it cannot learn what lies under the videos root (a symlink leading out: 400).
    await run_in_threadpool(check)
    critic = admin.critic_name(critic)  # a 400 before the body is read
    try:  # the checks video paths get: relative, no '..', no symlink leading out
        base = (
            subdirectory(project.videos_root, resolve_video(project.videos_root, dir)) if dir.strip() else ""
        )
    except VideoliftError as exc:  # UnsafePath among them
        raise HTTPException(400, f"dir: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "critic_scores.jsonl"
        try:
            with path.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
        except ClientDisconnect:  # a traceback in the server's log, as a crash's; nobody reads the answer
            raise HTTPException(400, "the upload was cut off: the client left before the end of it") from None
        return await run_in_threadpool(work, path)


@router.get("/api/admin/review")
def review(
    project: ServedProject,
    critic: str | None = None,
    min_gap: float = 1.0,
    credentials: Credentials = Depends(bearer),
) -> Any:
    with project.session(readonly=True) as session:
        authenticate(session, credentials, "admin")
        items = admin.disagreements(session, critic, min_gap)
        # Which critic they are of: none given, the last imported, which the page shows as chosen.
        return {
            "critics": admin.critics(session),
            "critic": admin.chosen_critic(session, critic),
            "items": items,
        }


@router.put("/api/admin/review/{video_id:path}")
def adjudicate(
    project: ServedProject,
    video_id: str,
    body: dict[str, Any] = Body(...),
    credentials: Credentials = Depends(bearer),
) -> Any:
    with writing(project, credentials, "admin") as (session, user):
        admin.save_review(session, user.name, video_id, body.get("ratings"))
        return {"video_id": video_id, "status": "reviewed"}


@router.get("/api/admin/pairs")
def pairs(project: ServedProject, credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
    with project.session(readonly=True) as session:
        authenticate(session, credentials, "admin")
        return pairwise.pair_results(session)
