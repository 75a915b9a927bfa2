"""The stages of ``videolift run``, each built from the pipeline's config: what it runs (the stage
commands' own code), its inputs, outputs and settings (which decide whether it is up to date).

Order: generate (videos to rate) -> rate (toy panel; human HRA files are given) -> split -> critic
train -> critic eval -> generate (videos to align on) -> score -> real:toy -> align -> evaluate.
Under a multi-process launch the stages marked ``main_only`` run on the main process alone; the others
on every process, as their commands do under torchrun / accelerate launch (``pipeline.ranks``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from videolift.core.errors import VideoliftError
from videolift.core.jsonl import atomic_write, read_json, write_jsonl
from videolift.core.reward import RewardConfig
from videolift.pipeline import ranks
from videolift.pipeline.config import PipelineConfig, PromptSet, Sampler
from videolift.pipeline.runner import Stage, in_subprocess, say


def generation_settings(sampler: Sampler) -> dict[str, Any]:
    """The sampler's settings as ``generate_videos`` / ``compare_models`` keywords."""
    s = sampler.model_dump()
    keys = ("steps", "dynamic_cfg", "lossless", "batch_size", "frames", "height", "width")
    # Only when set: runs from before these options keep their stage settings (and are not redone).
    # Unset guidance and fps are the model family's (generate's defaults). Until 2026-12-06 they were 6 and
    # 8 for every family: a stage run then with them unset runs again, and a CogVideoX generation resumes
    # from the videos it has (same settings as far as generate is concerned).
    optional = {
        k: s[k]
        for k, unset in (
            ("negative_prompt", None),
            ("guidance_2", None),
            ("vae_tiling", False),
            ("dtype", None),
            ("offload", "none"),
        )
        if s[k] != unset
    }
    rates = {k: s[k] for k in ("guidance", "fps") if s[k] is not None}
    return {k: s[k] for k in keys} | rates | optional


def keyed(gen: dict[str, Any]) -> dict[str, Any]:
    """The generation settings a stage is keyed on: not where the weights wait (the same videos)."""
    return {k: v for k, v in gen.items() if k != "offload"}


def prompt_file(cfg: PipelineConfig, prompts: PromptSet, split: str, out: Path) -> Path:
    """The prompts' file: the config's, or in the toy world ``prompts.n`` distinct prompts of ``split``
    written to ``out``."""
    if prompts.file is not None:
        return prompts.file
    if not cfg.toy:
        raise VideoliftError(f"give a prompts file for the {out.stem} prompts (only toy runs draw their own)")
    from videolift.toy.grammar import sample_distinct

    specs = sample_distinct(prompts.n, split, seed=prompts.seed)
    ranks.from_main(
        lambda: write_jsonl(out, [{"prompt": s.text, "split": split, **s.categories()} for s in specs])
    )
    return out


def generate_stage(
    cfg: PipelineConfig,
    t2v: str,
    gen: dict[str, Any],
    prompt_set: PromptSet,
    split: str,
    name: str,
    progress: bool,
) -> Stage:
    """Videos of ``prompt_set`` (drawn from the toy ``split`` when it names no file) in ``WORKDIR/name``."""
    w = cfg.workdir
    prompts, out = w / f"{name}_prompts.jsonl", w / name

    def run() -> dict:
        from videolift.data.generate import generate_videos

        s = generate_videos(
            t2v,
            prompt_file(cfg, prompt_set, split, prompts),
            out,
            per_prompt=prompt_set.per_prompt,
            seed=prompt_set.seed,
            progress=progress,
            overwrite=True,  # resumes a matching run; restarts one with other settings
            **gen,
        )
        if s.skipped:  # `generate`'s "already done": known from its logs once its model loaded, so said after
            say(f"generate:{name}: continued: {s.skipped} of its {s.total} videos were already made (kept)")
        return {"videos": s.total, "seconds": round(s.seconds, 1)}

    models = [Path(t2v)] if Path(t2v).exists() else []
    settings = {"prompts": prompt_set.model_dump(mode="json"), "split": split, **keyed(gen)} | hub_model(t2v)
    return Stage(
        f"generate:{name}",
        run,
        inputs=[*models, *given_prompts(prompt_set)],  # a prompts file edited in place is new work
        outputs=[out / "manifest.jsonl"],
        settings=settings,
    )


def hub_model(t2v: str) -> dict[str, str]:
    """A Hub model is keyed by its id (a local one is an input, by its files: keying it by name too
    would redo the runs recorded before this)."""
    return {} if Path(t2v).exists() else {"model": t2v}


