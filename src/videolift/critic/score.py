"""Scoring a manifest of videos with a trained critic (``critic.answers``): batched, resumable, sharded.

Each chunk of videos is rated in one batched ``generate`` call (``answers.rate``; a describe-then-rate or
check-then-rate critic's first pass is one more). Output lines, in manifest order::

    {"video": ..., "prompt": ..., "video_id": ...,            # manifest fields carried along
     "ratings": {dim: {"label": "Bad" | null, "reason": ..., "score": 0.05 | null}},
     "reward": 0.3 | null,
     "description": ...,                                      # describe-then-rate critics only
     "check": ...}                                            # check-then-rate critics only

An answer with no valid leading label is unparsed: ``label`` and ``score`` are null, the raw text is
kept as ``answer``, and it is counted in the summary. The reward aggregates the parsed dimensions only
(null if none parsed). A video that cannot be read gets ``"error"`` and no ratings.

Resume and sharding: rank r scores ``pending[r::world]`` and appends each finished video to
``OUT.parts/rank{r}.jsonl``; rerunning the same command skips what any rank logged (and what a finished
``OUT`` of the same critic and settings holds) for the same manifest record; rank 0 merges into ``OUT``
(atomically) and ``OUT.summary.json`` at the end, then removes the parts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from videolift.core.errors import DataError, VideoError, VideoliftError
from videolift.core.files import check_outputs, replacing
from videolift.core.jsonl import (
    append_jsonl,
    atomic_write,
    iter_json_lines,
    read_json,
    repair_log,
    write_jsonl,
)
from videolift.core.manifest import read_manifest as manifest_records
from videolift.core.manifest import video_key
from videolift.core.schema import Dimension
from videolift.core.scores import SCORED_KEYS, score_line
from videolift.core.video import sample_views
from videolift.critic.answers import Critic, check, describe, rate
from videolift.critic.spec import CriticSpec
from videolift.data.generate_resume import ADDED_LATER

# ---- manifests and resumable, sharded runs ---------------------------------------------------------

# A record's frames as the critic and as its check model view them, or why its video could not be read.
_Frames = tuple[np.ndarray, np.ndarray] | str


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The records' fields as written (carried into the score lines), read by core.manifest's rules."""
    return [record.fields for record in manifest_records(path)]


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def _run_signature(critic: Critic, temperature: float, seed: int) -> dict[str, Any]:
    spec = critic.spec.model_dump_json()
    # The weights' identity too: retraining a critic in the same directory must not reuse old scores.
    weights = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in critic.directory.iterdir()
        if p.suffix in (".safetensors", ".bin")
    )
    return {
        "critic": str(critic.directory.resolve()),
        "spec_sha256": hashlib.sha256(spec.encode()).hexdigest(),
        "weights_sha256": hashlib.sha256(json.dumps(weights).encode()).hexdigest(),
        "temperature": temperature,
        "seed": seed if temperature > 0 else None,
        # What it computes in: greedy answers may differ between float32 and bfloat16.
        "dtype": str(next(critic.model.parameters()).dtype).removeprefix("torch."),
        # Whether each video's questions were to be answered from one prefill of it (critic.prefix): a batch
        # it cannot serve (generate_answers falls back) is answered unshared all the same.
        "share_prefix": critic.shares_prefix,
    }


# Signature keys added later, with the value runs before them had (they scored in float32, unshared).
_SIGNED_LATER = {"dtype": "float32", "share_prefix": False}
# Recorded, not compared: how the answers were computed, not which (a shared prefix answers as the unshared
# batch does, to float rounding, as another --batch-size pads differently): a run resumes either way, and
# one whose lines were scored both ways records "mixed".
_RECORDED_ONLY = ("share_prefix",)


def _changed(recorded: dict[str, Any], signature: dict[str, Any]) -> list[str]:
    """The keys of ``signature`` in which a run's ``recorded`` signature differs."""
    recorded = _SIGNED_LATER | recorded
    return [k for k in signature if k not in _RECORDED_ONLY and recorded.get(k) != signature[k]]


