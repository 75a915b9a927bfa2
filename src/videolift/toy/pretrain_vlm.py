"""Pretrain the toy world's tiny base VLM (Qwen2-VL classes, built from a config) on describing toy videos.

Real VLMs learn to see from captioning before anyone fine-tunes them into critics; a tiny VLM trained
from scratch directly on Good/Normal/Bad never learns to compare the object's colour, shape or motion
with the prompt (docs/toy-world.md). So the toy VLM is first trained on "Describe the video." ->
``describe()`` captions (subjects, colours, shapes, action, scene and visible defects) of a rendered
corpus of train-split prompts, with the generic SFT loop (full fine-tuning, vision tower included),
then checked by captioning held-out-split clips and parsing the captions back. It never sees the
rating task: that is the critic's job, on HRA data.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.errors import VideoliftError
from videolift.core.jsonl import atomic_write, read_jsonl_dicts
from videolift.models.tiny_vlm import TinyVLMConfig

REPORT = "pretrain_report.json"
CONFIG = "pretrain_config.json"
TOY_VLM_CONFIG = "videolift_tiny.json"
ASSET = Path(__file__).parent / "assets" / "vlm"
WEAK = " only a little"
SUBJECT_FIELDS = ("colour", "shape")
SCALAR_FIELDS = ("count", "action", "scene", "weak")
DEFECT_DIMENSIONS = ("motion_smoothness", "video_fidelity")


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
    rope_theta: float = 10000.0
    vision_rope_theta: float = 10000.0
    vocab_size: int = 1024
    num_frames: int = 9  # every frame of a toy clip (8 would drop the middle one and fake a skip)
    # data
    train_videos: int = 4000
    eval_videos: int = 200  # held-out-split clips captioned for the quality report
    defect_rate: float = 0.5
    # schedule (full fine-tuning of everything, vision tower and projector included)
    steps: int = 5000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 1

    def model_config(self) -> TinyVLMConfig:
        return TinyVLMConfig(
            family="qwen2_vl",
            hidden=self.hidden,
            layers=self.layers,
            heads=self.heads,
            kv_heads=self.kv_heads,
            intermediate=self.intermediate,
            vision_dim=self.vision_dim,
            vision_layers=self.vision_layers,
            vision_heads=self.vision_heads,
            patch_size=self.patch_size,
            temporal_patch_size=self.temporal_patch_size,
            frame_size=self.frame_size,
            rope_theta=self.rope_theta,
            vision_rope_theta=self.vision_rope_theta,
            vocab_size=self.vocab_size,
            words=toy_words(),
            corpus=toy_texts(self.seed),
        )


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


# ---- captions and their parsing -------------------------------------------------------------------


def clause_table() -> dict[str, tuple[str, str, str]]:
    """Every motion/fidelity clause ``describe`` can write -> (dimension, kind, severity)."""
    from videolift.core.schema import Dimension
    from videolift.toy.defects import KINDS, Defect
    from videolift.toy.describe import describe
    from videolift.toy.grammar import SHAPES, PromptSpec, Subject

    table: dict[str, tuple[str, str, str]] = {}
    for shape in SHAPES:
        one, other = Subject("red", shape), Subject("blue", SHAPES[SHAPES.index(shape) - 1])
        for subjects in ((one,), (one, one), (one, other)):
            spec = PromptSpec(subjects, "left", "desert")
            for dim in (Dimension.motion_smoothness, Dimension.video_fidelity):
                for kind in KINDS[dim]:
                    for severity in ("mild", "strong"):
                        clause = describe(spec, [Defect(dim, kind, severity)]).split("; ", 1)[1]
                        table[clause] = (dim.value, kind, severity)
    return table


def caption_fields(caption: str, clauses: dict[str, tuple[str, str, str]]) -> dict[str, Any] | None:
    """What a caption says: subjects, count, action, scene, weak action and defect clauses per dimension.
    None when its first part is not a toy-grammar sentence."""
    from videolift.toy.grammar import parse_prompt

    head, *rest = [part.strip() for part in caption.strip().rstrip(".").split(";")]
    weak = WEAK in head
    try:
        spec = parse_prompt(head.replace(WEAK, ""))
    except ValueError:
        return None
    defects: dict[str, set[tuple[str, str]]] = {d: set() for d in DEFECT_DIMENSIONS}
    unknown = 0
    for clause in rest:
        if clause in clauses:
            dim, kind, severity = clauses[clause]
            defects[dim].add((kind, severity))
        else:
            unknown += 1
    return {
        "subjects": [(s.colour, s.shape) for s in spec.subjects],
        "count": spec.count,
        "action": spec.action,
        "scene": spec.scene,
        "weak": weak,
        "defects": defects,
        "unknown_clauses": unknown,
    }


_SEVERITY_LABEL = {"mild": "Normal", "strong": "Bad"}


def _defect_label(found: set[tuple[str, str]]) -> str:
    """The label a dimension's clauses imply: the worst severity, Good without any."""
    severities = {s for _, s in found}
    return "Bad" if "strong" in severities else ("Normal" if "mild" in severities else "Good")