def given_prompts(prompt_set: PromptSet) -> list[Path]:
    """The config's prompts file, an input by its bytes (drawn toy prompts follow from the settings)."""
    return [prompt_set.file] if prompt_set.file is not None else []


def toy_panel_stage(cfg: PipelineConfig, videos: Path, hra_file: Path, progress: bool) -> Stage:
    """The toy world's simulated annotators rate ``videos`` into an HRA file."""

    def run() -> dict:
        from videolift.toy.rate import rate_manifest

        manifest, panel = videos / "manifest.jsonl", cfg.hra.annotators
        return rate_manifest(manifest, videos, hra_file, annotators=panel, seed=cfg.seed, progress=progress)

    return Stage(
        "rate:toy-panel",
        run,
        inputs=[videos / "manifest.jsonl"],
        outputs=[hra_file],
        settings={"annotators": cfg.hra.annotators, "seed": cfg.seed},
        main_only=True,
        resumes=False,
    )


def split_stage(cfg: PipelineConfig, hra_file: Path) -> Stage:
    """Train / test split of the ratings (``WORKDIR/hra_split/``)."""
    out = cfg.workdir / "hra_split"

    def run() -> dict:
        from videolift.data.hra_file import read_hra
        from videolift.data.split import split_records, write_split

        train, test = split_records(read_hra(hra_file), cfg.hra.test_fraction, cfg.seed, cfg.hra.group_by)
        write_split(out, train, test)
        return {"train": len(train), "test": len(test)}

    # group_by only when it is not the split runs made before it existed (they are not redone)
    grouped = {"group_by": cfg.hra.group_by} if cfg.hra.group_by != "video" else {}
    return Stage(
        "split",
        run,
        inputs=[hra_file],
        # Both halves: the critic trains on train.jsonl, a damaged one must not pass as the split's.
        outputs=[out / "train.jsonl", out / "test.jsonl"],
        settings={"test_fraction": cfg.hra.test_fraction, "seed": cfg.seed, **grouped},
        resumes=False,
        main_only=True,
    )


def score_stage(cfg: PipelineConfig, progress: bool) -> Stage:
    """Rewards of the alignment videos (``WORKDIR/align_scores.jsonl``): the trained critic's, or in
    the toy world with ``align.rewards: oracle`` the oracle's labels mapped as a critic's would be."""
    w = cfg.workdir
    videos, scores = w / "align_videos", w / "align_scores.jsonl"

    def by_critic() -> dict:
        from videolift.critic.answers import load_critic
        from videolift.critic.score import score_manifest

        s = score_manifest(
            load_critic(w / "critic"),
            videos / "manifest.jsonl",
            videos,
            scores,
            batch_size=cfg.critic.score_batch_size,
            progress=progress,
            log=lambda *a, **k: None,
            overwrite=True,  # the stage reruns only when the critic or the videos changed
        )
        if s.skipped:  # `critic score`'s "already done"
            say(f"score: continued: {s.skipped} of its {s.videos} videos were already scored (kept)")
        return {"videos": s.videos, "mean_reward": s.mean_reward, "unparsed": s.unparsed}

    def by_oracle() -> dict:
        from videolift.core.scores import read_scores
        from videolift.toy.rate import rate_manifest

        r = rate_manifest(
            videos / "manifest.jsonl",
            videos,
            w / "align_oracle.jsonl",
            oracle=True,
            progress=progress,
            scores_out=scores,
        )
        rewards = [v.reward for v in read_scores(scores)]
        return {"videos": r["videos"], "mean_reward": sum(rewards) / len(rewards), "unparsed": 0}

    if cfg.align.rewards == "oracle":
        return Stage(
            "score",
            by_oracle,
            inputs=[videos / "manifest.jsonl"],
            outputs=[scores],
            settings={"rewards": "oracle"},
            main_only=True,  # the toy oracle is not sharded
            resumes=False,
        )
    return Stage(  # settings as before `align.rewards` existed: earlier runs are not redone
        "score",
        by_critic,
        inputs=[w / "critic", videos / "manifest.jsonl"],
        outputs=[scores],
        settings={"batch": cfg.critic.score_batch_size},
    )


