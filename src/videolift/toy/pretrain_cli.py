"""``videolift toy pretrain`` / ``pretrain-vlm`` / ``probe-t2v``: build, pretrain and probe the toy base models.

Registered by ``videolift.toy.cli`` (``app.command("pretrain-vlm")(pretrain_vlm_command)``). Heavy imports
live inside the command so ``videolift --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from videolift.core.console import plain_console


def _positive_minutes(value: float | None) -> float | None:
    if value is not None and not value > 0:  # NaN too
        raise typer.BadParameter(f"{value}: a time budget is more than 0 minutes")
    return value


def pretrain_vlm_command(
    out: Path = typer.Option(
        ..., "--out", help="Output directory: a save_pretrained VLM (model + processor)."
    ),
    minutes: float | None = typer.Option(
        None,
        "--minutes",
        callback=_positive_minutes,
        help="Fit the number of updates to this time budget (measured on the spot).",
    ),
    vision_steps: int | None = typer.Option(
        None,
        "--vision-steps",
        min=1,
        help="Vision-encoder updates, stage 1 (default: the committed model's).",
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Caption updates, stage 2 (default: the committed model's)."
    ),
    train_videos: int | None = typer.Option(
        None, "--train-videos", min=1, help="Rendered train-split clips."
    ),
    eval_videos: int | None = typer.Option(
        None, "--eval-videos", min=1, help="Held-out-split clips captioned for the quality report."
    ),
    seed: int = typer.Option(0, "--seed", min=0),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
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
    console = plain_console(stderr=True)  # the lines name --out and its folders as they are
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
    console = plain_console()  # "model in OUT" as it is
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
        None,
        "--minutes",
        callback=_positive_minutes,
        help="Time budget of the VAE phase (30% of it) and the decoder phase (stops at its end). The "
        "transformer's phases still run their step counts on fully rendered corpora (an hour or more "
        "here): for a quick base, lower --first-steps, --steps and --polish-steps too (default: fixed "
        "step counts).",
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Transformer updates (default: the committed model's)."
    ),
    seed: int = typer.Option(0, "--seed", min=0),
    first_steps: int | None = typer.Option(
        None,
        "--first-steps",
        min=0,
        help="Curriculum: updates on clean clips of one subject moving in a line before the web corpus "
        "(default: the committed model's, 2000; 0: off; see docs/toy-world.md).",
    ),
    polish_steps: int | None = typer.Option(
        None,
        "--polish-steps",
        min=0,
        help="Updates after the web phase at a constant lower rate, exporting the weights' EMA (default: "
        "the committed model's, 3000; 0: off).",
    ),
    decoder_steps: int | None = typer.Option(
        None,
        "--decoder-steps",
        min=0,
        help="Last phase: updates teaching the VAE decoder (encoder frozen) to draw sharp outlines "
        "(default: the committed model's, 1200; 0: off).",
    ),
    corpus_text: str | None = typer.Option(
        None,
        "--corpus-text",
        help="Text paired with each corpus clip: 'shown' (the prompt of what is on screen; the committed "
        "model's) or 'prompt' (the asked prompt; clips with a semantic defect then show something else, "
        "as on the web).",
    ),
) -> None:
    """Pretrain the toy T2V base (CogVideoX classes): the VAE on toy clips, then the transformer on a
    rendered web corpus with defects. Writes OUT (pipeline + videolift_pretrain.json quality report); the
    phases are kept in .OUT.work, where a rerun continues (docs/toy-world.md)."""
    from dataclasses import replace

    from videolift.toy.pretrain_t2v import T2VPretrainConfig, pretrain_t2v

    if corpus_text not in (None, "prompt", "shown"):
        raise typer.BadParameter("must be 'prompt' or 'shown'", param_hint="--corpus-text")
    chosen = {
        "steps": steps,
        "first_steps": first_steps,
        "polish_steps": polish_steps,
        "corpus_text": corpus_text,
    }
    cfg = replace(T2VPretrainConfig(), seed=seed, **{k: v for k, v in chosen.items() if v is not None})
    if decoder_steps is not None:
        cfg.decoder = replace(cfg.decoder, steps=decoder_steps)
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
    _print_probe(q["conditioning"])


def _print_probe(probe: dict) -> None:
    table = Table(
        title=f"does the model read each word? high-noise loss on {probe['clips']} clips "
        f"(t in [{probe['t_range'][0]}, {probe['t_range'][1]}))"
    )
    for col in ("prompt", "loss", "gap vs true prompt"):
        table.add_column(col, justify="left" if col == "prompt" else "right")
    table.add_row("true", f"{probe['loss_true']:.4f}", "")
    for attribute, loss in probe["loss_swapped"].items():
        table.add_row(f"{attribute} swapped", f"{loss:.4f}", f"{100 * probe['gap'][attribute]:+.1f}%")
    Console().print(table)
    ignored = [a for a, gap in probe["gap"].items() if gap < 0.01]
    if ignored:
        Console().print(f"[yellow]the model ignores (gap < 1%): {', '.join(ignored)}[/yellow]")


def probe_t2v_command(
    model: str = typer.Option(..., "--model", help="A toy T2V pipeline directory (videolift toy pretrain)."),
    clips: int = typer.Option(64, "--clips", min=1, help="Clean single-subject clips of linear moves."),
    split: str = typer.Option("heldout", "--split", help="Prompt split the clips are drawn from."),
    t_low: int = typer.Option(700, "--t-low", min=0, help="Noise levels probed: t in [T_LOW, T)."),
    seed: int = typer.Option(0, "--seed", min=0),
    as_json: bool = typer.Option(False, "--json", help="Print the probe as JSON."),
) -> None:
    """Does a toy T2V model read the colour, shape and direction words of its prompt? Compares its
    high-noise diffusion loss with the true prompt against each word swapped (docs/toy-world.md)."""
    import json

    from videolift.models.families import get_spec
    from videolift.toy.t2v_probe import conditioning_probe

    if split not in ("train", "heldout"):
        raise typer.BadParameter("must be 'train' or 'heldout'", param_hint="--split")
    spec = get_spec("cogvideox")
    pipe = spec.load(model)
    total = pipe.scheduler.config.num_train_timesteps
    if t_low >= total:
        raise typer.BadParameter(f"must be below the scheduler's {total} timesteps", param_hint="--t-low")
    probe = conditioning_probe(spec, pipe, n_clips=clips, split=split, seed=seed, t_low=t_low)
    if as_json:
        typer.echo(json.dumps(probe, indent=1))
    else:
        _print_probe(probe)
