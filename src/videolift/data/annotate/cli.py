"""``videolift annotate``: create a rating project, add raters, serve the web app, export and review.

Tokens go to stdout alone on their line (``TOKEN=$(videolift annotate add-annotator ...)``); every
other message goes to stderr. Imports are inside the commands to keep ``videolift --help`` fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from videolift.data.annotate.project import Project

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's
app = typer.Typer(
    help="Collect LiFT ratings with a self-hosted web app (see docs/annotate.md).", no_args_is_help=True
)
# No markup: names (raters, critics, models) and paths are printed as they are. A rater named "[/x]"
# raised rich's MarkupError after add-annotator had stored them, and their token was never shown.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

DIR_HELP = "Directory {}'s video paths are relative to, inside the videos root (default: the videos root)."
PROJECT = typer.Option(
    ..., "--project", help="Project directory (holds project.json and the SQLite database)."
)


OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing --out.")
ALLOW_UNPLAYABLE = typer.Option(
    False,
    "--allow-unplayable",
    help="Add videos browsers do not play everywhere (HEVC, GIF, MJPEG/AVI...): when your raters' browsers do.",
)


def _open(directory: Path, out: Path | None = None, *, overwrite: bool = False) -> Project:
    """The project; ``out``: a file the command will write, refused if it is one of the project's own, or
    (without ``overwrite``) if it exists."""
    from videolift.core.files import check_outputs
    from videolift.data.annotate.project import CONFIG_FILE, Project

    project = Project.open(directory)
    own = [("the project's project.json", directory / CONFIG_FILE)]
    if (db := project.settings.sqlite_file()) is not None:  # where it is, also with --db at create
        own += [
            (f"the project's database {db.name}", db.with_name(db.name + end)) for end in ("", "-wal", "-shm")
        ]
    try:
        check_outputs([("--out", out)], own, overwrite=overwrite)
    except BaseException:
        project.close()
        raise
    return project


@app.command()
def create(
    project_dir: Path = PROJECT,
    videos: Path = typer.Option(..., "--videos", help="Videos root: manifest paths are relative to it."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="JSONL with video and prompt per line (omit for a pairwise-only study)."
    ),
    ratings_per_video: int = typer.Option(
        3, "--ratings-per-video", min=1, help="Independent ratings per video."
    ),
    db: str | None = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite inside the project)."),
    lease_minutes: float = typer.Option(
        120, "--lease-minutes", help="Hand an unsubmitted task to others after this."
    ),
    allow_unplayable: bool = ALLOW_UNPLAYABLE,
) -> None:
    """Create a project and print the admin token."""
    import sqlalchemy.exc

    from videolift.core.errors import VideoliftError
    from videolift.core.files import refuse_file_as_dir
    from videolift.data.annotate import guideline
    from videolift.data.annotate.project import Project, add_user
    from videolift.data.annotate.videos import import_manifest

    refuse_file_as_dir(project_dir, "--project")
    made_dir = not project_dir.exists()
    project = Project.create(
        project_dir, videos, db=db, ratings_per_video=ratings_per_video, lease_minutes=lease_minutes
    )
    try:
        with project, project.session() as session:
            n = 0
            if manifest:
                n = len(
                    import_manifest(session, manifest, project.videos_root, allow_unplayable=allow_unplayable)
                )
            token = add_user(session, "admin", "admin")
        path = guideline.write_default(project_dir)
    except BaseException as exc:  # leave nothing half-created, so that `create` can simply be rerun
        for name in ("project.json", "annotate.db", "annotate.db-wal", "annotate.db-shm"):
            if name == "project.json" or db is None:
                (project_dir / name).unlink(missing_ok=True)
        if made_dir and not any(project_dir.iterdir()):
            project_dir.rmdir()
        if isinstance(exc, sqlalchemy.exc.OperationalError):  # e.g. "database or disk is full"
            raise VideoliftError(f"{project_dir}: cannot write the project's database ({exc.orig})") from None
        raise
    if manifest:
        study = f"{n} videos, {ratings_per_video} ratings each"
    else:  # a pairwise study's project: it said "0 videos, 3 ratings each"
        study = (
            "no videos yet (pairs to judge: `create-pairs`; videos to rate: `add-videos`, "
            f"{ratings_per_video} ratings each)"
        )
    err.print(f"created {project_dir}: {study}; guideline in {path}")
    err.print("admin token (shown once, only its hash is stored; `admin-token` issues a new one):")
    typer.echo(token)


@app.command("add-videos")
def add_videos(
    manifest: Path = typer.Option(..., "--manifest"),
    project_dir: Path = PROJECT,
    directory: Path | None = typer.Option(None, "--dir", help=DIR_HELP.format("the manifest")),
    allow_unplayable: bool = ALLOW_UNPLAYABLE,
) -> None:
    """Add a manifest's videos to the rating study."""
    from videolift.data.annotate.videos import import_manifest, subdirectory

    with _open(project_dir) as project, project.session() as session:
        base = subdirectory(project.videos_root, directory) if directory else ""
        n = len(
            import_manifest(
                session, manifest, project.videos_root, base=base, allow_unplayable=allow_unplayable
            )
        )
    err.print(f"{n} videos in {manifest} are in the rating study")