def evaluate_stage(
    cfg: PipelineConfig,
    t2v: str,
    aligned: dict[str, tuple[str, str | None]],
    gen: dict[str, Any],
    progress: bool,
) -> Stage:
    """Base vs every aligned model (``method: (model, lora)``) on held-out prompts (``WORKDIR/eval``),
    rewards mapped as alignment mapped them (``alignment_reward``)."""
    w = cfg.workdir
    oracle = cfg.toy if cfg.evaluate.oracle is None else cfg.evaluate.oracle
    given = alignment_reward(cfg)

    def run() -> dict:
        from videolift.evaluate.compare import compare_models

        prompts = prompt_file(cfg, cfg.evaluate.prompts, "heldout", w / "eval_prompts.jsonl")
        reward, source = given or (None, None)  # None: the critic's, read from its spec when it runs
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
            reward=reward,
            reward_source=source,
            clip=cfg.evaluate.clip,
            log=lambda line: say(f"evaluate: {line}"),  # what an interrupted attempt left, continued
            **gen,
        )

    settings = {
        "prompts": cfg.evaluate.prompts.model_dump(mode="json"),
        "oracle": oracle,
        "methods": list(aligned),
        **keyed(gen),
    } | hub_model(t2v)
    if given is not None and not given[0].is_paper():  # runs evaluated by the paper's mapping stay done
        settings["reward"] = given[0].model_dump(mode="json")
    if cfg.evaluate.clip is not None:  # runs without CLIP scores stay done; naming a model (another) reruns
        settings["clip"] = cfg.evaluate.clip  # (the videos and critic scores are reused: only CLIP runs)
    models = [Path(p) for pair in [(t2v, None), *aligned.values()] for p in pair if p and Path(p).exists()]
    # A local CLIP is an input by its files, as a local T2V model (a Hub id is keyed by its id, above): CLIP
    # files replaced in place would otherwise leave the stage done with the old files' values.
    clip = [Path(cfg.evaluate.clip)] if cfg.evaluate.clip and Path(cfg.evaluate.clip).exists() else []
    # Versions to 2026-12-05 keyed on the aligned pipelines only: sound unless a LoRA or a prompts
    # file (which they did not track) is evaluated.
    unseen = any(lora for _, lora in aligned.values()) or cfg.evaluate.prompts.file is not None
    before = [w / "critic", *(Path(m) for m, _ in aligned.values())]
    return Stage(
        "evaluate",
        run,
        # A retrained LoRA is new work (its base is the same path), and so is an edited prompts file.
        inputs=[w / "critic", *dict.fromkeys(models), *given_prompts(cfg.evaluate.prompts), *clip],
        outputs=[w / "eval" / "eval.json"],
        settings=settings,
        earlier_inputs=None if unseen else before,
    )


def alignment_reward(cfg: PipelineConfig) -> tuple[RewardConfig, str] | None:
    """The reward mapping alignment optimised, as (``RewardConfig``, what it is), for the evaluation to
    report rewards by: ``align.settings.reward_config``'s (align recomputes the rewards from the labels
    with it), else with ``align.rewards: oracle`` the paper's (the oracle's labels are mapped so); None:
    the critic's own (its spec's, which ``critic score`` wrote as each video's reward)."""
    if (path := cfg.align.settings.get("reward_config")) is not None:
        return RewardConfig.load(path), f"align.settings.reward_config ({path}), the mapping alignment used"
    if cfg.align.rewards == "oracle":
        return RewardConfig(), "the paper's, as align.rewards: oracle maps the oracle's labels"
    return None


def any_all_good(scores: Path) -> bool:
    from videolift.core.schema import all_good, rated_dimensions
    from videolift.core.scores import read_scores

    videos = read_scores(scores)
    dims = rated_dimensions(v.labels for v in videos)
    return any(all_good(v.labels, dims) for v in videos)


# The line of `critic train --resume` that says which checkpoint it continues from (``resume_from``).
RESUMED = "resumed from "


def _train_critic_quietly(*, stage: str = "critic", **kwargs: Any) -> None:
    """``train_critic`` without log lines but the one saying which checkpoint an interrupted run of the
    same settings continues from (as ``stage``'s); any other run in OUT is replaced. Importable: parallel
    critics run it in a child process."""
    from videolift.critic.sft_outputs import AlreadyFinished, RunConflict
    from videolift.critic.train import train_critic

    def quiet(line: Any = "", *_: Any, **__: Any) -> None:
        if isinstance(line, str) and line.startswith(RESUMED):  # (the main process's: the others log none)
            say(f"{stage}: {line}")

    from videolift.core.progress import library_bars

    # Its own process starts with the libraries' bars on ("Loading weights", "Writing model shards").
    with library_bars(False):
        try:
            train_critic(**kwargs, resume=True, log=quiet)
        except AlreadyFinished:
            pass  # killed after training, before the manifest recorded it: the critic is there
        except RunConflict:
            train_critic(**kwargs, overwrite=True, log=quiet)


