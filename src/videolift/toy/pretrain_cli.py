"""``videolift toy pretrain-vlm``: build and caption-pretrain the toy world's tiny base VLM.

Registered by ``videolift.toy.cli`` (``app.command("pretrain-vlm")(pretrain_vlm_command)``). Heavy imports
live inside the command so ``videolift --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def pretrain_vlm_command(
    out: Path = typer.Option(
        ..., "--out", help="Output directory: a save_pretrained VLM (model + processor)."
    ),
    minutes: float | None = typer.Option(
        None, "--minutes", help="Fit the number of updates to this time budget (measured on the spot)."
    ),
    vision_steps: int | None = typer.Option(
        None, "--vision-steps", help="Vision-encoder updates, stage 1 (default: the committed model's)."
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Caption updates, stage 2 (default: the committed model's)."
    ),
    train_videos: int | None = typer.Option(None, "--train-videos", help="Rendered train-split clips."),
    eval_videos: int | None = typer.Option(
        None, "--eval-videos", help="Held-out-split clips captioned for the quality report."
    ),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
    keep_corpus: bool = typer.Option(False, "--keep-corpus", help="Keep the rendered clips in OUT/corpus."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Pretrain the toy VLM (the toy critic's base) to see toy videos: its vision encoder on what the
    renderer knows each clip shows, then "Describe the video." -> caption. Writes OUT (model, processor,
    vision_log.jsonl and train_log.jsonl loss logs, pretrain_report.json)."""
    from dataclasses import replace

    from videolift.toy.pretrain_vlm import PretrainVLMConfig, pretrain_vlm

    overrides = {
        "vision_steps": vision_steps,
        "steps": steps,
        "train_videos": train_videos,
        "eval_videos": eval_videos,
    }
    cfg = replace(
        PretrainVLMConfig(),
        seed=seed,
        threads=threads,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    console = Console(stderr=True)
    report = pretrain_vlm(
        out,
        cfg,
        minutes=minutes,
        keep_corpus=keep_corpus,
        progress=progress,
        log=lambda m: console.print(m, highlight=False, soft_wrap=True),
    )
    _print_report(report, out)


def _print_report(report: dict, out: Path) -> None:
    heldout, chance, majority = report["heldout"], report["chance"], report["majority"]
    table = Table(title=f"caption accuracy on {heldout['clips']} held-out-split clips (%)")
    for col in ("field", "accuracy", "chance / majority"):
        table.add_column(col, justify="left" if col == "field" else "right")
    for field, value in heldout.items():
        if field == "clips" or value is None:
            continue
        ref = chance.get(field, majority.get(field))
        table.add_row(field, f"{100 * value:.1f}", "-" if ref is None else f"{100 * ref:.1f}")
    console = Console()
    for dim, scores in report["defects"].items():
        table.add_row(
            f"{dim} seen (best clause)",
            f"{100 * scores['label_accuracy']:.1f}",
            f"{100 * scores['majority_label']:.1f}",
        )
    console.print(table)
    console.print(
        f"{report['parameters']:,} parameters; vision encoder {report['vision_steps']} updates in "
        f"{report['vision_seconds'] / 60:.1f} min, captions {report['steps']} updates in "
        f"{report['train_seconds'] / 60:.1f} min, last loss {report['final_loss']:.4f}; "
        f"model in {out}, report in {out / 'pretrain_report.json'}"
    )


def pretrain_t2v_command(
    out: Path = typer.Option(..., "--out", help="Output directory: a diffusers CogVideoX pipeline."),
    minutes: float | None = typer.Option(
        None, "--minutes", help="Time budget; the VAE phase gets 30% of it (default: fixed step counts)."
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Transformer updates (default: the committed model's)."
    ),
    seed: int = typer.Option(0, "--seed"),
    corpus_text: str = typer.Option(
        "prompt",
        "--corpus-text",
        help="Text paired with each corpus clip: 'prompt' (the asked prompt; clips with a semantic defect "
        "then show something else, as on the web) or 'shown' (the prompt of what is on screen).",
    ),
) -> None:
    """Pretrain the toy T2V base (CogVideoX classes): the VAE on toy clips, then the transformer on a
    rendered web corpus with defects. Writes OUT (pipeline + videolift_pretrain.json quality report)."""
    from dataclasses import replace

    from videolift.toy.pretrain_t2v import T2VPretrainConfig, pretrain_t2v

    if corpus_text not in ("prompt", "shown"):
        raise typer.BadParameter("must be 'prompt' or 'shown'", param_hint="--corpus-text")
    cfg = replace(
        T2VPretrainConfig(), seed=seed, corpus_text=corpus_text, **({"steps": steps} if steps else {})
    )
    report = pretrain_t2v(out, cfg, minutes=minutes)
    q = report["quality"]
    table = Table(title=f"oracle on {q['videos']} held-out-prompt videos")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("chance", justify="right")
    for key, value in q["accuracy"].items():
        table.add_row(f"{key} accuracy", "-" if value is None else f"{value:.2f}", f"{q['chance'][key]:.2f}")
    for dim, rates in q["label_rates"].items():
        table.add_row(
            f"{dim} Good / Normal / Bad", " / ".join(f"{rates[k]:.2f}" for k in ("Good", "Normal", "Bad")), ""
        )
    table.add_row("all three Good", f"{q['all_good_rate']:.2f}", "")
    Console().print(table)