@app.command("add-annotator")
def add_annotator(
    name: str = typer.Argument(..., help="Rater name (appears in the export)."),
    project_dir: Path = PROJECT,
    reissue: bool = typer.Option(
        False, "--reissue", help="Give an existing rater a new token (the old one stops working)."
    ),
) -> None:
    """Add a rater and print their token."""
    from videolift.data.annotate.project import add_user

    with _open(project_dir) as project, project.session() as session:
        token = add_user(session, name, "annotator", reissue=reissue)
    err.print(f"token of {name.strip()} (shown once):")
    typer.echo(token)


@app.command("admin-token")
def admin_token(project_dir: Path = PROJECT) -> None:
    """Issue a new admin token (the old one stops working)."""
    from videolift.data.annotate.project import add_user

    with _open(project_dir) as project, project.session() as session:
        token = add_user(session, "admin", "admin", reissue=True)
    typer.echo(token)


@app.command()
def serve(
    project_dir: Path = PROJECT,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: the whole network)."
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port (0: any free one)."),
    log_level: str = typer.Option(
        "info", "--log-level", help=f"uvicorn's log level: {', '.join(LOG_LEVELS)}."
    ),
) -> None:
    """Serve the rater/admin UI and the API."""
    import uvicorn

    from videolift.core.errors import UsageError

    if log_level.lower() not in LOG_LEVELS:
        raise UsageError(f"--log-level {log_level}: use one of {', '.join(LOG_LEVELS)}")

    from videolift.data.annotate.app import create_app

    with _open(project_dir) as project:
        err.print(f"serving {project_dir} on http://{host}:{port}/  (log in with a token; Ctrl+C stops)")
        uvicorn.run(create_app(project), host=host, port=port, log_level=log_level.lower())


