"""What an alignment run settles before any model loads, so that a bad input is refused in seconds: the
settings resolved (the model's family and path), the input files' hashes and the checkpoint to resume,
the samples and their videos checked, and OUT locked for the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videolift.align.checkpoints import check_resume_layout, resume_point
from videolift.align.config import HASH_MEMO, AlignConfig
from videolift.align.held_out import held_out_set
from videolift.align.inputs import load_samples
from videolift.align.validation import validation_prompts
from videolift.align.video_check import check_videos
from videolift.align.weights import Sample, read_real
from videolift.core.checkpoints import run_layout
from videolift.core.errors import VideoliftError
from videolift.core.files import HashMemo, lock_run
from videolift.models.families import check_guidance_2, detect_family, model_index, spec_for


@dataclass
class Preflight:
    """What the run's later phases take from its start: the settings as resolved, the accelerator, and
    the inputs read and checked."""

    cfg: AlignConfig  # the family named, a local model's path absolute
    accelerator: Any
    say: Callable[[str], None]  # the main process's messages
    ckpt_root: Path
    log_dir: Path
    hashes: HashMemo  # the main process's hashes of the inputs and the model's weights
    inputs: Any  # the hashes of the files cfg names, as every checkpoint records them
    resume_from: Path | None
    prompts: list[str]  # the validation prompts (none: no samples)
    synthetic: list[Sample]
    real: list[Sample]
    data: dict  # what the run trains on, in counts: the log's first line and the summary
    held_samples: list[Sample]  # --validation-real's clips
    held_set: str | None  # what the held-out log's lines are of (on the main process)
    weight_dtype: torch.dtype  # the mixed-precision dtype: of the frozen components and the export
    trained: str | None  # the component trained (transformer, or an expert's); None: known once loaded

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def check_folders(cfg: AlignConfig) -> None:
    """--out and --cache-dir name directories, existing or not."""
    for option, folder in (("--out", cfg.out), ("--cache-dir", cfg.cache_dir)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise VideoliftError(f"{option} {folder} is a file; it names a directory")


def check_video_roots(cfg: AlignConfig) -> None:
    """The videos roots name existing directories: one line, not a "no video at" for the first record."""
    roots = (("--videos", cfg.videos), ("--real-videos", cfg.real_videos))
    for option, root in (*roots, ("--validation-real-videos", cfg.validation_real_videos)):
        if root is not None and not root.is_dir():
            raise VideoliftError(f"{option} {root}: {'not a directory' if root.exists() else 'not found'}")


def preflight(
    cfg: AlignConfig, accelerator: Any, held: list[Any], tell: Callable[[str], None] | None = None
) -> Preflight:
    """Everything before the model loads, on every rank (collective): the seed set, ``cfg`` resolved, the
    inputs hashed and read, their videos checked; then the main process locks OUT (appended to ``held``).
    ``tell``: where the main process's messages go (default: printed)."""
    from accelerate.utils import broadcast_object_list, gather_object, set_seed

    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    say = accelerator.print if tell is None else (lambda message: tell(message) if main else None)
    set_seed(cfg.seed)
    cfg = _resolved(cfg)
    trained = trained_component(cfg)  # --expert refused, or missing, before anything is read
    # as generate's --guidance-2: from the model's index, not after minutes of loading it
    check_guidance_2(cfg.model, cfg.family, cfg.validation_guidance_2, option="--validation-guidance")
    check_video_roots(cfg)
    ckpt_root, log_dir = cfg.out / "checkpoints", cfg.out / "logs"
    check_resume_layout(cfg, ckpt_root, run_layout(accelerator))  # before the hashes and the cache
    # The main process reads the inputs and the model's weights for their hashes (the others get its
    # answer: N ranks reading a 10-GB model at once gains nothing); remembered with the cache.
    hashes = HashMemo(cfg.cache_root / HASH_MEMO)
    inputs = broadcast_object_list([cfg.input_hashes(hashes) if main else None])[0]
    resume_from = resume_point(cfg, ckpt_root, inputs)
    prompts = validation_prompts(cfg, accelerator)  # a bad file refused before any work
    synthetic, real, data = load_samples(cfg)
    held_samples = read_real(cfg.validation_real, "--validation-real") if cfg.validation_real else []
    held_set = held_out_set(cfg) if held_samples and main else None  # what the log's lines are of
    if "warning" in data:  # before the cache, which can take long
        say(f"warning: {data['warning']}")
    # e.g. the default 200 warm-up steps in a short run: it trains below the --lr asked for, silently
    if cfg.warmup_steps >= cfg.max_steps:
        say(
            f"warning: --warmup-steps {cfg.warmup_steps} is not below --max-steps {cfg.max_steps}: the run never "
            f"leaves its linear warm-up; its last update's learning rate is "
            f"{(cfg.max_steps - 1) / cfg.warmup_steps:.3g} x --lr, and no --lr-scheduler decay follows"
        )
    check_videos(cfg, synthetic, real, rank=rank, world=world, gather=gather_object, held_out=held_samples)
    weight_dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.mixed_precision]
    if main:
        held.append(lock_run(cfg.out, "videolift align"))  # to the end of the run
    return Preflight(
        cfg=cfg,
        accelerator=accelerator,
        say=say,
        ckpt_root=ckpt_root,
        log_dir=log_dir,
        hashes=hashes,
        inputs=inputs,
        resume_from=resume_from,
        prompts=prompts,
        synthetic=synthetic,
        real=real,
        data=data,
        held_samples=held_samples,
        held_set=held_set,
        weight_dtype=weight_dtype,
        trained=trained,
    )


def trained_component(cfg: AlignConfig) -> str | None:
    """The pipeline component the run trains, read from the model's model_index.json (None where it cannot
    be read before the model loads); raises OptionError for an ``expert`` the model does not fit."""
    index = model_index(cfg.model)
    return None if index is None else spec_for(cfg.model, cfg.family).trained_component(index, cfg.expert)


def _resolved(cfg: AlignConfig) -> AlignConfig:
    """``cfg`` with the model's family named and a local model's path made absolute."""
    if cfg.family is None:  # recorded resolved, so checkpoints and align_config.json name the family
        cfg = cfg.model_copy(update={"family": detect_family(cfg.model)})
    else:
        spec_for(cfg.model, cfg.family)  # refuses a family the local model was not saved with
    if (local := Path(cfg.model).expanduser()).exists():  # a LoRA's base, found from any directory
        cfg = cfg.model_copy(update={"model": str(local.resolve())})
    return cfg
