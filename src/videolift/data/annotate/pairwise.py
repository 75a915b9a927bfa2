"""Pairwise human study: pair two models' videos of the same prompt, count wins, ties and losses.

Pairs are matched on (prompt, seed) when every record of both manifests has a ``seed``, else on the
prompt alone (the k-th video of a prompt in A with the k-th in B). Each pair is shown in a random
order, recorded per task, so results are always reported for model A against model B.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from videolift.core.errors import UsageError, VideoliftError
from videolift.core.schema import DIMENSIONS
from videolift.data.annotate.models import Pair, Task
from videolift.data.annotate.project import clean_name
from videolift.data.annotate.videos import add_videos, read_manifest

Match = Literal["auto", "prompt", "prompt+seed"]
MODEL_NAME = 200  # characters: Pair.model_a's and model_b's columns


def _keys(entries: list, by_seed: bool) -> dict[tuple, int]:
    """Matching key -> index into entries; repeated prompts are numbered by occurrence."""
    out, seen = {}, defaultdict(int)
    for i, (_line, entry, _file) in enumerate(entries):
        base = (entry.prompt, str(entry.fields.get("seed"))) if by_seed else (entry.prompt,)
        out[base + (seen[base],)] = i
        seen[base] += 1
    return out


def create_pairs(
    session: Session,
    root: Path,
    manifest_a: str | Path,
    manifest_b: str | Path,
    *,
    name_a: str,
    name_b: str,
    match: Match = "auto",
    base_a: str = "",
    base_b: str = "",
    allow_unplayable: bool = False,
) -> dict[str, Any]:
    """Add the matched pairs; returns counts of created, already present and unmatched records.
    ``base_a``/``base_b``: subdirectories of the root the manifests' paths are relative to."""
    name_a, name_b = (clean_name(name, "a model name", MODEL_NAME) for name in (name_a, name_b))
    if name_a == name_b:  # given so, or both defaults: --name-a/--name-b tell them apart
        raise UsageError(f"the two models need different names (both are {name_a!r}); use --name-a/--name-b")
    entries_a, entries_b = read_manifest(manifest_a, root, base_a), read_manifest(manifest_b, root, base_b)
    if match == "auto":
        has_seed = all("seed" in e.fields for _, e, _ in entries_a + entries_b)
        match = "prompt+seed" if has_seed else "prompt"
    keys_a, keys_b = _keys(entries_a, match == "prompt+seed"), _keys(entries_b, match == "prompt+seed")
    common = [k for k in keys_a if k in keys_b]
    if not common:
        raise VideoliftError(f"no record of {manifest_a} matches one of {manifest_b} by {match}")
    videos_a = add_videos(session, manifest_a, entries_a, rate=False, allow_unplayable=allow_unplayable)
    videos_b = add_videos(session, manifest_b, entries_b, rate=False, allow_unplayable=allow_unplayable)
    position = session.scalar(select(func.max(Pair.position))) or 0
    created = present = 0
    for key in common:
        va, vb = videos_a[keys_a[key]], videos_b[keys_b[key]]
        if va.id == vb.id:
            raise VideoliftError(f"{va.video} appears in both manifests: a pair needs two different videos")
        if session.scalar(select(Pair.id).where(Pair.video_a_id == va.id, Pair.video_b_id == vb.id)):
            present += 1
            continue
        position += 1
        session.add(
            Pair(
                model_a=name_a,
                model_b=name_b,
                video_a_id=va.id,
                video_b_id=vb.id,
                prompt=va.prompt,
                position=position,
            )
        )
        created += 1
    return {
        "match": match,
        "created": created,
        "already_present": present,
        "unmatched_a": len(keys_a) - len(common),
        "unmatched_b": len(keys_b) - len(common),
    }


def _rates(counts: dict[str, int]) -> dict[str, Any]:
    n = sum(counts.values())
    return counts | {f"{k}_rate": (v / n if n else None) for k, v in list(counts.items())}


def pair_results(session: Session) -> dict[str, Any]:
    """Per comparison (model A vs model B): win / tie / loss of A per dimension, plus every judgement,
    and every skip with its reason (who skipped which pair, and why)."""
    tasks = session.scalars(
        select(Task).where(Task.pair_id.is_not(None), Task.status == "done").order_by(Task.id)
    )
    counts: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    judged: dict[tuple[str, str], set[int]] = defaultdict(set)
    judgements = []
    for task in tasks:
        pair, choices = task.pair, task.annotation.result
        comparison = (pair.model_a, pair.model_b)
        per_dim = counts.setdefault(
            comparison, {d.value: {"win": 0, "tie": 0, "loss": 0} for d in DIMENSIONS}
        )
        judged[comparison].add(pair.id)
        by_model = {}
        for dim, choice in choices.items():
            if choice == "tie":
                outcome, winner = "tie", "tie"
            else:
                a_won = (choice == "A") != task.swapped  # displayed left is B when swapped
                outcome, winner = ("win", pair.model_a) if a_won else ("loss", pair.model_b)
            per_dim[dim][outcome] += 1
            by_model[dim] = winner
        judgements.append(
            {
                "pair_id": pair.id,
                "prompt": pair.prompt,
                "annotator": task.annotator.name,
                "video_a": pair.video_a.video,
                "video_b": pair.video_b.video,
                "shown_left": pair.model_b if task.swapped else pair.model_a,
                "winner": by_model,
                "comment": task.annotation.comment,
            }
        )
    comparisons = []
    for (model_a, model_b), per_dim in counts.items():
        comparisons.append(
            {
                "model_a": model_a,
                "model_b": model_b,
                "pairs_judged": len(judged[(model_a, model_b)]),
                "judgements": sum(per_dim[DIMENSIONS[0].value].values()),
                "dimensions": {dim: _rates(c) for dim, c in per_dim.items()},
            }
        )
    return {"comparisons": comparisons, "judgements": judgements, "skipped": pair_skips(session)}


def pair_skips(session: Session) -> list[dict[str, Any]]:
    """Every skipped pair task, oldest first: ``{pair_id, prompt, model_a, model_b, video_a, video_b,
    annotator, reason}``. A skip needs a reason ("Video does not play", "Offensive content"): a flag the
    admin must see, or a broken or offensive pair goes on being handed out with nobody told."""
    tasks = session.scalars(
        select(Task).where(Task.pair_id.is_not(None), Task.status == "skipped").order_by(Task.id)
    )
    return [
        {
            "pair_id": task.pair.id,
            "prompt": task.pair.prompt,
            "model_a": task.pair.model_a,
            "model_b": task.pair.model_b,
            "video_a": task.pair.video_a.video,
            "video_b": task.pair.video_b.video,
            "annotator": task.annotator.name,
            "reason": task.skip_reason,
        }
        for task in tasks
    ]
