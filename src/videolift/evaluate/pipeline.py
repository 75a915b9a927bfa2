"""The whole LiFT loop as one resumable pipeline, driven by a YAML file (``videolift run``).

generate (videos to rate) -> rate (human HRA file, or the toy world's simulated panel) -> split ->
critic train (with reasons, optionally label-only too) -> critic eval -> generate (videos to align on)
-> critic score -> align (RWL and/or RS) -> evaluate (base vs aligned on held-out prompts) -> report.

Each stage calls the stage commands' own code, records its settings and outputs in
``WORKDIR/run_manifest.json`` and is skipped when those are unchanged; the stages resume themselves.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from videolift.core.errors import DataError, VideoliftError
from videolift.core.jsonl import atomic_write, validation_field, write_jsonl
from videolift.core.memory import current_rss_mb, peak_rss_mb
from videolift.evaluate.stages import Runner, Stage, in_subprocess

TOY = "toy"  # model name that resolves to the committed toy-world bases


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampler(_Strict):
    steps: int = Field(50, description="sampling steps")
    guidance: float = Field(6.0, description="classifier-free guidance scale")
    dynamic_cfg: bool = Field(False, description="CogVideoX's dynamic guidance (use_dynamic_cfg)")
    lossless: bool = Field(False, description="lossless H.264 (yuv444p, crf 0), for tiny toy videos")
    batch_size: int = Field(4, description="videos per pipeline call")
    frames: int | None = Field(None, description="frames (default: the model's)")
    height: int | None = None
    width: int | None = None
    fps: int = Field(8, description="frame rate written to the MP4s (Wan 2.1: 16)")
    negative_prompt: str | None = Field(None, description="what guidance steers away from (default: empty)")


class PromptSet(_Strict):
    file: Path | None = Field(None, description="prompt file (.txt/.jsonl/.csv); toy runs may omit it")
    n: int = Field(64, description="toy world: number of distinct prompts drawn from the split")
    per_prompt: int = Field(1, description="videos per prompt")
    seed: int = 0


class HRA(_Strict):
    source: Literal["file", "toy-panel"] = Field("toy-panel", description="human ratings, or simulated ones")
    file: Path | None = Field(None, description="canonical HRA JSONL (source: file)")
    videos: Path | None = Field(None, description="videos root of the HRA file (source: file)")
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=200, per_prompt=4))
    annotators: int = Field(3, description="simulated annotators per video (toy panel)")
    test_fraction: float = 0.2


class Critic(_Strict):
    adapter: Literal["lora", "full"] = "full"
    lr: float = 1e-4
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 8
    num_frames: int = Field(8, description="frames sampled per clip (the toy VLM was pretrained on 9)")
    layout: Literal["per_dimension", "one_pass"] = "per_dimension"
    describe: bool = Field(
        False, description="describe-then-rate critic (extension, `critic train --describe`)"
    )
    check: bool = Field(False, description="check-then-rate critic (extension, `critic train --check`)")
    check_threshold: float = Field(0.05, gt=0, lt=1, description="`critic train --check-threshold`")
    frame_sampling: Literal["uniform", "pairs"] = Field(
        "uniform", description="`critic train --frame-sampling`"
    )
    check_frames: int | None = Field(None, ge=1, description="`critic train --check-frames`")
    label_only_baseline: bool = Field(True, description="also train the --no-reasons ablation")
    parallel: bool = Field(
        False,
        description="train the critic and its label-only baseline at the same time, each in its own "
        "process with one thread (the demo on 2 cores: 23 % less time for both; on one GPU: twice the memory)",
    )
    score_batch_size: int = 24
    save_every: int = Field(
        200, ge=0, description="updates between checkpoints: a killed run resumes from the last (0: none)"
    )


class Align(_Strict):
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=200, per_prompt=4, seed=1))
    methods: list[Literal["rwl", "rs"]] = Field(default_factory=lambda: ["rwl", "rs"])
    real: Path | None = Field(None, description="real video-text JSONL for the real-data term")
    real_toy: int = Field(
        0,
        ge=0,
        description="toy runs: render this many clean train-split clips as the real set (instead of `real`)",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="AlignConfig fields (lr, max_steps, ...)"
    )
    rewards: Literal["critic", "oracle"] = Field(
        "critic",
        description="what scores the alignment videos: the trained critic (the LiFT loop), or in the toy "
        "world the oracle, a perfect critic (measures alignment apart from the critic's errors)",
    )

    @model_validator(mode="after")
    def _one_real_set(self) -> Align:
        if self.real is not None and self.real_toy:
            raise ValueError("set either `real` (a JSONL) or `real_toy` (clips to render), not both")
        return self


class Evaluate(_Strict):
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=64, per_prompt=2, seed=2))
    oracle: bool | None = Field(None, description="rate with the toy oracle too (default: on in toy runs)")


class PipelineConfig(_Strict):
    workdir: Path = Path("runs/lift")
    t2v: str = Field(TOY, description="T2V pipeline dir or Hub id ('toy': the committed toy base)")
    vlm: str = Field(TOY, description="critic base VLM dir or Hub id ('toy': the committed toy VLM)")
    seed: int = 0
    sampler: Sampler = Field(default_factory=Sampler)
    hra: HRA = Field(default_factory=HRA)
    critic: Critic = Field(default_factory=Critic)
    align: Align = Field(default_factory=Align)
    evaluate: Evaluate = Field(default_factory=Evaluate)

    @property
    def toy(self) -> bool:
        return self.t2v == TOY or self.hra.source == "toy-panel"

    @model_validator(mode="after")
    def _oracle_needs_toy(self) -> PipelineConfig:
        if self.align.rewards == "oracle" and not self.toy:
            raise ValueError("align.rewards 'oracle' needs the toy world (t2v: toy or hra.source: toy-panel)")
        return self

    @classmethod
    def load(cls, path: str | Path, sets: Sequence[str] = (), **overrides: Any) -> PipelineConfig:
        """The config in ``path``; ``sets`` are ``dotted.key=value`` edits (YAML values) applied
        first, then the top-level ``overrides`` that are not None."""
        path = Path(path)
        if not path.exists():
            raise DataError("pipeline config not found", file=path)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise DataError(f"expected a mapping of settings, got a {type(data).__name__}", file=path)
        for item in sets:
            _apply_set(data, item, path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            field, msg = validation_field(exc)
            raise DataError(msg, file=path, field=field) from None
        if not cfg.workdir.is_absolute() and overrides.get("workdir") is None:
            cfg.workdir = path.parent / cfg.workdir
        return cfg


def _apply_set(data: dict[str, Any], item: str, path: Path) -> None:
    """One ``--set a.b.c=VALUE``: VALUE parsed as YAML (``1`` an int, ``[rwl]`` a list, ``x`` a string)."""
    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise DataError(f"--set {item!r}: expected KEY=VALUE, e.g. align.settings.seed=1", file=path)
    *parents, leaf = key.strip().split(".")
    node = data
    for i, part in enumerate(parents):
        if node.get(part) is None:  # absent, or an empty section in the YAML
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise DataError(f"--set {item!r}: {'.'.join(parents[: i + 1])} is not a section", file=path)
    node[leaf] = yaml.safe_load(raw)


def toy_asset(name: str) -> str:
    """Directory of a committed toy-world base model ("t2v" or "vlm")."""
    path = Path(__file__).resolve().parent.parent / "toy" / "assets" / name
    if not (path / "config.json").exists() and not (path / "model_index.json").exists():
        command = "pretrain" if name == "t2v" else "pretrain-vlm"
        raise VideoliftError(
            f"the committed toy {name} base is missing at {path}; build it with "
            f"`videolift toy {command} --out {path}`"
        )
    return str(path)


def _prompt_file(cfg: PipelineConfig, prompts: PromptSet, split: str, out: Path) -> Path:
    if prompts.file is not None:
        return prompts.file
    if not cfg.toy:
        raise VideoliftError(f"give a prompts file for the {out.stem} prompts (only toy runs draw their own)")
    from videolift.toy.grammar import sample_distinct

    specs = sample_distinct(prompts.n, split, seed=prompts.seed)
    write_jsonl(out, [{"prompt": s.text, "split": split, **s.categories()} for s in specs])
    return out


def run_pipeline(cfg: PipelineConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage; returns the summary (also ``WORKDIR/summary.json``)."""
    started = time.time()
    w = cfg.workdir
    runner = Runner(w)
    t2v = toy_asset("t2v") if cfg.t2v == TOY else cfg.t2v
    vlm = toy_asset("vlm") if cfg.vlm == TOY else cfg.vlm
    sampler = cfg.sampler.model_dump()
    keys = ("steps", "guidance", "dynamic_cfg", "lossless", "batch_size", "frames", "height", "width")
    gen_kwargs = {k: sampler[k] for k in keys}
    # Only when set: runs from before these options keep their stage settings (and are not redone).
    gen_kwargs |= {
        k: sampler[k] for k, default in (("fps", 8), ("negative_prompt", None)) if sampler[k] != default
    }

    def generate(prompt_set: PromptSet, split: str, name: str) -> Stage:
        from videolift.data.generate import generate_videos

        prompts = w / f"{name}_prompts.jsonl"
        out = w / name

        def run() -> dict:
            path = _prompt_file(cfg, prompt_set, split, prompts)
            s = generate_videos(
                t2v,
                path,
                out,
                per_prompt=prompt_set.per_prompt,
                seed=prompt_set.seed,
                progress=progress,
                overwrite=True,  # resumes a matching run; restarts one with other settings
                **gen_kwargs,
            )
            return {"videos": s.total, "seconds": round(s.seconds, 1)}

        return Stage(
            f"generate:{name}",
            run,
            inputs=[Path(t2v)] if Path(t2v).exists() else [],
            outputs=[out / "manifest.jsonl"],
            settings={"prompts": prompt_set.model_dump(mode="json"), "split": split, **gen_kwargs},
        )

    # ---- data: ratings ------------------------------------------------------------------------------
    if cfg.hra.source == "toy-panel":
        runner.run(generate(cfg.hra.prompts, "train", "hra_videos"))
        hra_file, hra_videos = w / "hra.jsonl", w / "hra_videos"

        def rate() -> dict:
            from videolift.toy.rate import rate_manifest

            return rate_manifest(
                hra_videos / "manifest.jsonl",
                hra_videos,
                hra_file,
                annotators=cfg.hra.annotators,
                seed=cfg.seed,
            )

        runner.run(
            Stage(
                "rate:toy-panel",
                rate,
                inputs=[hra_videos / "manifest.jsonl"],
                outputs=[hra_file],
                settings={"annotators": cfg.hra.annotators, "seed": cfg.seed},
            )
        )
    else:
        if cfg.hra.file is None or cfg.hra.videos is None:
            raise VideoliftError("hra.source 'file' needs hra.file and hra.videos")
        hra_file, hra_videos = cfg.hra.file, cfg.hra.videos

    def split() -> dict:
        from videolift.core.jsonl import read_jsonl
        from videolift.core.schema import HRARecord
        from videolift.data.split import split_records

        train, test = split_records(read_jsonl(hra_file, HRARecord), cfg.hra.test_fraction, cfg.seed)
        write_jsonl(w / "hra_split" / "train.jsonl", train)
        write_jsonl(w / "hra_split" / "test.jsonl", test)
        return {"train": len(train), "test": len(test)}

    runner.run(
        Stage(
            "split",
            split,
            inputs=[hra_file],
            outputs=[w / "hra_split" / "test.jsonl"],
            settings={"test_fraction": cfg.hra.test_fraction, "seed": cfg.seed},
        )
    )

    # ---- critic ---------------------------------------------------------------------------------------
    critics = {"critic": True} | ({"critic_label_only": False} if cfg.critic.label_only_baseline else {})
    concurrent, memory_bound = cfg.critic.parallel and len(critics) > 1, 0.0
    stages = [
        _critic_stage(cfg, vlm, w, hra_videos, name, reasons, concurrent) for name, reasons in critics.items()
    ]
    if concurrent:
        done = runner.run_concurrently(stages)
        # Memory while they ran: this (waiting) process's plus each critic process's own peak
        # (skipped ones used none now).
        memory_bound = current_rss_mb() + sum(
            (r or {}).get("peak_rss_mb", 0.0)
            for r, s in zip(done, stages, strict=True)
            if s.name in runner.ran
        )
    else:
        for stage in stages:
            runner.run(stage)
    accuracy: dict[str, Any] = {
        name: runner.run(_critic_eval_stage(cfg, w, hra_videos, name, progress)) for name in critics
    }

    # ---- alignment -------------------------------------------------------------------------------------
    runner.run(generate(cfg.align.prompts, "train", "align_videos"))

    def score() -> dict:
        from videolift.critic.score import load_critic, score_manifest

        s = score_manifest(
            load_critic(w / "critic"),
            w / "align_videos" / "manifest.jsonl",
            w / "align_videos",
            w / "align_scores.jsonl",
            batch_size=cfg.critic.score_batch_size,
            progress=progress,
            log=lambda *a, **k: None,
            overwrite=True,  # the stage reruns only when the critic or the videos changed
        )
        return {"videos": s.videos, "mean_reward": s.mean_reward, "unparsed": s.unparsed}

    def score_by_oracle() -> dict:
        from videolift.align.weights import read_scores
        from videolift.toy.rate import rate_manifest

        r = rate_manifest(
            w / "align_videos" / "manifest.jsonl",
            w / "align_videos",
            w / "align_oracle.jsonl",
            oracle=True,
            progress=progress,
            scores_out=w / "align_scores.jsonl",
        )
        rewards = [v.reward for v in read_scores(w / "align_scores.jsonl")]
        return {"videos": r["videos"], "mean_reward": sum(rewards) / len(rewards), "unparsed": 0}

    if cfg.align.rewards == "oracle":
        scoring = Stage(
            "score",
            score_by_oracle,
            inputs=[w / "align_videos" / "manifest.jsonl"],
            outputs=[w / "align_scores.jsonl"],
            settings={"rewards": "oracle"},
        )
    else:  # settings as before the option existed: earlier runs are not redone
        scoring = Stage(
            "score",
            score,
            inputs=[w / "critic", w / "align_videos" / "manifest.jsonl"],
            outputs=[w / "align_scores.jsonl"],
            settings={"batch": cfg.critic.score_batch_size},
        )
    runner.run(scoring)
    aligned: dict[str, tuple[str, str | None]] = {}
    skipped: dict[str, str] = {}
    real = cfg.align.real
    if cfg.align.real_toy:
        real = w / "real_toy" / "manifest.jsonl"
        runner.run(_real_toy_stage(cfg.align.real_toy, cfg.seed, real.parent))
    for method in cfg.align.methods:
        if method == "rs" and not _any_all_good(w / "align_scores.jsonl"):
            # Nothing survives rejection sampling: report it instead of failing the whole run.
            skipped[method] = "no generated video was rated Good on every dimension"
            runner.console.print(f"[yellow]align:rs skipped: {skipped[method]}[/]")
            continue
        runner.run(_align_stage(cfg, t2v, w, method, real, progress))
        out = w / f"aligned_{method}"
        lora = out / "lora"
        aligned[method] = (str(out / "pipeline"), None) if (out / "pipeline").exists() else (t2v, str(lora))

    # ---- evaluation --------------------------------------------------------------------------------------
    oracle = cfg.toy if cfg.evaluate.oracle is None else cfg.evaluate.oracle

    def evaluate() -> dict:
        from videolift.evaluate.compare import compare_models

        prompts = _prompt_file(cfg, cfg.evaluate.prompts, "heldout", w / "eval_prompts.jsonl")
        return compare_models(
            [(t2v, None), *aligned.values()],
            prompts,
            w / "eval",
            critic_dir=w / "critic",
            oracle=oracle,
            per_prompt=cfg.evaluate.prompts.per_prompt,
            seed=cfg.evaluate.prompts.seed,
            progress=progress,
            names=["base", *(f"aligned_{m}" for m in aligned)],
            overwrite=True,
            **gen_kwargs,
        )

    result = runner.run(
        Stage(
            "evaluate",
            evaluate,
            inputs=[w / "critic", *(Path(m) for m, _ in aligned.values())],
            outputs=[w / "eval" / "eval.json"],
            settings={
                "prompts": cfg.evaluate.prompts.model_dump(mode="json"),
                "oracle": oracle,
                "methods": list(aligned),
                **gen_kwargs,
            },
        )
    )
    models = {"base": (t2v, None)} | {f"aligned_{m}": paths for m, paths in aligned.items()}
    summary = build_summary(result, accuracy, models, started)
    summary["align_rewards"] = cfg.align.rewards
    if concurrent:  # the critics' processes overlapped: their memory adds up
        summary["peak_rss_mb"] = round(max(summary["peak_rss_mb"], memory_bound), 1)
    summary.update({f"aligned_{m}": {"skipped": why} for m, why in skipped.items()})
    with atomic_write(w / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def _any_all_good(scores: Path) -> bool:
    from videolift.align.weights import all_good, read_scores

    return any(all_good(v.labels) for v in read_scores(scores))


def _train_critic_quietly(**kwargs: Any) -> None:
    """``train_critic`` without log lines, continuing an interrupted run of the same settings from its
    last checkpoint; any other run in OUT is replaced. Importable: parallel critics run it in a child
    process."""
    from videolift.critic.sft import RunConflict
    from videolift.critic.train import train_critic

    def quiet(*_: Any, **__: Any) -> None:
        pass

    try:
        train_critic(**kwargs, resume=True, log=quiet)
    except RunConflict:
        train_critic(**kwargs, overwrite=True, log=quiet)


def _critic_stage(
    cfg: PipelineConfig,
    vlm: str,
    w: Path,
    hra_videos: Path,
    name: str,
    reasons: bool,
    own_process: bool = False,
) -> Stage:
    from videolift.critic.sft import SFTConfig

    c = cfg.critic
    sft = SFTConfig(
        adapter=c.adapter,
        lr=c.lr,
        epochs=c.epochs,
        max_steps=c.max_steps,
        batch_size=c.batch_size,
        num_frames=c.num_frames,
        frame_sampling=c.frame_sampling,
        seed=cfg.seed,
        save_every=c.save_every,
    )

    kwargs = dict(
        base=vlm,
        data=w / "hra_split" / "train.jsonl",
        videos=hra_videos,
        out=w / name,
        cfg=sft,
        layout=c.layout,
        reasons=reasons,
        describe=c.describe,
        check=c.check,
        check_threshold=c.check_threshold,
        check_frames=c.check_frames,
    )

    def run() -> dict:
        if not own_process:
            _train_critic_quietly(**kwargs)
            return {"reasons": reasons}
        _, peak_mb = in_subprocess(_train_critic_quietly, kwargs, threads=1)
        return {"reasons": reasons, "peak_rss_mb": round(peak_mb, 1)}

    return Stage(
        f"critic:{name}",
        run,
        inputs=[w / "hra_split" / "train.jsonl"],
        outputs=[w / name],
        # `parallel` and `save_every` change when, not what, is trained
        settings={"vlm": vlm, "reasons": reasons, **c.model_dump(exclude={"parallel", "save_every"})},
        fresh=lambda: shutil.rmtree(w / name, ignore_errors=True),
    )


def _critic_eval_stage(cfg: PipelineConfig, w: Path, hra_videos: Path, name: str, progress: bool) -> Stage:
    def run() -> dict:
        from videolift.critic.evaluate import evaluate_critic
        from videolift.critic.score import load_critic

        report = evaluate_critic(
            load_critic(w / name),
            w / "hra_split" / "test.jsonl",
            hra_videos,
            scores=w / f"{name}_test_scores.jsonl",
            overwrite=True,
            batch_size=cfg.critic.score_batch_size,
            log=lambda *a, **k: None,
            progress=progress,
        )
        with atomic_write(w / f"{name}_eval.json") as handle:
            json.dump(report, handle, indent=1)
        return report

    return Stage(
        f"critic-eval:{name}",
        run,
        inputs=[w / name, w / "hra_split" / "test.jsonl"],
        outputs=[w / f"{name}_eval.json"],
    )


def _real_toy_stage(n: int, seed: int, out: Path) -> Stage:
    """The toy world's "real videos": clean renders of train-split prompts (the real-data term's set)."""

    def run() -> dict:
        from videolift.toy.corpus import plan, write_corpus

        write_corpus(plan(n, defect_rate=0.0, seed=seed + 17, split="train"), out)
        return {"videos": n}

    return Stage("real:toy", run, outputs=[out / "manifest.jsonl"], settings={"n": n, "seed": seed})


def _align_stage(
    cfg: PipelineConfig, t2v: str, w: Path, method: str, real: Path | None, progress: bool
) -> Stage:
    from videolift.align.config import AlignConfig

    # One latent/text cache for RWL and RS: the real clips and shared videos are encoded once.
    settings = {"seed": cfg.seed, "cache_dir": str(w / "align_cache"), **cfg.align.settings, "method": method}
    out = w / f"aligned_{method}"

    def run() -> dict:
        from videolift.align.checkpoints import checkpoint_conflicts, latest_checkpoint
        from videolift.align.trainer import train

        align_cfg = AlignConfig(
            model=t2v,
            scores=w / "align_scores.jsonl",
            videos=w / "align_videos",
            out=out,
            real=real,
            **settings,
        )
        # Resume a checkpoint of these very settings; anything else in OUT is stale.
        last = latest_checkpoint(out / "checkpoints")
        same = last is not None and not checkpoint_conflicts(align_cfg, last)
        if last is not None and not same:
            shutil.rmtree(out)
        r = train(align_cfg.model_copy(update={"resume": same}), progress=progress)
        return {"steps": r.steps, "export": str(r.export_dir)}

    AlignConfig(model=t2v, scores=w / "align_scores.jsonl", videos=w, out=out, **settings)  # validate early
    return Stage(
        f"align:{method}",
        run,
        # A reward config's content changes the weights as much as the scores do.
        inputs=[w / "align_scores.jsonl", *([Path(rc)] if (rc := settings.get("reward_config")) else [])],
        outputs=[out],
        settings={"model": t2v, "real": str(real), **settings},
        fresh=lambda: shutil.rmtree(out, ignore_errors=True),
    )


def build_summary(
    result: dict, accuracy: dict, models: dict[str, tuple[str, str | None]], started: float
) -> dict[str, Any]:
    """The contract of ``summary.json``: critic accuracy, and per model (``key: (model, lora)``, in the
    evaluation's order) the oracle and critic rewards."""

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
    out["pairwise"] = result.get("pairwise", {})
    out["differences"] = result.get("differences", {})
    out["wall_seconds"] = round(time.time() - started, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out
