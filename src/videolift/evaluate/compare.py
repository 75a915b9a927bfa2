"""Compare T2V models on the same prompts and seeds: generate, rate (critic and/or toy oracle), summarise.

Every model generates from the same prompt file with the same base seed, so video ``i`` of every model
has the same prompt and seed; pairwise win/tie/loss and the paired differences (with standard errors)
compare those videos one to one. Models given as replicates of one recipe (``groups``; e.g. several
training seeds) are also compared as recipes, with the replicates' spread in the standard errors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolift.core.jsonl import atomic_write, iter_json_lines, read_jsonl_dicts, write_jsonl
from videolift.core.reward import RewardConfig
from videolift.evaluate.compare_checks import check_inputs
from videolift.evaluate.metrics import (
    paired_difference,
    pairwise,
    recipes,
    replicate_difference,
    replicate_summary,
    summarize,
)


@dataclass
class ModelRun:
    name: str
    model: str
    lora: str | None = None
    ratings: dict[str, list[dict[str, str | None]]] = field(default_factory=dict)  # rater -> per video
    findings: list[dict[str, list[str]]] = field(default_factory=list)  # the oracle's, per video


def replicate_comparison(
    runs: list[ModelRun], groups: list[str | None], reward: RewardConfig, clusters: list[str] | None = None
) -> dict:
    """Recipes (groups of replicate models) summarised over their replicates and compared with the
    first model's recipe, per rater of labels; nothing when every group has one model or no rater gave labels
    (``--clip`` alone: CLIP's recipes are eval.json's ``clip.groups``)."""
    recipe_runs = recipes([r.name for r in runs], groups)
    raters = list(runs[0].ratings)
    if not recipe_runs or not raters:  # --clip alone: its own recipes (eval.json's clip.groups)
        return {}
    members = {g: [runs[i] for i in indices] for g, indices in recipe_runs.items()}

    def ratings(group: str, rater: str) -> list:
        return [r.ratings[rater] for r in members[group]]

    ref, *others = members
    return {
        "groups": {
            g: {
                "members": [r.name for r in m],
                **{k: replicate_summary(ratings(g, k), reward) for k in raters},
            }
            for g, m in members.items()
        },
        "group_differences": {
            f"{g} vs {ref}": {
                k: replicate_difference(ratings(g, k), ratings(ref, k), reward, clusters) for k in raters
            }
            for g in others
        },
    }


def model_name(model: str, lora: str | None, taken: set[str]) -> str:
    """The last path part, or for align's ``OUT/pipeline`` and ``OUT/lora`` the run's name ``OUT``."""
    from videolift.models.base import FULL_DIR, LORA_DIR

    path = Path(lora or model)
    base = (path.parent.name if path.name in (FULL_DIR, LORA_DIR) else path.name) or path.name or "model"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def oracle_ratings(
    manifest: Path, videos: Path, out: Path, progress: bool = True
) -> tuple[list[dict[str, str | None]], list[dict[str, list[str]]]]:
    """Toy-world oracle labels and the kinds of fault it found, per manifest video (both written to
    ``out`` with the reasons)."""
    from tqdm import tqdm

    from videolift.core.errors import DataError
    from videolift.core.video import read_video
    from videolift.toy.oracle import ClipSizeError, judge
    from videolift.toy.render import FRAMES, SIZE

    records, lines = list(iter_json_lines(manifest)), []
    for line, rec in tqdm(records, desc="oracle", disable=not progress):
        try:
            judgement = judge(read_video(videos / rec["video"]), rec["prompt"])
        except ClipSizeError as exc:  # the model's own size (sizes given as options are checked first)
            raise DataError(
                f"{exc}; sample with --frames {FRAMES} --height {SIZE} --width {SIZE}",
                file=manifest,
                line=line,
                field="video",
            ) from None
        ratings = {
            d.value: {"label": r.label.value, "reason": r.reason} for d, r in judgement.ratings().items()
        }
        findings = {d.value: kinds for d, kinds in judgement.finding_kinds().items()}
        lines.append(
            {"video": rec["video"], "prompt": rec["prompt"], "seed": rec.get("seed"), "ratings": ratings,
             "findings": findings}
        )  # fmt: skip
    write_jsonl(out, lines)
    return [{d: r["label"] for d, r in line["ratings"].items()} for line in lines], [
        line["findings"] for line in lines
    ]


def tally_findings(findings: list[dict[str, list[str]]]) -> dict[str, dict[str, int]]:
    """Per dimension, how many videos have each kind of fault (most frequent first)."""
    dims = dict.fromkeys(d for video in findings for d in video)
    counts = {d: Counter(kind for video in findings for kind in video.get(d, ())) for d in dims}
    return {d: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for d, c in counts.items()}


def critic_ratings(critic: Any, manifest: Path, videos: Path, out: Path, progress: bool = True):
    from videolift.critic.score import score_manifest

    score_manifest(critic, manifest, videos, out, progress=progress, log=lambda *a, **k: None, overwrite=True)
    by_video = {line["video"]: line for line in read_jsonl_dicts(out)}
    return [
        {d: r.get("label") for d, r in by_video[rec["video"]]["ratings"].items()}
        for rec in read_jsonl_dicts(manifest)
    ]


def compare_models(
    models: list[tuple[str, str | None]],
    prompts: Path,
    out: Path,
    *,
    critic_dir: Path | None = None,
    oracle: bool = False,
    per_prompt: int = 1,
    seed: int = 0,
    steps: int = 50,
    guidance: float | None = None,
    batch_size: int | None = None,
    reward: RewardConfig | None = None,
    reward_source: str | None = None,
    progress: bool = True,
    names: list[str] | None = None,
    groups: list[str | None] | None = None,
    overwrite: bool = False,
    checked: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
    critic_dtype: str = "auto",
    clip: str | None = None,
    **sampler: Any,
) -> dict[str, Any]:
    """Generate with every model, rate, and return (and write ``out/eval.json``) the comparison.

    ``sampler``: ``generate_videos``' keywords (``device``, ``dtype``, ``limit``, ...); the critic rates on
    the same ``device`` in ``critic_dtype``. ``groups`` names each model's recipe (None: its own): models
    of one group are replicates (e.g. training seeds), compared as recipes in ``groups`` /
    ``group_differences`` too. ``checked`` runs once every input has been checked, before the first
    video (e.g. to print notes); ``log`` hears (main process) how many of a model's videos an earlier
    run of the same settings left, kept. ``reward`` maps every rater's labels to rewards (None: the
    critic's own mapping, else the paper's: ``evaluation_reward``); ``reward_source`` says where a given one is from
    (eval.json's ``reward_source``). ``clip``: a CLIP model (directory or Hub id) that also scores every
    video, on ``device`` once the critic is done (eval.json's ``clip``: ``clip_score``)."""
    from videolift.data.generate import generate_videos

    names = _preflight(
        models,
        prompts,
        out,
        names,
        critic_dir=critic_dir,
        oracle=oracle,
        seed=seed,
        per_prompt=per_prompt,
        sampler={"steps": steps, "guidance": guidance, **sampler},
        overwrite=overwrite,
        critic_dtype=critic_dtype,
        clip=clip,
        checked=checked,
    )
    reward, reward_source = evaluation_reward(reward, reward_source, critic_dir)
    _remove_stale_summary(out)
    options = dict(per_prompt=per_prompt, seed=seed, steps=steps, guidance=guidance, batch_size=batch_size)
    options |= dict(overwrite=overwrite, **sampler)
    runs = _generate(
        generate_videos, models, names, prompts, out, options, oracle=oracle, progress=progress, log=log
    )
    if critic_dir is not None:
        _rate_by_critic(runs, critic_dir, out, sampler.get("device", "auto"), critic_dtype, progress)
    result = _comparison(
        runs,
        prompts,
        out,
        seed=seed,
        per_prompt=per_prompt,
        reward=reward,
        source=reward_source,
        groups=groups,
    )
    if clip is not None:  # after the critic has let go of the GPU
        from videolift.evaluate.clip_score import rate_by_clip

        names = [r.name for r in runs]
        device = sampler.get("device", "auto")
        result["clip"] = rate_by_clip(names, clip, out, device, _clusters(out, runs), progress, groups)
    _write_eval(out, result)
    return result


PAPER_SOURCE = "the paper's (default)"


def evaluation_reward(
    reward: RewardConfig | None, source: str | None, critic_dir: Path | None
) -> tuple[RewardConfig, str]:
    """The mapping an evaluation turns labels into rewards with, and what it is: ``reward`` as given
    (``source`` names where from), else the critic's own (its spec's: the rewards `critic score` writes,
    which `align` trains on unless given another mapping), else the paper's."""
    if reward is not None:
        return reward, source or ("the paper's" if reward.is_paper() else "the caller's")
    if critic_dir is not None:
        from videolift.critic.spec import SPEC_FILE, CriticSpec

        return CriticSpec.load(Path(critic_dir)).reward, f"the critic's ({Path(critic_dir) / SPEC_FILE})"
    return RewardConfig(), PAPER_SOURCE


def _preflight(
    models: list[tuple[str, str | None]],
    prompts: Path,
    out: Path,
    names: list[str] | None,
    *,
    critic_dir: Path | None,
    oracle: bool,
    seed: int,
    per_prompt: int,
    sampler: dict[str, Any],
    overwrite: bool,
    critic_dtype: str,
    checked: Callable[[], None] | None,
    clip: str | None = None,
) -> list[str]:
    """What a comparison refuses before its first video, and the models' names (``names``, else
    ``model_name``'s): a rater to rate with, every input (``check_inputs``) and the critic directory; then
    ``checked`` runs."""
    if not critic_dir and not oracle and clip is None:
        from videolift.core.errors import UsageError

        raise UsageError("nothing to rate with: give --critic DIR, --oracle and/or --clip MODEL")
    if not names:
        names = []
        for model, lora in models:
            names.append(model_name(model, lora, set(names)))
    elif len(names) != len(models):  # a library caller's list (the CLI names every model)
        from videolift.core.errors import VideoliftError

        raise VideoliftError(f"{len(names)} names for {len(models)} models: give one name per model")
    check_inputs(
        models,
        prompts,
        out,
        names,
        oracle=oracle,
        seed=seed,
        per_prompt=per_prompt,
        sampler=sampler,
        overwrite=overwrite,
        critic_dtype=critic_dtype,
        clip=clip,
    )
    if critic_dir is not None:  # a directory that is no critic: refused now, not after the generation
        from videolift.critic.answers import check_finished
        from videolift.critic.spec import CriticSpec

        check_finished(Path(critic_dir))
        spec = CriticSpec.load(Path(critic_dir))
        if spec.adapter == "lora":  # the base it loads on (a Hub id not cached offline, a moved directory)
            from videolift.core.errors import VideoliftError
            from videolift.models.vlm import model_type_of

            try:
                model_type_of(spec.base_model)
            except VideoliftError as exc:
                raise VideoliftError(f"--critic {critic_dir}: its base model: {exc}") from None
    if checked is not None:  # after every check: an error is not preceded by advice
        checked()
    return names


def _remove_stale_summary(out: Path) -> None:
    """OUT's eval.json and report.html from an earlier run, deleted before this run's first video."""
    # An earlier run's summary and report describe other videos as soon as this run changes any: gone
    # until this run writes its own (an interrupted run leaves none, not a stale one).
    for stale in ("eval.json", "report.html"):
        (out / stale).unlink(missing_ok=True)


def _generate(
    generate_videos: Callable[..., Any],
    models: list[tuple[str, str | None]],
    names: list[str],
    prompts: Path,
    out: Path,
    options: dict[str, Any],
    *,
    oracle: bool,
    progress: bool,
    log: Callable[[str], None] | None = None,
) -> list[ModelRun]:
    """Every model's videos in OUT/NAME, one model after the other (``options``: ``generate_videos``'
    keywords but ``lora`` and ``progress``), each model's rated by the oracle (``oracle``) as soon as it
    has generated."""
    runs: list[ModelRun] = []
    for i, (model, lora) in enumerate(models):
        run = ModelRun(names[i], model, lora)
        gen_dir = out / run.name
        made = generate_videos(model, prompts, gen_dir, lora=lora, progress=progress, **options)
        if log is not None and made.main_process and made.skipped:  # a rerun said nothing of them
            log(f"{run.name}: {made.skipped} of its {made.total} videos kept from an earlier run")
        manifest = gen_dir / "manifest.jsonl"
        if oracle:
            run.ratings["oracle"], run.findings = oracle_ratings(
                manifest, gen_dir, gen_dir / "oracle_ratings.jsonl", progress
            )
        runs.append(run)
    return runs


def _rate_by_critic(
    runs: list[ModelRun], critic_dir: Path, out: Path, device: str, dtype: str, progress: bool
) -> None:
    """Every model's videos rated by the critic of ``critic_dir`` (on ``device``, in ``dtype``), its
    ratings first in each run's; the critic is let go before this returns."""
    # Loaded once every model has generated: a 7B critic on the GPU beside a T2V model would not fit.
    from videolift.critic.answers import load_critic

    critic = load_critic(critic_dir, device=device, dtype=dtype)
    for run in runs:
        ratings = critic_ratings(
            critic,
            out / run.name / "manifest.jsonl",
            out / run.name,
            out / run.name / "critic_scores.jsonl",
            progress,
        )
        run.ratings = {"critic": ratings, **run.ratings}
    del critic


def _comparison(
    runs: list[ModelRun],
    prompts: Path,
    out: Path,
    *,
    seed: int,
    per_prompt: int,
    reward: RewardConfig,
    source: str,
    groups: list[str | None] | None,
) -> dict[str, Any]:
    """What eval.json holds: the run's settings, each model's summary per rater (with the oracle's
    findings tallied), every other model's win/tie/loss and paired differences against the first, and
    the recipes compared (``groups``)."""
    clusters = _clusters(out, runs)
    result: dict[str, Any] = {
        "prompts": str(prompts),
        "seed": seed,
        "per_prompt": per_prompt,
        "reward_config": reward.model_dump(mode="json"),  # what turned labels into rewards
        "reward_source": source,  # and whose mapping it is (``evaluation_reward``)
        "models": {r.name: {"model": r.model, "lora": r.lora} for r in runs},
        "summary": {
            r.name: {rater: summarize(v, reward, clusters) for rater, v in r.ratings.items()} for r in runs
        },
        "pairwise": {},
        "differences": {},
    }
    for r in runs:  # toy world: what the oracle found wrong, e.g. how many videos drew the wrong shape
        if r.findings:
            result["summary"][r.name]["oracle"]["findings"] = tally_findings(r.findings)
    for other in runs[1:]:
        key, ref = f"{other.name} vs {runs[0].name}", runs[0].ratings
        result["pairwise"][key] = {rater: pairwise(v, ref[rater]) for rater, v in other.ratings.items()}
        result["differences"][key] = {
            rater: paired_difference(v, ref[rater], reward, clusters) for rater, v in other.ratings.items()
        }
    if groups:
        result |= replicate_comparison(runs, groups, reward, clusters)
    return result


def _clusters(out: Path, runs: list[ModelRun]) -> list[str]:
    """Each video's prompt, in manifest order (the same prompts and seeds for every model)."""
    # Videos of one prompt are correlated: standard errors are clustered by prompt.
    return [rec["prompt"] for rec in read_jsonl_dicts(out / runs[0].name / "manifest.jsonl")]


def _write_eval(out: Path, result: dict[str, Any]) -> None:
    """OUT/eval.json, written atomically."""
    # OUT appears with the first model's videos (generate_videos checks the prompt file first), so a
    # bad prompt file leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "eval.json") as handle:
        json.dump(result, handle, indent=1)
