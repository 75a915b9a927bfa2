"""The rater's JSON API: the guideline, who the caller is, the next task, rating, editing and skipping.

Everything but the guideline needs an annotator's bearer token (``/api/me``: any user's).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Response

from videolift.data.annotate import tasks
from videolift.data.annotate.dependencies import (
    Credentials,
    ServedGuideline,
    ServedProject,
    authenticate,
    bearer,
    writing,
)

router = APIRouter()


@router.get("/api/guideline")
def get_guideline(guide: ServedGuideline) -> dict[str, Any]:
    return guide.model_dump(mode="json")


@router.get("/api/me")
def me(project: ServedProject, credentials: Credentials = Depends(bearer)) -> dict[str, Any]:
    with project.session(readonly=True) as session:
        user = authenticate(session, credentials, None)
        out = {"name": user.name, "role": user.role}
        if user.role == "annotator":
            out["progress"] = tasks.user_progress(session, user, project.settings)
        return out


@router.get("/api/next", responses={204: {"description": "nothing left for the caller"}})
def next_task(project: ServedProject, credentials: Credentials = Depends(bearer)) -> Any:
    with writing(project, credentials, "annotator") as (session, user):
        task = tasks.next_task(session, user, project.settings)
        view = tasks.task_view(task) if task else None
    return view if view else Response(status_code=204)


@router.post("/api/annotations", status_code=201)
def submit(
    project: ServedProject, body: dict[str, Any] = Body(...), credentials: Credentials = Depends(bearer)
) -> dict[str, Any]:
    with writing(project, credentials, "annotator") as (session, user):
        annotation = tasks.submit(session, user, project.settings, body)
        return {"task_id": annotation.task_id, "status": "done"}


@router.put("/api/annotations/{task_id}")
def edit(
    project: ServedProject,
    task_id: int,
    body: dict[str, Any] = Body(...),
    credentials: Credentials = Depends(bearer),
) -> dict[str, Any]:
    with writing(project, credentials, "annotator") as (session, user):
        annotation = tasks.edit(session, user, task_id, body)
        return {"task_id": annotation.task_id, "status": "done"}


@router.get("/api/annotations/mine")
def mine(project: ServedProject, credentials: Credentials = Depends(bearer)) -> list[dict[str, Any]]:
    with project.session(readonly=True) as session:
        return tasks.mine(session, authenticate(session, credentials, "annotator"))


@router.post("/api/tasks/{task_id}/skip")
def skip(
    project: ServedProject,
    task_id: int,
    body: dict[str, Any] = Body(...),
    credentials: Credentials = Depends(bearer),
) -> dict[str, Any]:
    with writing(project, credentials, "annotator") as (session, user):
        task = tasks.skip(session, user, task_id, body.get("reason"))
        return {"task_id": task.id, "status": task.status}
