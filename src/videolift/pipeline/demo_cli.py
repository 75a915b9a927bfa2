"""``videolift demo``: the toy world end to end on a CPU, with the committed toy bases."""

from __future__ import annotations

from pathlib import Path

import typer

PRESET = Path(__file__).with_name("presets") / "toy.yaml"


def demo(
    # Read as text: typer turns an empty --out ("$UNSET") into Path("."), the current directory.
    out: str = typer.Option("demo-out", "--out", metavar="PATH", help="Working directory (resumable)."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars (off for logs of batch jobs)."
    ),
) -> None:
    """Simulated ratings -> critic (with reasons and label-only) -> scores -> RWL and RS alignment ->
    evaluation on held-out prompts; prints a summary, writes OUT/report.html and OUT/summary.json."""
    from videolift.core.errors import UsageError
    from videolift.core.files import refuse_file_as_dir
    from videolift.pipeline.cli import print_summary
    from videolift.pipeline.run import PipelineConfig, run_pipeline
    from videolift.pipeline.run_report import write_report

    if not out.strip():
        raise UsageError("--out is empty: give the demo's working directory")
    refuse_file_as_dir(Path(out).expanduser())  # named as --out, not as the preset's workdir
    cfg = PipelineConfig.load(PRESET, workdir=Path(out).expanduser())
    summary = run_pipeline(cfg, progress=progress)
    if summary is None:  # another than the main process of a multi-process launch: the main one reports
        return
    print_summary(summary)
    typer.echo(f"report: {write_report(cfg.workdir, summary)}\nsummary: {cfg.workdir / 'summary.json'}")
