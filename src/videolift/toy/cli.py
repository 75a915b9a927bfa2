"""``videolift toy``: prompts, a rendered corpus with ground truth, and oracle or simulated-panel ratings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

from videolift.core.errors import UsageError, VideoliftError
from videolift.core.files import check_outputs, refuse_file_as_dir

app = typer.Typer(
    help="The toy world: a synthetic video domain with ground truth, an oracle rater and a simulated panel.",
    no_args_is_help=True,
)


def _split(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UsageError(f"--split must be one of {', '.join(allowed)}, got {value!r}")
    return value


@app.command()
def prompts(
    split: str = typer.Option(..., "--split", help="train or heldout (combinations never seen in training)."),
    out: Path = typer.Option(..., "--out", help="Output file: .jsonl (prompt + category fields) or .txt."),
    n: int | None = typer.Option(None, "--n", help="How many different prompts (default: all of the split)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for drawing --n prompts."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Write prompts of the toy grammar from one split."""
    from videolift.core.jsonl import atomic_write, write_jsonl
    from videolift.toy.grammar import sample_distinct, split_specs

    split = _split(split, ("train", "heldout"))
    if out.suffix.lower() not in (".jsonl", ".txt"):
        raise UsageError(f"{out}: unsupported prompt file type {out.suffix!r}; use .jsonl or .txt")
    if n is not None and n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    try:
        specs = sample_distinct(n, split, seed) if n else split_specs(split)
    except ValueError as exc:  # more prompts than the split's grammar makes
        raise UsageError(str(exc)) from None
    check_outputs([("--out", out)], overwrite=overwrite)
    if out.suffix.lower() == ".txt":
        with atomic_write(out) as handle:
            handle.writelines(spec.text + "\n" for spec in specs)
    else:
        write_jsonl(out, ({"prompt": spec.text, "split": spec.split, **spec.categories()} for spec in specs))
    typer.echo(f"wrote {len(specs)} {split} prompts to {out}")


