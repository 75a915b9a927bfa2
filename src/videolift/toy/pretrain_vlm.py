"""Pretrain the toy world's tiny base VLM (Qwen2-VL classes, built from a config) to see toy videos.

Real VLMs can see before anyone fine-tunes them into critics: a pretrained vision encoder, then
captioning. A tiny Qwen2-VL trained from scratch directly on Good/Normal/Bad never learns to compare the
object's colour, shape or motion with the prompt (measured, STACK_NOTES), and one trained on captions alone
learns colour and scene but hardly shape or defects in tens of minutes. So, on a rendered corpus of
train-split clips with defects:

1. the vision encoder (tower + merger) learns what the renderer knows each clip shows (colours, shapes,
   count, action, scene, motion and quality defects) through throw-away heads on its pooled tokens;
2. the language model learns to describe clips, "Describe the video." -> ``describe()`` captions, with
   the generic SFT loop (``critic.train.run_sft``).

Checked by captioning held-out-split clips and parsing the captions back, and by scoring every possible
defect clause. It never sees the rating task: that is the critic's job, on HRA data.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.errors import VideoliftError
from videolift.core.jsonl import atomic_write, read_jsonl_dicts
from videolift.models.tiny_vlm import TinyVLMConfig

REPORT = "pretrain_report.json"
VISION_LOG = "vision_log.jsonl"
CONFIG = "pretrain_config.json"
TRAINING = "training.json"  # written when both stages are done
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
    from videolift.critic.descriptions import describe_files, load_describer
    from videolift.critic.prompts import DESCRIBE_INSTRUCTION

    model, processor, collator = load_describer(model_dir)
    return describe_files(
        model,
        processor,
        collator,
        videos,
        num_frames=num_frames,
        instruction=DESCRIBE_INSTRUCTION,
        max_new_tokens=48,
        batch_size=batch_size,
        progress=progress,
        desc="captioning",
    )


def clause_options(caption: str, dimension: str) -> dict[tuple[str, str] | None, str]:
    """Every version of a true caption with ``dimension``'s clause replaced: None (no defect) or
    (kind, severity) -> the caption as ``describe`` would write it."""
    from videolift.core.schema import Dimension
    from videolift.toy.defects import KINDS, Defect
    from videolift.toy.describe import describe
    from videolift.toy.grammar import PromptSpec, Subject

    clauses = clause_table()
    fields = caption_fields(caption, clauses)
    if fields is None:
        raise ValueError(f"not a toy caption: {caption!r}")
    head, *rest = caption.split("; ")
    kept = {d: [c for c in rest if clauses[c][0] == d] for d in DEFECT_DIMENSIONS}
    spec = PromptSpec(tuple(Subject(c, s) for c, s in fields["subjects"]), fields["action"], fields["scene"])
    dim = Dimension(dimension)
    out: dict[tuple[str, str] | None, str] = {}
    for option in [None, *((k, sev) for k in KINDS[dim] for sev in ("mild", "strong"))]:
        swap = [] if option is None else [describe(spec, [Defect(dim, *option)]).split("; ", 1)[1]]
        parts = {d: (swap if d == dimension else kept[d]) for d in DEFECT_DIMENSIONS}
        out[option] = "; ".join([head, *parts["motion_smoothness"], *parts["video_fidelity"]])
    return out


def _answer_logprob(model: Any, batch: dict[str, Any]):
    """Summed log-probability of each row's answer (and end of turn) under the model."""
    import torch

    from videolift.critic.collate import IGNORE

    inputs = dict(batch)
    labels = inputs.pop("labels")
    inputs.pop("weights")
    keep = int((labels != IGNORE).sum(dim=1).max()) + 1
    with torch.inference_mode():
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits[:, -keep:-1].float()
    target = labels[:, -keep + 1 :]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp_min(0)[..., None])[..., 0]
    return (logp * (target != IGNORE)).sum(dim=1)


