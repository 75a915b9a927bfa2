"""Critic accuracy against reference labels: per-dimension accuracy, macro-F1, confusion matrix, and
ties-aware pairwise accuracy over pairs of videos.

Unparsed answers are wrong predictions, never a label: they lower accuracy and recall, and appear as
their own "unparsed" column in the confusion matrix. A record whose video is missing or does not open is
refused before scoring (accuracy over a silently smaller set would mislead); a video that opens but
fails to decode while scoring counts as unparsed and is named in the report's ``unreadable``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError
from videolift.core.jsonl import iter_json_lines, text_field
from videolift.core.reward import RewardConfig
from videolift.core.schema import DIMENSIONS, LABEL_RANK, LABELS, Dimension, Label, parse_dimension
from videolift.core.stats import mean_and_cluster_se
from videolift.critic.data import EvalItem

UNPARSED = "unparsed"


def label_metrics(
    truth: Sequence[Label], pred: Sequence[Label | None], clusters: Sequence[Hashable] | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1 (over labels seen in truth or predictions), per-label precision/recall/F1,
    confusion matrix ``{true: {predicted | "unparsed": count}}`` and the majority-class baseline. The
    accuracy's standard error is clustered by ``clusters`` (each video's prompt: the critic's answers on
    videos of one prompt are not independent); None: every video on its own."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} reference labels but {len(pred)} predictions")
    n = len(truth)
    confusion = {t.value: {**{p.value: 0 for p in LABELS}, UNPARSED: 0} for t in LABELS}
    for t, p in zip(truth, pred, strict=True):
        confusion[t.value][UNPARSED if p is None else p.value] += 1
    per_label, f1s = {}, []
    seen = set(truth) | {p for p in pred if p is not None}
    for label in LABELS:
        tp = confusion[label.value][label.value]
        predicted = sum(row[label.value] for row in confusion.values())
        actual = sum(confusion[label.value].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label.value] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
        if label in seen:
            f1s.append(f1)
    counts = Counter(truth)
    majority = max(LABELS, key=lambda lab: (counts[lab], -LABEL_RANK[lab]))
    correct = [float(t == p) for t, p in zip(truth, pred, strict=True)]
    accuracy, accuracy_se = mean_and_cluster_se(correct, clusters)
    return {
        "n": n,
        "accuracy": accuracy,
        "accuracy_se": accuracy_se,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "unparsed": sum(p is None for p in pred),
        "majority_label": majority.value if n else None,
        "majority_baseline": counts[majority] / n if n else None,
        "per_label": per_label,
        "confusion": confusion,
    }


def _mean_accuracy_se(
    items: Sequence[EvalItem], predicted: dict[str, dict[Dimension, Label | None]], dims: dict[str, Any]
) -> float | None:
    """The standard error of the mean over dimensions of their accuracies, clustered by prompt.

    A video's dimensions are not independent (a critic that misreads a clip tends to miss more than one),
    nor are videos of one prompt: each video contributes its deviations from each dimension's accuracy
    (its influence on the mean), summed per prompt. When every video has a label on every dimension the
    contribution is the video's share of correct dimensions less the mean; a video rated on some
    dimensions only weighs in each of those as its dimension's accuracy counts it."""
    scored = [it for it in items if it.labels]
    if not scored or not dims:
        return None
    scale = len(scored) / len(dims)  # contributions on the scale of a per-video mean (they sum to 0)
    contributions = [
        scale
        * sum(
            (float(predicted[it.video_id][d] == lab) - dims[d.value]["accuracy"]) / dims[d.value]["n"]
            for d, lab in it.labels.items()
        )
        for it in scored
    ]
    return mean_and_cluster_se(contributions, [it.prompt for it in scored])[1]


def _sign(x: float, eps: float = 1e-9) -> int:
    return 0 if abs(x) <= eps else (1 if x > 0 else -1)