def _subject_hits(truth: list[tuple[str, str]], got: list[tuple[str, str]], field: int) -> list[bool]:
    """Per true subject, whether the caption names its colour (field 0) or shape (1); subjects are
    compared in order or swapped, whichever matches more (the caption may list a pair either way)."""
    orders = [got, got[::-1]] if len(got) == 2 else [got]
    best: list[bool] = []
    for order in orders:
        hits = [i < len(order) and order[i][field] == t[field] for i, t in enumerate(truth)]
        if sum(hits) > sum(best) or not best:
            best = hits
    return best


def caption_accuracy(truths: list[str], generated: list[str]) -> dict[str, Any]:
    """Accuracy of generated captions against the true ones, field by field."""
    clauses = clause_table()
    hits: dict[str, list[bool]] = {k: [] for k in (*SUBJECT_FIELDS, *SCALAR_FIELDS, "exact", "parsed")}
    for dim in DEFECT_DIMENSIONS:
        hits[f"{dim}_clause"], hits[f"{dim}_label"] = [], []
    for truth_text, text in zip(truths, generated, strict=True):
        truth = caption_fields(truth_text, clauses)
        if truth is None:
            raise ValueError(f"true caption does not parse: {truth_text!r}")
        got = caption_fields(text, clauses)
        hits["parsed"].append(got is not None)
        hits["exact"].append(text.strip().rstrip(".") == truth_text)
        if got is None:
            got = {"subjects": [], "count": 0, "action": None, "scene": None, "weak": None}
            got["defects"] = {d: {("unparsed", "")} for d in DEFECT_DIMENSIONS}
        for f, field in enumerate(SUBJECT_FIELDS):
            hits[field] += _subject_hits(truth["subjects"], got["subjects"], f)
        for field in SCALAR_FIELDS:
            hits[field].append(truth[field] == got[field])
        for dim in DEFECT_DIMENSIONS:
            hits[f"{dim}_clause"].append(truth["defects"][dim] == got["defects"][dim])
            label = (
                _defect_label(got["defects"][dim]) if ("unparsed", "") not in got["defects"][dim] else None
            )
            hits[f"{dim}_label"].append(label == _defect_label(truth["defects"][dim]))
    return {k: round(float(np.mean(v)), 4) if v else None for k, v in hits.items()} | {"clips": len(truths)}


def chance_levels() -> dict[str, float]:
    """What guessing uniformly would score on the subject, action and scene fields."""
    from videolift.toy import grammar

    return {
        "colour": 1 / len(grammar.COLOURS),
        "shape": 1 / len(grammar.SHAPES),
        "action": 1 / len(grammar.ACTIONS),
        "scene": 1 / len(grammar.SCENES),
    }