# Critic settings that change when or how it is trained or used, not the trained critic (versions to
# 2026-12-05 keyed the stage on the last two too, so changing them retrained it).
NOT_THE_CRITIC = frozenset(
    {"parallel", "save_every", "score_batch_size", "label_only_baseline", "val_every", "ddp_timeout"}
)


# Critic options added after the first runs, with the value that leaves them unset.
LATER_CRITIC_OPTIONS = {"grad_accum": 1, "lora_r": None, "lora_alpha": None, "lora_targets": None,
                        "weight_decay": None, "warmup_ratio": None, "gradient_checkpointing": False,
                        "dtype": None, "max_pixels": None, "min_pixels": None}  # fmt: skip


def _unset_later_options(c: Any) -> set[str]:
    """Options added after the first runs, left out of the stage's settings while unset, so that those
    runs are not redone."""
    return {k for k, unset in LATER_CRITIC_OPTIONS.items() if getattr(c, k) == unset}


def critic_train_config(cfg: PipelineConfig) -> Any:
    """`critic train`'s settings from the pipeline's critic section (unset ones: its defaults)."""
    from videolift.critic.sft_config import SFTConfig

    c = cfg.critic
    given = {k: getattr(c, k) for k in sorted(LATER_CRITIC_OPTIONS.keys() - _unset_later_options(c))}
    return SFTConfig(
        adapter=c.adapter,
        lr=c.lr,
        epochs=c.epochs,
        max_steps=c.max_steps,
        batch_size=c.batch_size,
        **given,
        num_frames=c.num_frames,
        frame_sampling=c.frame_sampling,
        seed=cfg.seed,
        save_every=c.save_every,
        val_every=c.val_every or 0,
        **({"ddp_timeout": c.ddp_timeout} if c.ddp_timeout is not None else {}),
    )


def critic_stage(
    cfg: PipelineConfig,
    vlm: str,
    hra_videos: Path,
    name: str,
    reasons: bool,
    own_process: bool = False,
) -> Stage:
    w, c = cfg.workdir, cfg.critic
    sft = critic_train_config(cfg)
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
    if c.val_every is not None:  # the split's held-out ratings, which the critic's evaluation uses too
        kwargs |= {"val_data": w / "hra_split" / "test.jsonl", "val_videos": hra_videos}

    settings = {
        "vlm": vlm,
        "reasons": reasons,
        **c.model_dump(exclude=NOT_THE_CRITIC | _unset_later_options(c)),
    }

    def run() -> dict:
        if not own_process:
            _train_critic_quietly(**kwargs, stage=f"critic:{name}")
            return {"reasons": reasons}
        named = kwargs | {"stage": f"critic:{name}"}
        _, peak_mb = in_subprocess(_train_critic_quietly, named, threads=1, what=f"critic:{name}")
        return {"reasons": reasons, "peak_rss_mb": round(peak_mb, 1)}

    train, base = w / "hra_split" / "train.jsonl", [Path(vlm)] if Path(vlm).exists() else []
    videos, rated = rated_videos(cfg, hra_videos)
    return Stage(
        f"critic:{name}",
        run,
        # The base VLM by its files: a model rebuilt in place is new work; so are other rated videos (the
        # same ratings of other clips). Versions to 2026-12-06 tracked neither, to 2026-12-07 not the
        # videos; their records are taken as made from the VLM there now, and from these videos where
        # the critic says it trained on videos at this path (recorded this version's way from then on).
        inputs=[train, *rated, *base],
        older=lambda: (
            [(settings, [train, *base]), (settings, [train])]
            if _trained_on_videos(cfg, w / name, hra_videos)
            else []
        ),
        outputs=[w / name],
        settings=settings | videos,
        fresh=lambda: shutil.rmtree(w / name, ignore_errors=True),
        dropped=NOT_THE_CRITIC,
    )


