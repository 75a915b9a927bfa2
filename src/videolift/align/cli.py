"""``videolift align``: reward-weighted (or rejection-sampling) fine-tuning of a T2V model.

Options override a YAML ``--config`` (fields of ``AlignConfig``); the help text of each option is
the field's description. torch is imported inside the command only.
"""

from __future__ import annotations

from pathlib import Path

import typer

from videolift.align.config import AlignConfig
from videolift.core.settings import field_help


def _h(name: str) -> str:
    """The field's help with its choices and default: the options themselves default to None, so that
    only those given override --config, and typer would show that None, not the default that applies."""
    return field_help(AlignConfig, name)


# The path options are read as text: typer would turn an empty one ("$UNSET") into Path("."), the
# current directory, which AlignConfig then could not tell from a "." given on purpose.
def align(
    model: str = typer.Option(None, "--model", help=_h("model")),
    scores: str = typer.Option(None, "--scores", metavar="PATH", help=_h("scores")),
    videos: str = typer.Option(None, "--videos", metavar="PATH", help=_h("videos")),
    out: str = typer.Option(None, "--out", metavar="PATH", help=_h("out")),
    real: str = typer.Option(None, "--real", metavar="PATH", help=_h("real")),
    real_videos: str = typer.Option(None, "--real-videos", metavar="PATH", help=_h("real_videos")),
    method: str = typer.Option(None, "--method", help=_h("method")),
    lora: bool = typer.Option(None, "--lora/--full", help="LoRA adapters or full fine-tune (default --full)"),
    lambda_real: float = typer.Option(None, "--lambda-real", help=_h("lambda_real")),
    max_steps: int = typer.Option(None, "--max-steps", help=_h("max_steps")),
    resume: bool = typer.Option(False, "--resume", help=_h("resume")),
    overwrite: bool = typer.Option(False, "--overwrite", help=_h("overwrite")),
    config: Path = typer.Option(
        None, "--config", help="YAML file of AlignConfig fields (options override it)"
    ),
    family: str = typer.Option(None, "--family", help=_h("family")),
    cache_dir: str = typer.Option(None, "--cache-dir", metavar="PATH", help=_h("cache_dir")),
    weight_transform: str = typer.Option(None, "--weight-transform", help=_h("weight_transform")),
    exp_temperature: float = typer.Option(None, "--exp-temperature", help=_h("exp_temperature")),
    reward_config: str = typer.Option(None, "--reward-config", metavar="PATH", help=_h("reward_config")),
    syn_sampling: str = typer.Option(None, "--syn-sampling", help=_h("syn_sampling")),
    synthetic_min_timestep: int = typer.Option(
        None, "--synthetic-min-timestep", help=_h("synthetic_min_timestep")
    ),
    text_dropout: float = typer.Option(None, "--text-dropout", help=_h("text_dropout")),
    full_scope: str = typer.Option(None, "--full-scope", help=_h("full_scope")),
    expert: str = typer.Option(None, "--expert", help=_h("expert")),
    lora_rank: int = typer.Option(None, "--lora-rank", help=_h("lora_rank")),
    lora_alpha: float = typer.Option(None, "--lora-alpha", help=_h("lora_alpha")),
    lora_targets: str = typer.Option(None, "--lora-targets", help=_h("lora_targets")),
    lr: float = typer.Option(None, "--lr", help=_h("lr")),
    weight_decay: float = typer.Option(None, "--weight-decay", help=_h("weight_decay")),
    lr_scheduler: str = typer.Option(None, "--lr-scheduler", help=_h("lr_scheduler")),
    warmup_steps: int = typer.Option(None, "--warmup-steps", help=_h("warmup_steps")),
    batch_size: int = typer.Option(None, "--batch-size", help=_h("batch_size")),
    real_batch_size: int = typer.Option(None, "--real-batch-size", help=_h("real_batch_size")),
    grad_accum: int = typer.Option(None, "--grad-accum", help=_h("grad_accum")),
    max_grad_norm: float = typer.Option(None, "--max-grad-norm", help=_h("max_grad_norm")),
    mixed_precision: str = typer.Option(None, "--mixed-precision", help=_h("mixed_precision")),
    gradient_checkpointing: bool = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", help=_h("gradient_checkpointing")
    ),
    ema_decay: float = typer.Option(None, "--ema-decay", help=_h("ema_decay")),
    seed: int = typer.Option(None, "--seed", help=_h("seed")),
    frames: int = typer.Option(None, "--frames", help=_h("frames")),
    frame_stride: int = typer.Option(None, "--frame-stride", help=_h("frame_stride")),
    height: int = typer.Option(None, "--height", help=_h("height")),
    width: int = typer.Option(None, "--width", help=_h("width")),
    hash_content: bool = typer.Option(None, "--hash-content/--no-hash-content", help=_h("hash_content")),
    vae_tiling: bool = typer.Option(None, "--vae-tiling/--no-vae-tiling", help=_h("vae_tiling")),
    encode_batch_size: int = typer.Option(None, "--encode-batch-size", help=_h("encode_batch_size")),
    checkpoint_every: int = typer.Option(
        None,
        "--checkpoint-every",
        "--save-every",
        help=_h("checkpoint_every"),  # `critic train`'s name too
    ),
    keep_checkpoints: int = typer.Option(None, "--keep-checkpoints", help=_h("keep_checkpoints")),
    log_every: int = typer.Option(None, "--log-every", help=_h("log_every")),
    num_workers: int = typer.Option(None, "--num-workers", "--workers", help=_h("num_workers")),
    ddp_timeout: int = typer.Option(None, "--ddp-timeout", help=_h("ddp_timeout")),
    validation_prompts: str = typer.Option(
        None, "--validation-prompts", metavar="PATH", help=_h("validation_prompts")
    ),
    validation_every: int = typer.Option(None, "--validation-every", help=_h("validation_every")),
    validation_steps: int = typer.Option(None, "--validation-steps", help=_h("validation_steps")),
    validation_seed: int = typer.Option(None, "--validation-seed", help=_h("validation_seed")),
    validation_guidance: float = typer.Option(None, "--validation-guidance", help=_h("validation_guidance")),
    validation_guidance_2: float = typer.Option(
        None, "--validation-guidance-2", help=_h("validation_guidance_2")
    ),
    validation_real: str = typer.Option(
        None, "--validation-real", metavar="PATH", help=_h("validation_real")
    ),
    validation_real_videos: str = typer.Option(
        None, "--validation-real-videos", metavar="PATH", help=_h("validation_real_videos")
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars (the same as --no-progress)."),
) -> None:
    """Align a T2V model (CogVideoX, Wan 2.1, Wan 2.2 TI2V-5B, Wan 2.2 A14B one expert a run with --expert,
    or LTX-Video) with critic rewards: L = mean_syn(w * diffusion loss) + lambda * mean_real(loss).

    Writes OUT/pipeline (full: <Family>Pipeline.from_pretrained(OUT/pipeline)) or OUT/lora
    (pipe.load_lora_weights(OUT/lora)), OUT/logs/train.jsonl + tensorboard, OUT/checkpoints.
    Multi-GPU: `accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m videolift.cli align ...`.
    """
    options = {
        k: v
        for k, v in locals().items()
        if k not in ("config", "lora", "progress", "quiet", "resume", "overwrite")
    }
    options["finetune"] = None if lora is None else ("lora" if lora else "full")
    options["resume"] = True if resume else None
    options["overwrite"] = True if overwrite else None
    cfg = AlignConfig.load(config, **options)
    sampling = {
        "--validation-steps": validation_steps,
        "--validation-guidance": validation_guidance,
        "--validation-guidance-2": validation_guidance_2,
    }
    given = [k for k, v in sampling.items() if v is not None]
    if given and cfg.validation_prompts is None:
        raise typer.BadParameter(
            f"{', '.join(given)}: needs --validation-prompts (sets how they are sampled)"
        )
    watched = {"--validation-every": validation_every, "--validation-seed": validation_seed}
    given = [k for k, v in watched.items() if v is not None]
    if given and cfg.validation_prompts is None and cfg.validation_real is None:
        raise typer.BadParameter(
            f"{', '.join(given)}: needs --validation-prompts or --validation-real (sets when and with which "
            "seed they are sampled or measured)"
        )

    if family is None and cfg.family is not None:
        # --config's family, refused by the trainer as an unknown option's value (a usage error): here the
        # file's mistake (exit status 1), found before the accelerator starts.
        from videolift.core.errors import DataError, UsageError
        from videolift.models.families import get_spec

        try:
            get_spec(cfg.family)
        except UsageError as exc:
            raise DataError(exc.message, file=config, field="family") from None

    if expert is None and cfg.expert is not None:
        # --config's expert, refused for a model it does not fit: the file's mistake (exit status 1).
        from videolift.align.preflight import trained_component
        from videolift.core.errors import DataError, UsageError

        try:
            trained_component(cfg)
        except UsageError as exc:
            raise DataError(exc.message, file=config, field="expert") from None

    from videolift.align.trainer import train
    from videolift.core.progress import library_bars

    progress = progress and not quiet
    with library_bars(progress):
        train(cfg, progress=progress)
