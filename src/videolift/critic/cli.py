"""``videolift critic train | score | eval`` (see docs/critic.md). Heavy imports live inside the commands."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from videolift.core.console import plain_console, styled
from videolift.core.errors import DataError, UsageError
from videolift.core.settings import field_default, field_help
from videolift.critic.prompts import DESCRIBE_INSTRUCTION
from videolift.critic.sft_config import SFTConfig

app = typer.Typer(
    help="Train a video-VLM critic on HRA data, score videos with it, measure its accuracy.",
    no_args_is_help=True,
)


class Layout(StrEnum):
    per_dimension = "per_dimension"
    one_pass = "one_pass"


class Adapter(StrEnum):
    lora = "lora"
    full = "full"


class FrameSampling(StrEnum):
    uniform = "uniform"
    pairs = "pairs"


def _log(message: str | Text) -> None:
    # Plain: the lines name files and critics ("critic in runs/[v2]/critic"), not rich markup.
    plain_console(stderr=True).print(message, highlight=False, soft_wrap=True)


def _warn(message: str) -> None:
    _log(styled("warning:", "yellow", message))


def _targets(value: str | None) -> list[str] | None:
    """--lora-targets' layers; None (left out): every LM linear layer. One that names none ("", ",") is
    refused, not read as every layer (a rule of the command line: settings files written before it stay
    readable)."""
    targets = _csv(value)
    if targets == []:
        raise UsageError(
            "--lora-targets: names no layer: give at least one (e.g. q_proj,v_proj), or leave it out for "
            "every LM linear layer"
        )
    return targets


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]  # "": none named


def _sft(name: str, *flags: str, choices: type[StrEnum] | None = None, **kwargs: Any) -> Any:
    """The option of SFTConfig's field ``name``: its default and help text are the field's, so the two
    cannot disagree (typer shows the default, and the ``choices`` Enum's members, itself)."""
    default = field_default(SFTConfig, name)
    help_text = field_help(SFTConfig, name, choices_and_default=False)
    return typer.Option(default if choices is None else choices(default), *flags, help=help_text, **kwargs)


@app.command()
def train(
    base: str = typer.Option(..., "--base", help="Base VLM: a save_pretrained directory or a Hub id."),
    data: Path = typer.Option(..., "--data", help="HRA records (JSONL) to train on."),
    videos: Path = typer.Option(..., "--videos", help="Root that the records' video paths are relative to."),
    out: Path = typer.Option(
        ..., "--out", help="Output directory: adapter (or model), processor, critic_spec.json."
    ),
    no_reasons: bool = typer.Option(
        False, "--no-reasons", help="Train on labels only (the paper's ablation)."
    ),
    layout: Layout = typer.Option(
        Layout.per_dimension,
        "--layout",
        help="One question per dimension (LiFT) or all in one answer.",
    ),
    describe: bool = typer.Option(
        False,
        "--describe",
        help="Describe-then-rate (extension): the critic first describes the video and reads that "
        "description before each question; trained on the base model's descriptions.",
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Check-then-rate (extension): the semantic question (see --check-dimensions) lists the caption "
        "words the check model would not have written for the video (one forward pass per video).",
    ),
    check_model: str | None = typer.Option(
        None, "--check-model", help="VLM that checks captions (default: the base model)."
    ),
    # None (left out): the spec's defaults, said in the help; --check-* options need --check.
    check_instruction: str | None = typer.Option(
        None,
        "--check-instruction",
        help="The question the caption is read as the answer to (for chat VLMs e.g. 'Caption this video "
        f"in one sentence.'). [default: {DESCRIBE_INSTRUCTION}]",
    ),
    check_dimensions: str | None = typer.Option(
        None,
        "--check-dimensions",
        help="Comma-separated dimensions whose questions carry the check (per_dimension layout). "
        "[default: semantic_consistency]",
    ),
    check_threshold: float | None = typer.Option(
        None,
        "--check-threshold",
        min=1e-6,
        max=0.999,
        help="A caption token the check model gives less probability than this is unexpected. [default: 0.05]",
    ),
    check_frames: int | None = typer.Option(
        None,
        "--check-frames",
        min=1,
        help="Frames the check model reads, spread uniformly (default: the critic's own frames); e.g. 9 "
        "for the toy VLM under --frame-sampling pairs.",
    ),
    dimensions: str | None = typer.Option(
        None, "--dimensions", help="Comma-separated dimensions (default: all three)."
    ),
    num_frames: int = _sft("num_frames", "--num-frames"),
    frame_sampling: FrameSampling = _sft("frame_sampling", "--frame-sampling", choices=FrameSampling),
    max_pixels: int | None = _sft("max_pixels", "--max-pixels"),
    min_pixels: int | None = _sft("min_pixels", "--min-pixels"),
    adapter: Adapter = _sft("adapter", "--adapter", choices=Adapter),
    lora_r: int = _sft("lora_r", "--lora-r", "--lora-rank"),
    lora_alpha: int = _sft("lora_alpha", "--lora-alpha"),
    lora_dropout: float = _sft("lora_dropout", "--lora-dropout"),
    lora_targets: str | None = _sft("lora_targets", "--lora-targets"),
    tune_vision: bool = _sft("tune_vision", "--tune-vision"),
    tune_projector: bool = _sft("tune_projector", "--tune-projector"),
    vision_cache_mb: int = _sft("vision_cache_mb", "--vision-cache-mb"),
    lr: float = _sft("lr", "--lr"),
    weight_decay: float = _sft("weight_decay", "--weight-decay"),
    warmup_ratio: float = _sft("warmup_ratio", "--warmup-ratio"),
    epochs: float = _sft("epochs", "--epochs"),
    max_steps: int | None = _sft("max_steps", "--max-steps"),
    batch_size: int = _sft("batch_size", "--batch-size"),
    grad_accum: int = _sft("grad_accum", "--grad-accum"),
    max_grad_norm: float = _sft("max_grad_norm", "--max-grad-norm"),
    max_answer_tokens: int = _sft("max_answer_tokens", "--max-answer-tokens"),
    class_weights: float = typer.Option(
        0.0,
        "--class-weights",
        min=0.0,
        help="Weight examples by inverse (dimension, label) frequency ** this (1: balanced, 0.5: sqrt, 0: off).",
    ),
    seed: int = _sft("seed", "--seed"),
    save_every: int = _sft("save_every", "--save-every", "--checkpoint-every"),
    keep_checkpoints: int = _sft("keep_checkpoints", "--keep-checkpoints"),
    ddp_timeout: int = _sft("ddp_timeout", "--ddp-timeout"),
    val_data: Path | None = typer.Option(
        None,
        "--val-data",
        help="Held-out HRA ratings (e.g. `hra split`'s test.jsonl): their answers' mean loss is logged as "
        "val_loss (train_log.jsonl, TensorBoard, train_summary.json). Not trained on.",
    ),
    val_videos: Path | None = typer.Option(
        None, "--val-videos", help="Root of --val-data's videos (default: --videos)."
    ),
    val_every: int = _sft("val_every", "--val-every", min=0),
    gradient_checkpointing: bool = _sft(
        "gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing"
    ),
    dtype: str = _sft("dtype", "--dtype"),
    reward_config: Path | None = typer.Option(
        None, "--reward-config", help="Label scores and aggregation (YAML/JSON), stored in the spec."
    ),
    max_new_tokens: int | None = typer.Option(
        None,
        "--max-new-tokens",
        help="Scoring budget per answer (default: from the longest training answer).",
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Where the check model's checks (--check) and the base's descriptions (--describe) of the "
        "training data are cached (default: OUT); one directory can serve several runs on the same data.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished or unfinished run in OUT."),
    stop_at_step: int | None = typer.Option(
        None,
        "--stop-at-step",
        min=1,
        help="Checkpoint and stop after this update (resume later).",
        hidden=True,
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars (updates, first passes, model loading)."
    ),
) -> None:
    """Fine-tune a video-VLM into a critic. Under `accelerate launch` it runs data-parallel (DDP,
    DeepSpeed or FSDP per the accelerate config; GPU configs in configs/accelerate/)."""
    from videolift.core.progress import library_bars
    from videolift.critic.train import train_critic

    if val_data is None and (
        given := [o for o, v in (("--val-every", val_every), ("--val-videos", val_videos)) if v]
    ):
        raise typer.BadParameter(
            f"{', '.join(given)}: needs --val-data (the held-out ratings it validates on)"
        )
    checks = (
        ("--check-model", check_model),
        ("--check-instruction", check_instruction),
        ("--check-dimensions", check_dimensions),
        ("--check-threshold", check_threshold),
        ("--check-frames", check_frames),
    )
    if not check and (given := [o for o, v in checks if v is not None]):
        # Else left unused: a plain critic trained, its spec recording a check model it never had.
        raise typer.BadParameter(f"{', '.join(given)}: needs --check (they set up the check it adds)")
    cfg = SFTConfig(
        adapter=adapter.value,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_targets=_targets(lora_targets),
        tune_vision=tune_vision,
        tune_projector=tune_projector,
        vision_cache_mb=vision_cache_mb,
        lr=lr,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_grad_norm=max_grad_norm,
        max_answer_tokens=max_answer_tokens,
        seed=seed,
        save_every=save_every,
        keep_checkpoints=keep_checkpoints,
        ddp_timeout=ddp_timeout,
        val_every=val_every,
        gradient_checkpointing=gradient_checkpointing,
        dtype=dtype,
        num_frames=num_frames,
        frame_sampling=frame_sampling.value,
        max_pixels=max_pixels,
        min_pixels=min_pixels,
    )
    with library_bars(progress):
        result = train_critic(
            base,
            data,
            videos,
            out,
            cfg,
            layout=layout.value,
            reasons=not no_reasons,
            describe=describe,
            check=check,
            check_model=check_model,
            check_instruction=check_instruction,
            check_dimensions=_csv(check_dimensions),
            **({"check_threshold": check_threshold} if check_threshold is not None else {}),
            check_frames=check_frames,
            dimensions=_csv(dimensions),
            class_weight_power=class_weights,
            reward_config=reward_config,
            max_new_tokens=max_new_tokens,
            cache_dir=cache_dir,
            resume=resume,
            overwrite=overwrite,
            stop_at_step=stop_at_step,
            log=_log,
            progress=progress,
            val_data=val_data,
            val_videos=val_videos,
        )
    if not result.main_process:
        return
    state = "stopped at" if result.stopped_early else "finished after"
    loss = "-" if result.final_loss is None else f"{result.final_loss:.4f}"
    val = "" if result.val_loss is None else f", validation loss {result.val_loss:.4f}"
    _log(f"{state} {result.steps} updates ({result.seconds:.1f} s), last loss {loss}{val}; critic in {out}")


@app.command()
def export(
    run: Path = typer.Option(
        ..., "--run", help="Output directory of a `critic train` run (finished or not)."
    ),
    out: Path = typer.Option(..., "--out", help="Critic directory to write (as `critic train --out`)."),
    step: int | None = typer.Option(
        None,
        "--step",
        help="Update of the checkpoint (default: the latest, for an unfinished run; a finished run is itself "
        "the critic of its last update, so name an earlier checkpoint's).",
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Where the run's first passes are cached (default: the run's recorded --cache-dir, else the run "
        "directory).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Write a training checkpoint as a critic that `critic score` / `eval` and plain transformers load."""
    from videolift.critic.train import export_critic

    done = export_critic(run, out, step=step, cache_dir=cache_dir, overwrite=overwrite, log=_log)
    _log(f"update {done} of {run} written to {out}")


def _score_options(
    critic: Path,
    base: str | None,
    device: str,
    dtype: str,
    merge_lora: bool,
    num_frames: int | None,
    share_prefix: bool = True,
):
    from videolift.core.distributed import checked_device
    from videolift.critic.answers import load_critic

    return load_critic(
        critic,
        base=base,
        device=checked_device(device),  # "auto" as it is: load_critic's (this process's GPU, else the CPU)
        dtype=dtype,
        merge_lora=merge_lora,
        share_prefix=share_prefix,
        num_frames=num_frames,
    )


@app.command()
def score(
    critic: Path = typer.Option(..., "--critic", help="Critic directory written by `critic train`."),
    manifest: Path = typer.Option(
        ..., "--manifest", help="JSONL with `video` (relative to --videos) and `prompt` per line."
    ),
    videos: Path = typer.Option(..., "--videos", help="Root of the manifest's video paths."),
    out: Path = typer.Option(
        ..., "--out", help="Scores JSONL (written at the end; OUT.summary.json beside it)."
    ),
    batch_size: int = typer.Option(
        24, "--batch-size", min=1, help="Prompts (video x question) per generate call."
    ),
    temperature: float = typer.Option(
        0.0, "--temperature", min=0.0, help="0: greedy, deterministic (default); >0 samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (with --temperature > 0)."),
    workers: int = typer.Option(
        2, "--workers", "--num-workers", min=1, help="Threads decoding the next videos while the model runs."
    ),
    base: str | None = typer.Option(None, "--base", help="Base model path, if it moved since training."),
    device: str = typer.Option("auto", "--device", help="auto (each rank's GPU, else CPU), cpu, cuda, ..."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16, float16."
    ),
    merge_lora: bool = typer.Option(
        False, "--merge-lora", help="Merge the adapter into the weights (faster, tiny numeric drift)."
    ),
    num_frames: int | None = typer.Option(
        None, "--num-frames", min=1, help="Assert the critic's frame count (it always uses its own)."
    ),
    share_prefix: bool = typer.Option(
        True,
        "--share-prefix/--no-share-prefix",
        help="Encode and prefill each video once for all its questions (same answers; families that support it).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace scores in OUT made by another critic or settings."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Rate every manifest video on each dimension; rerun to resume; shards under accelerate/torchrun."""
    from videolift.core.progress import library_bars
    from videolift.critic.score import check_scores_out, check_videos_root, read_manifest, score_manifest

    check_scores_out(out, inputs=[("--manifest", manifest)])  # before the critic loads
    check_videos_root(videos)
    read_manifest(manifest)  # a bad line said now, not after minutes of loading the critic
    with library_bars(progress):
        model = _score_options(critic, base, device, dtype, merge_lora, num_frames, share_prefix)
        summary = score_manifest(
            model,
            manifest,
            videos,
            out,
            batch_size=batch_size,
            temperature=temperature,
            seed=seed,
            workers=workers,
            progress=progress,
            log=_log,
            overwrite=overwrite,
        )
    if summary.main_process:
        reward = "-" if summary.mean_reward is None else f"{summary.mean_reward:.4f}"
        _log(
            f"{summary.videos} videos in {out} ({summary.scored_here} scored here, {summary.skipped} already done, "
            f"{summary.errors} unreadable; unparsed answers {summary.unparsed}; mean reward {reward}; "
            f"{summary.world_size} process(es), {summary.seconds:.1f} s)"
        )
        for bad in summary.unreadable[:10]:  # not rated (no answer to parse): say which, so they can be fixed
            where = f"in {manifest}; not rated: its line has this error and a null reward"
            _warn(f"{bad['error']} ({where})")
        if len(summary.unreadable) > 10:
            _warn(f"... and {len(summary.unreadable) - 10} more unreadable videos")


@app.command("lift-input")
def lift_input(
    manifest: Path = typer.Option(..., "--manifest", help="The videos to score: a manifest JSONL."),
    out: Path = typer.Option(
        ..., "--out", help="JSON to write: run_critic_13b.py / _40b.py's --data_root (their input list)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Write the released LiFT-Critic's input for a manifest's videos (then `critic import-lift`)."""
    from videolift.critic.lift_output import write_lift_input

    n, absolute = write_lift_input(manifest, out, overwrite=overwrite)
    root = "''" if absolute else "VIDEOS_ROOT/"  # the script joins root and path as strings
    _log(f"{n} videos in {out}: run the release's critic with --data_root {out} --image_root {root}")


@app.command("import-lift")
def import_lift(
    src: Path = typer.Argument(
        ...,
        help="The released LiFT-Critic's output (run_critic_13b.py / run_critic_40b.py --save_file): a JSON "
        "list, per video its input item and three answers.",
    ),
    manifest: Path = typer.Option(
        ...,
        "--manifest",
        help="The manifest the critic's input JSON was made from: each answer is matched by `video`.",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Scores JSONL to write, as `critic score` does (OUT.summary.json beside it)."
    ),
    reward_config: Path | None = typer.Option(
        None, "--reward-config", help="Label scores and aggregation (YAML/JSON); default: the paper's."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out and its summary."),
) -> None:
    """Convert the released LiFT-Critic's answers into a scores file for `align --scores`."""
    from videolift.critic.lift_output import import_lift_output

    summary = import_lift_output(src, manifest, out, reward_config=reward_config, overwrite=overwrite)
    reward = "-" if summary["mean_reward"] is None else f"{summary['mean_reward']:.4f}"
    _log(
        f"{summary['videos']} videos from {src} in {out} (unparsed answers {summary['unparsed']}; "
        f"mean reward {reward})"
    )
    if summary["unparsed_videos"]:  # the release's process_reward_score.py would have scored them Good
        _warn(
            f"{summary['unparsed_videos']} videos have an answer that does not start with "
            "Good, Normal or Bad: their label and score are null (the line keeps the answer); the reward "
            "is of the parsed dimensions"
        )


@app.command("eval")
def evaluate(
    critic: Path = typer.Option(..., "--critic", help="Critic directory written by `critic train`."),
    data: Path = typer.Option(..., "--data", help="Held-out HRA records (several raters: majority label)."),
    videos: Path = typer.Option(..., "--videos", help="Root of the records' video paths."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    pairs: Path | None = typer.Option(
        None, "--pairs", help="Human pairwise judgements JSONL: a, b, winner (a|b|tie), dimension."
    ),
    scores: Path | None = typer.Option(
        None, "--scores", help="Keep the critic's scores here (resumable); default: a temporary file."
    ),
    batch_size: int = typer.Option(24, "--batch-size", min=1, help="Prompts per generate call."),
    base: str | None = typer.Option(None, "--base", help="Base model path, if it moved since training."),
    device: str = typer.Option("auto", "--device", help="auto (each rank's GPU, else CPU), cpu, cuda, ..."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16, float16."
    ),
    share_prefix: bool = typer.Option(
        True,
        "--share-prefix/--no-share-prefix",
        help="Encode and prefill each video once for all its questions (same answers; families that support it).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --scores made by another critic or settings."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars (scoring, model loading)."
    ),
) -> None:
    """Accuracy, macro-F1 and confusion per dimension against reference labels; pairwise accuracy."""
    from videolift.core.progress import library_bars
    from videolift.critic.answers import check_finished
    from videolift.critic.evaluate import evaluate_critic, read_eval_data
    from videolift.critic.score import check_scores_out
    from videolift.critic.spec import CriticSpec

    if scores is not None:  # before the critic loads
        check_scores_out(scores, "--scores", [("--data", data), ("--pairs", pairs)])
    check_finished(critic)  # the critic's spec, then the records, before the (possibly minutes-long) load
    checked = read_eval_data(data, videos, CriticSpec.load(critic).dimensions, pairs)
    with library_bars(progress):
        model = _score_options(critic, base, device, dtype, False, None, share_prefix)
        report = evaluate_critic(
            model,
            data,
            videos,
            checked=checked,
            scores=scores,
            pairs=pairs,
            batch_size=batch_size,
            log=_log,
            progress=progress,
            overwrite=overwrite,
        )
    if report is None:  # not the main process
        return
    report["critic"] = str(critic)
    for bad in report["unreadable"]:  # opened before scoring, but failed to decode
        where = DataError(bad["error"], file=bad["file"], line=bad["line"], field="video")
        _warn(f"{where} (its answers count as unparsed)")
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    _print_report(report)


def _fmt(x: float | None, se: float | None = None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" + ("" if se is None else f" ± {100 * se:.1f}")


def _print_report(report: dict) -> None:
    console = plain_console()  # the critic's directory in the title as it is
    table = Table(title=f"critic {report['critic']}: {report['videos']} videos")
    for col in ("dimension", "accuracy % ± SE", "macro-F1 %", "majority baseline %", "unparsed", "n"):
        table.add_column(col, justify="right" if col != "dimension" else "left")
    for dim, m in report["dimensions"].items():
        table.add_row(
            dim,
            _fmt(m["accuracy"], m.get("accuracy_se")),
            _fmt(m["macro_f1"]),
            _fmt(m["majority_baseline"]),
            str(m["unparsed"]),
            str(m["n"]),
        )
    table.add_row(
        "mean",
        _fmt(report["mean_accuracy"], report.get("mean_accuracy_se")),
        _fmt(report["mean_macro_f1"]),
        _fmt(report["mean_majority_baseline"]),
        "",
        "",
    )
    console.print(table)
    if n := report.get("records_replaced_by_reviews"):
        console.print(f"references of adjudicated videos are their reviews ({n} raters' records left out)")
    for dim, m in report["dimensions"].items():
        conf = Table(title=f"{dim}: confusion (rows: reference, columns: critic)")
        cols = list(next(iter(m["confusion"].values())))
        conf.add_column("")
        for c in cols:
            conf.add_column(c, justify="right")
        for ref, row in m["confusion"].items():
            conf.add_row(ref, *(str(row[c]) for c in cols))
        console.print(conf)
    for name in ("pairwise_same_prompt", "pairwise_judged"):
        if name in report:
            pw = Table(title=name.replace("_", " "))
            for col in ("dimension", "pairs", "ties-aware acc %", "decisive acc %", "reference ties"):
                pw.add_column(col)
            for dim, m in report[name].items():
                pw.add_row(
                    dim,
                    str(m["pairs"]),
                    _fmt(m["ties_aware_accuracy"]),
                    _fmt(m["decisive_accuracy"]),
                    str(m["reference_ties"]),
                )
            console.print(pw)