def _recorded_with(out: Path, parts: Path, signature: dict[str, Any]) -> dict[str, Any]:
    """``signature`` with the recorded-only keys of the earlier runs whose lines this run keeps (its
    parts' logged lines, a finished OUT of the same settings): "mixed" where they differ from this run's."""
    earlier = []
    logged = any(p.stat().st_size for p in parts.glob("rank*.jsonl")) if parts.is_dir() else False
    if logged and (run_file := parts / "run.json").exists():
        earlier.append(read_json(run_file))
    if out.exists() and summary_path(out).exists():
        earlier.append(read_json(summary_path(out)).get("run") or {})
    kept = [_SIGNED_LATER | r for r in earlier if not _changed(r, signature)]
    mixed = [k for k in _RECORDED_ONLY if k in signature and any(r.get(k) != signature[k] for r in kept)]
    return signature | dict.fromkeys(mixed, "mixed")


@dataclass
class ScoreSummary:
    videos: int
    scored_here: int
    skipped: int
    errors: int
    unparsed: dict[str, int]
    mean_reward: float | None
    per_rank: dict[str, int]
    seconds: float
    world_size: int
    main_process: bool
    out: Path
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {video, error} of each error


def scored_for(line: dict[str, Any] | None, record: dict[str, Any]) -> bool:
    """Whether ``line`` scored this very record: its prompt, and its seed, model and whatever else the
    manifest says (a video regenerated under the same name, with another seed or model, is new). A key
    `generate` records only since a later version (``ADDED_LATER``: ``model_commit``) is no difference when
    the line lacks it: a run recorded before resumes as the same run, and rewrites its manifest with it."""
    return line is not None and all(
        _same(line.get(k), v)
        for k, v in record.items()
        if k not in SCORED_KEYS and not (k in ADDED_LATER and k not in line)
    )


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: a NaN read from the manifest equals the NaN written to the scores (NaN != NaN)."""
    return a == b or json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _line(
    record: dict[str, Any],
    ratings: dict[Dimension, dict[str, Any]] | None,
    critic: Critic,
    error: str | None,
    description: str | None = None,
    check: str | None = None,
) -> dict[str, Any]:
    if error is not None:  # nothing rated: null reward
        return {**score_line(record, {}, critic.spec.reward), "error": error}
    assert ratings is not None
    return score_line(record, ratings, critic.spec.reward, description=description, check=check)


def check_scores_out(
    out: Path, option: str = "--out", inputs: Sequence[tuple[str, Path | None]] = ()
) -> None:
    """An output path that is a directory or one of the inputs, found before scoring rather than when the
    scores are written (over that input). An existing one is not refused here: a rerun resumes it, and
    ``score_manifest`` refuses one of another critic or settings without ``overwrite``."""
    check_outputs([(option, out)], inputs, overwrite=True)


def check_videos_root(videos: Path) -> None:
    if not Path(videos).is_dir():  # every video would count as unreadable, and the run as done
        raise DataError("the videos root is not a directory (--videos)", file=videos)


def score_manifest(
    critic: Critic,
    manifest: str | Path,
    videos: str | Path,
    out: str | Path,
    *,
    batch_size: int = 24,
    temperature: float = 0.0,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    log: Any = print,
    overwrite: bool = False,
) -> ScoreSummary:
    """Score every manifest video into ``out`` (see the module doc for layout, resume and sharding).

    A previous run into ``out`` with another critic or settings is an error, or with ``overwrite``
    discarded.
    """
    import torch

    from videolift.core.distributed import sharded_state

    state = sharded_state(cpu=not torch.cuda.is_available())
    out, videos = Path(out), Path(videos)
    check_scores_out(out, inputs=[("--manifest", Path(manifest))])
    check_videos_root(videos)
    records = read_manifest(manifest)
    parts = parts_dir(out)
    signature = _run_signature(critic, temperature, seed)
    signature = _recorded_with(out, parts, signature)
    started = time.time()
    _claim_parts(state, out, parts, signature, overwrite=overwrite)
    previous = _finished_lines(out, signature)
    pending = _pending(state, records, parts, previous)
    mine = pending[state.process_index :: state.num_processes]
    log_path = parts / f"rank{state.process_index}.jsonl"
    repair_log(log_path)
    per_chunk = max(1, batch_size // len(critic.prompts("")))
    chunks = [mine[i : i + per_chunk] for i in range(0, len(mine), per_chunk)]
    load = _frame_loader(critic.spec, videos)

    if state.is_main_process:
        log(f"{len(pending)} of {len(records)} videos to score on {state.num_processes} process(es)")
    bar = tqdm(total=len(mine), unit="video", disable=not (progress and state.is_main_process))
    _score_chunks(critic, chunks, load, log_path, bar, workers=workers, temperature=temperature, seed=seed)
    state.wait_for_everyone()
    summary = None
    if state.is_main_process:
        summary = _merge(records, parts, out, started, previous, signature)
    state.wait_for_everyone()
    return _score_summary(state, out, records, pending, mine, summary, started)


def _claim_parts(state: Any, out: Path, parts: Path, signature: dict[str, Any], *, overwrite: bool) -> None:
    """OUT.parts made this run's before any process scores: a finished OUT of another critic or settings
    refused, and so are parts of another run (with ``overwrite``, both removed); then the run's
    ``signature`` written as its run.json."""
    run_file = parts / "run.json"
    # Every rank checks (an error on rank 0 alone would leave the others waiting at the barrier).
    before = read_json(run_file) if run_file.exists() else None
    finished = (
        read_json(summary_path(out)).get("run") if out.exists() and summary_path(out).exists() else None
    )
    # A finished file of other settings is not replaced unasked.
    if finished is not None and (changed := ", ".join(_changed(finished, signature))) and not overwrite:
        raise VideoliftError(
            f"{out}: holds the scores of another critic or settings ({changed}); pass --overwrite to replace "
            "them, or use another --out"
        )
    state.wait_for_everyone()
    if before is not None and (changed := ", ".join(_changed(before, signature))):
        if not overwrite:
            raise VideoliftError(
                f"{parts}: holds a scoring run with different settings ({changed}); delete it or use another --out"
            )
        if state.is_main_process:  # (a finished OUT stays, with its summary, until the merge replaces both)
            _remove_parts(parts)
    elif before is None and state.is_main_process:
        # Rank logs without a run.json are of settings nobody knows (what a removal of OUT.parts killed
        # midway left, when it could take run.json first): scored again rather than taken as this run's.
        for log in parts.glob("rank*.jsonl"):
            log.unlink()
    if state.is_main_process:
        parts.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_file) as handle:
            handle.write(json.dumps(signature, indent=1) + "\n")
    state.wait_for_everyone()


def _pending(
    state: Any, records: list[dict[str, Any]], parts: Path, previous: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The records no earlier run scored (in OUT if finished, else in the parts' logs), read alike by
    every process before any appends."""
    logged = _logged_lines(_rank_logs(parts), previous)
    state.wait_for_everyone()  # everyone has read the same state before anyone appends
    # A logged video counts only for the same record (a manifest edited between runs is rescored), and
    # not when it could not be read: the user may have fixed the file since.
    return [r for r in records if "error" in (_best_line(logged, r) or {"error": "none"})]


