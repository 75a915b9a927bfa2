"""``critic train`` / ``critic export``: HRA records -> SFT examples -> the generic loop (``critic.sft``).

The critic's own parts: its spec (questions, reward, frames), the first passes of check- and
describe-then-rate critics (cached, split between the processes: ``critic.text_cache``), and the export of a
checkpoint as a critic directory that plain transformers / peft load.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from videolift.core.checkpoints import latest_checkpoint, launched_layout
from videolift.core.distributed import launched_processes, process_state
from videolift.core.errors import UsageError, VideoliftError
from videolift.core.files import check_out_dir, content_hash, refuse_file_as_dir, replace_dir, weights_digest
from videolift.core.jsonl import read_json
from videolift.critic.data import SFTExample
from videolift.critic.sft import plan, run_sft
from videolift.critic.sft_config import CHECKPOINTS, TRAIN_CONFIG, SFTConfig, SFTResult, settings_error
from videolift.critic.sft_model import check_lora_targets
from videolift.critic.sft_outputs import check_output_dir, export_sft_checkpoint, find_checkpoint


def resolve_base(base: str) -> str:
    """An existing local directory as an absolute path (the spec and adapter_config keep it), else a Hub id."""
    local = Path(base).expanduser()
    return str(local.resolve()) if local.exists() else base


def check_base_dir(base: str) -> None:
    """Refuse a local ``--base`` that holds a peft adapter (``adapter_config.json``): alone (a LoRA critic,
    not a model), or beside a model's config and weights (transformers would load the adapter onto them,
    and the critic's own LoRA could not be added over it: peft's "No modules were targeted")."""
    root = Path(base)
    if not (root / "adapter_config.json").is_file():
        return
    if not (root / "config.json").is_file():
        try:
            # peft's file, read as peft reads it (a repeated key's last value)
            of = read_json(root / "adapter_config.json", last_of_repeated_keys=True).get(
                "base_model_name_or_path"
            )
        except (VideoliftError, AttributeError):
            of = None
        raise VideoliftError(
            f"--base {base}: holds a peft adapter (adapter_config.json{f', on {of}' if of else ''}), not a "
            "model: give the model to train on, a directory with config.json and its weights, or a Hub id"
        )
    raise VideoliftError(
        f"--base {base}: holds a model (config.json and its weights) and a peft adapter beside it "
        "(adapter_config.json), which transformers would load onto the weights, and the critic's LoRA could "
        "not be added over it. To train on the model alone, move the adapter's files (adapter_config.json, "
        "adapter_model.*) out of that directory, or give the model's own directory"
    )


def _main_process_answers(compute: Callable[[], Any]) -> Any:
    """``compute()`` on the main process only, its answer given to the others."""
    from accelerate.utils import broadcast_object_list

    state = process_state()
    return broadcast_object_list([compute() if state.is_main_process else None])[0]


def _first_passes(
    records: list[tuple[int, Any]],
    videos: Path,
    spec: Any,
    cache: Path,
    shared: bool,
    data: Path,
    model: dict[str, Any],
    log: Any,
    progress: bool = True,
) -> tuple[dict[Path, str] | None, dict[tuple[Path, str], str] | None]:
    """What the base model (or the check model) says about the training videos, for describe-then-rate
    and check-then-rate critics: (descriptions per video, checks per (video, caption)), cached in
    ``cache`` (``shared``: a cache directory that other runs use too). ``model``: the weights' identities
    (``base_weights``, ``check_weights``) and the ``dtype`` to run them in."""
    from videolift.critic.checks import base_checks
    from videolift.critic.data import resolve_video
    from videolift.critic.descriptions import base_descriptions

    files = [resolve_video(videos, r, file=data, line=line) for line, r in records]
    on = {"device": process_state().device, "dtype": model["dtype"], "progress": progress, "log": log}
    descriptions = checks = None
    if spec.describe:
        descriptions = base_descriptions(files, spec, cache, model["base_weights"], shared=shared, **on)
    if spec.check:
        pairs = [(f, r.prompt) for f, (_, r) in zip(files, records, strict=True)]
        weights = model["check_weights"] if spec.check_model else model["base_weights"]
        checks = base_checks(pairs, spec, cache, weights, shared=shared, **on)
    return descriptions, checks


def train_critic(
    base: str,
    data: str | Path,
    videos: str | Path,
    out: str | Path,
    cfg: SFTConfig,
    *,
    layout: str = "per_dimension",
    reasons: bool = True,
    describe: bool = False,
    check: bool = False,
    check_model: str | None = None,
    check_instruction: str | None = None,
    check_dimensions: list[str] | None = None,
    check_threshold: float = 0.05,
    check_frames: int | None = None,
    dimensions: list[str] | None = None,
    class_weight_power: float = 0.0,
    reward_config: str | Path | None = None,
    max_new_tokens: int | None = None,
    cache_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    log: Any = print,
    progress: bool = False,
    val_data: str | Path | None = None,
    val_videos: str | Path | None = None,
) -> SFTResult:
    """Fine-tune ``base`` into a critic on HRA records (``critic train``). ``cache_dir``: where the first
    passes of check- and describe-then-rate critics are cached (default: ``out``), e.g. one directory
    for several runs on the same data. ``progress``: bars for the first passes and the updates.
    ``val_data``: held-out HRA records (videos under ``val_videos``, default ``videos``) whose answers'
    loss is logged as the run goes (not part of the run's settings: a resume may add or change them).

    Everything the run depends on is checked before anything is written: the settings (``cfg`` checks
    its own when made), the records and that every video they name opens, and what OUT holds."""
    from videolift.core.reward import RewardConfig
    from videolift.core.schema import DIMENSIONS
    from videolift.critic.data import check_videos
    from videolift.critic.spec import CriticSpec
    from videolift.data.hra_file import read_hra_lines
    from videolift.data.stats import prefer_reviews
    from videolift.models.vlm import model_type_of, video_vlm_processor

    base = resolve_base(base)
    data, videos = Path(data), Path(videos)
    if class_weight_power < 0:
        raise VideoliftError(f"--class-weights {class_weight_power}: must be 0 or more")
    if stop_at_step is not None and stop_at_step < 1:
        raise VideoliftError(f"--stop-at-step {stop_at_step}: must be 1 or more")
    # The critic's files (config, weights, tokenizer, an adapter) would replace the model's own, and
    # --overwrite would delete them before the model loads.
    models = [("--base", base), ("--check-model", check_model)]
    check_out_dir(out, models, "give the critic its own directory")
    refuse_file_as_dir(out)  # before the model loads
    check_base_dir(base)  # before the records are read and the weights hashed
    reward = RewardConfig.load(reward_config)
    if check_model:  # loaded only by the first passes, after OUT is made: a missing one is found now
        try:
            model_type_of(resolve_base(check_model))
        except VideoliftError as exc:
            raise VideoliftError(f"--check-model: {exc}") from None
    try:
        spec = CriticSpec(
            base_model=base,
            model_type=model_type_of(base),
            adapter=cfg.adapter,
            num_frames=cfg.num_frames,
            frame_sampling=cfg.frame_sampling,
            max_pixels=cfg.max_pixels,
            min_pixels=cfg.min_pixels,
            layout=layout,
            dimensions=dimensions or list(DIMENSIONS),
            describe=describe,
            check=check,
            check_model=resolve_base(check_model) if check_model else None,
            check_threshold=check_threshold,
            check_frames=check_frames,
            **({"check_instruction": check_instruction} if check_instruction else {}),
            **({"check_dimensions": check_dimensions} if check_dimensions else {}),
            reasons=reasons,
            reward=reward,
            **({"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}),
        )
    except ValidationError as exc:  # an option out of range or unknown, e.g. --check-dimensions motion
        raise settings_error(exc) from None
    _check_carried(spec)
    # The first passes load their models after OUT is made: a model that is no video VLM (a text
    # model) is refused now, by its option, not once they start (leaving OUT/*.json.parts behind).
    for option, model_dir in (
        ("--base", base if describe or check else None),
        ("--check-model", check_model),
    ):
        if model_dir:
            try:
                video_vlm_processor(resolve_base(model_dir))
            except VideoliftError as exc:
                raise VideoliftError(f"{option}: {exc}") from None
    out = Path(out)
    records, replaced = prefer_reviews(read_hra_lines(data))
    if replaced:
        log(f"{data}: {replaced} raters' records of adjudicated videos left out (their reviews replace them)")
    check_videos(records, videos, file=data, action="fix or remove those records before training")
    if val_data is not None:
        val_data, val_videos = Path(val_data), Path(val_videos or videos)
        val_records = prefer_reviews(read_hra_lines(val_data))[0]
        check_videos(val_records, val_videos, file=val_data, action="fix or remove those records first")
    cfg.extra = {
        "spec": spec.model_dump(mode="json"),
        "data": str(data.resolve()),
        # The path alone would let --resume continue on edited ratings.
        "data_sha256": content_hash(data),
        # And the path alone would let it continue on a base rebuilt there (None: a Hub id). Read by one
        # process (about 10 s a 16-GB base from a warm disk, at each start).
        "base_weights": _main_process_answers(lambda: weights_digest(base)),
        "check_weights": _main_process_answers(lambda: weights_digest(spec.check_model))
        if spec.check_model
        else None,
        "videos": str(videos.resolve()),
        "class_weight_power": class_weight_power,
        "max_new_tokens": max_new_tokens,
        # Where the first passes are cached, for `critic export` (which recomputed them without it: hours
        # of describing at LiFT's scale). Not a setting: --resume may name another.
        "cache_dir": None if cache_dir is None else str(Path(cache_dir).resolve()),
    }
    # Before the first passes, which may take long: run_sft checks again and only then writes to OUT.
    # The layout of a resumed checkpoint too: the accelerator it takes is made only if one is there.
    layout = launched_layout() if resume and not overwrite and latest_checkpoint(out / CHECKPOINTS) else None
    check_output_dir(out, cfg, resume=resume, overwrite=overwrite, world=launched_processes(), layout=layout)
    if describe or check:
        check_lora_targets(base, cfg)
        _check_batches(records, videos, spec, cfg, data)
    if val_data is not None:  # before the first passes, which may take hours
        _check_rated(val_records, val_videos, spec, val_data)
    model = {
        "dtype": cfg.dtype,
        "base_weights": cfg.extra["base_weights"],
        "check_weights": cfg.extra["check_weights"],
    }
    examples = _critic_examples(
        spec, data, records, videos, class_weight_power, out, cache_dir, model, log, progress=progress
    )
    validation = None
    if val_data is not None:  # unweighted: the loss of every held-out answer as it is
        validation = _critic_examples(
            spec, val_data, val_records, val_videos, 0.0, out, cache_dir, model, log, progress=progress
        )
    finalize = _spec_writer(spec, examples, cfg, max_new_tokens)
    return run_sft(
        examples,
        base,
        out,
        cfg,
        resume=resume,
        overwrite=overwrite,
        stop_at_step=stop_at_step,
        finalize=finalize,
        log=log,
        progress=progress,
        validation=validation,
    )


def _check_carried(spec: Any) -> None:
    """Refuse check dimensions the critic does not ask (per-dimension layout; the one-pass question
    always carries the check): a check no question carries would still be computed for every training
    caption and every scored video, and the critic would rate without it."""
    if not spec.check or spec.layout == "one_pass":
        return
    if extra := [d for d in spec.check_dimensions if d not in spec.dimensions]:
        raise UsageError(
            f"--check-dimensions {','.join(spec.check_dimensions)}: {', '.join(extra)} is not among the "
            f"critic's dimensions ({','.join(spec.dimensions)}), so no question would carry its check; "
            "name the questions that carry it with --check-dimensions"
        )


def _examples_before_first_passes(
    records: list[tuple[int, Any]], videos: Path, spec: Any, data: Path
) -> list:
    """The examples the records make, with empty descriptions and checks: their count does not depend on
    the texts the first passes (which may take hours) will put in them, so plans are checked before."""
    from collections import defaultdict

    from videolift.critic.data import hra_examples

    blank: defaultdict = defaultdict(str)
    return hra_examples([r for _, r in records], videos, spec, file=data, descriptions=blank, checks=blank)[0]


def _check_rated(records: list[tuple[int, Any]], videos: Path, spec: Any, data: Path) -> None:
    """Refuse ratings of which no record makes an example (none rates the critic's dimensions)."""
    if not _examples_before_first_passes(records, videos, spec, data):
        raise _none_rated(data, spec)


def _none_rated(data: Path, spec: Any) -> VideoliftError:
    return VideoliftError(f"{data}: no record rates the dimensions {', '.join(spec.dimensions)}")


def _check_batches(
    records: list[tuple[int, Any]], videos: Path, spec: Any, cfg: SFTConfig, data: Path
) -> None:
    """Refuse a batch plan the examples cannot fill before the first passes."""

    examples = _examples_before_first_passes(records, videos, spec, data)
    # The launcher's process count (torchrun / accelerate launch set it): accelerate's state is made only
    # by run_sft, with the CPU flag multi-process CPU runs need.
    plan(len(examples), cfg, 0, launched_processes())


def _critic_examples(
    spec: Any,
    data: Path,
    records: list[tuple[int, Any]],
    videos: Path,
    class_weight_power: float,
    out: Path,
    cache_dir: str | Path | None,
    model: dict[str, Any],
    log: Any,
    progress: bool = True,
) -> list[SFTExample]:
    """The training examples of a critic from (line, record) pairs of ``data`` (first passes cached in
    ``cache_dir``, default ``out``; ``model``: see ``_first_passes``)."""
    from videolift.critic.data import class_weights, hra_examples

    cache, shared = (Path(cache_dir), True) if cache_dir is not None else (out, False)
    descriptions, checks = _first_passes(records, videos, spec, cache, shared, data, model, log, progress)
    examples, skipped = hra_examples(
        [r for _, r in records],
        videos,
        spec,
        file=data,
        descriptions=descriptions,
        checks=checks,
        lines=[line for line, _ in records],
    )
    if not examples:
        raise _none_rated(data, spec)
    if skipped:
        log(f"{skipped} of {len(records)} records skipped (no rating, or not every dimension for one_pass)")
    return class_weights(examples, class_weight_power)


def _spec_writer(
    spec: Any, examples: list[SFTExample], cfg: SFTConfig, max_new_tokens: int | None
) -> Callable:
    """``finalize`` for ``run_sft``: completes the spec from the processor and the answers, and saves it."""
    from videolift.critic.answers import set_answer_budget
    from videolift.critic.spec import video_processor_settings

    def finalize(directory: Path, model: Any, processor: Any) -> None:
        longest = max(
            len(processor.tokenizer(ex.answer, add_special_tokens=False)["input_ids"]) for ex in examples
        )
        if cfg.max_answer_tokens:
            longest = min(longest, cfg.max_answer_tokens)
        # Room for answers a little longer than any seen in training, not for rambling.
        spec.max_new_tokens = max_new_tokens or int(longest * 1.25) + 8
        spec.video_processor = video_processor_settings(processor)
        set_answer_budget(directory, spec.max_new_tokens)  # plain `generate` answers as critic score
        spec.save(directory)

    return finalize


def export_critic(
    run: str | Path,
    dest: str | Path,
    *,
    step: int | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    log: Any = print,
) -> int:
    """A checkpoint of a ``critic train`` run (finished or not) as a critic directory (``critic export``):
    what the run would have written had it ended at that update (``cache_dir``: where its first passes
    are cached, default the run's recorded --cache-dir, else the run directory). Returns the update
    exported."""
    from videolift.critic.spec import CriticSpec
    from videolift.data.hra_file import read_hra_lines
    from videolift.data.stats import prefer_reviews

    run, dest = Path(run), Path(dest)
    config_file = run / TRAIN_CONFIG
    if not config_file.is_file():
        raise VideoliftError(f"{run}: not a critic training directory (no {TRAIN_CONFIG})")
    config = read_json(config_file)
    extra = config.pop("extra", {}) if isinstance(config, dict) else {}
    if not isinstance(extra, dict) or "spec" not in extra:
        raise VideoliftError(f"{config_file}: no critic spec in 'extra'; not written by critic train")
    ckpt, step = find_checkpoint(run, step)
    here, there = dest.resolve(), run.resolve()
    # Replacing OUT would delete the run: OUT is the run, holds it, or (with --overwrite) lies inside it.
    if here == there or there.is_relative_to(here) or (overwrite and here.is_relative_to(there)):
        raise UsageError(f"{dest}: export outside the run's directory, and not into one that holds it")
    if dest.is_file():
        raise VideoliftError(f"{dest}: is a file; --out names a directory")
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise VideoliftError(f"{dest}: exists and is not empty; pass --overwrite to replace it")
    try:
        cfg = SFTConfig(**config, extra=extra)
        spec = CriticSpec.model_validate(extra["spec"])
    except (TypeError, ValidationError, VideoliftError) as exc:  # written by another videolift version
        raise VideoliftError(f"{config_file}: unreadable settings: {str(exc).splitlines()[0]}") from None
    data, videos = Path(extra["data"]), Path(extra["videos"])
    records = prefer_reviews(read_hra_lines(data))[0]  # as the run trained on them
    if cache_dir is None and (recorded := extra.get("cache_dir")) and (spec.describe or spec.check):
        if Path(recorded).is_dir():
            cache_dir = recorded
            log(f"first passes from the run's --cache-dir {recorded}")
        else:
            log(f"the run's --cache-dir {recorded} is gone: its first passes are made again in {run}")
    model = {
        "dtype": cfg.dtype,
        "base_weights": extra.get("base_weights"),
        "check_weights": extra.get("check_weights"),
    }
    examples = _critic_examples(
        spec, data, records, videos, extra["class_weight_power"], run, cache_dir, model, log
    )
    partial = dest.with_name(dest.name + ".partial")  # renamed into place when complete
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        finalize = _spec_writer(spec, examples, cfg, extra["max_new_tokens"])
        export_sft_checkpoint(ckpt, spec.base_model, cfg, partial, finalize)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, dest)  # the old critic whole until the new one is in place
    return step