def caption_clips(
    model_dir: str | Path,
    videos: list[Path],
    *,
    num_frames: int,
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy "Describe the video." answers of a VLM directory for video files."""
    from tqdm import tqdm

    from videolift.core.video import sample_frames
    from videolift.critic.collate import ChatCollator, Item
    from videolift.critic.prompts import DESCRIBE_INSTRUCTION
    from videolift.critic.score import generate_answers
    from videolift.models.vlm import get_family, load_vlm

    model, processor = load_vlm(model_dir)
    model.eval()
    eos = model.generation_config.eos_token_id
    collator = ChatCollator(
        processor, get_family(model.config.model_type), eos_token_ids=[eos] if isinstance(eos, int) else eos
    )
    out: list[str] = []
    chunks = range(0, len(videos), batch_size)
    for start in tqdm(chunks, desc="captioning", unit="batch", disable=not progress):
        items = [
            Item(sample_frames(v, num_frames), DESCRIBE_INSTRUCTION)
            for v in videos[start : start + batch_size]
        ]
        out += generate_answers(model, processor, collator, items, max_new_tokens=48)
    return out


# ---- the pretraining run --------------------------------------------------------------------------


def render_split(
    out: Path, n: int, cfg: PretrainVLMConfig, split: str, seed: int, progress: bool = True
) -> list[dict[str, Any]]:
    """Render ``n`` clips of a prompt split (once) and return their manifest records."""
    from videolift.toy.corpus import plan, write_corpus

    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        write_corpus(plan(n, defect_rate=cfg.defect_rate, seed=seed, split=split), out, progress=progress)
    records = read_jsonl_dicts(manifest)
    if len(records) != n:
        raise VideoliftError(f"{manifest}: holds {len(records)} clips, expected {n}; delete it to re-render")
    return records


def _sft_config(cfg: PretrainVLMConfig, steps: int):
    from videolift.critic.train import SFTConfig

    return SFTConfig(
        adapter="full",
        tune_vision=True,
        tune_projector=True,
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


def _steps_for(minutes: float, examples: list, base: Path, work: Path, cfg: PretrainVLMConfig) -> int:
    """Updates that fit in ``minutes``: time a few real updates first (the machine's speed varies)."""
    from videolift.critic.train import TRAIN_LOG, run_sft

    probe = 6
    run_sft(examples, str(base), work / "probe", _sft_config(cfg, probe), overwrite=True, log=lambda _: None)
    log = [json.loads(line) for line in (work / "probe" / TRAIN_LOG).read_text().splitlines()]
    per_step = (log[-1]["seconds"] - log[1]["seconds"]) / max(len(log) - 2, 1)  # the first update warms up
    shutil.rmtree(work / "probe", ignore_errors=True)
    return max(1, int(minutes * 60 / max(per_step, 1e-3)))


def pretrain_vlm(
    out: str | Path,
    cfg: PretrainVLMConfig | None = None,
    *,
    minutes: float | None = None,
    keep_corpus: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build, caption-pretrain and check the toy VLM; ``out`` ends as a plain save_pretrained directory
    (model, processor, ``train_log.jsonl``, ``pretrain_report.json``). Returns the report.

    ``minutes``: fit the number of updates to this time budget (measured on the spot) instead of
    ``cfg.steps``. The corpus is rendered into ``out/corpus`` and removed at the end unless ``keep_corpus``.
    """
    import torch

    from videolift.critic.data import caption_examples
    from videolift.critic.train import run_sft
    from videolift.models.tiny_vlm import build_tiny_vlm

    cfg = cfg or PretrainVLMConfig()
    out = Path(out)
    torch.set_num_threads(cfg.threads)
    started = time.time()
    work = out / "corpus"
    log(f"rendering {cfg.train_videos} train-split and {cfg.eval_videos} held-out-split clips into {work}")
    train = render_split(work / "train", cfg.train_videos, cfg, "train", cfg.seed, progress)
    heldout = render_split(work / "heldout", cfg.eval_videos, cfg, "heldout", cfg.seed + 1, progress)

    base = work / "init"
    model, _ = build_tiny_vlm(base, cfg.model_config(), seed=cfg.seed)
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    log(f"tiny Qwen2-VL: {params:,} parameters ({vision:,} in the vision tower and projector)")
    examples = caption_examples((work / "train" / r["video"], r["caption"]) for r in train)
    steps = cfg.steps if minutes is None else _steps_for(minutes, examples, base, work, cfg)
    sft = _sft_config(cfg, steps)
    sft.extra = {"pretrain_vlm": asdict(cfg)}
    result = run_sft(examples, str(base), out, sft, overwrite=True, log=log, progress=progress)
    # The saved config names the random init as its base; the toy VLM is a base in its own right.
    shutil.copy(base / TOY_VLM_CONFIG, out / TOY_VLM_CONFIG)

    log(f"captioning {len(heldout)} held-out-split clips")
    generated = caption_clips(
        out, [work / "heldout" / r["video"] for r in heldout], num_frames=cfg.num_frames, progress=progress
    )
    truths = [r["caption"] for r in heldout]
    report = {
        "heldout": caption_accuracy(truths, generated),
        "chance": chance_levels(),
        "majority": _majority(truths),
        "parameters": params,
        "vision_parameters": vision,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "train_seconds": round(result.seconds, 1),
        "total_minutes": round((time.time() - started) / 60, 2),
        "num_frames": cfg.num_frames,
        "examples": [{"truth": t, "generated": g} for t, g in list(zip(truths, generated, strict=True))[:12]],
    }
    with atomic_write(out / CONFIG) as handle:
        handle.write(
            json.dumps(asdict(cfg) | {"minutes": minutes, "steps_run": result.steps}, indent=1) + "\n"
        )
    with atomic_write(out / REPORT) as handle:
        handle.write(json.dumps(report, indent=1) + "\n")
    if not keep_corpus:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(base, ignore_errors=True)
    return report


def _majority(truths: list[str]) -> dict[str, float]:
    """Accuracy of always answering the most frequent value, per field, on the evaluated clips."""
    clauses = clause_table()
    fields = [caption_fields(t, clauses) for t in truths]
    out = {}
    for key in ("action", "scene", "count"):
        out[key] = Counter(f[key] for f in fields).most_common(1)[0][1] / len(fields)
    for dim in DEFECT_DIMENSIONS:
        labels = Counter(_defect_label(f["defects"][dim]) for f in fields)
        out[f"{dim}_label"] = labels.most_common(1)[0][1] / len(fields)
    return {k: round(v, 4) for k, v in out.items()}
