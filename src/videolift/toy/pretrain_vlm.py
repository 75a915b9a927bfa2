"""Pretrain the toy world's tiny base VLM (Qwen2-VL classes, built from a config) to see toy videos.

Real VLMs can see before anyone fine-tunes them into critics: a pretrained vision encoder, then
captioning. A tiny Qwen2-VL trained from scratch directly on Good/Normal/Bad never learns to compare the
object's colour, shape or motion with the prompt (measured; docs/toy-world.md), and one trained on captions alone
learns colour and scene but hardly shape or defects in tens of minutes. So, on a rendered corpus of
train-split clips with defects:

1. the vision encoder (tower + merger) learns what the renderer knows each clip shows (colours, shapes,
   count, action, scene, motion and quality defects) through throw-away heads on its pooled tokens
   (``vision_probe``);
2. the language model learns to describe clips, "Describe the video." -> ``describe()`` captions, with
   the generic SFT loop (``critic.sft.run_sft``).

Checked by captioning held-out-split clips and parsing the captions back, and by scoring every possible
defect clause (``caption_check``). It never sees the rating task: that is the critic's job, on HRA data.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.errors import VideoliftError
from videolift.core.files import refuse_file_as_dir
from videolift.core.jsonl import atomic_write, read_json, read_jsonl_dicts
from videolift.core.settings import recorded_changes
from videolift.models.tiny_vlm import TinyVLMConfig
from videolift.toy.caption_check import clause_table, quality_report
from videolift.toy.vision_probe import VisionProbe, attribute_targets, train_vision

REPORT = "pretrain_report.json"
VISION_LOG = "vision_log.jsonl"
CONFIG = "pretrain_config.json"
TRAINING = "training.json"  # written when both stages are done
TOY_VLM_CONFIG = "videolift_tiny.json"


@dataclass
class PretrainVLMConfig:
    """Model sizes, corpus and schedule. Defaults are what the committed ``toy/assets/vlm`` was built with."""

    # model: Qwen2-VL classes; 48x48 frames in 6x6 patches -> 4x4 tokens per 2-frame slice
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    vision_dim: int = 96
    vision_layers: int = 3
    vision_heads: int = 3
    patch_size: int = 6
    temporal_patch_size: int = 2
    frame_size: int = 48
    # Low rotary bases: with head_dim 32 and 10000, a 4x4 token grid rotates by < 0.1 rad, so attention
    # cannot tell where a video token is (the language model then never learns direction).
    rope_theta: float = 5.0
    vision_rope_theta: float = 10.0
    vocab_size: int = 1024
    num_frames: int = 9  # every frame of a toy clip (8 would drop the middle one and fake a skip)
    # data
    train_videos: int = 8000
    eval_videos: int = 200  # held-out-split clips captioned for the quality report
    defect_rate: float = 0.5
    # stage 1: the vision encoder (tower + merger) on the renderer's attributes of each clip
    vision_steps: int = 2500
    vision_batch_size: int = 32
    vision_lr: float = 2e-3
    # stage 2: captions (the language model; the encoder too with caption_tune_vision)
    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    caption_tune_vision: bool = False
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 1

    def model_config(self) -> TinyVLMConfig:
        """The model sizes (every field both configs share), the toy vocabulary and tokenizer text."""
        shared = {f.name: getattr(self, f.name) for f in fields(TinyVLMConfig) if hasattr(self, f.name)}
        return TinyVLMConfig(**shared, family="qwen2_vl", words=toy_words(), corpus=toy_texts(self.seed))


# ---- vocabulary ---------------------------------------------------------------------------------


def toy_words() -> list[str]:
    """Every word of the toy prompt grammar."""
    from videolift.toy import grammar

    words: set[str] = set()
    for spec in grammar.all_specs():
        words.update(spec.text.split())
    words.update(grammar.SCENE_NAMES.values())
    return sorted(w for phrase in words for w in phrase.split())


def toy_texts(seed: int = 0, n: int = 400) -> list[str]:
    """Text the tokenizer is trained on: captions of planned clips (both splits), every defect clause,
    the reason phrasings of the oracle and simulated raters, and the critic's questions."""
    from videolift.critic.prompts import DEFAULT_QUESTIONS, DESCRIBE_INSTRUCTION, ONE_PASS_QUESTION
    from videolift.toy.corpus import plan
    from videolift.toy.phrases import PHRASES

    texts = [item.record("")["caption"] for item in plan(n, defect_rate=0.7, seed=seed, split=None)]
    texts += list(clause_table())
    for variants in PHRASES.values():
        for options in variants.values():
            texts += [re.sub(r"\{\w+\}", " ", o) for o in options]
    texts += [*DEFAULT_QUESTIONS.values(), ONE_PASS_QUESTION, DESCRIBE_INSTRUCTION, "Good. Normal. Bad."]
    return texts


