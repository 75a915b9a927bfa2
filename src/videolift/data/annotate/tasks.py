"""Handing out tasks and storing what raters submit.

Rules: each video gets ``ratings_per_video`` independent ratings (each pair ``ratings_per_pair``
judgements); nobody gets the same video (pair) twice; a rater only ever sees their own results.
A slot counts as taken while a task is done, or open and younger than the lease; skipped and expired
tasks free it. Claiming runs in one transaction that holds the write lock (SQLite) or the row lock
(PostgreSQL) while it counts, and the unique (rater, video) constraint backs it up.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from videolift.core.errors import VideoliftError
from videolift.core.schema import DIMENSIONS, Label, parse_dimension, parse_label, valid_unicode
from videolift.data.annotate.models import Annotation, Pair, Task, User, Video, utcnow
from videolift.data.annotate.project import Settings
from videolift.data.annotate.videos import media_url

CHOICES = ("A", "B", "tie")  # pairwise answers as displayed: A = left video, B = right video


class TaskError(VideoliftError):
    """A refused request; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _cutoff(settings: Settings) -> datetime:
    """Open tasks claimed before this have lost their lease."""
    try:
        return utcnow() - timedelta(minutes=settings.lease_minutes)
    except OverflowError:  # a lease longer than the calendar (--lease-minutes 1e10: "never"): none is lost
        return datetime.min


def _holds_slot(cutoff: datetime):
    return or_(Task.status == "done", and_(Task.status == "open", Task.claimed_at >= cutoff))


def _slots_taken(session: Session, task: Task, cutoff: datetime) -> int:
    """Slots of the task's video (pair) held by *other* tasks."""
    column = Task.video_id if task.video_id is not None else Task.pair_id
    target = task.video_id if task.video_id is not None else task.pair_id
    return session.scalar(
        select(func.count(Task.id)).where(column == target, Task.id != task.id, _holds_slot(cutoff))
    )


def _capacity(settings: Settings, task: Task) -> int:
    return settings.ratings_per_video if task.video_id is not None else settings.ratings_per_pair


def _available(user: User, settings: Settings, *, pairs: bool):
    """(query of the ids of videos -- or pairs -- the user can still get, their slots-taken count, the model)."""
    target, column = (Pair, Task.pair_id) if pairs else (Video, Task.video_id)
    capacity = settings.ratings_per_pair if pairs else settings.ratings_per_video
    taken = (
        select(func.count(Task.id))
        .where(column == target.id, _holds_slot(_cutoff(settings)))
        .correlate(target)
        .scalar_subquery()
    )
    mine = select(column).where(Task.annotator_id == user.id, column.is_not(None))
    query = select(target.id).where(target.id.not_in(mine), taken < capacity)
    return (query if pairs else query.where(Video.rate)), taken, target


def _claim(session: Session, user: User, settings: Settings, *, pairs: bool) -> Task | None:
    column = Task.pair_id if pairs else Task.video_id
    capacity = settings.ratings_per_pair if pairs else settings.ratings_per_video
    cutoff = _cutoff(settings)
    available, taken, target = _available(user, settings, pairs=pairs)
    # Fullest first: finished videos are usable (agreement, export) before the study ends.
    query = available.order_by(taken.desc(), target.position, target.id).limit(1)
    for _ in range(10):
        target_id = session.scalar(query)
        if target_id is None:
            return None
        # Lock the row and count again: on PostgreSQL another transaction may have claimed meanwhile.
        session.execute(select(target.id).where(target.id == target_id).with_for_update())
        if (
            session.scalar(select(func.count(Task.id)).where(column == target_id, _holds_slot(cutoff)))
            >= capacity
        ):
            continue
        task = Task(annotator_id=user.id, swapped=pairs and secrets.randbelow(2) == 1, claimed_at=utcnow())
        setattr(task, column.key, target_id)
        try:
            with session.begin_nested():
                session.add(task)
        except IntegrityError:  # a concurrent request of the same rater claimed it first
            continue
        return task
    raise TaskError(503, "too much contention while assigning a task; try again")


def next_task(session: Session, user: User, settings: Settings) -> Task | None:
    """The caller's open task if any (a reload must not burn slots), else a newly claimed video, else a
    newly claimed pair; None when nothing is left for them."""
    cutoff = _cutoff(settings)
    for task in session.scalars(
        select(Task).where(Task.annotator_id == user.id, Task.status == "open").order_by(Task.id)
    ):
        if task.claimed_at >= cutoff or _slots_taken(session, task, cutoff) < _capacity(settings, task):
            task.claimed_at = utcnow()
            return task
        task.status = "expired"  # the lease ran out and others have filled the video meanwhile
    return _claim(session, user, settings, pairs=False) or _claim(session, user, settings, pairs=True)


