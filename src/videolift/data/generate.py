"""The generation stage: K candidate videos per prompt from a CogVideoX pipeline, resumable and sharded.

Layout of an output directory::

    OUT/generation.json       the run's settings (model, LoRA, base seed, dtype, sampler, codec)
    OUT/videos/00012_03.mp4   prompt 12, candidate 3
    OUT/.parts/rank{r}.jsonl  per-rank completion logs, one fsync'd line per finished video
    OUT/manifest.jsonl        one line per video, merged from the logs (written atomically at the end)

Crash safety: a video is written to a temp file and renamed (``write_video``), fsync'd, and only then
logged. A logged video whose file exists is finished; anything else (no log line, e.g. killed between
rename and log, or a log line whose file was deleted) is generated again and replaced. A torn last
log line (killed mid-append) is ignored and cut off before the rank appends again.

Batches: fixed by the videos and the batch size alone (``batches``), so a video is made with the same
companions whatever the number of ranks and however often the run was resumed: its pixels do not move.

Sharding: every rank reads the same state before anyone writes, takes ``calls[rank::world]`` of the
batches with a video to make and logs to its own file; rank 0 merges after all ranks are done.

What an earlier run left in OUT, and what this run resumes from it: ``videolift.data.generate_resume``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from videolift.core.distributed import sharded_state
from videolift.core.errors import UsageError, VideoliftError
from videolift.core.files import check_out_dir, fingerprint
from videolift.core.hub import hub_commit
from videolift.core.jsonl import append_jsonl, atomic_write, repair_log, write_jsonl
from videolift.core.memory import clips_per_call
from videolift.data.generate_model import cpu_only, device_and_dtype, load_pipeline
from videolift.data.generate_resume import (
    MANIFEST,
    PARTS,
    RUN_CONFIG,
    VIDEOS,
    VIDEOS_ELSEWHERE,
    check_out,
    read_logs,
    remove_outputs,
    resume_decision,
)
from videolift.data.prompt_files import PromptRecord, read_prompts
from videolift.models.base import DiffusersT2VSpec, SamplerSettings, check_guidance, check_lora_dir

OFFLOADS = ("none", "model", "sequential")  # where the weights wait between uses (--offload)


@dataclass(frozen=True)
class WorkItem:
    prompt_index: int
    candidate: int
    seed: int

    @property
    def key(self) -> tuple[int, int]:
        return self.prompt_index, self.candidate

    @property
    def video_id(self) -> str:
        return f"{self.prompt_index:05d}_{self.candidate:02d}"

    @property
    def video(self) -> str:
        return f"{VIDEOS}/{self.video_id}.mp4"


@dataclass(frozen=True)
class GenerationSummary:
    total: int  # videos in the manifest
    generated: int  # by this rank in this run
    skipped: int  # finished by an earlier run
    world_size: int
    main_process: bool  # the rank that merged the manifest
    seconds: float  # the whole call, model loading included
    loop_seconds: float  # generating and writing this rank's videos
    manifest: Path


def derive_seed(base_seed: int, prompt_index: int, candidate: int) -> int:
    """A 32-bit seed per (prompt, candidate): independent of sharding, batching and run order."""
    digest = hashlib.sha256(f"videolift-generate:{base_seed}:{prompt_index}:{candidate}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def work_items(n_prompts: int, per_prompt: int, base_seed: int) -> list[WorkItem]:
    return [WorkItem(i, k, derive_seed(base_seed, i, k)) for i in range(n_prompts) for k in range(per_prompt)]


def batches(items: list[WorkItem], batch_size: int) -> list[list[WorkItem]]:
    """The pipeline calls that make ``items``: the videos prompt by prompt (prompt 0's candidates, then
    prompt 1's, ...) cut into calls of ``batch_size``, as an uninterrupted one-process run always made them.
    Float batching changes a video's pixels with its companions in a call (a CPU's kernels differ between one
    sample and several, a GPU's by shape; a lossy encode turns a level into many), so the calls depend on the
    videos and ``batch_size`` alone: not on the ranks, nor on what an earlier run finished. Every call but
    the last is full, however few the prompts (one prompt's 8 candidates: one call)."""
    ordered = sorted(items, key=lambda item: (item.prompt_index, item.candidate))
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


# What a toy corpus's line says of its own rendered video (`toy corpus`): carried onto a new video made
# from its prompt, `toy rate` would judge the new video against the old one's injected truth.
RENDERED_FIELDS = ("truth", "defects", "shown", "caption")


def manifest_record(item: WorkItem, prompt: PromptRecord, run: dict[str, Any]) -> dict[str, Any]:
    """One manifest line. The prompt file's other fields come first so ours win on a name clash; a toy
    corpus line's account of its own video is left behind."""
    extra = prompt.extra
    if isinstance(extra.get("truth"), dict) and "defects" in extra:
        extra = {k: v for k, v in extra.items() if k not in RENDERED_FIELDS}
    return {
        **extra,
        "video": item.video,
        "video_id": item.video_id,
        "prompt": prompt.prompt,
        "prompt_index": item.prompt_index,
        "candidate": item.candidate,
        "seed": item.seed,
        **run,
    }


# ---- settings ----------------------------------------------------------------------------------


def is_hub_id(model: str) -> bool:
    """``owner/name``: what cannot be a Hub id is a local path (and must exist)."""
    return not model.startswith((".", "/", "~")) and model.count("/") == 1


def resolve_model(model: str) -> str:
    """An existing local directory as an absolute path (so reruns from elsewhere match), else a Hub id."""
    local = Path(model).expanduser()
    if local.exists():
        return str(local.resolve())
    if not is_hub_id(model):
        raise VideoliftError(f"--model {model}: no such directory, and not a Hub id like THUDM/CogVideoX-2b")
    return model


def check_offload(offload: str) -> None:
    if offload not in OFFLOADS:
        raise UsageError(f"--offload {offload!r}: use {', '.join(OFFLOADS)}")


def known_settings(model: str, lora: str | None, seed: int, sampler: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run known before its model loads, as ``generate_videos`` records them
    (``sampler``: its keywords; those not given, or None, are the model's defaults: not known yet)."""
    model, lora = resolve_model(model), str(Path(lora).resolve()) if lora else None
    keys = ("steps", "dynamic_cfg", "negative_prompt", "lossless", "vae_tiling", "guidance", "guidance_2", "frames",
            "height", "width", "fps")  # fmt: skip
    given = {k: sampler[k] for k in keys if sampler.get(k) is not None}
    if sampler.get("dtype", "auto") != "auto":  # auto: the device's, known once the run starts
        from videolift.models.base import resolve_dtype

        given["dtype"] = str(resolve_dtype(sampler["dtype"])).removeprefix("torch.")
    known = {"model": model, "lora": lora, "base_seed": seed, "model_files": _model_files(model, lora)}
    return known | given | _model_commit(model)


def _model_files(model: str, lora: str | None) -> dict[str, str | None]:
    """A model retrained in place (same path, new weights) must not resume from the old model's videos."""
    return {
        name: fingerprint(path) if path and Path(path).is_dir() else None
        for name, path in (("model", model), ("lora", lora))
    }


def _model_commit(model: str) -> dict[str, str]:
    """A Hub id's commit in the local Hub cache, which a load without a revision resolved (none for a local
    model, nor for an id not cached yet: known once it loads): an id updated upstream is another model."""
    return {"model_commit": commit} if (commit := hub_commit(model)) else {}


# ---- outputs -------------------------------------------------------------------------------------


def merge_manifest(
    out: Path, items: list[WorkItem], prompts: list[PromptRecord], run: dict[str, Any]
) -> Path:
    logged = read_logs(out)
    missing = [item.video for item in items if item.key not in logged or not (out / item.video).is_file()]
    if missing:
        raise VideoliftError(
            f"{out}: {len(missing)} videos have no finished record (e.g. {missing[0]}); rerun the same command"
        )
    for partial in (out / VIDEOS).glob(".*.partial.mp4"):  # left by a run killed mid-write
        partial.unlink(missing_ok=True)
    path = out / MANIFEST
    write_jsonl(path, (manifest_record(item, prompts[item.prompt_index], run) for item in items))
    return path


def _fsync(path: Path) -> None:
    # write_video renames without fsync; make the bytes durable before the log line says "finished".
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- the stage -----------------------------------------------------------------------------------


def generate_videos(
    model: str,
    prompts_path: str | Path,
    out: str | Path,
    *,
    per_prompt: int = 1,
    seed: int = 0,
    steps: int = 50,
    guidance: float | None = None,
    guidance_2: float | None = None,
    dynamic_cfg: bool = False,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    fps: int | None = None,
    dtype: str = "auto",
    device: str = "auto",
    lora: str | None = None,
    batch_size: int | None = 1,
    overwrite: bool = False,
    prompt_field: str = "prompt",
    limit: int | None = None,
    lossless: bool = False,
    vae_tiling: bool = False,
    family: str | None = None,
    negative_prompt: str | None = None,
    offload: str = "none",
    progress: bool = True,
) -> GenerationSummary:
    """Generate ``per_prompt`` videos for each prompt of ``prompts_path`` into ``out`` (see module doc).
    ``batch_size`` None: by clip size, up to 4 (``clips_per_call``: one 49x480x720 clip per call);
    ``guidance`` / ``fps`` None: the model family's own (CogVideoX 6 / 8, Wan 2.1 5 / 16, LTX-Video 3 / 25);
    ``guidance_2`` (two-expert Wan 2.2 only) None: the model's (A14B: 3, ``spec.guidances``); ``offload``
    (``OFFLOADS``) changes where the weights wait, not the videos, so a run resumes across it."""

    from videolift.core.distributed import checked_device

    checked_device(device)
    check_offload(offload)
    start = time.perf_counter()
    counts = {"--per-prompt": per_prompt, "--batch-size": batch_size, "--fps": fps, "--limit": limit}
    check_numbers(counts, guidance, guidance_2)
    check_out_dir(out, [("--model", model), ("--lora", lora)], VIDEOS_ELSEWHERE)
    prompts, out, model, lora = _checked_inputs(model, prompts_path, out, lora, prompt_field, limit)
    # (torch: not at the command line's load)
    from videolift.models.families import check_guidance_2, spec_for

    check_guidance_2(model, family, guidance_2)  # from its index: not after minutes of loading
    # cpu=True is what makes torchrun / `accelerate launch` ranks on a CPU machine join one gloo group.
    state = sharded_state(cpu_only(device))
    run_device, dtype = device_and_dtype(
        state, device, dtype, lambda: spec_for(model, family).gpu_dtype(model)
    )
    spec, pipe = load_pipeline(model, family, lora, dtype, run_device, offload=offload, vae_tiling=vae_tiling)
    sizes = frames, height, width
    settings, batch_size = _sampler_settings(
        spec, pipe, steps, (guidance, guidance_2), dynamic_cfg, sizes, fps, negative_prompt, batch_size
    )
    run = _run_record(model, lora, seed, dtype, settings, lossless=lossless, vae_tiling=vae_tiling)
    items = work_items(len(prompts), per_prompt, seed)

    # Every rank reads the same state before anyone writes, so all compute the same pending list.
    done, conflict = resume_decision(out, run, items, prompts, overwrite=overwrite)
    pending = [item for item in items if item.key not in done]
    _start_run(state, out, run, conflict, pending=bool(pending))
    # A call with a finished video makes it again (and keeps the earlier file): its other videos keep
    # the companions an uninterrupted run gives them, at the price of a few videos per resume.
    calls = [call for call in batches(items, batch_size) if any(item.key not in done for item in call)]
    mine = calls[state.process_index :: state.num_processes]
    loop_seconds = _generate_share(
        state, out, mine, done, prompts, run, spec, pipe, settings, lossless=lossless, progress=progress
    )
    manifest = _merged_manifest(state, out, items, prompts, run)
    return GenerationSummary(
        total=len(items),
        generated=sum(item.key not in done for call in mine for item in call),
        skipped=len(items) - len(pending),
        world_size=state.num_processes,
        main_process=state.is_main_process,
        seconds=time.perf_counter() - start,
        loop_seconds=loop_seconds,
        manifest=manifest,
    )


def check_numbers(
    counts: dict[str, int | None], guidance: float | None, guidance_2: float | None = None
) -> None:
    """The numbers the command line gives, refused (exit 2) before any file is read: a count below 1
    (``counts``: option -> value; None: a default), a guidance scale that is no finite number >= 0."""
    for name, value in ((k, v) for k, v in counts.items() if v is not None):  # None: a default
        if value < 1:
            raise UsageError(f"{name} {value}: must be at least 1")
    for option, scale in (("--guidance", guidance), ("--guidance-2", guidance_2)):
        if scale is not None:
            check_guidance(scale, option)  # before the model loads


def _checked_inputs(
    model: str,
    prompts_path: str | Path,
    out: str | Path,
    lora: str | None,
    prompt_field: str,
    limit: int | None,
) -> tuple[list[PromptRecord], Path, str, str | None]:
    """The files and names a run refuses before its model loads (leaving nothing behind): a bad prompt
    file, an OUT of another tool's files, a model that is neither a directory nor a Hub id, a LoRA that
    diffusers cannot load (missing, or a folder without weights). Returns the prompts (the first ``limit``), OUT, and the model and
    LoRA resolved."""
    prompts = read_prompts(prompts_path, prompt_field=prompt_field)[:limit]
    out = Path(out)
    check_out(out)
    model = resolve_model(model)
    if lora is not None:
        try:
            check_lora_dir(lora)
        except VideoliftError as exc:
            raise VideoliftError(f"--lora {exc}") from None
        lora = str(Path(lora).resolve())
    return prompts, out, model, lora


def _sampler_settings(
    spec: DiffusersT2VSpec,
    pipe: Any,
    steps: int,
    guidances: tuple[float | None, float | None],
    dynamic_cfg: bool,
    sizes: tuple[int | None, int | None, int | None],
    fps: int | None,
    negative_prompt: str | None,
    batch_size: int | None,
) -> tuple[SamplerSettings, int]:
    """How every video is sampled, the model's own values for those not given (None), checked against
    what the model can make; and the videos per pipeline call (None: by clip size). ``guidances``: the
    guidance and the low-noise expert's (None: the model's, ``spec.guidances``); ``sizes``: frames, height
    and width."""
    frames, height, width = spec.default_sampling(pipe, *sizes)
    (guidance, guidance_2), own = guidances, spec.guidances(pipe)
    guidance = own[0] if guidance is None else guidance
    guidance_2 = own[1] if guidance_2 is None else guidance_2
    fps = spec.fps(pipe) if fps is None else fps
    settings = SamplerSettings(
        steps, guidance, dynamic_cfg, frames, height, width, fps, guidance_2=guidance_2
    )
    spec.check_sampling(pipe, settings)  # before a size sizes the batches (--frames 0 divided by zero)
    if batch_size is None:
        batch_size = clips_per_call(frames, height, width, cap=4)
    settings = SamplerSettings(
        **{
            **asdict(settings),
            "max_sequence_length": spec.max_sequence_length(pipe),
            "negative_prompt": negative_prompt,
        }
    )
    return settings, batch_size


def _run_record(
    model: str,
    lora: str | None,
    seed: int,
    dtype: str,
    settings: SamplerSettings,
    *,
    lossless: bool,
    vae_tiling: bool,
) -> dict[str, Any]:
    """The run's settings as OUT/generation.json records them and every manifest line carries them: what
    a later run must match to resume (the model's and LoRA's files by their fingerprints, a Hub id's commit)."""
    run = {"model": model, "lora": lora, "base_seed": seed, "dtype": dtype, **asdict(settings)}
    run["model_files"] = _model_files(model, lora)
    run |= {"lossless": lossless, "vae_tiling": vae_tiling} | _model_commit(model)
    return run


def _start_run(state: Any, out: Path, run: dict[str, Any], conflict: str | None, *, pending: bool) -> None:
    """OUT made ready by the main process once every rank has decided what to resume (the first barrier),
    the others waiting until it is (the second): an earlier run's files deleted on a conflict (which
    --overwrite allowed), the folders made, the run's settings written. With videos to make (``pending``),
    an earlier run's manifest goes too: it lists fewer videos than this run's, and a run killed before
    its own merge must not leave it looking like this run's result (its videos stay, logged)."""
    state.wait_for_everyone()
    if state.is_main_process:
        if conflict:
            remove_outputs(out)
        elif pending:
            (out / MANIFEST).unlink(missing_ok=True)
        (out / VIDEOS).mkdir(parents=True, exist_ok=True)
        (out / PARTS).mkdir(parents=True, exist_ok=True)
        with atomic_write(out / RUN_CONFIG) as handle:
            handle.write(json.dumps(run, indent=1) + "\n")
    state.wait_for_everyone()


def _generate_share(
    state: Any,
    out: Path,
    mine: list[list[WorkItem]],
    done: set[tuple[int, int]],
    prompts: list[PromptRecord],
    run: dict[str, Any],
    spec: DiffusersT2VSpec,
    pipe: Any,
    settings: SamplerSettings,
    *,
    lossless: bool,
    progress: bool,
) -> float:
    """This rank's pipeline calls (``mine``, from ``batches``), each video not ``done`` already written,
    fsync'd and then logged to the rank's own log (its torn last line cut first); returns the seconds it
    took. The bar (``progress``) is the main process's."""
    from tqdm.auto import tqdm

    from videolift.core.video import write_video

    log = out / PARTS / f"rank{state.process_index}.jsonl"
    repair_log(log)
    codec = {"crf": 0, "pix_fmt": "yuv444p"} if lossless else {}
    desc = f"rank {state.process_index}/{state.num_processes}" if state.num_processes > 1 else "generate"
    loop_start = time.perf_counter()
    total = sum(item.key not in done for batch in mine for item in batch)
    with tqdm(total=total, unit="video", desc=desc, disable=not (progress and state.is_main_process)) as bar:
        for batch in mine:
            texts = [prompts[item.prompt_index].prompt for item in batch]
            videos = spec.generate(pipe, texts, [item.seed for item in batch], settings)
            made = [(item, video) for item, video in zip(batch, videos, strict=True) if item.key not in done]
            for item, video in made:
                path = write_video(out / item.video, video, fps=settings.fps, **codec)
                _fsync(path)
                append_jsonl(log, manifest_record(item, prompts[item.prompt_index], run))
            bar.update(len(made))
    return time.perf_counter() - loop_start


def _merged_manifest(
    state: Any, out: Path, items: list[WorkItem], prompts: list[PromptRecord], run: dict[str, Any]
) -> Path:
    """OUT/manifest.jsonl, merged by the main process from every rank's log once all ranks are done (the
    others wait for it)."""
    state.wait_for_everyone()
    manifest = out / MANIFEST
    if state.is_main_process:
        manifest = merge_manifest(out, items, prompts, run)
    state.wait_for_everyone()
    return manifest