def critic_eval_stage(cfg: PipelineConfig, hra_videos: Path, name: str, progress: bool) -> Stage:
    w = cfg.workdir

    def run() -> dict:
        from videolift.critic.answers import load_critic
        from videolift.critic.evaluate import evaluate_critic, read_eval_data
        from videolift.critic.spec import CriticSpec

        test = w / "hra_split" / "test.jsonl"
        checked = read_eval_data(test, hra_videos, CriticSpec.load(w / name).dimensions)  # before the load
        report = evaluate_critic(
            load_critic(w / name),
            test,
            hra_videos,
            checked=checked,
            scores=w / f"{name}_test_scores.jsonl",
            overwrite=True,
            batch_size=cfg.critic.score_batch_size,
            log=lambda *a, **k: None,
            progress=progress,
        )
        if report is None:  # another than the main process: it scored its share
            return None
        if bad := report["unreadable"]:  # opened, then failed to decode: scored as unparsed, i.e. wrong
            where = "; ".join(f"{b['file']}, line {b['line']}: {b['error']}" for b in bad[:3])
            raise VideoliftError(
                f"{len(bad)} test video(s) could not be read ({where}{'; ...' if len(bad) > 3 else ''}): fix or "
                "remove them and rerun (the critic's accuracy would count them as wrong answers)"
            )
        with atomic_write(w / f"{name}_eval.json") as handle:
            json.dump(report, handle, indent=1)
        return report

    before = [w / name, w / "hra_split" / "test.jsonl"]
    videos, rated = rated_videos(cfg, hra_videos)
    return Stage(
        f"critic-eval:{name}",
        run,
        inputs=[*before, *rated],  # and the test videos scored (``rated_videos``)
        outputs=[w / f"{name}_eval.json"],
        settings=videos,
        # Versions to 2026-12-07 did not track the videos (see critic_stage).
        older=lambda: [({}, before)] if _trained_on_videos(cfg, w / name, hra_videos) else [],
    )


def rated_videos(cfg: PipelineConfig, hra_videos: Path) -> tuple[dict[str, str], list[Path]]:
    """What identifies the rated videos the critic trains and is tested on, as (settings, inputs): the toy
    panel's generation manifest (by its bytes: each video's seed, model files and sampler settings), or a
    human HRA file's videos directory by its path (not its files: it may hold the prompts, the real clips
    and more, e.g. `data/`, whose every edit would retrain the critic; clips replaced in place under the
    same ratings are not seen)."""
    if cfg.hra.source == "toy-panel":
        return {}, [hra_videos / "manifest.jsonl"]
    return {"videos": str(hra_videos)}, []


def _trained_on_videos(cfg: PipelineConfig, critic: Path, hra_videos: Path) -> bool:
    """Whether the critic in ``critic`` records that it trained on the videos at ``hra_videos`` (the
    toy panel's are always the workdir's own: whatever an earlier version recorded of them stands)."""
    if cfg.hra.source == "toy-panel":
        return True
    try:
        recorded = (read_json(critic / "train_config.json").get("extra") or {}).get("videos")
    except (OSError, ValueError, VideoliftError):
        return False
    return recorded is not None and Path(recorded).resolve() == Path(hra_videos).resolve()


def real_toy_stage(n: int, seed: int, out: Path, progress: bool) -> Stage:
    """The toy world's "real videos": clean renders of train-split prompts (the real-data term's set)."""

    def run() -> dict:
        from videolift.toy.corpus import plan, write_corpus

        write_corpus(plan(n, defect_rate=0.0, seed=seed + 17, split="train"), out, progress=progress)
        return {"videos": n}

    return Stage(
        "real:toy",
        run,
        outputs=[out / "manifest.jsonl"],
        settings={"n": n, "seed": seed},
        main_only=True,
        resumes=False,
    )