def _frame_loader(spec: CriticSpec, videos: Path) -> Callable[[list[dict[str, Any]]], list[_Frames]]:
    """The decoder of a chunk of records' videos (under ``videos``), as the critic and its check
    model view them."""
    own = (spec.num_frames, spec.frame_sampling)
    views = [own] if spec.check_view == own else [own, spec.check_view]

    def load(chunk: list[dict[str, Any]]) -> list[_Frames]:
        """Per record the critic's frames and the check model's (the same unless --check-frames), or an error."""
        out_frames: list[_Frames] = []
        for record in chunk:
            try:
                # One decode for both views, only their frames kept (not a whole 1080p clip in RAM)
                clips = sample_views(videos / record["video"], views)
                out_frames.append((clips[0], clips[-1]))
            except VideoError as exc:
                out_frames.append(str(exc))
        return out_frames

    return load


def _score_chunks(
    critic: Critic,
    chunks: list[list[dict[str, Any]]],
    load: Callable[[list[dict[str, Any]]], list[_Frames]],
    log_path: Path,
    bar: Any,
    *,
    workers: int,
    temperature: float,
    seed: int,
) -> None:
    """Every chunk's videos decoded (``load``) in threads ahead of the model, then rated, its lines
    appended to this process's ``log_path`` in order (``bar`` counting the videos)."""
    workers = max(1, workers)  # 0 from a caller: decoding still runs ahead of the model
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        # ``workers`` chunks decode at once while the model rates the one before them.
        ahead = deque(pool.submit(load, chunk) for chunk in chunks[:workers])
        for k, chunk in enumerate(chunks):
            frames = ahead.popleft().result()
            if k + workers < len(chunks):
                ahead.append(pool.submit(load, chunks[k + workers]))
            _rate_chunk(critic, chunk, frames, log_path, temperature=temperature, seed=seed)
            bar.update(len(chunk))


