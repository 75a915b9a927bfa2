"""The released LiFT-Critic's answers (its ``LiFT-Critic/test/run_critic_13b.py`` / ``_40b.py``) as the
scores file `critic score` writes, so `align --scores` trains on the paper's own critic.

The release's script reads a JSON list of ``{"video_id", "video", "caption"}`` items (``--data_root``),
opens ``--image_root + video`` (plain string concatenation) and asks each of its three questions after the
caption; it writes each item back with the three answers added (``--save_file``), e.g.::

    {"video_id": "demo_1", "video": "1.mp4", "caption": "A fluffy panda ...",
     "semantic consistency": "Bad. The video does not show the panda wearing a futuristic spacesuit ...",
     "fidelity issues": "Bad. The panda's limbs are missing in the video, ...",
     "motion issues": "Normal. The panda's movements in the video are basically normal, ..."}

An entry is matched to the manifest record whose ``video`` it names (the file the critic read; its
``video_id`` is free text in the release and is not compared), and its caption must be the record's prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError
from videolift.core.files import check_outputs, content_hash
from videolift.core.jsonl import LONE_SURROGATE, atomic_write, json_kind, read_json, valid_unicode
from videolift.core.manifest import ManifestRecord, read_manifest
from videolift.core.reward import RewardConfig
from videolift.core.schema import DIMENSIONS, Dimension, parse_answer, tidy_path
from videolift.core.scores import rating_entry, score_line
from videolift.critic.score import summary_counts, summary_path, write_scores

# The keys the release's script writes its answers under (its ``question_type``), by dimension.
ANSWER_KEYS: dict[Dimension, str] = {
    Dimension.semantic_consistency: "semantic consistency",
    Dimension.motion_smoothness: "motion issues",
    Dimension.video_fidelity: "fidelity issues",
}
# The summary's ``run``: what made these scores, so `critic score` into the same file never takes them as
# its own (a "critic" no critic directory has) and a rerun can tell which output they came from.
RELEASED_CRITIC = "LiFT-Critic (released; answers imported by `critic import-lift`)"


def _text(entry: dict[str, Any], key: str, src: Path, i: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        got = "missing" if key not in entry else f"expected a string, got {json_kind(value)}"
        raise DataError(got, file=src, record=i, field=key)
    if not valid_unicode(value):  # JSON's "\\ud800": read fine, it broke the scores' write
        raise DataError(LONE_SURROGATE, file=src, record=i, field=key)
    return value


def _entries(src: Path, data: Any, records: Sequence[ManifestRecord]) -> dict[str, dict[str, Any]]:
    """The output's entries by the manifest video each one answers; every entry checked first."""
    if not isinstance(data, list):
        raise DataError(f"expected the critic's JSON list of videos, got {json_kind(data)}", file=src)
    if not data:
        raise DataError("the critic's output holds no videos", file=src)
    by_video = {r.video: r for r in records}
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DataError(f"expected an object, got {json_kind(entry)}", file=src, record=i)
        video = tidy_path(_text(entry, "video", src, i))  # as the manifest's paths are read
        if video in found:
            raise DataError(
                f"{video!r} already at element [{found[video][0]}]", file=src, record=i, field="video"
            )
        record = by_video.get(video)
        if record is None:
            raise DataError(
                f"{video!r} is no video of the manifest (the critic's input JSON must name each video by "
                "its manifest path, and its --image_root be the videos root, ending in /)",
                file=src,
                record=i,
                field="video",
            )
        caption = _text(entry, "caption", src, i)
        if caption.split() != record.prompt.split():  # the critic judged the video against this text
            raise DataError(
                f"{caption!r} is not the prompt of {video!r} in the manifest (line {record.line}: "
                f"{record.prompt!r})",
                file=src,
                record=i,
                field="caption",
            )
        for key in ANSWER_KEYS.values():
            _text(entry, key, src, i)
        found[video] = (i, entry)
    return {video: entry for video, (_, entry) in found.items()}


def _ratings(entry: dict[str, Any], reward: RewardConfig) -> dict[Dimension, dict[str, Any]]:
    """As `critic score` parses its own answers: the leading label, else unparsed with the text kept."""
    out = {}
    for dim in DIMENSIONS:
        answer = entry[ANSWER_KEYS[dim]]
        label, reason = parse_answer(answer)
        out[dim] = rating_entry(label, reason, reward, answer=answer)
    return out


def import_lift_output(
    src: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    reward_config: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``out`` (and ``OUT.summary.json``) from the released critic's output ``src``: one line per
    manifest record, in manifest order, as `critic score` writes it. Returns the summary. Every check
    runs before anything is written: an error leaves no output, and an earlier one whole."""
    src, manifest, out = Path(src), Path(manifest), Path(out)
    inputs = [("the critic's output", src), ("--manifest", manifest), ("--reward-config", reward_config)]
    check_outputs([("--out", out), ("--out's summary", summary_path(out))], inputs, overwrite=overwrite)
    reward = RewardConfig.load(reward_config)
    records = read_manifest(manifest)
    sha256 = content_hash(src) if src.is_file() else None  # a missing file: read_json names it
    entries = _entries(src, read_json(src), records)
    if missing := [r for r in records if r.video not in entries]:
        raise DataError(
            f"no answer for this video in {src} ({len(missing)} of {len(records)} manifest videos have none; "
            "import the answered ones with a manifest of only those)",
            file=manifest,
            line=missing[0].line,
            field="video",
        )
    lines = [score_line(r.fields, _ratings(entries[r.video], reward), reward) for r in records]
    run = {
        "critic": RELEASED_CRITIC,
        "lift_output": str(src.resolve()),
        "lift_output_sha256": sha256,
        "reward": reward.model_dump(mode="json"),
    }
    summary = {**summary_counts(lines), "run": run}
    write_scores(out, lines, summary)
    return summary


def write_lift_input(manifest: str | Path, out: str | Path, *, overwrite: bool = False) -> tuple[int, bool]:
    """The release script's input (its ``--data_root``) for the videos of ``manifest``: per record its
    ``video_id``, its ``video`` path (relative to the videos root: ``--image_root``) and its prompt as the
    ``caption``, which ``import_lift_output`` then matches back. Returns the number of videos and whether
    their paths are absolute (the script then needs ``--image_root ''``)."""
    manifest, out = Path(manifest), Path(out)
    check_outputs([("--out", out)], [("--manifest", manifest)], overwrite=overwrite)
    records = read_manifest(manifest)
    # The script opens --image_root + video, joined as strings: one root serves relative paths, or
    # absolute ones with an empty root, not both (`critic score` reads either under --videos).
    absolute = records[0].video.startswith("/")
    if other := next((r for r in records if r.video.startswith("/") != absolute), None):
        kind = "an absolute" if not absolute else "a relative"
        raise DataError(
            f"{other.video!r} is {kind} path, line {records[0].line}'s is not: the release's script joins one "
            "--image_root before every path as a string; give the manifest's paths all relative to the videos "
            "root, or all absolute",
            file=manifest,
            line=other.line,
            field="video",
        )
    # The caption stripped, as `critic score` asks (prompts.user_text): the release trained on
    # "<video>\n caption question", one space each side, and its script joins them as strings, so a
    # hand-written prompt's trailing newline would reach the critic. import-lift compares by words.
    items = [{"video_id": r.key, "video": r.video, "caption": r.prompt.strip()} for r in records]
    with atomic_write(out) as handle:
        json.dump(items, handle, ensure_ascii=False, indent=1)
    return len(items), absolute
