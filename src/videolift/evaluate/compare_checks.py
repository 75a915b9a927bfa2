"""What ``videolift eval`` refuses before its first video (``check_inputs``): the sampler's numbers,
device, offload and dtypes; the prompt file; with ``--oracle`` toy-world prompts and clip sizes; every
model and LoRA; ``--clip``'s CLIP model; every model's output directory. Each phase in the order a run with several problems
reports them: the first one's error is the run's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videolift.data.generate import WorkItem
    from videolift.data.prompt_files import PromptRecord


def check_inputs(
    models: list[tuple[str, str | None]],
    prompts: Path,
    out: Path,
    names: list[str],
    *,
    oracle: bool,
    seed: int = 0,
    per_prompt: int = 1,
    sampler: dict[str, Any] | None = None,
    overwrite: bool = False,
    critic_dtype: str = "auto",
    clip: str | None = None,
) -> None:
    """What ``compare_models`` would otherwise find out only midway (after earlier models generated and
    were rated): the device and dtypes, the prompt file, every prompt a toy-world prompt (with the
    oracle), every model and LoRA, the CLIP model (``clip``), and every model's output directory (first:
    none is a model's)."""
    sampler = sampler or {}
    sizes = sampler.get("frames"), sampler.get("height"), sampler.get("width")
    _check_settings(sampler, critic_dtype)
    _check_out_not_a_model(models, out, names)
    records = _check_prompts(Path(prompts), sampler, oracle=oracle)
    if oracle:
        _check_oracle_sizes(sizes)
    for model, lora in models:
        _check_model(
            model, lora, sampler.get("family"), sizes, oracle=oracle, guidance_2=sampler.get("guidance_2")
        )
    if clip is not None:  # a CLIP model scores only after every video: a wrong one is refused now
        from videolift.evaluate.clip_score import check_clip_model

        check_clip_model(clip)
    from videolift.data.generate import work_items

    items = work_items(len(records), per_prompt, seed)  # the videos each model's folder is to hold
    _check_outs(models, out, names, seed=seed, sampler=sampler, overwrite=overwrite, work=(items, records))


def _check_settings(sampler: dict[str, Any], critic_dtype: str) -> None:
    """The command line's own settings, refused (exit 2) before any file is read: the numbers (``--fps``,
    ``--limit``, the guidance), the device, the offload, ``--dtype`` and ``--critic-dtype``."""
    from videolift.core.distributed import checked_device
    from videolift.core.errors import UsageError, VideoliftError
    from videolift.data.generate import check_numbers, check_offload
    from videolift.models.base import resolve_dtype

    # generate_videos checks these too, but only after the first model's turn has begun: here before OUT's
    # earlier summary is deleted and before any advice is printed
    counts = {"--fps": sampler.get("fps"), "--limit": sampler.get("limit")}
    check_numbers(counts, sampler.get("guidance"), sampler.get("guidance_2"))
    checked_device(sampler.get("device", "auto"))
    check_offload(sampler.get("offload", "none"))
    for option, dtype in (("--dtype", sampler.get("dtype", "auto")), ("--critic-dtype", critic_dtype)):
        if dtype != "auto":
            try:
                resolve_dtype(dtype)
            except VideoliftError as exc:
                raise UsageError(f"{option}: {exc}") from None


def _check_out_not_a_model(models: list[tuple[str, str | None]], out: Path, names: list[str]) -> None:
    """``--out`` and every model's ``OUT/NAME`` none of the models' (or LoRAs') directories: the comparison's
    files and a model's videos would go beside that model's own (UsageError)."""
    from videolift.core.files import check_out_dir

    given = [("--model", model) for model, _ in models] + [("a --model's LoRA", lora) for _, lora in models]
    check_out_dir(out, given, "give the comparison its own directory")
    for name in names:
        label = f"--out {out}'s folder for {name}, {out / name},"
        check_out_dir(out / name, given, "give the comparison another --out", label=label)


