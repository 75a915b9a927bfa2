"""``videolift hra``: import, export, validate, describe and split human-rating datasets."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from videolift.core.console import plain_console, styled
from videolift.core.errors import DataError, OptionError
from videolift.core.files import check_outputs
from videolift.core.jsonl import (
    atomic_write,
    iter_json_lines,
    parse_model,
    read_json,
    write_jsonl,
)
from videolift.core.schema import DIMENSIONS, LABELS, HRARecord, tidy_path
from videolift.data.hra_file import read_hra, record_problems

app = typer.Typer(
    help="Human-rating (HRA) datasets: import/export the LiFT release, validate, stats, split.",
    no_args_is_help=True,
)
console = plain_console()  # file names and values as they are (a "[v2]" in a path is not markup)


class Format(StrEnum):
    lift = "lift"


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="The release file (JSON list, one record per video and dimension)."),
    format: Format = typer.Option(Format.lift, "--format", help="Source layout."),
    out: Path = typer.Option(..., "--out", help="Canonical HRA JSONL to write."),
    video_prefix: str | None = typer.Option(
        None,
        "--video-prefix",
        help="Folder put in front of every video path (and of ids taken from paths), e.g. vidgen: "
        "LiFT-HRA and VIDGEN both name their videos videos/..., under different roots.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Convert the LiFT release layout (LiFT-HRA-10K/20K, VIDGEN) to canonical HRA JSONL."""
    from videolift.data.lift_format import import_lift

    # As a record's path is read ("./vidgen" is "vidgen"): written untidied, it became an id of its own.
    prefix = None if video_prefix is None else tidy_path(video_prefix.strip("/"))
    if prefix is not None and (prefix in ("", ".") or ".." in Path(prefix).parts):  # status 2 first
        raise OptionError(f"--video-prefix {video_prefix!r}: name a folder inside the videos root")
    check_outputs([("--out", out)], [("the release file", src)], overwrite=overwrite)
    records, stats = import_lift(src, read_json(src))
    if prefix is not None:
        for r in records:
            r.video_id = f"{prefix}/{r.video_id}" if r.video_id == r.video else r.video_id
            r.video = f"{prefix}/{r.video}"
    write_jsonl(out, records)
    console.print(
        f"{stats['input_records']} release records -> {stats['output_records']} HRA records in {out}"
        f" ({stats['duplicates']} exact duplicates dropped, {stats['extra_records']} repeated ratings kept"
        " as extra records)"
    )
    if ignored := stats["ignored_keys"]:  # once, not per record: a file's records share their keys
        keys = ", ".join(
            f"{key!r} ({n} record{'s' * (n != 1)}, first element [{first}])"
            for key, (n, first) in list(ignored.items())[:10]
        ) + (f" and {len(ignored) - 10} more" if len(ignored) > 10 else "")
        plain_console(stderr=True).print(
            styled("warning:", "yellow", f"{src}: keys not in the LiFT layout, not imported: {keys}"),
            highlight=False,
            soft_wrap=True,
        )


