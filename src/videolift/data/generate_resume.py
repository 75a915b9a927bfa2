"""What ``generate`` finds in OUT from an earlier run, and what it makes of it: OUT's layout, files of
another tool (refused), the earlier run's recorded settings (resumed when they match), its ranks' logs
(the videos it finished), and the deletion ``--overwrite`` allows."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videolift.core.errors import DataError, VideoliftError
from videolift.core.files import refuse_file_as_dir
from videolift.core.jsonl import read_json, read_rank_logs
from videolift.data.prompt_files import PromptRecord

if TYPE_CHECKING:
    from videolift.data.generate import WorkItem

MANIFEST = "manifest.jsonl"
RUN_CONFIG = "generation.json"
VIDEOS = "videos"
PARTS = ".parts"
VIDEOS_ELSEWHERE = "give the videos their own directory"


# ---- OUT's files, an earlier run's settings ------------------------------------------------------


def check_out(out: Path) -> None:
    """Refuse an OUT whose manifest or videos another tool wrote (e.g. a toy corpus, with its ground
    truth): this stage would replace them, and --overwrite deletes only a generate run's own files."""
    refuse_file_as_dir(out)
    if (out / "model_index.json").is_file():  # the videos would go among a model's components
        raise VideoliftError(
            f"--out {out}: holds a diffusers pipeline (model_index.json); {VIDEOS_ELSEWHERE}"
        )
    if (out / RUN_CONFIG).is_file():  # a generate run: resumed or refused by its settings
        return
    for path in (out / MANIFEST, out / VIDEOS):
        # an empty videos/ is what a generate run killed before writing its settings leaves
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            raise VideoliftError(
                f"--out {out}: {path} was not written by `videolift generate` (there is no {out / RUN_CONFIG}), "
                "and generating here would replace it. Use another --out; --overwrite does not delete "
                "files of other tools."
            )


ADDED_LATER = frozenset({"model_files", "model_commit"})  # run-config keys older generation.json files lack


def check_run_config(out: Path, run: dict[str, Any]) -> str | None:
    """Why OUT cannot be resumed with these settings, or None when it can (or holds nothing yet)."""
    path = out / RUN_CONFIG
    if not path.exists():
        return None
    before = read_json(path)
    # Runs written before a key existed resume as they did then (their files were not recorded).
    keys = before.keys() | (run.keys() - ADDED_LATER)
    changed = [k for k in sorted(keys) if run.get(k) != before.get(k)]
    return _settings_differ(before, run, changed) if changed else None


def earlier_run_conflict(out: Path, known: dict[str, Any]) -> str | None:
    """Why ``generate_videos`` would refuse OUT, judged on the ``known_settings`` alone (so that `eval`
    can refuse before its first model generates); None when it may resume or start afresh."""
    if not (out / RUN_CONFIG).exists() or not _holds_videos(out):
        return None
    before = read_json(out / RUN_CONFIG)
    changed = [k for k in sorted(known) if k in before and known[k] != before[k]]
    return _settings_differ(before, known, changed) if changed else None


def earlier_prompts_conflict(out: Path, items: list[WorkItem], prompts: list[PromptRecord]) -> str | None:
    """Why ``generate_videos`` would refuse OUT for its prompts (a prompt whose video an earlier run logged
    has another text now), so that `eval` can refuse before its first model generates; None when it may
    resume. A log damaged mid-file raises DataError, as that run's resume would."""
    if not (out / PARTS).exists():
        return None
    return finished(out, items, prompts, read_logs(out))[1]


def _settings_differ(before: dict[str, Any], run: dict[str, Any], changed: list[str]) -> str:
    return "settings differ: " + "; ".join(f"{k} was {before.get(k)!r}, now {run.get(k)!r}" for k in changed)


# ---- resume state --------------------------------------------------------------------------------


def read_logs(out: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """Every logged video of every rank (any world size); a torn last line is ignored."""
    return read_rank_logs(out / PARTS, lambda r: (r["prompt_index"], r["candidate"]))


def finished(
    out: Path,
    items: list[WorkItem],
    prompts: list[PromptRecord],
    logged: dict[tuple[int, int], dict[str, Any]],
) -> tuple[set[tuple[int, int]], str | None]:
    """Keys of finished videos, and a conflict message if the prompt file changed under OUT."""
    done = set()
    for item in items:
        record = logged.get(item.key)
        if record is None:
            continue
        if record["prompt"] != prompts[item.prompt_index].prompt:
            return set(), (
                f"prompt {item.prompt_index} (line {prompts[item.prompt_index].line}) was "
                f"{record['prompt']!r} in the earlier run, now {prompts[item.prompt_index].prompt!r}"
            )
        path = out / item.video
        if record["seed"] == item.seed and path.is_file() and path.stat().st_size > 0:
            done.add(item.key)
    return done, None


def _holds_videos(out: Path) -> bool:
    """Whether a run into OUT got as far as its first video (a manifest, or a rank's logged video)."""
    return (out / MANIFEST).exists() or _logged_anything(out)


def _logged_anything(out: Path) -> bool:
    """Whether any rank logged a video; the logs are not parsed (a damaged one is --overwrite's to fix)."""
    return any(log.stat().st_size for log in (out / PARTS).glob("rank*.jsonl"))


def remove_outputs(out: Path) -> None:
    """Delete what this stage wrote into OUT (and nothing else)."""
    for name in (VIDEOS, PARTS):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST, RUN_CONFIG):
        (out / name).unlink(missing_ok=True)


# ---- the decision --------------------------------------------------------------------------------


def resume_decision(
    out: Path, run: dict[str, Any], items: list[WorkItem], prompts: list[PromptRecord], *, overwrite: bool
) -> tuple[set[tuple[int, int]], str | None]:
    """What a run resumes from OUT: the keys of the videos an earlier run finished, and why its files
    must go instead (its settings or prompts differ, or its log is damaged), which only ``overwrite``
    allows. Every rank decides from the same state, before anyone writes."""
    conflict = check_run_config(out, run)
    if conflict and not _holds_videos(out):
        conflict = None  # a run stopped before its first video (e.g. refused settings): nothing to keep
    done: set[tuple[int, int]] = set()
    if conflict is None and (out / PARTS).exists():
        try:
            done, conflict = finished(out, items, prompts, read_logs(out))
        except DataError as exc:  # a log damaged mid-file (a power loss): --overwrite starts over
            if not overwrite:
                raise
            conflict = f"its log is damaged: {exc}"
    if conflict and not overwrite:
        raise VideoliftError(
            f"--out {out} holds an earlier generation run that does not match this one ({conflict}). "
            "Use another --out, or --overwrite to delete its videos and start over."
        )
    return done, conflict