def _rate_chunk(
    critic: Critic,
    chunk: list[dict[str, Any]],
    frames: list[_Frames],
    log_path: Path,
    *,
    temperature: float,
    seed: int,
) -> None:
    """One chunk's readable videos rated in batched passes (described or checked first, if the critic
    does), then each record's line appended to ``log_path`` (an unreadable video's with its error)."""
    import torch

    spec = critic.spec
    ok = [i for i, f in enumerate(frames) if not isinstance(f, str)]
    if temperature > 0:
        torch.manual_seed(
            seed * 1_000_003 + int(hashlib.sha256(video_key(chunk[0]).encode()).hexdigest()[:8], 16)
        )
    pairs = [(frames[i][0], chunk[i]["prompt"]) for i in ok]
    seen = describe(critic, [f for f, _ in pairs]) if spec.describe else None
    checked = check(critic, [(frames[i][1], chunk[i]["prompt"]) for i in ok]) if spec.check else None
    ratings = rate(critic, pairs, temperature=temperature, descriptions=seen, checks=checked)
    by_index = dict(zip(ok, ratings, strict=True))
    seen_by_index = dict(zip(ok, seen or [], strict=False))
    checked_by_index = dict(zip(ok, checked or [], strict=False))
    for i, record in enumerate(chunk):
        error = frames[i] if isinstance(frames[i], str) else None
        line = _line(record, by_index.get(i), critic, error, seen_by_index.get(i), checked_by_index.get(i))
        append_jsonl(log_path, line)


def _score_summary(
    state: Any,
    out: Path,
    records: list[dict[str, Any]],
    pending: list[dict[str, Any]],
    mine: list[dict[str, Any]],
    summary: dict[str, Any] | None,
    started: float,
) -> ScoreSummary:
    """What this process reports of the run: its share, and the merged run's counts (``summary``: the
    main process's; none on the others)."""
    counts = summary or {"unparsed": {}, "errors": 0, "mean_reward": None, "per_rank": {}}
    return ScoreSummary(
        videos=len(records),
        scored_here=len(mine),
        skipped=len(records) - len(pending),
        errors=counts["errors"],
        unparsed=counts["unparsed"],
        mean_reward=counts["mean_reward"],
        per_rank=counts["per_rank"],
        seconds=time.time() - started,
        world_size=state.num_processes,
        main_process=state.is_main_process,
        out=out,
        unreadable=counts.get("unreadable", []),
    )


def _rank_logs(parts: Path) -> dict[str, list[dict[str, Any]]]:
    """Each rank log's lines in order (a torn last line left out), by rank ("0", "1", ...)."""
    return {
        path.stem.removeprefix("rank"): [line for _, line in iter_json_lines(path, skip_partial_last=True)]
        for path in sorted(parts.glob("rank*.jsonl"))
    }


