"""The annotation database: users, videos, pairs, tasks (one per rater and video or pair), results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC: SQLite keeps no time zones


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # "admin" | "annotator"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the bearer token
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Video(Base):
    """A video file under the videos root. ``rate`` marks videos of the rating study (pair-only videos
    are not handed out for rating); ``key`` is the opaque name it is served under, so a URL reveals
    neither the file path nor, in a pairwise study, the model."""

    __tablename__ = "videos"

    id: Mapped[int] = mapped_column(primary_key=True)
    video: Mapped[str] = mapped_column(String(1000), unique=True)  # path relative to the videos root
    video_id: Mapped[str] = mapped_column(String(1000), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    extra: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # other manifest fields (seed, truth...)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    fps: Mapped[float] = mapped_column(default=8.0)
    num_frames: Mapped[int] = mapped_column(default=0)
    rate: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # manifest order: tasks go out in this order


class Pair(Base):
    """Two videos of the same prompt from models A and B, for a pairwise human study."""

    __tablename__ = "pairs"
    __table_args__ = (UniqueConstraint("video_a_id", "video_b_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_a: Mapped[str] = mapped_column(String(200))
    model_b: Mapped[str] = mapped_column(String(200))
    video_a_id: Mapped[int] = mapped_column(ForeignKey("videos.id"))
    video_b_id: Mapped[int] = mapped_column(ForeignKey("videos.id"))
    prompt: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)

    video_a: Mapped[Video] = relationship(foreign_keys=[video_a_id])
    video_b: Mapped[Video] = relationship(foreign_keys=[video_b_id])


class Task(Base):
    """One rater's slot on one video (or pair). The unique constraints are what guarantee that nobody
    gets a video twice, whatever the concurrency. ``status``: open -> done | skipped | expired."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("annotator_id", "video_id"),
        UniqueConstraint("annotator_id", "pair_id"),
        Index("ix_tasks_video_status", "video_id", "status"),
        Index("ix_tasks_pair_status", "pair_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    video_id: Mapped[int | None] = mapped_column(ForeignKey("videos.id"))
    pair_id: Mapped[int | None] = mapped_column(ForeignKey("pairs.id"))
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)  # pair shown as (B, A)
    status: Mapped[str] = mapped_column(String(16), default="open")
    skip_reason: Mapped[str] = mapped_column(Text, default="")
    claimed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    annotator: Mapped[User] = relationship()
    video: Mapped[Video | None] = relationship()
    pair: Mapped[Pair | None] = relationship()
    annotation: Mapped[Annotation | None] = relationship(back_populates="task", uselist=False)


class Annotation(Base):
    """The submitted result of a task: ``{dim: {label, reason}}`` for a rating, ``{dim: "A"|"B"|"tie"}``
    (as displayed, left = A) for a pair. One per task: a double submit hits the unique constraint."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("task_id", "annotator_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), unique=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    task: Mapped[Task] = relationship(back_populates="annotation")


class CriticScore(Base):
    """A critic's ratings of a video, imported for model-assisted review."""

    __tablename__ = "critic_scores"
    __table_args__ = (UniqueConstraint("video_id", "critic"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"))
    critic: Mapped[str] = mapped_column(String(200))
    ratings: Mapped[dict[str, Any]] = mapped_column(JSON)  # {dim: {label, reason, score}}
    reward: Mapped[float | None] = mapped_column(default=None)


class Review(Base):
    """An adjudicated rating of a video (model-assisted review), by an admin."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"), unique=True)
    reviewer: Mapped[str] = mapped_column(String(100))
    ratings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
