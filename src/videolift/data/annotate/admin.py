"""What the admin sees and gets: progress, HRA export, agreement, and model-assisted review.

Review (model-assisted, an extension): import a critic's scores of the rated videos, list the videos
where the critic and the raters disagree, and let an admin record the adjudicated ratings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import mean
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from videolift.core.errors import DataError, UsageError, VideoliftError
from videolift.core.jsonl import finite_number, iter_json_lines, validation_field
from videolift.core.schema import (
    DIMENSIONS,
    LABEL_RANK,
    HRARecord,
    Rating,
    parse_dimension,
    parse_label,
    tidy_path,
)
from videolift.data import stats
from videolift.data.annotate.models import Annotation, CriticScore, Pair, Review, Task, User, Video, utcnow
from videolift.data.annotate.project import Settings, clean_name
from videolift.data.annotate.tasks import TaskError, validate_ratings
from videolift.data.annotate.videos import media_url


def progress(session: Session, settings: Settings) -> dict[str, Any]:
    """Per annotator (done / skipped / open) and per video (done / open / skipped, and who skipped it
    why) of the rating study."""
    per_user = {
        name: Counter() for name in session.scalars(select(User.name).where(User.role == "annotator"))
    }
    for name, kind, status, n in session.execute(
        select(User.name, Task.video_id.is_(None), Task.status, func.count(Task.id))
        .join(User, Task.annotator_id == User.id)
        .group_by(User.name, Task.video_id.is_(None), Task.status)
    ):
        per_user[name][("pair_" if kind else "") + status] += n
    per_video: dict[int, Counter] = {}
    for video_id, status, n in session.execute(
        select(Task.video_id, Task.status, func.count(Task.id))
        .where(Task.video_id.is_not(None))
        .group_by(Task.video_id, Task.status)
    ):
        per_video.setdefault(video_id, Counter())[status] += n
    # Why raters skipped a video ("Video does not play", "Offensive content"): a flag the admin must
    # see, or a broken or offensive video goes on being handed out with nobody told.
    skips: dict[int, list[dict[str, str]]] = {}
    for video_pk, name, reason in session.execute(
        select(Task.video_id, User.name, Task.skip_reason)
        .join(User, Task.annotator_id == User.id)
        .where(Task.video_id.is_not(None), Task.status == "skipped")
        .order_by(Task.id)
    ):
        skips.setdefault(video_pk, []).append({"annotator": name, "reason": reason})
    videos = session.execute(
        select(Video.id, Video.video_id, Video.prompt).where(Video.rate).order_by(Video.position)
    ).all()
    r = settings.ratings_per_video
    rows = [
        {
            "video_id": vid,
            "prompt": prompt,
            "done": c["done"],
            "open": c["open"],
            "skipped": c["skipped"],
            "skip_reasons": skips.get(pk, []),
        }
        for pk, vid, prompt in videos
        for c in [per_video.get(pk, Counter())]
    ]
    keys = ("done", "skipped", "open", "pair_done", "pair_skipped", "pair_open")
    # The pairwise study's totals: a study of pairs alone read "0/0 ratings, 0/0 videos complete".
    per_pair = Counter(
        dict(session.execute(select(Task.pair_id, func.count(Task.id)).where(
            Task.pair_id.is_not(None), Task.status == "done").group_by(Task.pair_id)).all())
    )  # fmt: skip
    pairs = session.scalar(select(func.count(Pair.id))) or 0
    rp = settings.ratings_per_pair
    return {
        "ratings_per_video": r,
        "videos": len(rows),
        "videos_complete": sum(row["done"] >= r for row in rows),
        "ratings_done": sum(row["done"] for row in rows),
        "ratings_needed": r * len(rows),
        "ratings_per_pair": rp,
        "pairs": pairs,
        "pairs_complete": sum(n >= rp for n in per_pair.values()),
        "judgements_done": sum(per_pair.values()),
        "judgements_needed": rp * pairs,
        "annotators": [{"name": name, **{k: c[k] for k in keys}} for name, c in sorted(per_user.items())],
        "per_video": rows,
    }


def export_records(session: Session, *, with_reviews: bool = False) -> list[HRARecord]:
    """One HRA record per (video, annotator) with a submitted rating, in manifest order. With
    ``with_reviews``, also one record per adjudicated video (annotator ``review:<admin>``,
    ``adjudicated: true``)."""
    rows = session.execute(
        select(Video, User.name, Annotation.result, Task.id)
        .join(Task, Task.video_id == Video.id)
        .join(User, Task.annotator_id == User.id)
        .join(Annotation, Annotation.task_id == Task.id)
        .order_by(Video.position, User.name)
    ).all()
    records = [_record(video, name, result, task_id=task) for video, name, result, task in rows]
    if with_reviews:
        for video, review in session.execute(
            select(Video, Review).join(Review, Review.video_id == Video.id).order_by(Video.position)
        ):
            records.append(_record(video, f"review:{review.reviewer}", review.ratings, adjudicated=True))
    return records


def _record(
    video: Video, annotator: str, ratings: dict[str, Any], task_id: int | None = None, **marks: Any
) -> HRARecord:
    fields = video.extra | marks
    try:
        return HRARecord(
            video_id=video.video_id,
            video=video.video,
            prompt=video.prompt,
            annotator=annotator,
            ratings=ratings,
            **fields,
        )
    except ValidationError as exc:  # e.g. a blank prompt, which projects made before 2026-12-06 accepted
        field, message = validation_field(exc)
        # Name the rating too: a bad stored rating is fixed (or asked again) per annotator and task.
        task = f", task {task_id}" if task_id is not None else ""
        raise VideoliftError(
            f"video {video.video_id!r} (annotator {annotator!r}{task}) cannot be exported as an HRA record "
            f"({field}: {message})"
        ) from None


def agreement(records: list[HRARecord]) -> dict[str, Any]:
    """Krippendorff's alpha (ordinal) and pairwise agreement per dimension, over videos rated twice or more."""
    by_video = stats.labels_by_video(r for r in records if not stats.is_review(r))
    return {dim.value: stats.agreement(by_video[dim]) for dim in DIMENSIONS}