def pairwise_accuracy(pairs: Sequence[tuple[float, float, float | None, float | None]]) -> dict[str, Any]:
    """Agreement on which of two videos is better, from (ref_a, ref_b, critic_a, critic_b) values.

    ``ties_aware_accuracy``: a pair counts when the critic's preference (a, b or tie) equals the
    reference's, ties included, so a critic cannot gain by never calling ties or by always calling
    them. ``decisive_accuracy``: over pairs the reference prefers one side, the critic must prefer the
    same side. A missing critic value (unparsed) is a disagreement.
    """
    n = len(pairs)
    agree = decisive = decisive_agree = ties = 0
    for ra, rb, ca, cb in pairs:
        ref = _sign(ra - rb)
        crit = None if ca is None or cb is None else _sign(ca - cb)
        agree += crit == ref
        ties += ref == 0
        if ref != 0:
            decisive += 1
            decisive_agree += crit == ref
    return {
        "pairs": n,
        "reference_ties": ties,
        "ties_aware_accuracy": agree / n if n else None,
        "decisive_accuracy": decisive_agree / decisive if decisive else None,
    }


def _rank(label: Label | str | None) -> float | None:
    return None if label is None else float(LABEL_RANK[Label(label)])


def _predicted(lines: dict[str, dict[str, Any]], key: str) -> dict[Dimension, Label | None]:
    ratings = lines.get(key, {}).get("ratings", {})
    return {
        d: (Label(ratings[d.value]["label"]) if ratings.get(d.value, {}).get("label") else None)
        for d in DIMENSIONS
    }


def read_pairs(path: str) -> list[dict[str, Any]]:
    """Human pairwise judgements: lines ``{"a": id, "b": id, "winner": "a"|"b"|"tie", "dimension": opt}``
    (no dimension, or "overall": compared by reward)."""
    out = []
    for line, obj in iter_json_lines(path):
        for key in ("a", "b"):  # "missing or empty", or a number that is no id ("expected a string")
            text_field(obj, key, Path(path), line)
        if obj["a"] == obj["b"]:
            raise DataError(f"a video judged against itself ({obj['a']!r})", file=path, line=line, field="b")
        if obj.get("winner") not in ("a", "b", "tie"):
            raise DataError("winner must be 'a', 'b' or 'tie'", file=path, line=line, field="winner")
        dim = obj.get("dimension") or "overall"
        if dim != "overall":
            try:
                dim = parse_dimension(dim)
            except ValueError as exc:
                raise DataError(str(exc), file=path, line=line, field="dimension") from None
        out.append(
            {
                "a": obj["a"],
                "b": obj["b"],
                "winner": obj["winner"],
                "dimension": dim,
                "file": path,
                "line": line,
            }
        )
    if not out:  # a pairwise accuracy of no pairs would read as "not measured" without saying why
        raise DataError("no pairwise judgements in the file (--pairs)", file=path)
    return out


def check_pairs(
    pairs: list[dict[str, Any]], known: set[str], dimensions: list[Dimension] | None = None
) -> None:
    """Every judged pair names evaluated videos and, if ``dimensions`` is given, one of them (or the
    overall reward): known before anything is scored."""
    for p in pairs:
        where = {"file": p.get("file"), "line": p["line"]}
        for side in ("a", "b"):
            if p[side] not in known:
                raise DataError(f"video {p[side]!r} is not in the evaluated data", **where, field=side)
        if dimensions is not None and p["dimension"] not in ("overall", *dimensions):
            rated = ", ".join(d.value for d in dimensions)
            raise DataError(f"the critic rates only {rated}", **where, field="dimension")