@app.command()
def corpus(
    n: int = typer.Option(..., "--n", help="Number of videos."),
    out: Path = typer.Option(..., "--out", help="Output directory: videos/*.mp4 and manifest.jsonl."),
    defect_rate: float = typer.Option(
        0.0, "--defect-rate", help="Share of videos with a defect, per dimension (half mild, half strong)."
    ),
    split: str = typer.Option("train", "--split", help="Prompts from train, heldout or all."),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of the whole corpus (prompts, layouts, defects)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing corpus in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Render a toy corpus with injected defects and their ground-truth labels."""
    from videolift.toy.corpus import plan, write_corpus

    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    if not 0.0 <= defect_rate <= 1.0:
        raise UsageError(f"--defect-rate must be within [0, 1], got {defect_rate}")
    split = _split(split, ("train", "heldout", "all"))
    manifest = out / "manifest.jsonl"
    refuse_file_as_dir(out)
    if manifest.exists() and not overwrite:
        raise VideoliftError(f"{manifest} already exists; pass --overwrite to replace the corpus")
    if overwrite and (why := _not_a_corpus(out)):
        raise VideoliftError(
            f"--out {out}: {why}; --overwrite replaces a toy corpus only (its videos and their ground truth). "
            "Use another --out"
        )
    items = plan(n, defect_rate=defect_rate, seed=seed, split=None if split == "all" else split)
    # The old corpus stays whole until the new one is rendered, then goes: its manifest, and its own videos
    # only (by the corpus's naming), never its manifest beside new videos.
    old = sorted((out / "videos").glob("toy-*.mp4")) if overwrite else []
    write_corpus(items, out, progress=progress, remove=old)
    counts = {
        dim: Counter(json.loads(line)["truth"][dim] for line in manifest.read_text().splitlines())
        for dim in ("semantic_consistency", "motion_smoothness", "video_fidelity")
    }
    typer.echo(f"wrote {n} videos and {manifest}")
    for dim, c in counts.items():
        typer.echo(f"  {dim}: " + ", ".join(f"{lab} {c.get(lab, 0)}" for lab in ("Good", "Normal", "Bad")))


def _not_a_corpus(out: Path) -> str | None:
    """Why ``out`` holds something other than a toy corpus (e.g. `generate`'s videos), or None."""
    from videolift.core.jsonl import iter_json_lines
    from videolift.data.generate import RUN_CONFIG

    if (out / RUN_CONFIG).exists():
        return f"{out / RUN_CONFIG} says `videolift generate` wrote it"
    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        return None
    first = next((record for _, record in iter_json_lines(manifest, skip_partial_last=True)), None)
    if first is not None and (
        "truth" not in first or not str(first.get("video", "")).startswith("videos/toy-")
    ):
        return f"{manifest} was not written by `videolift toy corpus` (no ground truth)"
    return None


@app.command()
def rate(
    manifest: Path = typer.Option(
        ..., "--manifest", help="JSONL with 'video' (relative to --videos) and 'prompt'."
    ),
    videos: Path = typer.Option(..., "--videos", help="Root the manifest's video paths are relative to."),
    out: Path = typer.Option(..., "--out", help="Output HRA JSONL (one record per video and annotator)."),
    oracle: bool = typer.Option(False, "--oracle", help="Rate with the oracle alone (annotator 'oracle')."),
    annotators: int = typer.Option(3, "--annotators", help="Simulated panel size (ignored with --oracle)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the simulated panel."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    scores_out: Path = typer.Option(
        None,
        "--scores-out",
        help="With --oracle: also write the ratings as a `critic score` file (rewards included), "
        "for `videolift align --scores` with the oracle as a perfect critic.",
    ),
    reward_config: Path = typer.Option(
        None, "--reward-config", help="Label -> score mapping and aggregation for --scores-out (YAML/JSON)."
    ),
    shape_doubt: float = typer.Option(
        None,
        "--shape-doubt",
        help="How many times worse the asked shape may fit than the best-fitting shape and still count "
        "as drawn (default 1.3, the oracle's benefit of the doubt; 1.0: strict, only when it fits best).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --out (and --scores-out)."
    ),
) -> None:
    """Rate any toy-world videos from their pixels: the oracle, or a simulated annotator panel."""
    from videolift.toy.rate import check_options, rate_manifest

    if annotators < 1:
        raise UsageError(f"--annotators must be at least 1, got {annotators}")
    # The command line's own mistakes (status 2) before what it meets, such as an existing --out (1).
    check_options(oracle=oracle, scores_out=scores_out, reward_config=reward_config, shape_doubt=shape_doubt)
    check_outputs(
        [("--out", out), ("--scores-out", scores_out)], [("--manifest", manifest)], overwrite=overwrite
    )
    result = rate_manifest(
        manifest,
        videos,
        out,
        annotators=annotators,
        seed=seed,
        oracle=oracle,
        progress=progress,
        scores_out=scores_out,
        reward_config=reward_config,
        shape_doubt=shape_doubt,
    )
    typer.echo(f"wrote {result['records']} ratings of {result['videos']} videos to {out}")
    if scores_out is not None:
        typer.echo(f"wrote their rewards, as critic scores, to {scores_out}")
    if result["oracle_vs_truth"]:
        typer.echo(
            f"oracle vs truth ({result['videos_with_truth']} videos with truth): "
            + ", ".join(f"{d} {v:.3f}" for d, v in sorted(result["oracle_vs_truth"].items()))
        )


def _register_pretraining() -> None:
    from videolift.toy.pretrain_cli import pretrain_t2v_command, pretrain_vlm_command, probe_t2v_command

    app.command("pretrain")(pretrain_t2v_command)
    app.command("probe-t2v")(probe_t2v_command)
    app.command("pretrain-vlm")(pretrain_vlm_command)


_register_pretraining()