def _critic_rating(value: Any) -> dict[str, Any] | None:
    """One dimension of a critic line -> {label, reason, score}; None when the critic's answer had no
    parsable label (``videolift critic score`` writes ``label: null`` then)."""
    if not isinstance(value, dict):
        raise ValueError("expected {label, reason, score}")
    if value.get("label") is None:
        return None
    try:
        rating = Rating(label=value["label"], reason=value.get("reason"))
    except ValidationError as exc:
        raise ValueError(validation_field(exc)[1]) from None
    score = value.get("score")
    if score is not None and not finite_number(score):
        raise ValueError(f"score must be a finite number or null, got {score!r}")
    return rating.model_dump(mode="json") | {"score": score}


CRITIC_NAME = 200  # characters: CriticScore.critic's column


def critic_name(name: str) -> str:
    """A critic's name as it is stored. An empty one could not be chosen again (no critic given: the
    last one), a longer one overflows its column (on PostgreSQL)."""
    return clean_name(name, "a critic name", CRITIC_NAME)


def import_critic(session: Session, path: str | Path, critic: str, base: str = "") -> dict[str, int]:
    """Load critic scores (JSONL ``{video, prompt, ratings: {dim: {label, reason, score}}, reward}``, as
    ``videolift critic score`` writes), matched to project videos by ``video_id`` if given, else by
    ``video`` (``base``: the folder inside the videos root those paths are relative to, as ``add-videos
    --dir`` took it). Unparsed answers (label null) are left out. Importing again under the same name
    replaces that critic whole: its scores of videos the new file leaves out are dropped (counted in
    ``dropped``; a re-import kept them, mixing two runs of the critic in one review). Adjudications
    (`Review`) are the admin's, keyed by video alone, and stay."""
    critic = critic_name(critic)
    before = set(session.scalars(select(CriticScore.video_id).where(CriticScore.critic == critic)))
    # All at once, before the new rows: the newest rows then mark the last imported critic (the
    # review's default), also when a critic is imported again. A refused file rolls this back.
    session.execute(delete(CriticScore).where(CriticScore.critic == critic))
    by_path = dict(session.execute(select(Video.video, Video.id)).all())
    by_id = dict(session.execute(select(Video.video_id, Video.id).where(Video.rate)).all())
    counts = Counter()
    seen: dict[int, int] = {}  # project video -> the line that scored it
    for line, obj in iter_json_lines(path):
        ratings = obj.get("ratings")
        if not isinstance(ratings, dict):
            raise DataError(
                "expected an object {dimension: {label, reason, score}}",
                file=path,
                line=line,
                field="ratings",
            )
        clean = {}
        for dim, value in ratings.items():
            try:
                rating = _critic_rating(value)
                if rating is None:
                    counts["unparsed"] += 1
                else:
                    clean[parse_dimension(dim).value] = rating
            except ValueError as exc:
                raise DataError(str(exc), file=path, line=line, field=f"ratings.{dim}") from None
        if not isinstance(obj.get("video"), str | None):
            raise DataError(f"expected a string, got {obj['video']!r}", file=path, line=line, field="video")
        vid = obj.get("video_id")  # as the manifest gave it: a string or an integer (stored as its digits)
        if isinstance(vid, bool) or not isinstance(vid, str | int | None):
            raise DataError(
                f"{vid!r}: not a video id (a string or an integer)", file=path, line=line, field="video_id"
            )
        vid = None if vid is None else str(vid)
        reward = obj.get("reward")
        if reward is not None and not finite_number(reward):
            raise DataError(
                f"expected a finite number or null, got {reward!r}", file=path, line=line, field="reward"
            )
        video = obj.get("video")
        if video:
            video = tidy_path(f"{base}/{video}" if base else video)  # as add-videos stored it (".": nothing)
        video_pk = by_id.get(vid) or by_path.get(video)
        if video_pk is None:
            counts["unmatched"] += 1
            continue
        if video_pk in seen:  # which score would the review show?
            field = "video_id" if by_id.get(vid) else "video"  # what matched it
            raise DataError(
                f"this video was scored on line {seen[video_pk]} already", file=path, line=line, field=field
            )
        seen[video_pk] = line
        session.add(CriticScore(video_id=video_pk, critic=critic, ratings=clean, reward=reward))
        counts["matched"] += 1
    if not counts["matched"]:  # raised inside the session: nothing is stored
        raise DataError(
            f"no line matches a video of the project ({counts['unmatched']} lines; expected `critic score` "
            "lines of the project's videos, by video_id or video path)",
            file=path,
        )
    counts["dropped"] = len(before - seen.keys())
    return {key: counts[key] for key in ("matched", "unmatched", "unparsed", "dropped")}