def task_view(task: Task) -> dict[str, Any]:
    """What the rater sees: never anyone else's results, nor (for pairs) which model is which."""
    if task.video is not None:
        video = task.video
        return {
            "task_id": task.id,
            "kind": "rate",
            "prompt": video.prompt,
            "video_url": media_url(video),
            "fps": video.fps,
            "num_frames": video.num_frames,
        }
    pair = task.pair
    left, right = (pair.video_b, pair.video_a) if task.swapped else (pair.video_a, pair.video_b)
    return {
        "task_id": task.id,
        "kind": "pair",
        "prompt": pair.prompt,
        "video_url": media_url(left),
        "video_url_b": media_url(right),
        "fps": left.fps,
        "num_frames": max(left.num_frames, right.num_frames),
    }


TEXT_LIMIT = 5000  # characters of a reason, comment or skip reason: LiFT's reasons are a sentence or two


def clean_text(value: Any, what: str, *, missing: str | None = None) -> str:
    """A rater's free text, stripped; TaskError(422) unless it is a string of valid Unicode (a lone
    surrogate would be stored and then break every export), without NUL, of at most ``TEXT_LIMIT`` characters, and,
    given the ``missing`` message, with something visible in it (not only spaces or zero-width ones)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise TaskError(422, f"{what} must be a string")
    if not valid_unicode(value):
        raise TaskError(422, f"{what} is not valid Unicode text (it holds a lone surrogate)")
    if "\x00" in value:  # SQLite stores it, PostgreSQL refuses it (a 500): refused on either
        raise TaskError(422, f"{what} holds a NUL character")
    if len(value) > TEXT_LIMIT:
        raise TaskError(422, f"{what} is {len(value)} characters long; at most {TEXT_LIMIT}")
    if missing is not None and not any(unicodedata.category(c)[0] in "LNPS" for c in value):
        raise TaskError(422, missing)
    return value.strip()


def validate_ratings(raw: Any) -> dict[str, dict[str, str]]:
    """``{dim: {label, reason}}`` for all three dimensions, a reason for Normal and Bad; TaskError(422)."""
    if not isinstance(raw, dict):
        raise TaskError(422, "ratings must be an object {dimension: {label, reason}}")
    out: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        try:
            dim = parse_dimension(key)
        except ValueError as exc:
            raise TaskError(422, str(exc)) from None
        if not isinstance(value, dict) or not isinstance(value.get("label"), str):
            raise TaskError(422, f"{dim}: expected {{label, reason}} with a label string")
        try:
            label = parse_label(value["label"])
        except ValueError as exc:
            raise TaskError(422, f"{dim}: {exc}") from None
        needed = f"{dim}: a reason is required for {label.value}" if label != Label.Good else None
        reason = clean_text(value.get("reason"), f"{dim}: the reason", missing=needed)
        out[dim.value] = {"label": label.value, "reason": reason}
    missing = [d.value for d in DIMENSIONS if d.value not in out]
    if missing:
        raise TaskError(422, f"missing rating for {', '.join(missing)}")
    return {d.value: out[d.value] for d in DIMENSIONS}


def validate_choices(raw: Any) -> dict[str, str]:
    """``{dim: "A" | "B" | "tie"}`` for all three dimensions (A = left as displayed)."""
    if not isinstance(raw, dict):
        raise TaskError(422, "choices must be an object {dimension: 'A' | 'B' | 'tie'}")
    out: dict[str, str] = {}
    for key, value in raw.items():
        try:
            dim = parse_dimension(key)
        except ValueError as exc:
            raise TaskError(422, str(exc)) from None
        choice = next(
            (c for c in CHOICES if isinstance(value, str) and value.strip().lower() == c.lower()), None
        )
        if choice is None:
            raise TaskError(422, f"{dim}: choice must be one of {', '.join(CHOICES)}, got {value!r}")
        out[dim.value] = choice
    missing = [d.value for d in DIMENSIONS if d.value not in out]
    if missing:
        raise TaskError(422, f"missing choice for {', '.join(missing)}")
    return {d.value: out[d.value] for d in DIMENSIONS}


def own_task(session: Session, user: User, task_id: Any) -> Task:
    """The caller's task, locked for the update; 404 for anyone else's (its existence is not revealed)."""
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise TaskError(422, f"task_id must be an integer, got {task_id!r}")
    if not 0 < task_id < 1 << 63:  # beyond SQLite's integers the query itself would fail
        raise TaskError(404, f"task {task_id} is not assigned to you")
    task = session.scalar(select(Task).where(Task.id == task_id).with_for_update())
    if task is None or task.annotator_id != user.id:
        raise TaskError(404, f"task {task_id} is not assigned to you")
    return task


def _result(task: Task, body: dict[str, Any]) -> dict[str, Any]:
    return (
        validate_ratings(body.get("ratings"))
        if task.video_id is not None
        else validate_choices(body.get("choices"))
    )


def submit(session: Session, user: User, settings: Settings, body: dict[str, Any]) -> Annotation:
    task = own_task(session, user, body.get("task_id"))
    result = _result(task, body)
    if task.status == "done":
        raise TaskError(  # shown on the rater page as it is, e.g. to a second tab of the same task
            409,
            f"task {task.id} is already saved (in another tab?): change it under My ratings "
            f"(PUT /api/annotations/{task.id})",
        )
    if task.status == "skipped":
        raise TaskError(409, f"task {task.id} was skipped")
    cutoff = _cutoff(settings)
    if (task.status == "expired" or task.claimed_at < cutoff) and _slots_taken(
        session, task, cutoff
    ) >= _capacity(settings, task):
        task.status = "expired"
        raise TaskError(
            409, f"task {task.id} expired and others have rated this video meanwhile; get the next task"
        )
    annotation = Annotation(task_id=task.id, annotator_id=user.id, result=result, comment=_comment(body))
    try:
        with session.begin_nested():
            session.add(annotation)
    except IntegrityError:  # a concurrent double submit (PostgreSQL; SQLite serialises writers)
        raise TaskError(409, f"task {task.id} is already submitted") from None
    task.status = "done"
    return annotation


def edit(session: Session, user: User, task_id: int, body: dict[str, Any]) -> Annotation:
    task = own_task(session, user, task_id)
    if task.annotation is None:
        raise TaskError(409, f"task {task.id} is not submitted yet; submit it with POST /api/annotations")
    seen, now = body.get("updated_at"), _stamp(task.annotation.updated_at)
    if seen is not None and seen != now:  # edited elsewhere (another tab) since this form was opened
        raise TaskError(
            409, f"task {task.id} was changed at {now}, after you opened it: reload My ratings to see it"
        )
    task.annotation.result = _result(task, body)
    task.annotation.comment = _comment(body)
    task.annotation.updated_at = utcnow()
    return task.annotation


def _stamp(when: datetime) -> str:
    return when.isoformat() + "Z"


def _comment(body: dict[str, Any]) -> str:
    return clean_text(body.get("comment"), "comment")


def skip(session: Session, user: User, task_id: int, reason: Any) -> Task:
    task = own_task(session, user, task_id)
    reason = clean_text(reason, "the reason", missing="a reason is required to skip a task")
    if task.status not in ("open", "expired"):
        raise TaskError(409, f"task {task.id} is {task.status}, it cannot be skipped")
    task.status, task.skip_reason = "skipped", reason
    return task


def mine(session: Session, user: User) -> list[dict[str, Any]]:
    """The caller's submitted and skipped tasks, newest first."""
    tasks = session.scalars(
        select(Task)
        .where(Task.annotator_id == user.id, Task.status.in_(("done", "skipped")))
        .order_by(Task.id.desc())
        # In a few queries, not three per task (a rater with 3,000 ratings waited a second).
        .options(
            selectinload(Task.video),
            selectinload(Task.annotation),
            selectinload(Task.pair).selectinload(Pair.video_a),
            selectinload(Task.pair).selectinload(Pair.video_b),
        )
    )
    out = []
    for task in tasks:
        item = task_view(task) | {"status": task.status}
        if task.status == "skipped":
            item["skip_reason"] = task.skip_reason
        elif task.annotation is not None:
            key = "ratings" if task.video_id is not None else "choices"
            item |= {
                key: task.annotation.result,
                "comment": task.annotation.comment,
                "submitted_at": _stamp(task.annotation.created_at),
                "updated_at": _stamp(task.annotation.updated_at),
            }
        out.append(item)
    return out


def user_progress(session: Session, user: User, settings: Settings) -> dict[str, int]:
    """Done / skipped so far and how many more videos and pairs this rater could still get."""
    counts = dict(
        session.execute(
            select(Task.status, func.count(Task.id)).where(Task.annotator_id == user.id).group_by(Task.status)
        ).all()
    )
    left = sum(
        session.scalar(
            select(func.count()).select_from(_available(user, settings, pairs=pairs)[0].subquery())
        )
        for pairs in (False, True)
    )
    return {
        "done": counts.get("done", 0),
        "skipped": counts.get("skipped", 0),
        "open": counts.get("open", 0),
        "left": left,
    }
