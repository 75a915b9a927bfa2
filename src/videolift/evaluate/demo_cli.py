"""``videolift demo``: the toy world end to end on a CPU, with the committed toy bases."""

from __future__ import annotations

from pathlib import Path

import typer

PRESET = Path(__file__).with_name("presets") / "toy.yaml"


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Working directory (resumable)."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars (off for logs of batch jobs)."
    ),
) -> None:
    """Simulated ratings -> critic (with reasons and label-only) -> scores -> RWL and RS alignment ->
    evaluation on held-out prompts; prints a summary, writes OUT/report.html and OUT/summary.json."""
    from videolift.evaluate.demo_report import write_report
    from videolift.evaluate.pipeline import PipelineConfig, run_pipeline
    from videolift.evaluate.pipeline_cli import print_summary

    cfg = PipelineConfig.load(PRESET, workdir=out)
    summary = run_pipeline(cfg, progress=progress)
    print_summary(summary)
    typer.echo(f"report: {write_report(out, summary)}\nsummary: {out / 'summary.json'}")