def defect_recognition(
    model_dir: str | Path,
    clips: list[tuple[Path, str]],
    *,
    num_frames: int,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Any]:
    """Does the VLM see motion and quality defects? Per clip and dimension, the true caption with that
    dimension's clause swapped for every possible one (or none) is scored, and the most likely version
    is the model's reading. Greedy captions understate this: their first clause is a motion one, so a
    model unsure about motion masks what it sees of quality."""
    from tqdm import tqdm

    from videolift.core.video import sample_frames
    from videolift.critic.collate import Item
    from videolift.critic.descriptions import load_describer
    from videolift.critic.prompts import DESCRIBE_INSTRUCTION

    model, _, collator = load_describer(model_dir)
    hits: dict[str, dict[str, list[bool]]] = {d: {"label": [], "clause": []} for d in DEFECT_DIMENSIONS}
    truth_labels: dict[str, list[str]] = {d: [] for d in DEFECT_DIMENSIONS}
    clauses = clause_table()
    for video, caption in tqdm(clips, desc="defect recognition", unit="clip", disable=not progress):
        frames = sample_frames(video, num_frames)
        truth = caption_fields(caption, clauses)
        for dim in DEFECT_DIMENSIONS:
            options = clause_options(caption, dim)
            keys = list(options)
            scores = []
            for start in range(0, len(keys), batch_size):
                chunk = keys[start : start + batch_size]
                batch = collator([Item(frames, DESCRIBE_INSTRUCTION, options[k]) for k in chunk])
                scores += _answer_logprob(model, batch).tolist()
            best = keys[int(np.argmax(scores))]
            found = set() if best is None else {best}
            want = truth["defects"][dim]
            hits[dim]["clause"].append(found == want)
            hits[dim]["label"].append(_defect_label(found) == _defect_label(want))
            truth_labels[dim].append(_defect_label(want))
    out: dict[str, Any] = {}
    for dim in DEFECT_DIMENSIONS:
        majority = Counter(truth_labels[dim]).most_common(1)[0][1] / max(len(clips), 1)
        out[dim] = {
            "label_accuracy": round(float(np.mean(hits[dim]["label"])), 4),
            "clause_accuracy": round(float(np.mean(hits[dim]["clause"])), 4),
            "majority_label": round(majority, 4),
        }
    return out


# ---- stage 1: the vision encoder --------------------------------------------------------------------

# What the vision encoder learns to tell apart, from pooled tower outputs (the tokens the LM will read).
# Colours and shapes are multi-hot (which are present); the rest one class per clip.
MULTI_HOT = ("colours", "shapes")


def attribute_classes() -> dict[str, list[str]]:
    from videolift.core.schema import Dimension
    from videolift.toy import grammar
    from videolift.toy.defects import KINDS

    def defects(dim: Dimension) -> list[str]:
        return ["none"] + [f"{k} {sev}" for k in KINDS[dim] for sev in ("mild", "strong")]

    return {
        "colours": list(grammar.COLOURS),
        "shapes": list(grammar.SHAPES),
        "count": ["1", "2"],
        "action": list(grammar.ACTIONS),
        "weak": ["no", "yes"],
        "scene": list(grammar.SCENES),
        "motion": defects(Dimension.motion_smoothness),
        "fidelity": defects(Dimension.video_fidelity),
    }


def attribute_targets(record: dict[str, Any], classes: dict[str, list[str]]) -> list[np.ndarray]:
    """Per task, the target of one manifest record: what the clip shows (after its defects)."""
    from videolift.toy.grammar import parse_prompt

    shown = parse_prompt(record["shown"])
    found = {d["dimension"]: f"{d['kind']} {d['severity']}" for d in record["defects"]}
    values = {
        "colours": {s.colour for s in shown.subjects},
        "shapes": {s.shape for s in shown.subjects},
        "count": str(shown.count),
        "action": shown.action,
        "weak": "yes" if any(d["kind"] == "weak_action" for d in record["defects"]) else "no",
        "scene": shown.scene,
        "motion": found.get("motion_smoothness", "none"),
        "fidelity": found.get("video_fidelity", "none"),
    }
    out = []
    for task, names in classes.items():
        if task in MULTI_HOT:
            out.append(np.array([name in values[task] for name in names], dtype=np.float32))
        else:
            out.append(np.array(names.index(values[task])))
    return out


