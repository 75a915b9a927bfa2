"""Checks of a toy VLM's captions: captions and their parsing, and the held-out quality report.

A toy VLM is checked by captioning held-out-split clips and parsing the captions back, and by scoring every
possible defect clause (``videolift.toy.pretrain_vlm`` runs these checks after pretraining).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

WEAK = " only a little"
SUBJECT_FIELDS = ("colour", "shape")
SCALAR_FIELDS = ("count", "action", "scene", "weak")
DEFECT_DIMENSIONS = ("motion_smoothness", "video_fidelity")


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
        spec = parse_prompt(head.replace(WEAK, ""), shown=True)
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
