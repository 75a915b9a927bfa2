"""From critic scores (read by ``core.scores``) to per-video loss weights: the RS filter, reward
transforms; and the real set.

Pure functions (no torch). The paper weights each synthetic video's diffusion loss by its raw
reward (no normalisation); ``normalized`` and ``exp`` are extensions of this project.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from videolift.core.errors import DataError
from videolift.core.jsonl import iter_json_lines, text_field
from videolift.core.reward import RewardConfig
from videolift.core.schema import all_good, rated_dimensions
from videolift.core.scores import ScoredVideo


@dataclass(frozen=True)
class Sample:
    """One training video: path (relative to its root), prompt and loss weight."""

    video: str
    prompt: str
    weight: float = 1.0
    line: int | None = None  # in the scores or real-set file, for errors


def rescore(items: list[ScoredVideo], reward: RewardConfig, path: str | Path) -> list[ScoredVideo]:
    """The same videos with rewards recomputed from their labels by ``RewardConfig.reward`` (null when
    nothing it counts was parsed: RWL drops the video). ``path`` names the scores file in errors."""
    out = []
    for item in items:
        try:
            out.append(replace(item, reward=reward.reward(item.labels)))
        except ValueError as exc:  # an unknown label or dimension
            raise DataError(str(exc), file=path, line=item.line, field="ratings") from None
    return out


def read_real(path: str | Path, option: str = "--real") -> list[Sample]:
    """A real video-text JSONL: one ``{"video": ..., "prompt": ...}`` per line, weight 1. ``option``: the
    one that named it, for the error of an empty file."""
    path = Path(path)
    samples = [
        Sample(text_field(obj, "video", path, line), text_field(obj, "prompt", path, line), line=line)
        for line, obj in iter_json_lines(path)
    ]
    if not samples:  # training would go on without the real-data term the option asked for
        raise DataError(f"the real set has no records ({option})", file=path)
    return samples


def transform_rewards(rewards: list[float], kind: str = "raw", temperature: float = 0.1) -> list[float]:
    """Loss weights from rewards.

    raw (paper): w = r. Extensions — normalized: w = r / mean(r), so the mean weight is 1 and the
    learning rate does not depend on the reward scale; exp: w ∝ exp(r / temperature), rescaled to
    mean 1 (advantage-weighted-regression style: sharper preference for the best videos).
    """
    if not rewards:
        return []
    if kind in ("raw", "normalized") and min(rewards) < 0:
        raise ValueError(f"weight_transform={kind} needs rewards >= 0 (a negative weight ascends the loss)")
    if kind == "raw":
        return list(rewards)
    if kind == "normalized":
        mean = sum(rewards) / len(rewards)
        if mean <= 0:
            raise ValueError("weight_transform=normalized: all rewards are zero")
        return [r / mean for r in rewards]
    if kind == "exp":
        top = max(rewards)  # subtract the max for numerical safety; the rescaling removes it anyway
        raw = [math.exp((r - top) / temperature) for r in rewards]
        mean = sum(raw) / len(raw)
        return [w / mean for w in raw]
    raise ValueError(f"unknown weight transform {kind!r}; use raw, normalized or exp")


def reward_scale_warning(
    items: list[ScoredVideo], transform: str, temperature: float, with_real: bool = True
) -> str | None:
    """Rewards above 1, on a scale the weights were not made for: the paper's rewards lie in [0.05, 0.9]
    (the default reward config), which is what λ = 1 balances (raw) and ``--exp-temperature`` is set
    for (exp). Normalized weights have mean 1 whatever the scale."""
    rated = [i for i in items if i.reward is not None]
    above = [i for i in rated if i.reward > 1]
    if not above or transform == "normalized":
        return None
    top = max(above, key=lambda i: i.reward)
    where = f"{len(above)} of {len(rated)} rewards above 1 (the largest {top.reward:g}, line {top.line})"
    if transform == "exp":
        return (
            f"{where}: exp weights compare rewards in units of --exp-temperature ({temperature:g}), so a few "
            "videos take nearly all the weight; rescale the rewards or raise the temperature"
        )
    real = ", and the synthetic term the real-data term that lambda weighs against it" if with_real else ""
    return (
        f"{where}: raw weights scale each video's loss by its reward, so the largest rewards outweigh the "
        f"rest{real}; rescale the rewards to [0, 1] or use --weight-transform normalized"
    )


def select_synthetic(
    items: list[ScoredVideo], method: str = "rwl", transform: str = "raw", temperature: float = 0.1
) -> tuple[list[Sample], Counter]:
    """Training samples and counts of what was kept and dropped (and why).

    rwl keeps every video with a reward and weights it by ``transform(reward)``; rs keeps the
    videos rated Good on all dimensions with weight 1.
    """
    counts: Counter = Counter(rated=len(items))
    if method == "rs":
        dims = rated_dimensions(i.labels for i in items)  # a subset critic's scores: its dimensions
        kept = [i for i in items if all_good(i.labels, dims)]
        counts["dropped_not_all_good"] = len(items) - len(kept)
        counts["kept"] = len(kept)
        return [Sample(i.video, i.prompt, 1.0, i.line) for i in kept], counts
    if method != "rwl":
        raise ValueError(f"unknown method {method!r}; use rwl or rs")
    kept = [i for i in items if i.reward is not None]
    counts["dropped_null_reward"] = len(items) - len(kept)
    counts["kept"] = len(kept)
    if transform in ("raw", "normalized") and (neg := next((i for i in kept if i.reward < 0), None)):
        raise DataError(  # the caller knows the file
            f"{neg.reward}: weight_transform={transform} needs rewards >= 0 (a negative weight ascends the "
            "loss; exp takes any reward)",
            line=neg.line,
            field="reward",
        )
    weights = transform_rewards([i.reward for i in kept], transform, temperature)
    return [Sample(i.video, i.prompt, w, i.line) for i, w in zip(kept, weights, strict=True)], counts
