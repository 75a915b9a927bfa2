"""The whole LiFT loop as one resumable pipeline, driven by a YAML file (``videolift run``).

generate (videos to rate) -> rate (human HRA file, or the toy world's simulated panel) -> split ->
critic train (with reasons, optionally label-only too) -> critic eval -> generate (videos to align on)
-> critic score -> align (RWL and/or RS) -> evaluate (base vs aligned on held-out prompts) -> report.

Each stage (``pipeline.stages``) calls the stage commands' own code, records its settings and outputs
in ``WORKDIR/run_manifest.json`` and is skipped when those are unchanged; the stages resume themselves.
Under torchrun / accelerate launch every process runs it, the main process deciding (``pipeline.ranks``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text

from videolift.core.errors import UsageError, VideoliftError
from videolift.core.jsonl import atomic_write
from videolift.core.memory import current_rss_mb, peak_rss_mb
from videolift.evaluate.compare import PAPER_SOURCE
from videolift.models.base import FULL_DIR, LORA_DIR
from videolift.pipeline import ranks
from videolift.pipeline.config import TOY, PipelineConfig, toy_asset
from videolift.pipeline.runner import PlanReached, Runner, Stage
from videolift.pipeline.stages import (
    align_stage,
    any_all_good,
    critic_eval_stage,
    critic_stage,
    evaluate_stage,
    generate_stage,
    generation_settings,
    real_toy_stage,
    score_stage,
    split_stage,
    toy_panel_stage,
)

__all__ = ["PipelineConfig", "build_summary", "run_pipeline"]


def run_pipeline(cfg: PipelineConfig, *, progress: bool = True, plan: bool = False) -> dict[str, Any] | None:
    """Run (or resume) every stage; returns the summary (also ``WORKDIR/summary.json``), on the main
    process (None on the others of a multi-process launch). ``plan``: only print which stages are up to
    date, up to the first that would run (and why); runs nothing, returns None."""
    if plan and not ranks.is_main():  # the main process's plan is every process's
        return None
    started = time.time()
    w = cfg.workdir
    runner = Runner(w, plan=plan)
    try:
        if plan:
            try:
                with ranks.alone():  # the main process's plan only: no process group, no collective
                    _run_stages(cfg, runner, progress, started)
            except PlanReached:
                runner.console.print("The stages after it run too when what it writes changes.")
            else:
                runner.console.print("Every stage is up to date.")
            return None
        from videolift.core.progress import library_bars

        ranks.start()
        with library_bars(progress):  # --no-progress: diffusers' and transformers' loading bars off too
            summary = _run_stages(cfg, runner, progress, started)
        ranks.finish()  # once the main process has written the summary
        return summary
    except UsageError as exc:
        # A stage's command refusing one of its options (an unknown align.settings.family): here a
        # setting of the pipeline's file, not of the command line (exit status 1).
        raise VideoliftError(exc.message) from None


def _check_models(t2v: str, vlm: str) -> None:
    """The T2V model's model_index.json and the VLM's config.json readable (a local directory's, or a Hub
    id's from the Hub cache or the Hub): the critic stages load the VLM only after the videos are generated
    and rated, and with rated data given, the T2V model only after the critics are trained."""
    from videolift.models.families import pipeline_class_of
    from videolift.models.vlm import model_type_of

    for field, check, model in (("t2v", pipeline_class_of, t2v), ("vlm", model_type_of, vlm)):
        try:
            check(model)
        except VideoliftError as exc:
            raise VideoliftError(f"{field}: {exc}") from None


def _run_stages(cfg: PipelineConfig, runner: Runner, progress: bool, started: float) -> dict[str, Any] | None:
    w = cfg.workdir
    t2v = toy_asset("t2v") if cfg.t2v == TOY else cfg.t2v
    vlm = toy_asset("vlm") if cfg.vlm == TOY else cfg.vlm
    gen = generation_settings(cfg.sampler)
    if cfg.toy:  # the oracle rates what the model makes: found before generating, where its configs tell
        from videolift.toy.oracle import model_size_error
        from videolift.toy.render import FRAMES, SIZE

        if why := model_size_error(t2v, None, cfg.sampler.frames, cfg.sampler.height, cfg.sampler.width):
            raise VideoliftError(
                f"t2v {t2v} {why}; set sampler.frames {FRAMES}, sampler.height {SIZE} and sampler.width {SIZE}"
            )

    # A model that cannot load (offline, not in the Hub cache): found now, not hours later.
    if not runner.plan:
        _check_models(t2v, vlm)
        if cfg.evaluate.clip is not None:
            from videolift.evaluate.clip_score import check_clip_model

            check_clip_model(cfg.evaluate.clip, option="evaluate.clip")

    # ---- data: ratings ------------------------------------------------------------------------------
    if cfg.hra.source == "toy-panel":
        hra_file, hra_videos = w / "hra.jsonl", w / "hra_videos"
        runner.run(generate_stage(cfg, t2v, gen, cfg.hra.prompts, "train", "hra_videos", progress))
        runner.run(toy_panel_stage(cfg, hra_videos, hra_file, progress))
    elif cfg.hra.file is None or cfg.hra.videos is None:
        raise VideoliftError("hra.source 'file' needs hra.file and hra.videos")
    else:
        hra_file, hra_videos = cfg.hra.file, cfg.hra.videos
    runner.run(split_stage(cfg, hra_file))

    # ---- critic ---------------------------------------------------------------------------------------
    critics = {"critic": True} | ({"critic_label_only": False} if cfg.critic.label_only_baseline else {})
    concurrent = _concurrent(cfg.critic.parallel, "critic.parallel", "critics train", runner, len(critics))
    stages = [
        critic_stage(cfg, vlm, hra_videos, name, reasons, concurrent) for name, reasons in critics.items()
    ]
    memory_bound = _run_all(runner, stages, concurrent)
    accuracy: dict[str, Any] = {
        name: runner.run(critic_eval_stage(cfg, hra_videos, name, progress)) for name in critics
    }

    # ---- alignment -------------------------------------------------------------------------------------
    runner.run(generate_stage(cfg, t2v, gen, cfg.align.prompts, "train", "align_videos", progress))
    runner.run(score_stage(cfg, progress))
    aligned: dict[str, tuple[str, str | None]] = {}
    skipped: dict[str, str] = {}
    real = cfg.align.real
    if cfg.align.real_toy:
        real = w / "real_toy" / "manifest.jsonl"
        runner.run(real_toy_stage(cfg.align.real_toy, cfg.seed, real.parent, progress))
    methods = []
    for method in cfg.align.methods:
        if method == "rs" and not ranks.from_main(lambda: any_all_good(w / "align_scores.jsonl")):
            # Nothing survives rejection sampling: report it instead of failing the whole run.
            skipped[method] = "no generated video was rated Good on every dimension"
            runner.console.print(Text(f"align:rs skipped: {skipped[method]}", style="yellow"))
            continue
        methods.append(method)
    parallel = _concurrent(cfg.align.parallel, "align.parallel", "alignments run", runner, len(methods))
    # Beside each other: the first in this (otherwise waiting) process, the others in processes of their
    # own (each process's libraries alone hold ~0.8 GB).
    modes = ["here", *["process"] * (len(methods) - 1)] if parallel else ["alone"] * len(methods)
    stages = [align_stage(cfg, t2v, m, real, progress, mode) for m, mode in zip(methods, modes, strict=True)]
    memory_bound = max(memory_bound, _run_all(runner, stages, parallel, one_here=True))
    for method in methods:
        out = w / f"aligned_{method}"
        full, lora = out / FULL_DIR, out / LORA_DIR
        aligned[method] = (str(full), None) if full.exists() else (t2v, str(lora))

    # ---- evaluation --------------------------------------------------------------------------------------
    result = runner.run(evaluate_stage(cfg, t2v, aligned, gen, progress))
    if not ranks.is_main():  # the summary is the main process's
        return None
    models = {"base": (t2v, None)} | {f"aligned_{m}": paths for m, paths in aligned.items()}
    summary = build_summary(result, accuracy, models, started)
    summary["align_rewards"] = cfg.align.rewards
    # Each stage's time when it last ran: a rerun that skips stages still tells where the time went.
    # (This run's stages only: the manifest also keeps those of earlier settings, e.g. a dropped method.)
    summary["stages"] = {
        name: {"seconds": runner.manifest["stages"][name].get("seconds"), "ran": name in runner.ran}
        for name in runner.results
    }
    # Stages run in processes at the same time (critic.parallel, align.parallel): their memory adds up.
    summary["peak_rss_mb"] = round(max(summary["peak_rss_mb"], memory_bound), 1)
    summary.update({f"aligned_{m}": {"skipped": why} for m, why in skipped.items()})
    if not runner.plan:
        with atomic_write(w / "summary.json") as handle:
            json.dump(summary, handle, indent=1)
    return summary


def _concurrent(wanted: bool, option: str, what: str, runner: Runner, count: int) -> bool:
    """Whether ``count`` stages run at the same time (``option``: critic.parallel, align.parallel), each in
    its own process: not under a multi-process launch, where each runs on every process, one after the
    other (a child process of each rank would start a second process group; parallel only shares out
    CPU cores)."""
    if not (wanted and count > 1):
        return False
    if ranks.world() > 1:
        runner.console.print(
            f"{option}: the {what} one after the other, each on all {ranks.world()} processes"
        )
        return False
    return True


def _run_all(runner: Runner, stages: list[Stage], concurrent: bool, *, one_here: bool = False) -> float:
    """Run ``stages``, at the same time if ``concurrent``; returns the memory (MB) they held at once:
    this process's (``one_here``: the first runs in it, in this thread, so its peak so far, an upper
    bound; else while it waited) plus each stage process's own peak (skipped ones used none now); 0 if they ran in turn,
    in this process (its own peak counts them)."""
    if not concurrent:
        for stage in stages:
            runner.run(stage)
        return 0.0
    done = runner.run_concurrently(stages, first_here=one_here)
    return (peak_rss_mb() if one_here else current_rss_mb()) + sum(
        (r or {}).get("peak_rss_mb", 0.0) for r, s in zip(done, stages, strict=True) if s.name in runner.ran
    )


def build_summary(
    result: dict, accuracy: dict, models: dict[str, tuple[str, str | None]], started: float
) -> dict[str, Any]:
    """The contract of ``summary.json``: critic accuracy, and per model (``key: (model, lora)``, in the
    evaluation's order) the oracle and critic rewards, and the mapping that made them (the evaluation's
    ``reward_config`` and ``reward_source``: the one alignment used, ``stages.alignment_reward``)."""

    def acc(report: dict | None, key: str = "accuracy") -> dict | None:
        if not report:
            return None
        dims = {d: m[key] for d, m in report.get("dimensions", {}).items()}
        return {**dims, "mean": sum(dims.values()) / len(dims) if dims else None}

    names = list(result["summary"])
    out: dict[str, Any] = {
        "critic": {
            "accuracy": acc(accuracy.get("critic")),
            "accuracy_no_reasons": acc(accuracy.get("critic_label_only")),
            # Always answering each dimension's most frequent test label scores this: read accuracy
            # against it (a weak base model makes nearly every label Bad).
            "majority_baseline": acc(accuracy.get("critic"), "majority_baseline"),
        },
    }
    if (
        report := accuracy.get("critic")
    ) and "mean_accuracy_se" in report:  # test sets are small: say how small
        se = {d: m.get("accuracy_se") for d, m in report["dimensions"].items()}
        out["critic"]["accuracy_se"] = {**se, "mean": report["mean_accuracy_se"]}
    for (key, (model, lora)), name in zip(models.items(), names, strict=True):
        s = result["summary"][name]
        oracle, critic = s.get("oracle"), s.get("critic")
        out[key] = {
            "oracle_all_good_rate": oracle and oracle["all_good_rate"],
            "oracle_mean_reward": oracle and oracle["mean_reward"],
            "critic_mean_reward": critic and critic["mean_reward"],
            "critic_all_good_rate": critic and critic["all_good_rate"],
            # where this workdir holds it (a copied workdir's evaluation may name the original's)
            "model": lora or model,
        }
    # An evaluation recorded before reward_source existed (to 2026-12-07) mapped by the paper's: a run's
    # evaluation did whatever alignment used (one whose align.settings.reward_config set another reruns).
    out["reward_config"] = result.get("reward_config")
    out["reward_source"] = result.get("reward_source", PAPER_SOURCE if "reward_config" in result else None)
    out["pairwise"] = result.get("pairwise", {})
    out["differences"] = result.get("differences", {})
    if "clip" in result:  # evaluate.clip: CLIPSIM and temporal consistency, and their paired differences
        out["clip"] = result["clip"]
    out["wall_seconds"] = round(time.time() - started, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out