def _align_quietly(cfg: Any, name: str) -> dict:
    """``align.trainer.train`` with one torch thread, without bars, its messages prefixed with the stage's
    ``name``: how alignments run beside each other (``align.parallel``), one in this process, the others in
    a child process each (importable)."""
    import torch

    from videolift.align.trainer import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (this process's other work waits meanwhile: the stages beside are processes)
    try:
        # The stage's name says what the trainer's first line opens with ("align:rs: align: rs, full ...").
        r = train(
            cfg,
            progress=False,
            log=lambda line: print(f"{name}: {line.removeprefix(f'align: {cfg.method}, ')}", flush=True),
        )
    finally:
        torch.set_num_threads(threads)
    return {"steps": r.steps, "export": str(r.export_dir)}


AlignMode = Literal["alone", "here", "process"]


def align_stage(
    cfg: PipelineConfig,
    t2v: str,
    method: str,
    real: Path | None,
    progress: bool,
    mode: AlignMode = "alone",
) -> Stage:
    """``mode``: "alone", the run as `align` runs it; beside other alignments (``align.parallel``), with one
    torch thread and no bars, "here" in this process or "process" in a child process of its own."""
    w = cfg.workdir
    from videolift.align.config import RESUMABLE_CHANGES, AlignConfig

    # One latent/text cache for RWL and RS: the real clips and shared videos are encoded once.
    settings = {"seed": cfg.seed, "cache_dir": str(w / "align_cache"), **cfg.align.settings, "method": method}
    out = w / f"aligned_{method}"
    # What the stage is keyed on: not the settings that change how the run is logged, saved or fed
    # (align resumes across them; the exported model is the same).
    keyed = {k: v for k, v in settings.items() if k not in RESUMABLE_CHANGES or k == "max_steps"}

    def run() -> dict:
        from videolift.align.checkpoints import checkpoint_conflicts, checkpoint_step, latest_checkpoint
        from videolift.align.trainer import train

        align_cfg = AlignConfig(
            model=t2v,
            scores=w / "align_scores.jsonl",
            videos=w / "align_videos",
            out=out,
            real=real,
            **settings,
        )

        def resumable() -> bool:
            """Whether OUT's last checkpoint has these very settings and inputs (a longer max_steps
            continues it, as `align --resume` does); anything else in OUT is stale, and cleared."""
            last = latest_checkpoint(out / "checkpoints")
            same = (
                last is not None
                and checkpoint_step(last) <= align_cfg.max_steps
                and not checkpoint_conflicts(align_cfg, last)
            )
            if last is not None and not same:
                shutil.rmtree(out)
            return same

        same = ranks.from_main(resumable)  # decided and cleared once, before any process trains
        run_cfg = align_cfg.model_copy(update={"resume": same})
        kwargs = {"cfg": run_cfg, "name": f"align:{method}"}
        if mode == "process":
            result, peak_mb = in_subprocess(_align_quietly, kwargs, threads=1, what=f"align:{method}")
            return result | {"peak_rss_mb": round(peak_mb, 1)}
        if mode == "here":
            return _align_quietly(**kwargs)
        r = train(run_cfg, progress=progress)
        return {"steps": r.steps, "export": str(r.export_dir)}

    AlignConfig(model=t2v, scores=w / "align_scores.jsonl", videos=w, out=out, **settings)  # validate early
    # A reward config's content changes the weights as much as the scores do; so does the real set's, and
    # the base model's: a local one by its files (rebuilt in place, the same scores would not redo it),
    # not its name (moved or copied elsewhere, the same work); a Hub model by its id.
    before = [w / "align_scores.jsonl", *([Path(rc)] if (rc := settings.get("reward_config")) else [])]
    with_real = [*before, *([real] if real is not None else [])]
    named = {"model": t2v, "real": str(real), **keyed}  # as versions to 2026-12-07 keyed it

    def older() -> list[tuple[dict[str, Any], list[Path]]]:
        """Versions to 2026-12-07 keyed on the model's name, not its files; to 2026-12-05 also on every
        setting and not on the real set: sound when the run's last checkpoint trained on the weights
        there now (and on this real set)."""
        if not _trained_on(out, real, t2v, settings["cache_dir"], model=True):
            return []
        return [(named, with_real), *([(named, before)] if _trained_on(out, real, t2v, None) else [])]

    return Stage(
        f"align:{method}",
        run,
        inputs=[*with_real, *([Path(t2v)] if Path(t2v).exists() else [])],
        outputs=[out],
        settings=hub_model(t2v) | {"real": str(real), **keyed},
        # No `fresh`: the run itself clears OUT unless its checkpoint's settings and inputs match.
        dropped=frozenset(settings) - frozenset(keyed),
        older=older,
    )


def _trained_on(out: Path, real: Path | None, t2v: str, cache: str | None, *, model: bool = False) -> bool:
    """Whether the last checkpoint in ``out`` recorded ``real``'s content (or no real set) as its own;
    ``model``: instead, the weights of ``t2v`` now (a Hub id: always; ``cache``: where hashes are kept)."""
    from videolift.align.checkpoints import STATE_FILE, latest_checkpoint
    from videolift.align.config import HASH_MEMO
    from videolift.core.files import HashMemo, content_hash, weights_digest

    last = latest_checkpoint(out / "checkpoints")
    if last is None:
        return False
    inputs = read_json(last / STATE_FILE).get("inputs") or {}
    if model:
        memo = HashMemo(Path(cache) / HASH_MEMO if cache else None)
        return inputs.get("model") == weights_digest(t2v, memo)
    recorded = inputs.get("real", False)
    return recorded == (content_hash(real) if real is not None and real.is_file() else None)
