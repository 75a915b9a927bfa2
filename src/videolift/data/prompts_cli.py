"""``videolift prompts``: build prompt sets from categories, as LiFT-HRA's were (docs/generate.md)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Build prompt sets for generation (LiFT-HRA style).", no_args_is_help=True)


@app.command()
def sample(
    n: int = typer.Option(..., "--n", help="Number of distinct prompts."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same prompts."),
    out: Path = typer.Option(..., "--out", help="Output .jsonl (prompts with their categories) or .txt."),
    categories: Path | None = typer.Option(
        None,
        "--categories",
        help="Directory of <slot>_<category>.txt phrase lists (default: the shipped ones).",
    ),
    exclude: list[Path] = typer.Option(
        [],
        "--exclude",
        help="Prompt file (.txt, .jsonl or .csv) whose prompts are not drawn, e.g. the training prompts "
        "when sampling held-out ones. Repeatable.",
    ),
    expand_with: str | None = typer.Option(
        None,
        "--expand-with",
        help="A transformers chat LM (directory or Hub id) that rewrites each prompt in detail.",
    ),
    system_prompt: Path | None = typer.Option(
        None,
        "--system-prompt",
        help="Text file replacing the built-in expansion instructions (with --expand-with).",
    ),
    max_new_tokens: int = typer.Option(
        200, "--max-new-tokens", min=1, help="Expansion length limit in tokens."
    ),
    temperature: float = typer.Option(
        0.0, "--temperature", min=0.0, help="Expansion sampling temperature (0: greedy)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per LM call when expanding."),
    device: str = typer.Option("auto", "--device", help="Device of the expansion LM (auto: GPU if present)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Sample N prompts of 1-2 subjects, one action and one place from editable category lists."""
    from videolift.core.errors import DataError, UsageError
    from videolift.core.files import check_outputs
    from videolift.core.jsonl import atomic_write, json_kind, read_text, write_jsonl
    from videolift.data.prompt_files import read_prompts
    from videolift.data.prompts import EXPAND_SYSTEM_PROMPT, expand_prompts, load_categories, sample_prompts

    if out.suffix.lower() not in (".jsonl", ".txt"):
        raise UsageError(f"--out {out}: use a .jsonl file (prompts with categories) or .txt (prompts only)")
    if system_prompt is not None and not expand_with:  # instructions for an LM not asked for
        raise UsageError(f"--system-prompt {system_prompt}: only used with --expand-with (expansion's LM)")
    check_outputs([("--out", out)], [("--exclude", p) for p in exclude], overwrite=overwrite)
    taken: set[str] = set()
    for path in exclude:  # an expanded .jsonl excludes its short prompts too: those are what is drawn
        for record in read_prompts(path):
            taken.add(record.prompt)
            short = record.extra.get("short_prompt")
            if short is not None and not isinstance(short, str):  # not a prompt: a traceback before
                raise DataError(
                    f"short_prompt must be a string, got {json_kind(short)}",
                    file=path,
                    line=record.line,
                    field="short_prompt",
                )
            if short:
                taken.add(short)
    records = sample_prompts(n, seed, load_categories(categories), exclude=taken)
    if expand_with:
        instructions = EXPAND_SYSTEM_PROMPT
        if system_prompt is not None:
            instructions = read_text(system_prompt).strip()  # names the file if missing or not UTF-8
        expanded = expand_prompts(
            [r["prompt"] for r in records],
            expand_with,
            system_prompt=instructions,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            device=device,
        )
        for record, text in zip(records, expanded, strict=True):
            record["short_prompt"] = record["prompt"]
            record["expanded_with"] = expand_with if text else None
            record["prompt"] = text or record["prompt"]
        if failed := sum(1 for text in expanded if not text):
            typer.echo(
                f"warning: {failed} prompts came back empty from {expand_with}; kept them short", err=True
            )
    if out.suffix.lower() == ".txt":
        with atomic_write(out) as handle:
            handle.writelines(r["prompt"] + "\n" for r in records)
    else:
        write_jsonl(out, records)
    typer.echo(f"{len(records)} prompts -> {out}")
