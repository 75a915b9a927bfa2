"""Manifests in, video files out: reading manifests into the database and resolving paths safely.

A manifest is read by core.manifest's rules (fields, ids, duplicates; as `critic score` and `toy rate`
read it); annotate adds its own: each path stays inside the videos root and names a file. Other
fields (seed, truth...) are kept and carried into the export.
"""

from __future__ import annotations

import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from videolift.core.errors import DataError, VideoError, VideoliftError
from videolift.core.manifest import ManifestRecord
from videolift.core.manifest import read_manifest as manifest_records
from videolift.core.schema import NUL_IN_PATH
from videolift.data.annotate.models import Video

# Keys of the export record itself: a manifest field with one of these names is not carried along
# (``adjudicated`` marks an admin's review: every rater's record would pass for one).
RESERVED = {"video", "video_id", "prompt", "annotator", "ratings", "adjudicated"}


def extra_fields(entry: ManifestRecord) -> dict[str, Any]:
    """The fields carried into the export records."""
    return {k: v for k, v in entry.fields.items() if k not in RESERVED}


class UnsafePath(VideoliftError):
    pass


def resolve_video(root: Path, relative: str) -> Path:
    """The file ``relative`` names under ``root``; UnsafePath if it is absolute, or if it (or a symlink
    on the way) leads outside ``root``. ``root`` must already be resolved."""
    if "\x00" in relative:  # resolve() would raise a ValueError: a 500 for the critic upload's ?dir=
        raise UnsafePath(f"video path {relative!r}: {NUL_IN_PATH}")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if not relative or pure.is_absolute() or Path(relative).is_absolute() or ".." in pure.parts:
        raise UnsafePath(f"video path {relative!r} must be relative to the videos root, without '..'")
    path = (root / pure).resolve()
    if not path.is_relative_to(root):
        raise UnsafePath(f"video path {relative!r} leads outside the videos root {root}")
    return path


def subdirectory(root: Path, directory: str | Path) -> str:
    """``directory`` (a path on disk) as a prefix relative to the videos root; VideoliftError if outside, or
    if no folder is there (every path under it would then match nothing, said line by line or not at all)."""
    resolved = Path(directory).resolve()
    if not resolved.is_relative_to(root):
        raise VideoliftError(f"{directory} is not inside the videos root {root}")
    if not resolved.is_dir():
        raise VideoliftError(f"{directory} is {'not a directory' if resolved.exists() else 'not found'}")
    return resolved.relative_to(root).as_posix()


Entries = list[tuple[int, ManifestRecord, Path]]


def read_manifest(path: str | Path, root: Path, base: str = "") -> Entries:
    """Validate every line (core.manifest's rules, then a safe path to a file) before anything is stored.
    ``base``: the manifest's paths are relative to that subdirectory of the root (stored paths, and the
    ids they stand in for, include it)."""
    entries = []
    for entry in manifest_records(path, prefix="" if base in ("", ".") else base):
        try:
            file = resolve_video(root, entry.video)
        except UnsafePath as exc:
            raise DataError(str(exc), file=path, line=entry.line, field="video") from None
        if not file.is_file():
            what = "is a directory, not a video file" if file.is_dir() else "not found"
            raise DataError(f"video {file} {what}", file=path, line=entry.line, field="video")
        entries.append((entry.line, entry, file))
    return entries


def import_manifest(
    session: Session,
    path: str | Path,
    root: Path,
    *,
    rate: bool = True,
    base: str = "",
    allow_unplayable: bool = False,
) -> list[Video]:
    entries = read_manifest(path, root, base)
    return add_videos(session, path, entries, rate=rate, allow_unplayable=allow_unplayable)


def _check_free_id(
    session: Session, video_id: str, path: str | Path, line: int, but: int | None = None
) -> None:
    """Refuse a second rated video of ``video_id``: the export, agreement and reviews know videos by it."""
    taken = select(Video.id).where(Video.video_id == video_id, Video.rate, Video.id != (but or -1))
    if session.scalar(taken):
        raise DataError(f"video_id {video_id!r} is already in the project", file=path, line=line)


def add_videos(
    session: Session, path: str | Path, entries: Entries, *, rate: bool = True, allow_unplayable: bool = False
) -> list[Video]:
    """Add a read manifest's videos (``rate``: hand them out for rating), one per entry, in order. A video
    already in the project (same path) is reused, if its prompt is the same. One the raters' browsers
    would not play is refused unless ``allow_unplayable``."""
    from videolift.core.video import browser_problem, probe_video  # PyAV: only when importing

    position = session.scalar(select(func.max(Video.position))) or 0
    videos = []
    for line, entry, file in entries:
        video = session.scalar(select(Video).where(Video.video == entry.video))
        if video is not None:
            if video.prompt != entry.prompt:
                raise DataError(
                    f"{entry.video} is already in the project with another prompt", file=path, line=line
                )
            if rate and not video.rate:  # a pair's video, rated from now on: its id must be free too
                _check_free_id(session, video.video_id, path, line, but=video.id)
            video.rate = video.rate or rate
            videos.append(video)
            continue
        if rate:
            _check_free_id(session, entry.key, path, line)
        try:
            info = probe_video(file)
            why = None if allow_unplayable else browser_problem(file)
        except VideoError as exc:
            raise DataError(f"unreadable video: {exc}", file=path, line=line, field="video") from None
        if why:  # FFmpeg reads it, but raters would find only "Video does not play"
            raise DataError(
                f"{entry.video}: {why}, which browsers do not play: convert it, e.g. `ffmpeg -i IN -c:v "
                "libx264 -pix_fmt yuv420p -movflags +faststart OUT.mp4`, or pass --allow-unplayable if your "
                "raters' browsers play it",
                file=path,
                line=line,
                field="video",
            )
        position += 1
        video = Video(
            video=entry.video,
            video_id=entry.key,
            prompt=entry.prompt,
            extra=extra_fields(entry),
            key=secrets.token_urlsafe(12),
            fps=info.fps or 8.0,
            num_frames=info.num_frames,
            rate=rate,
            position=position,
        )
        session.add(video)
        videos.append(video)
    session.flush()
    return videos


def media_url(video: Video) -> str:
    return f"/media/{video.key}"