# ---- the pretraining run --------------------------------------------------------------------------


CORPUS_SETTINGS = "corpus_settings.json"  # in each split's folder: what its clips were rendered with


def render_split(
    out: Path,
    n: int,
    cfg: PretrainVLMConfig,
    split: str,
    seed: int,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Render ``n`` clips of a prompt split (once) and return their manifest records. A split kept from a
    run with other settings (seed, count, defect rate) is rendered again, not reused as this run's."""
    from videolift.toy.corpus import plan, write_corpus

    manifest, recorded = out / "manifest.jsonl", out / CORPUS_SETTINGS
    settings = {"split": split, "videos": n, "defect_rate": cfg.defect_rate, "seed": seed}
    differ = recorded_changes(recorded, settings)
    if manifest.exists() and differ == []:
        log(f"reusing the {n} {split}-split clips in {out}")
    else:
        if manifest.exists():
            why = "; ".join(differ) if differ else f"no {CORPUS_SETTINGS}"
            log(f"{out} holds clips of other settings ({why}): rendering them again")
        # Gone before the new clips replace the old: a kill between the two never leaves them described
        # by the old settings.
        recorded.unlink(missing_ok=True)
        log(f"rendering {n} {split}-split clips into {out}")
        old = sorted((out / "videos").glob("toy-*.mp4"))
        items = plan(n, defect_rate=cfg.defect_rate, seed=seed, split=split)
        write_corpus(items, out, progress=progress, remove=old)
        with atomic_write(recorded) as handle:
            handle.write(json.dumps(settings, indent=1) + "\n")
    records = read_jsonl_dicts(manifest)
    if len(records) != n:
        raise VideoliftError(f"{manifest}: holds {len(records)} clips, expected {n}; delete it to re-render")
    return records


def _sft_config(cfg: PretrainVLMConfig, steps: int):
    from videolift.critic.sft_config import SFTConfig

    return SFTConfig(
        adapter="full",
        tune_vision=cfg.caption_tune_vision,
        tune_projector=cfg.caption_tune_vision,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        max_steps=steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        save_every=0,
        num_frames=cfg.num_frames,
        max_answer_tokens=64,
    )


def _fit_budget(
    minutes: float,
    cfg: PretrainVLMConfig,
    probe: VisionProbe,
    frames,
    targets,
    examples,
    base: Path,
    work: Path,
) -> tuple[int, int]:
    """(vision, caption) updates that fit in ``minutes``, in the default proportion: a few real updates
    of each stage are timed first (the machine's speed varies). The probe's weights are restored."""
    import copy

    from videolift.critic.sft import run_sft
    from videolift.critic.sft_config import TRAIN_LOG

    state = copy.deepcopy((probe.visual.state_dict(), probe.head.state_dict()))
    started = time.time()
    train_vision(probe, frames, targets, cfg, 4, work / "probe_vision.jsonl", progress=False)
    per_vision = (time.time() - started) / 4
    probe.visual.load_state_dict(state[0])
    probe.head.load_state_dict(state[1])
    run_sft(examples, str(base), work / "probe", _sft_config(cfg, 6), overwrite=True, log=lambda _: None)
    log = [json.loads(line) for line in (work / "probe" / TRAIN_LOG).read_text().splitlines()]
    per_caption = (log[-1]["seconds"] - log[1]["seconds"]) / max(len(log) - 2, 1)  # the first one warms up
    shutil.rmtree(work / "probe", ignore_errors=True)
    scale = minutes * 60 / (cfg.vision_steps * per_vision + cfg.steps * per_caption)
    return max(1, int(cfg.vision_steps * scale)), max(1, int(cfg.steps * scale))


def _load_frames(root: Path, records: list[dict[str, Any]], num_frames: int) -> list[np.ndarray]:
    from videolift.core.video import sample_frames

    return [sample_frames(root / r["video"], num_frames) for r in records]


def pretrain_vlm(
    out: str | Path,
    cfg: PretrainVLMConfig | None = None,
    *,
    minutes: float | None = None,
    keep_corpus: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build, pretrain and check the toy VLM; ``out`` ends as a plain save_pretrained directory
    (model, processor, ``vision_log.jsonl`` + ``train_log.jsonl`` loss logs, ``pretrain_report.json``).

    Stage 1 trains the vision encoder on what the renderer knows each clip shows; stage 2 teaches the
    language model to describe clips ("Describe the video." -> caption, the generic SFT loop).
    ``minutes``: fit both stages to this time budget (measured on the spot) instead of the step counts.
    The corpus is rendered into ``out/corpus`` and removed at the end unless ``keep_corpus``. Rerun on
    an ``out`` whose training finished (``training.json``, same configuration), only the checks run.
    """
    import torch

    cfg = cfg or PretrainVLMConfig()
    out = Path(out)
    check_own_out(out)  # before the corpus is rendered into it
    torch.set_num_threads(cfg.threads)
    started = time.time()
    work = out / "corpus"
    heldout = render_split(work / "heldout", cfg.eval_videos, cfg, "heldout", cfg.seed + 1, progress, log)
    trained = _trained(out, cfg, minutes, log)
    if trained:
        # A run that stopped after training (e.g. killed while captioning) only needs its checks, and
        # no train-split clips.
        log(f"{out} already holds the trained model of this configuration: checking it")
        training = read_json(out / TRAINING)
    else:
        train = render_split(work / "train", cfg.train_videos, cfg, "train", cfg.seed, progress, log)
        training = _train(out, cfg, train, heldout, work, minutes, progress, log)
    log(f"captioning {len(heldout)} held-out-split clips")
    report = quality_report(out, work / "heldout", heldout, cfg.num_frames, progress) | training
    # This run's time, and the earlier run's training when it only checks (its own time holds this run's).
    spent = (time.time() - started) / 60
    report["total_minutes"] = round(spent + (training["train_minutes"] if trained else 0.0), 2)
    with atomic_write(out / REPORT) as handle:
        handle.write(json.dumps(report, indent=1) + "\n")
    if not keep_corpus:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(work / "init", ignore_errors=True)
    return report


def check_own_out(out: Path) -> None:
    """Refuse an OUT that is a file, or a directory holding something else than this command's run (one
    started renders its corpus first; one finished keeps its config): the caption stage clears the
    checkpoints, logs and model files of the run it replaces, so another run's would go."""
    refuse_file_as_dir(out)
    if out.is_dir() and any(out.iterdir()) and not ((out / CONFIG).is_file() or (out / "corpus").is_dir()):
        raise VideoliftError(
            f"--out {out}: not empty and not a toy VLM written by `videolift toy pretrain-vlm` (no {CONFIG} "
            "or corpus/); its model files and checkpoints would be replaced, so choose a new or empty directory"
        )


def _trained(out: Path, cfg: PretrainVLMConfig, minutes: float | None, log: Callable[[str], None]) -> bool:
    """Whether ``out`` holds a finished training of these settings and time budget (with another budget,
    or none, its updates were not the ones asked for now)."""
    if not (out / TRAINING).exists() or not (out / CONFIG).exists():
        return False
    ran = ("threads", "vision_steps_run", "steps_run")  # not settings: a rerun may use other threads
    differ = recorded_changes(out / CONFIG, asdict(cfg) | {"minutes": minutes}, ran)
    if differ:
        log(f"{out} holds a model trained with other settings ({'; '.join(differ)}): training again")
    return differ == []


def _train(
    out: Path,
    cfg: PretrainVLMConfig,
    train: list[dict[str, Any]],
    heldout: list[dict[str, Any]],
    work: Path,
    minutes: float | None,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Both stages; leaves the model in ``out`` and returns what the report says about training."""
    from videolift.critic.data import caption_examples
    from videolift.critic.sft import run_sft
    from videolift.models.tiny_vlm import build_tiny_vlm

    started = time.time()
    (out / TRAINING).unlink(missing_ok=True)
    base = work / "init"
    model, processor = build_tiny_vlm(base, cfg.model_config(), seed=cfg.seed)
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    log(f"tiny Qwen2-VL: {params:,} parameters ({vision:,} in the vision tower and projector)")
    probe = VisionProbe(model, processor, cfg.num_frames, cfg.seed)
    frames = _load_frames(work / "train", train, cfg.num_frames)
    targets = [attribute_targets(r, probe.classes) for r in train]
    examples = caption_examples((work / "train" / r["video"], r["caption"]) for r in train)
    vision_steps, caption_steps = cfg.vision_steps, cfg.steps
    if minutes is not None:
        vision_steps, caption_steps = _fit_budget(minutes, cfg, probe, frames, targets, examples, base, work)
        log(f"{minutes} min: {vision_steps} vision-encoder and {caption_steps} caption updates")

    vision_started = time.time()
    vision_loss = train_vision(probe, frames, targets, cfg, vision_steps, out / VISION_LOG, progress)
    vision_seconds = time.time() - vision_started
    held_frames = _load_frames(work / "heldout", heldout, cfg.num_frames)
    vision_accuracy = probe.accuracy(held_frames, [attribute_targets(r, probe.classes) for r in heldout])
    log(f"vision encoder: {vision_steps} updates, held-out probe accuracy {vision_accuracy}")
    model.save_pretrained(base)
    processor.save_pretrained(base)
    del frames

    sft = _sft_config(cfg, caption_steps)
    sft.extra = {"pretrain_vlm": asdict(cfg)}
    result = run_sft(examples, str(base), out, sft, overwrite=True, log=log, progress=progress)
    # The saved config names the random init as its base; the toy VLM is a base in its own right.
    shutil.copy(base / TOY_VLM_CONFIG, out / TOY_VLM_CONFIG)
    training = {
        "vision_probe": vision_accuracy,
        "parameters": params,
        "vision_parameters": vision,
        "vision_steps": vision_steps,
        "vision_final_loss": vision_loss,
        "vision_seconds": round(vision_seconds, 1),
        "steps": result.steps,
        "final_loss": result.final_loss,
        "train_seconds": round(result.seconds, 1),
        "train_minutes": round((time.time() - started) / 60, 2),
        "num_frames": cfg.num_frames,
    }
    with atomic_write(out / CONFIG) as handle:
        runs = {"minutes": minutes, "vision_steps_run": vision_steps, "steps_run": result.steps}
        handle.write(json.dumps(asdict(cfg) | runs, indent=1) + "\n")
    with atomic_write(out / TRAINING) as handle:  # written last: marks the training as complete
        handle.write(json.dumps(training, indent=1) + "\n")
    return training