def evaluate_predictions(
    items: list[EvalItem],
    lines: dict[str, dict[str, Any]],
    *,
    reward: RewardConfig | None = None,
    pairs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The full report: per-dimension metrics, means, and pairwise accuracy (same-prompt pairs of the
    reference data, and ``pairs`` from a human pairwise study if given). ``lines`` are score lines
    by video id."""
    reward = reward or RewardConfig()
    predicted = {it.video_id: _predicted(lines, it.video_id) for it in items}
    dims: dict[str, Any] = {}
    for dim in DIMENSIONS:
        rated = [it for it in items if dim in it.labels]
        if rated:
            dims[dim.value] = label_metrics(
                [it.labels[dim] for it in rated],
                [predicted[it.video_id][dim] for it in rated],
                [it.prompt for it in rated],
            )
    accs = [m["accuracy"] for m in dims.values()]
    f1s = [m["macro_f1"] for m in dims.values() if m["macro_f1"] is not None]
    report: dict[str, Any] = {
        "videos": len(items),
        "errors": sum("error" in lines.get(it.video_id, {}) for it in items),
        "dimensions": dims,
        "mean_accuracy": sum(accs) / len(accs) if accs else None,
        "mean_accuracy_se": _mean_accuracy_se(items, predicted, dims),
        "mean_macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "mean_majority_baseline": (
            sum(m["majority_baseline"] for m in dims.values()) / len(dims) if dims else None
        ),
    }

    def critic_reward(key: str) -> float | None:
        return lines.get(key, {}).get("reward")

    # Same-prompt pairs of the reference data: per dimension by label, overall by reward.
    by_prompt: dict[str, list[EvalItem]] = defaultdict(list)
    for it in items:
        by_prompt[it.prompt].append(it)
    same_prompt: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for group in by_prompt.values():
        for a, b in itertools.combinations(group, 2):
            for dim in DIMENSIONS:
                if dim in a.labels and dim in b.labels:
                    pa, pb = predicted[a.video_id][dim], predicted[b.video_id][dim]
                    same_prompt[dim.value].append(
                        (_rank(a.labels[dim]), _rank(b.labels[dim]), _rank(pa), _rank(pb))
                    )
            if a.labels and b.labels:
                same_prompt["overall"].append(
                    (
                        reward.aggregate(a.labels),
                        reward.aggregate(b.labels),
                        critic_reward(a.video_id),
                        critic_reward(b.video_id),
                    )
                )
    if same_prompt:
        report["pairwise_same_prompt"] = {k: pairwise_accuracy(v) for k, v in same_prompt.items()}
    if pairs:
        check_pairs(pairs, {it.video_id for it in items} | set(lines))
        judged: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for p in pairs:
            ref = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.0, 0.0)}[p["winner"]]
            if p["dimension"] == "overall":
                crit = (critic_reward(p["a"]), critic_reward(p["b"]))
            else:
                crit = (
                    _rank(_predicted(lines, p["a"])[p["dimension"]]),
                    _rank(_predicted(lines, p["b"])[p["dimension"]]),
                )
            judged[str(p["dimension"])].append((*ref, *crit))
        report["pairwise_judged"] = {k: pairwise_accuracy(v) for k, v in judged.items()}
    return report


@dataclass
class EvalData:
    """Held-out records read and checked for a critic's dimensions, before the critic loads."""

    data: Path
    videos: Path
    records: list[tuple[int, Any]]  # (line, record)
    items: list[EvalItem]  # one per video, its majority labels on the critic's dimensions
    dimensions: list[Dimension]
    pairs: list[dict[str, Any]] | None
    replaced: int = 0  # raters' records of adjudicated videos left out (``prefer_reviews``)


def read_eval_data(
    data: str | Path, videos: str | Path, dimensions: Sequence[Dimension], pairs: str | Path | None = None
) -> EvalData:
    """The held-out HRA records of ``data`` and the human ``pairs``, checked for a critic rating
    ``dimensions``: every video there and opening, one id a video, every pair of evaluated videos. Cheap,
    so ``critic eval`` reads them before its (possibly minutes-long) model load."""
    from videolift.critic.data import check_videos, majority_items
    from videolift.data.hra_file import read_hra_lines
    from videolift.data.stats import check_one_video_per_id, prefer_reviews

    data, videos = Path(data), Path(videos)
    # An adjudicated video is judged by its review, not by a majority the review overruled
    records, replaced = prefer_reviews(read_hra_lines(data))
    check_videos(
        records,
        videos,
        file=data,
        action="fix or remove those records (accuracy over the rest would not be comparable)",
    )
    check_one_video_per_id(records, data)
    # `critic score` takes a video once (core.manifest): refused here, not by the temporary manifest's name.
    first: dict[str, tuple[int, str]] = {}
    for line, record in records:
        seen_line, seen_id = first.setdefault(record.video, (line, record.video_id))
        if seen_id != record.video_id:
            raise DataError(
                f"video {record.video!r} is video id {seen_id!r} on line {seen_line}; one video, one id",
                file=data,
                line=line,
                field="video_id",
            )
    # Only the dimensions the critic rates (`critic train --dimensions`): the others would count as wrong.
    rated = list(dimensions)
    items = [
        replace(it, labels={d: lab for d, lab in it.labels.items() if d in rated})
        for it in majority_items([record for _, record in records])
    ]
    judged_pairs = read_pairs(str(pairs)) if pairs else None  # a bad pairs file: refused before scoring
    if judged_pairs:
        check_pairs(judged_pairs, {it.video_id for it in items}, rated)
    return EvalData(data, videos, records, items, rated, judged_pairs, replaced)


def _shared_dir(tmp: str) -> Path:
    """The main process's temporary directory ``tmp``, every process's: the ranks' score logs must meet in
    one folder for the main process to merge them (each rank's own ``tmp`` left it without theirs)."""
    import torch

    from videolift.core.distributed import sharded_state

    state = sharded_state(cpu=not torch.cuda.is_available())  # score_manifest's (one state per process)
    if state.num_processes == 1:
        return Path(tmp)
    from accelerate.utils import broadcast_object_list

    return Path(broadcast_object_list([tmp if state.is_main_process else None])[0])


def evaluate_critic(
    critic: Any,
    data: str | Path,
    videos: str | Path,
    *,
    checked: EvalData | None = None,
    scores: str | Path | None = None,
    pairs: str | Path | None = None,
    batch_size: int = 24,
    log: Any = print,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Score the held-out HRA videos with a loaded critic and compare with their (majority) labels.

    Returns the report on the main process, None on the others. ``scores`` keeps the critic's score
    lines (resumable); by default they go to a temporary file, the main process's for every process (on
    several machines, give ``scores`` on a file system they share). ``progress``: the scoring's bar.
    Records whose video is missing or does not open are refused, all named, before anything is scored.
    ``checked``: ``read_eval_data``'s answer for ``data``, ``videos`` and ``pairs``, read before the critic
    loaded (else read here).
    """
    import tempfile

    from videolift.core.jsonl import iter_json_lines, write_jsonl
    from videolift.core.manifest import video_key
    from videolift.critic.score import score_manifest

    if checked is None:
        checked = read_eval_data(data, videos, critic.spec.dimensions, pairs)
    records, items = checked.records, checked.items
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.jsonl"
        write_jsonl(
            manifest, [{"video_id": it.video_id, "video": it.video, "prompt": it.prompt} for it in items]
        )
        out = Path(scores) if scores else _shared_dir(tmp) / "scores.jsonl"
        summary = score_manifest(
            critic,
            manifest,
            checked.videos,
            out,
            batch_size=batch_size,
            log=log,
            overwrite=overwrite,
            progress=progress,
        )
        if not summary.main_process:
            return None
        lines = {video_key(obj): obj for _, obj in iter_json_lines(out)}
    report = evaluate_predictions(items, lines, reward=critic.spec.reward, pairs=checked.pairs)
    report["records_replaced_by_reviews"] = checked.replaced
    first_line: dict[str, int] = {}
    for line, record in records:
        first_line.setdefault(record.video_id, line)
    report["unreadable"] = [
        {
            "file": str(checked.data),
            "line": first_line[it.video_id],
            "video_id": it.video_id,
            "video": it.video,
            "error": lines[it.video_id]["error"],
        }
        for it in items
        if "error" in lines.get(it.video_id, {})
    ]
    return report