@app.command("export")
def export(
    src: Path = typer.Argument(..., help="Canonical HRA JSONL."),
    format: Format = typer.Option(Format.lift, "--format", help="Target layout."),
    out: Path = typer.Option(..., "--out", help="JSON file to write in the release layout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Convert canonical HRA JSONL to the LiFT release layout (one record per video and dimension)."""
    from videolift.data.lift_format import export_lift

    check_outputs([("--out", out)], [("the HRA file", src)], overwrite=overwrite)
    items = export_lift(read_hra(src))
    with atomic_write(out) as handle:
        json.dump(items, handle, ensure_ascii=False, indent=1)
    console.print(f"{len(items)} release records written to {out}")


@app.command()
def validate(
    src: Path = typer.Argument(..., help="Canonical HRA JSONL."),
    videos: Path | None = typer.Option(None, "--videos", help="Videos root: also check every video decodes."),
    quick: bool = typer.Option(
        False, "--quick", help="With --videos: only open each file, do not decode it all."
    ),
    max_errors: int = typer.Option(50, min=1, help="Stop listing after this many errors."),
) -> None:
    """Report schema errors and missing or undecodable videos, by file, line and field."""
    from videolift.core.video import video_problem

    if videos is not None and not videos.is_dir():  # one line, not a "file not found" for every record
        what = "is not a directory" if videos.exists() else "is not found"
        raise DataError(f"the videos root of {src} {what}", file=videos)
    line_errors: list[DataError] = []
    seen: dict[tuple[str, str], int] = {}
    videos_by_id: dict = {}
    checked: dict[str, str | None] = {}
    records = 0
    lines = list(iter_json_lines(src, errors=line_errors))
    errors = [str(e) for e in line_errors]
    for line, obj in _progress(lines, "validating", enabled=videos is not None):
        try:
            record = parse_model(HRARecord, obj, file=src, line=line)
        except DataError as exc:
            errors.append(str(exc))
            continue
        records += 1
        errors += [str(e) for e in record_problems(record, line, src, seen, videos_by_id)]
        if videos is not None:
            problem = video_problem(videos / record.video, decode=not quick, seen=checked)
            if problem is not None:
                errors.append(str(DataError(problem, file=src, line=line, field="video")))
        if len(errors) >= max_errors:
            break
    if not records and not errors:
        errors.append(str(DataError("no records: the file is empty", file=src)))
    for message in errors[:max_errors]:
        console.print(styled("✗", "red", message), soft_wrap=True)
    if errors:
        more = " (stopped early)" if len(errors) >= max_errors else ""
        console.print(styled(f"{len(errors)} error(s){more}", "red", f"in {src}"))
        raise typer.Exit(1)
    console.print(
        styled(
            "✓",
            "green",
            f"{src}: {records} valid records"
            + (f", {len(checked)} videos {'open' if quick else 'decode'}" if videos else ""),
        )
    )


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, console=console, transient=True)


@app.command()
def stats(
    src: Path = typer.Argument(..., help="Canonical HRA JSONL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Counts, label distribution and inter-annotator agreement per dimension."""
    from videolift.data.stats import dataset_stats

    result = dataset_stats(read_hra(src))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    console.print(
        f"{src}: {result['records']} records, {result['videos']} videos, {result['prompts']} prompts, "
        f"{result['annotators']} named annotators"
        + (
            f", {n} adjudicated reviews (not counted as ratings)"
            if (n := result["adjudicated_records"])
            else ""
        )
    )
    table = Table("dimension", "n", *[lab.value for lab in LABELS], "alpha", "agree", "multi", box=None)
    table.columns[0].no_wrap = True
    for dim in DIMENSIONS:
        d = result["dimensions"][dim.value]
        agr = d["agreement"]
        table.add_row(
            dim.value,
            str(d["ratings"]),
            *[f"{d['labels'][lab.value]} {d['label_rates'][lab.value]:.0%}" for lab in LABELS],
            "-" if agr["krippendorff_alpha"] is None else f"{agr['krippendorff_alpha']:.3f}",
            "-" if agr["pairwise_agreement"] is None else f"{agr['pairwise_agreement']:.1%}",
            str(agr["videos"]),
        )
    console.print(table)
    console.print(
        "alpha: Krippendorff's alpha (ordinal); agree: pairwise agreement; multi: videos rated twice or more"
    )


class GroupBy(StrEnum):
    video = "video"
    prompt = "prompt"


@app.command()
def split(
    src: Path = typer.Argument(..., help="Canonical HRA JSONL."),
    test_fraction: float = typer.Option(
        ..., "--test-fraction", help="Share of videos held out, strictly between 0 and 1."
    ),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed; the split is deterministic for a seed."),
    out: Path = typer.Option(..., "--out", help="Directory for train.jsonl and test.jsonl."),
    group_by: GroupBy = typer.Option(
        GroupBy.video, "--group-by", help="Keep each video (or each prompt) on one side."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace train.jsonl and test.jsonl already in --out."
    ),
) -> None:
    """Split into train.jsonl and test.jsonl, never the same video on both sides."""
    from videolift.data.split import split_records, write_split

    if not 0.0 < test_fraction < 1.0:
        raise OptionError(f"--test-fraction must be strictly between 0 and 1, got {test_fraction}")
    if out.exists() and not out.is_dir():
        raise DataError("is a file; --out names a directory for train.jsonl and test.jsonl", file=out)
    check_outputs(
        [("--out", out / name) for name in ("train.jsonl", "test.jsonl")],
        [("the HRA file", src)],
        overwrite=overwrite,
    )
    train, test = split_records(read_hra(src), test_fraction, seed, group_by=group_by.value)
    write_split(out, train, test)
    console.print(f"train: {len(train)} records, test: {len(test)} records -> {out}")
