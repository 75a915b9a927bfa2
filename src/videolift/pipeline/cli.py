"""``videolift run PIPELINE.yaml``: the whole loop from one config file."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    config: Path = typer.Argument(..., help="Pipeline YAML (see configs/pipeline/)."),
    # Read as text: typer turns an empty --workdir ("$UNSET") into Path("."), the current directory.
    workdir: str | None = typer.Option(
        None,
        "--workdir",
        metavar="PATH",
        help="Override the config's workdir (relative: to the current directory).",
    ),
    report: bool = typer.Option(True, "--report/--no-report", help="Write WORKDIR/report.html."),
    sets: list[str] = typer.Option(
        [],
        "--set",
        help="Edit one setting, KEY=VALUE with a dotted key and a YAML value (repeatable), "
        "e.g. --set align.settings.seed=1 --set 'align.methods=[rwl]'.",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars (off for logs of batch jobs)."
    ),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="Only say which stages are up to date and the first that would run, and why; runs nothing.",
    ),
) -> None:
    """Run generate -> rate -> critic -> score -> align -> evaluate; finished stages are skipped."""
    from videolift.pipeline.run import PipelineConfig, run_pipeline
    from videolift.pipeline.run_report import write_report

    cfg = PipelineConfig.load(config, sets=sets, workdir=workdir)
    summary = run_pipeline(cfg, progress=progress, plan=plan)
    if summary is None:  # --plan
        return
    print_summary(summary)
    if report:
        typer.echo(f"report: {write_report(cfg.workdir, summary)}")


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table("model", "oracle all-Good", "oracle reward", "critic all-Good", "critic reward")
    for key, s in summary.items():
        if isinstance(s, dict) and "oracle_all_good_rate" in s:
            cells = [
                s.get(k)
                for k in (
                    "oracle_all_good_rate",
                    "oracle_mean_reward",
                    "critic_all_good_rate",
                    "critic_mean_reward",
                )
            ]
            table.add_row(key, *["-" if c is None else f"{c:.3f}" for c in cells])
    console.print(table)
    from rich.markup import escape

    from videolift.evaluate.eval_report import reward_note

    if note := reward_note(summary):
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    acc = summary["critic"]
    for name, key in (
        ("critic (with reasons)", "accuracy"),
        ("critic (label only)", "accuracy_no_reasons"),
        ("always the majority label", "majority_baseline"),
    ):
        if acc.get(key):
            console.print(f"{name} accuracy: " + ", ".join(f"{d} {v:.3f}" for d, v in acc[key].items()))
    if se := acc.get("accuracy_se"):
        shown = ", ".join(f"{d} {v:.3f}" for d, v in se.items() if v is not None)
        console.print(f"critic (with reasons) standard error: {shown}")
    from videolift.evaluate.metrics import format_difference

    for pair, by_rater in summary.get("differences", {}).items():
        for rater, diff in by_rater.items():
            console.print(f"{pair} ({rater}, paired difference ± SE): {format_difference(diff)}")
    if clip := summary.get("clip"):
        from videolift.evaluate.eval_report import clip_paired_cells

        for pair, cells in clip_paired_cells(clip):
            console.print(f"{pair} (CLIP {escape(clip['model'])}, paired difference ± SE): {cells}")
    from videolift.pipeline.run_report import target_rows

    for target, value, verdict in target_rows(summary):
        console.print(f"target: {target}: {value}, {verdict}")
    console.print(f"wall {summary['wall_seconds']:.0f} s, peak RSS {summary['peak_rss_mb']:.0f} MB")