class VisionProbe:
    """Heads on the vision tower's output tokens, mean- and max-pooled per time slice: a training signal
    for the encoder alone, the analogue of the contrastive/supervised pretraining of real VLM encoders.
    Pooling hides where a token is, so the encoder must put what it sees into the tokens themselves."""

    def __init__(self, model: Any, processor: Any, num_frames: int, seed: int) -> None:
        import torch

        self.model, self.processor = model, processor
        self.visual = model.model.visual
        self.classes = attribute_classes()
        self.sizes = [len(v) for v in self.classes.values()]
        vision = model.config.vision_config
        self.slices = -(-num_frames // vision.temporal_patch_size)
        self.dim = model.config.text_config.hidden_size
        torch.manual_seed(seed)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(2 * self.dim * self.slices, 256),
            torch.nn.GELU(),
            torch.nn.Linear(256, sum(self.sizes)),
        )

    def logits(self, frames: list[np.ndarray]):
        import torch

        inputs = self.processor.video_processor(videos=frames, return_tensors="pt", do_sample_frames=False)
        out = self.visual(inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"])
        tokens = getattr(out, "pooler_output", out)  # merged tokens, as the language model gets them
        tokens = tokens.reshape(len(frames), self.slices, -1, self.dim)
        pooled = torch.cat([tokens.mean(dim=2), tokens.amax(dim=2)], dim=-1).flatten(1)
        return self.head(pooled).split(self.sizes, dim=-1)

    def loss(self, frames: list[np.ndarray], targets: list[list[np.ndarray]]):
        import torch

        total, parts = 0.0, {}
        for task, logits, target in zip(
            self.classes, self.logits(frames), zip(*targets, strict=True), strict=True
        ):
            y = torch.from_numpy(np.stack(target))
            if task in MULTI_HOT:
                part = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            else:
                part = torch.nn.functional.cross_entropy(logits, y)
            parts[task] = float(part.detach())
            total = total + part
        return total, parts

    def accuracy(
        self, frames: list[np.ndarray], targets: list[list[np.ndarray]], batch: int = 50
    ) -> dict[str, float]:
        """Per task, the share of clips read exactly (multi-hot: every colour/shape present and no other)."""
        import torch

        hits = {task: 0 for task in self.classes}
        with torch.inference_mode():
            for start in range(0, len(frames), batch):
                chunk = targets[start : start + batch]
                for task, logits, target in zip(
                    self.classes,
                    self.logits(frames[start : start + batch]),
                    zip(*chunk, strict=True),
                    strict=True,
                ):
                    y = np.stack(target)
                    pred = (logits > 0).numpy() if task in MULTI_HOT else logits.argmax(dim=-1).numpy()
                    hits[task] += int(
                        (pred == y).all(axis=-1).sum() if task in MULTI_HOT else (pred == y).sum()
                    )
        return {task: round(n / max(len(frames), 1), 4) for task, n in hits.items()}


def train_vision(
    probe: VisionProbe,
    frames: list[np.ndarray],
    targets: list[list[np.ndarray]],
    cfg: PretrainVLMConfig,
    steps: int,
    log_path: Path,
    progress: bool,
) -> float | None:
    """AdamW one-cycle on the tower (merger included) and the probe heads; logs every 10 updates."""
    import torch
    from tqdm import tqdm

    params = [*probe.visual.parameters(), *probe.head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.vision_lr, total_steps=max(steps, 2), pct_start=0.05
    )
    rng = np.random.default_rng([cfg.seed, 3])
    probe.visual.train()
    started, last = time.time(), None
    log_path.unlink(missing_ok=True)
    bar = tqdm(range(steps), desc="vision encoder", unit="update", disable=not progress)
    for step in bar:
        idx = rng.choice(len(frames), min(cfg.vision_batch_size, len(frames)), replace=False)
        loss, parts = probe.loss([frames[i] for i in idx], [targets[i] for i in idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        last = float(loss.detach())
        bar.set_postfix(loss=f"{last:.3f}", refresh=False)
        if step % 10 == 0 or step == steps - 1:
            record = {"step": step + 1, "loss": round(last, 5), **{k: round(v, 5) for k, v in parts.items()}}
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record | {"seconds": round(time.time() - started, 2)}) + "\n")
    probe.visual.eval()
    return last


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

    from videolift.critic.train import TRAIN_LOG, run_sft

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
    torch.set_num_threads(cfg.threads)
    started = time.time()
    work = out / "corpus"
    log(f"rendering {cfg.train_videos} train-split and {cfg.eval_videos} held-out-split clips into {work}")
    train = render_split(work / "train", cfg.train_videos, cfg, "train", cfg.seed, progress)
    heldout = render_split(work / "heldout", cfg.eval_videos, cfg, "heldout", cfg.seed + 1, progress)
    if _trained(out, cfg):
        # A run that stopped after training (e.g. killed while captioning) only needs its checks.
        log(f"{out} already holds the trained model of this configuration: checking it")
        training = json.loads((out / TRAINING).read_text())
    else:
        training = _train(out, cfg, train, heldout, work, minutes, progress, log)
    log(f"captioning {len(heldout)} held-out-split clips")
    report = quality_report(out, work / "heldout", heldout, cfg.num_frames, progress) | training
    report["total_minutes"] = round(training["train_minutes"] + (time.time() - started) / 60, 2)
    with atomic_write(out / REPORT) as handle:
        handle.write(json.dumps(report, indent=1) + "\n")
    if not keep_corpus:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(work / "init", ignore_errors=True)
    return report


def _trained(out: Path, cfg: PretrainVLMConfig) -> bool:
    if not (out / TRAINING).exists() or not (out / CONFIG).exists():
        return False
    saved = json.loads((out / CONFIG).read_text())
    return all(saved.get(k) == v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k != "threads")


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
    from videolift.critic.train import run_sft
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


def quality_report(
    model_dir: Path, clips_dir: Path, records: list[dict[str, Any]], num_frames: int, progress: bool = False
) -> dict[str, Any]:
    """Held-out checks of a toy VLM: greedy captions parsed field by field, and defect recognition."""
    clips = [(clips_dir / r["video"], r["caption"]) for r in records]
    generated = caption_clips(model_dir, [c for c, _ in clips], num_frames=num_frames, progress=progress)
    truths = [r["caption"] for r in records]
    return {
        "heldout": caption_accuracy(truths, generated),
        "defects": defect_recognition(model_dir, clips, num_frames=num_frames, progress=progress),
        "chance": chance_levels(),
        "majority": _majority(truths),
        "examples": [{"truth": t, "generated": g} for t, g in list(zip(truths, generated, strict=True))[:12]],
    }


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