def _logged_lines(
    logs: dict[str, list[dict[str, Any]]], previous: dict[str, dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Every line logged per video: a finished earlier run's, then each rank log's (``_rank_logs``) in order."""
    logged = {key: [line] for key, line in previous.items()}
    for lines in logs.values():
        for line in lines:
            logged.setdefault(video_key(line), []).append(line)
    return logged


def _best_line(logged: dict[str, list[dict[str, Any]]], record: dict[str, Any]) -> dict[str, Any] | None:
    """The line that scored this very record, one that read its video if any did (a video retried once
    fixed may sit in a lower rank's log than its old error), the latest such; None if none."""
    scored = [line for line in logged.get(video_key(record), []) if scored_for(line, record)]
    read = [line for line in scored if "error" not in line]
    return (read or scored or [None])[-1]


def _finished_lines(out: Path, signature: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Lines of an earlier, finished run into ``out`` with the same critic and settings (reused on a rerun,
    e.g. after adding videos to the manifest); nothing if it was scored differently."""
    summary = summary_path(out)
    if not (out.exists() and summary.exists()) or _changed(read_json(summary).get("run") or {}, signature):
        return {}
    return {video_key(obj): obj for _, obj in iter_json_lines(out)}


def _merge(
    records: list[dict[str, Any]],
    parts: Path,
    out: Path,
    started: float,
    previous: dict[str, dict[str, Any]],
    signature: dict[str, Any],
) -> dict[str, Any]:
    logs = _rank_logs(parts)
    logged = _logged_lines(logs, previous)
    best = [_best_line(logged, r) for r in records]
    missing = [video_key(r) for r, line in zip(records, best, strict=True) if line is None]
    if missing:
        raise VideoliftError(
            f"{parts}: {len(missing)} videos were not scored (e.g. {missing[0]}); rerun the command"
        )
    lines = [line for line in best if line is not None]
    # The videos each process scored: those whose kept line is in its log, each once. Counting log lines
    # counted a video twice when its first attempt could not be read and a rerun retried it (44 for 42).
    kept = {id(line) for line in lines}
    per_rank = {rank: sum(id(line) in kept for line in log) for rank, log in logs.items()}
    summary = {
        **summary_counts(lines),
        "per_rank": per_rank,
        "seconds": round(time.time() - started, 2),
        "run": signature,
    }
    write_scores(out, lines, summary)
    _remove_parts(parts)
    return summary


def summary_counts(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """A scores file's counts, as its summary states them: videos, unreadable ones, unparsed answers per
    dimension (and videos with any), the mean of the rewards that are not null."""
    unparsed: Counter[str] = Counter()
    for line in lines:
        for dim, rating in line["ratings"].items():
            unparsed[dim] += rating["label"] is None
    rewards = [line["reward"] for line in lines if line["reward"] is not None]
    return {
        "videos": len(lines),
        "errors": sum("error" in line for line in lines),
        "unreadable": [{"video": line["video"], "error": line["error"]} for line in lines if "error" in line],
        "unparsed": dict(unparsed),
        "unparsed_videos": sum(any(r["label"] is None for r in line["ratings"].values()) for line in lines),
        "mean_reward": sum(rewards) / len(rewards) if rewards else None,
    }


def write_scores(out: Path, lines: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """``out`` and its summary, replaced together: never these scores beside an earlier run's summary,
    which names that run's critic and settings."""
    with replacing(out, summary_path(out)) as (lines_tmp, summary_tmp):
        write_jsonl(lines_tmp, lines)
        with atomic_write(summary_tmp) as handle:
            handle.write(json.dumps(summary, indent=1) + "\n")


def _remove_parts(parts: Path) -> None:
    """OUT.parts removed, its run.json last: a removal killed midway leaves no rank log without the
    settings it was scored with (a rerun of other settings would take its lines as its own)."""
    for log in parts.glob("rank*.jsonl"):
        log.unlink(missing_ok=True)
    shutil.rmtree(parts, ignore_errors=True)