@app.command()
def export(
    project_dir: Path = PROJECT,
    out: Path = typer.Option(..., "--out", help="HRA JSONL to write (one record per video and annotator)."),
    with_reviews: bool = typer.Option(
        False, "--with-reviews", help="Add adjudicated records (adjudicated: true)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write the ratings in the canonical HRA format."""
    from videolift.core.jsonl import write_jsonl
    from videolift.data.annotate import admin

    with _open(project_dir, out, overwrite=overwrite) as project, project.session(readonly=True) as session:
        records = admin.export_records(session, with_reviews=with_reviews)
        agreement = admin.agreement(records)
    n = write_jsonl(out, records)
    err.print(f"wrote {n} records to {out}")
    for dim, stats in agreement.items():
        alpha = stats["krippendorff_alpha"]
        err.print(
            f"  {dim}: alpha {'n/a' if alpha is None else f'{alpha:.3f}'} over {stats['videos']} videos"
        )


@app.command()
def progress(project_dir: Path = PROJECT) -> None:
    """Print progress per annotator."""
    from rich.table import Table

    from videolift.data.annotate import admin, pairwise

    with _open(project_dir) as project, project.session(readonly=True) as session:
        report = admin.progress(session, project.settings)
        pair_skips = pairwise.pair_skips(session)
    table = Table("annotator", "done", "skipped", "open", "pairs done", "pairs skipped")
    for row in report["annotators"]:
        keys = ("done", "skipped", "open", "pair_done", "pair_skipped")
        table.add_row(row["name"], *(str(row[key]) for key in keys))
    Console(markup=False).print(table)  # rater names as they are (see err)
    if report["videos"] or not report["pairs"]:
        Console().print(
            f"{report['ratings_done']}/{report['ratings_needed']} ratings, "
            f"{report['videos_complete']}/{report['videos']} videos complete"
        )
    if report["pairs"]:  # the pairwise study (section 7 of docs/annotate.md)
        Console().print(
            f"{report['judgements_done']}/{report['judgements_needed']} pairwise judgements, "
            f"{report['pairs_complete']}/{report['pairs']} pairs complete"
        )
    skipped = [(row["video_id"], s) for row in report["per_video"] for s in row["skip_reasons"]]
    if skipped:
        Console(highlight=False, soft_wrap=True).print(f"skipped ({len(skipped)}):")
        for video_id, s in skipped:
            typer.echo(f"  {video_id}\t{s['annotator']}\t{s['reason']}")
    if pair_skips:  # the same flags on pairs (section 7 of docs/annotate.md)
        Console(highlight=False, soft_wrap=True).print(f"skipped pairs ({len(pair_skips)}):")
        for s in pair_skips:
            typer.echo(
                f"  pair {s['pair_id']}\t{s['annotator']}\t{s['reason']}\t{s['video_a']}\t{s['video_b']}"
            )


@app.command("create-pairs")
def create_pairs(
    manifest_a: Path = typer.Option(..., "--manifest-a", help="Manifest of model A's videos."),
    manifest_b: Path = typer.Option(..., "--manifest-b", help="Manifest of model B's videos (same prompts)."),
    project_dir: Path = PROJECT,
    name_a: str | None = typer.Option(
        None, "--name-a", help="Model A's name (default: the manifest's file stem, or its directory's name)."
    ),
    name_b: str | None = typer.Option(
        None, "--name-b", help="Model B's name (default: the manifest's file stem, or its directory's name)."
    ),
    match: str = typer.Option("auto", "--match", help="auto | prompt | prompt+seed"),
    dir_a: Path | None = typer.Option(None, "--dir-a", help=DIR_HELP.format("manifest A")),
    dir_b: Path | None = typer.Option(None, "--dir-b", help=DIR_HELP.format("manifest B")),
    ratings_per_pair: int | None = typer.Option(
        None, "--ratings-per-pair", min=1, help="Judgements per pair (default: as set before; 6 at first)."
    ),
    allow_unplayable: bool = ALLOW_UNPLAYABLE,
) -> None:
    """Add a pairwise study: pair A's and B's videos of the same prompt."""
    from videolift.core.errors import UsageError
    from videolift.data.annotate.pairwise import create_pairs as make
    from videolift.data.annotate.project import MAX_RATINGS
    from videolift.data.annotate.videos import subdirectory

    if match not in ("auto", "prompt", "prompt+seed"):
        raise UsageError(f"--match must be auto, prompt or prompt+seed, not {match!r}")
    if ratings_per_pair is not None and ratings_per_pair > MAX_RATINGS:  # before any pair is made
        raise UsageError(f"--ratings-per-pair: at most {MAX_RATINGS:,}, got {ratings_per_pair:,}")
    default_a, default_b = manifest_a.stem, manifest_b.stem
    if default_a == default_b:  # two `generate` runs' manifest.jsonl: named by their directories
        default_a, default_b = manifest_a.resolve().parent.name, manifest_b.resolve().parent.name
    with _open(project_dir) as project, project.session() as session:
        report = make(
            session,
            project.videos_root,
            manifest_a,
            manifest_b,
            name_a=name_a or default_a,
            name_b=name_b or default_b,
            match=match,  # type: ignore[arg-type]
            base_a=subdirectory(project.videos_root, dir_a) if dir_a else "",
            base_b=subdirectory(project.videos_root, dir_b) if dir_b else "",
            allow_unplayable=allow_unplayable,
        )
    if ratings_per_pair is not None:
        project.settings.ratings_per_pair = ratings_per_pair
        project.save_settings()
    err.print(
        f"{report['created']} pairs created ({report['already_present']} already there) matching by {report['match']}; "
        f"unmatched: {report['unmatched_a']} in A, {report['unmatched_b']} in B; "
        f"{project.settings.ratings_per_pair} judgements per pair"
    )


@app.command("export-pairs")
def export_pairs(
    project_dir: Path = PROJECT,
    out: Path = typer.Option(..., "--out", help="JSON to write."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write pairwise results: win / tie / loss of model A against B per dimension, and every judgement."""
    from videolift.core.jsonl import atomic_write
    from videolift.data.annotate.pairwise import pair_results

    with _open(project_dir, out, overwrite=overwrite) as project, project.session(readonly=True) as session:
        results = pair_results(session)
    with atomic_write(out) as handle:
        json.dump(results, handle, indent=2, ensure_ascii=False)
    for comp in results["comparisons"]:
        err.print(
            f"{comp['model_a']} vs {comp['model_b']}: {comp['judgements']} judgements on {comp['pairs_judged']} pairs"
        )
        for dim, c in comp["dimensions"].items():
            err.print(f"  {dim}: win {c['win']} / tie {c['tie']} / loss {c['loss']}")
    if results["skipped"]:
        err.print(f"skipped pairs ({len(results['skipped'])}):")
        for s in results["skipped"]:
            err.print(f"  pair {s['pair_id']}\t{s['annotator']}\t{s['reason']}")
    err.print(f"wrote {out}")


@app.command("import-critic")
def import_critic(
    scores: Path = typer.Argument(
        ..., help="Critic scores JSONL ({video, prompt, ratings, reward} per line)."
    ),
    project_dir: Path = PROJECT,
    critic: str = typer.Option("critic", "--critic", help="Name of the critic (several can be imported)."),
    directory: Path | None = typer.Option(
        None, "--dir", help=DIR_HELP.format("the scores file") + " As add-videos --dir took the manifest."
    ),
) -> None:
    """Import critic scores for model-assisted review."""
    from videolift.data.annotate import admin
    from videolift.data.annotate.videos import subdirectory

    critic = admin.critic_name(critic)  # before the project is opened: the command line is wrong
    with _open(project_dir) as project, project.session() as session:
        base = subdirectory(project.videos_root, directory) if directory else ""
        report = admin.import_critic(session, scores, critic, base=base)
    # Said, not only done: a user importing a critic in chunks learns the earlier chunks are gone.
    dropped = (
        f"; {report['dropped']} earlier scores of {critic!r} dropped (videos this file leaves out: "
        "importing again replaces the critic whole)"
        if report["dropped"]
        else ""
    )
    err.print(
        f"imported {report['matched']} scores of {critic!r}; {report['unmatched']} lines matched no project video; "
        f"{report['unparsed']} unparsed answers left out{dropped}"
    )


@app.command()
def review(
    project_dir: Path = PROJECT,
    critic: str | None = typer.Option(
        None, "--critic", help="Critic to compare with (default: the last imported)."
    ),
    min_gap: float = typer.Option(
        1.0, "--min-gap", help="Smallest label gap (Bad 0, Normal 1, Good 2) that counts."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the list as JSONL instead of printing it."),
    overwrite: bool = OVERWRITE,
) -> None:
    """List videos where the critic and the raters disagree, largest gap first."""
    from videolift.core.jsonl import write_jsonl
    from videolift.data.annotate import admin

    with _open(project_dir, out, overwrite=overwrite) as project, project.session(readonly=True) as session:
        items = admin.disagreements(session, critic, min_gap)
        critic = admin.chosen_critic(session, critic)  # which one, when none was given: the last imported
    # Named: without --critic the list was of whichever critic was imported last, unsaid.
    of = f"against critic {critic!r}" if critic else "no critic scores imported yet (annotate import-critic)"
    if out is not None:
        write_jsonl(out, items)
        err.print(f"wrote {len(items)} videos to review to {out} ({of})")
        return
    for item in items:
        parts = [
            f"{dim}: critic {d['critic']['label']} vs raters {'/'.join(r['label'] for r in d['raters'])}"
            for dim, d in item["dimensions"].items()
            if d["gap"] >= min_gap
        ]
        typer.echo(f"{item['video_id']}\tgap {item['gap']:.2f}\t" + "; ".join(parts))
    err.print(f"{len(items)} videos to review ({of})")