def _check_prompts(prompts: Path, sampler: dict[str, Any], *, oracle: bool) -> list[PromptRecord]:
    """The prompt file read (its ``--prompt-field``, the first ``--limit`` prompts, returned), and with the
    oracle every one of those a toy-world prompt (DataError at the first that is not, with its line)."""
    from videolift.core.errors import DataError
    from videolift.data.prompt_files import read_prompts

    prompt_field = sampler.get("prompt_field", "prompt")
    records = read_prompts(prompts, prompt_field=prompt_field)[: sampler.get("limit")]
    if oracle:  # the toy world's modules only then (half a second of imports)
        from videolift.toy.grammar import parse_prompt

        where = None if prompts.suffix.lower() == ".txt" else prompt_field
        for record in records:
            try:
                parse_prompt(record.prompt)
            except ValueError as exc:
                raise DataError(
                    f"--oracle rates toy-world prompts only: {exc}",
                    file=prompts,
                    line=record.line,
                    field=where,
                ) from None
    return records


def _check_oracle_sizes(sizes: tuple[int | None, int | None, int | None]) -> None:
    """``--frames``/``--height``/``--width`` (``sizes``; None: not given) that make clips the oracle
    cannot rate, refused whatever the model (UsageError)."""
    from videolift.core.errors import UsageError
    from videolift.toy.oracle import CLIP_SIZE, sizes_not_rated

    if other := sizes_not_rated(*sizes):  # the sizes given as options, whatever the model
        raise UsageError(
            f"--oracle rates toy-world clips ({CLIP_SIZE}: frames x height x "
            f"width): --{', --'.join(other)} makes others; leave it to the model"
        )


def _check_model(
    model: str,
    lora: str | None,
    family: str | None,
    sizes: tuple[int | None, int | None, int | None],
    *,
    oracle: bool,
    guidance_2: float | None = None,
) -> None:
    """One ``--model``: a local pipeline directory or a reachable Hub model of a known family; with the
    oracle, one whose own clip size (``sizes``: those given) the oracle rates; with ``guidance_2``, one with
    two experts (where its index can be read); its LoRA directory, if any (VideoliftError naming the model)."""
    from videolift.core.errors import VideoliftError
    from videolift.data.generate import resolve_model
    from videolift.models.base import check_lora_dir
    from videolift.models.families import check_guidance_2, spec_for

    # a local pipeline directory, or a reachable Hub model
    spec_for(local := resolve_model(model), family)
    try:
        check_guidance_2(local, family, guidance_2)
    except VideoliftError as exc:
        raise VideoliftError(f"--model {model}: {exc}") from None
    if oracle:
        from videolift.toy.oracle import model_size_error
        from videolift.toy.render import FRAMES, SIZE

        if why := model_size_error(local, family, *sizes):
            raise VideoliftError(
                f"--model {model} {why}; sample it with --frames {FRAMES} --height {SIZE} --width {SIZE}"
            )
    if lora is not None:
        try:
            check_lora_dir(lora)
        except VideoliftError as exc:
            raise VideoliftError(f"--model {model}+{lora}: {exc}") from None


def _check_outs(
    models: list[tuple[str, str | None]],
    out: Path,
    names: list[str],
    *,
    seed: int,
    sampler: dict[str, Any],
    overwrite: bool,
    work: tuple[list[WorkItem], list[PromptRecord]],
) -> None:
    """``--out`` a directory (or not there yet), and every model's ``OUT/NAME`` one ``generate`` may
    write: no other tool's files, and (without ``overwrite``) no earlier run with other settings or with
    other texts for its prompts (``work``: the run's videos and prompts)."""
    from videolift.core.errors import VideoliftError
    from videolift.core.files import refuse_file_as_dir
    from videolift.data.generate import known_settings
    from videolift.data.generate_resume import check_out, earlier_prompts_conflict, earlier_run_conflict

    refuse_file_as_dir(out)
    for name, (model, lora) in zip(names, models, strict=True):
        check_out(out / name)
        # A folder of an earlier run with other settings is refused here, not after the models before it
        # have generated and been rated.
        if not overwrite and (
            (why := earlier_run_conflict(out / name, known_settings(model, lora, seed, sampler)))
            or (why := earlier_prompts_conflict(out / name, *work))
        ):
            raise VideoliftError(
                f"--out {out / name} holds an earlier generation run that does not match this one ({why}). "
                "Use another --out, or --overwrite to delete its videos and start over."
            )