def critics(session: Session) -> list[str]:
    return list(session.scalars(select(CriticScore.critic).distinct().order_by(CriticScore.critic)))


def chosen_critic(session: Session, critic: str | None = None) -> str | None:
    """The critic a review compares with: ``critic`` (TaskError(404) if none of that name was imported),
    else the last imported (its scores have the newest rows: `import_critic` replaces rows); None if
    none was. It was the last by name, and the admin page showed the first by name over its list."""
    names, critic = critics(session), (critic or "").strip() or None
    if critic is not None and critic not in names:  # a typo listed nothing, as if every rater agreed
        imported = f"imported: {', '.join(map(repr, names))}" if names else "none is imported yet"
        raise TaskError(404, f"no critic {critic!r} ({imported})")
    return critic or session.scalar(select(CriticScore.critic).order_by(CriticScore.id.desc()).limit(1))


def disagreements(session: Session, critic: str | None = None, min_gap: float = 1.0) -> list[dict[str, Any]]:
    """Rated videos where the critic's label is at least ``min_gap`` ranks (Bad 0, Normal 1, Good 2) from
    the raters' mean on some dimension, the largest total gap first. ``critic``: the last imported if not
    given; TaskError(404) if none of that name was."""
    if not 0 <= min_gap <= 2:  # NaN among them: no gap is at least NaN, and nothing was listed
        raise UsageError(
            f"the minimum gap must be a number from 0 to 2 (Bad 0, Normal 1, Good 2), got {min_gap}"
        )
    critic = chosen_critic(session, critic)
    if critic is None:
        return []
    human: dict[int, dict[str, list[dict[str, str]]]] = {}
    for video_pk, result in session.execute(
        select(Task.video_id, Annotation.result)
        .join(Annotation, Annotation.task_id == Task.id)
        .where(Task.video_id.is_not(None))
    ):
        for dim, rating in result.items():
            human.setdefault(video_pk, {}).setdefault(dim, []).append(rating)
    reviews = dict(session.execute(select(Review.video_id, Review.ratings)).all())
    out = []
    for score, video in session.execute(
        select(CriticScore, Video)
        .join(Video, CriticScore.video_id == Video.id)
        .where(CriticScore.critic == critic)
    ):
        if video.id not in human:
            continue
        dims, total = {}, 0.0
        for dim in DIMENSIONS:
            raters, machine = human[video.id].get(dim.value), score.ratings.get(dim.value)
            if not raters or not machine:
                continue
            gap = abs(
                LABEL_RANK[parse_label(machine["label"])]
                - mean(LABEL_RANK[parse_label(r["label"])] for r in raters)
            )
            dims[dim.value] = {"critic": machine, "raters": raters, "gap": gap}
            total += gap if gap >= min_gap else 0.0
        if total:
            out.append(
                {
                    "video_id": video.video_id,
                    "video": video.video,
                    "prompt": video.prompt,
                    "video_url": media_url(video),
                    "critic": critic,
                    "reward": score.reward,
                    "gap": total,
                    "dimensions": dims,
                    "review": reviews.get(video.id),
                }
            )
    return sorted(out, key=lambda item: -item["gap"])


def save_review(session: Session, reviewer: str, video_id: str, ratings: Any) -> Review:
    video = session.scalar(select(Video).where(Video.video_id == video_id, Video.rate))
    if video is None:
        raise TaskError(404, f"no video {video_id!r} in the rating study")
    clean = validate_ratings(ratings)
    review = session.scalar(select(Review).where(Review.video_id == video.id))
    if review is None:
        review = Review(video_id=video.id, reviewer=reviewer, ratings=clean)
        session.add(review)
    review.reviewer, review.ratings, review.updated_at = reviewer, clean, utcnow()
    return review
