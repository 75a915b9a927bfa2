"""Evaluation metrics over rated videos: label rates, mean reward, all-Good rate, pairwise win/tie/loss,
paired differences with their standard errors.

A "rating" here is ``{dimension: label}`` for one video (from the critic, the toy oracle or people).
Unparsed critic answers are ``None`` labels: they count as not Good and are reported separately.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from videolift.core.reward import RewardConfig
from videolift.core.schema import (
    LABEL_RANK,
    LABELS,
    Dimension,
    Label,
    all_good,
    parse_label,
    rated_dimensions,
)
from videolift.core.stats import mean_and_cluster_se, mean_and_se

Rating = Mapping[Dimension | str, Label | str | None]


def _label(value: Label | str | None) -> Label | None:
    return None if value is None else parse_label(value)  # any case, as `all_good` and rewards read it


def _get(rating: Rating, dim: Dimension) -> Label | None:
    return _label(rating.get(dim) if dim in rating else rating.get(dim.value))


def _complete(rating: Rating, dims: tuple[Dimension, ...]) -> bool:
    """A parsed label on every dimension the rater rates (``dims``; a subset critic's: its own)."""
    return all(_get(rating, d) is not None for d in dims)


def _reward_and_all_good(
    rating: Rating, reward: RewardConfig, dims: tuple[Dimension, ...]
) -> tuple[float | None, bool]:
    """A video's reward (from its parsed dimensions; None if none parsed) and whether all ``dims`` are Good."""
    labels = {Dimension(d): _label(v) for d, v in rating.items()}
    return reward.reward(labels), all_good(labels, dims)


def summarize(
    ratings: Sequence[Rating], reward: RewardConfig | None = None, clusters: Sequence[Hashable] | None = None
) -> dict[str, Any]:
    """Per-dimension label rates, mean reward and all-Good rate of a set of videos (rates in [0, 1]),
    with the standard errors of the last two (``clusters``: each video's prompt, whose videos are
    correlated; None: every video on its own)."""
    reward = reward or RewardConfig()
    n = len(ratings)
    out: dict[str, Any] = {"videos": n, "dimensions": {}}
    if n == 0:
        return {
            **out,
            **dict.fromkeys(("mean_reward", "mean_reward_se", "all_good_rate", "all_good_rate_se")),
        }
    dims = rated_dimensions(ratings)  # a subset critic's table holds its own dimensions only
    scored = [_reward_and_all_good(rating, reward, dims) for rating in ratings]
    rewards = [value for value, _ in scored]
    for dim in dims:
        labels = [_get(r, dim) for r in ratings]
        out["dimensions"][dim.value] = {
            **{lab.value: sum(x is lab for x in labels) / n for lab in LABELS},
            "unparsed": sum(x is None for x in labels) / n,
        }
    parsed = [i for i, r in enumerate(rewards) if r is not None]
    out["mean_reward"], out["mean_reward_se"] = mean_and_cluster_se(
        [rewards[i] for i in parsed], None if clusters is None else [clusters[i] for i in parsed]
    )
    out["all_good_rate"], out["all_good_rate_se"] = mean_and_cluster_se(
        [float(g) for _, g in scored], clusters
    )
    return out


def paired_difference(
    a: Sequence[Rating],
    b: Sequence[Rating],
    reward: RewardConfig | None = None,
    clusters: Sequence[Hashable] | None = None,
) -> dict[str, dict[str, Any]]:
    """A minus B in all-Good rate and mean reward over videos of the same prompt and seed, each with
    the standard error of the per-video differences (clustered by ``clusters``, each video's prompt:
    a model may help on some prompts and hurt on others, so several videos of one prompt are not
    independent). Pairing removes the prompts' own spread, so this error is usually well below that of
    two independent rates. Pairs where either video lacks a parsed label on a rated dimension are left out
    of the reward difference."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs aligned lists, got {len(a)} vs {len(b)} videos")
    reward = reward or RewardConfig()
    dims = rated_dimensions([*a, *b])
    sa = [_reward_and_all_good(r, reward, dims) for r in a]
    sb = [_reward_and_all_good(r, reward, dims) for r in b]
    # Only pairs with a parsed label on every dimension rated: a video whose critic answers partly failed
    # to parse gets the reward of its parsed dimensions alone (a lone Good is 0.9), which would count a
    # failure as a win.
    ra = [s[0] if _complete(r, dims) else None for s, r in zip(sa, a, strict=True)]
    rb = [s[0] if _complete(r, dims) else None for s, r in zip(sb, b, strict=True)]
    return {
        "all_good_rate": paired_values([float(x[1]) for x in sa], [float(y[1]) for y in sb], clusters),
        "mean_reward": paired_values(ra, rb, clusters),
    }


def paired_values(
    a: Sequence[float | None], b: Sequence[float | None], clusters: Sequence[Hashable] | None = None
) -> dict[str, Any]:
    """A minus B of one per-video number (a reward, a CLIP similarity) over videos of the same prompt and
    seed: ``{"diff", "se", "pairs"}``, the standard error clustered by ``clusters`` (each video's prompt);
    a pair where either value is None (not measured) is left out."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs aligned lists, got {len(a)} vs {len(b)} videos")
    both = [(i, x - y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x is not None and y is not None]
    values = [d for _, d in both]
    diff, se = mean_and_cluster_se(values, _subset(clusters, [i for i, _ in both]))
    return {"diff": diff, "se": se, "pairs": len(values)}


def _subset(clusters: Sequence[Hashable] | None, keep: Sequence[int]) -> list[Hashable] | None:
    return None if clusters is None else [clusters[i] for i in keep]


def pairwise(a: Sequence[Rating], b: Sequence[Rating]) -> dict[str, dict[str, float]]:
    """Win/tie/loss of A vs B per dimension and overall, comparing videos of the same prompt and seed.

    Per dimension the better label wins; "overall" compares the number of Good dimensions, the
    LiFT-style summary of a pairwise human study. Unparsed labels rank below Bad.
    """
    if len(a) != len(b):
        raise ValueError(f"pairwise comparison needs aligned lists, got {len(a)} vs {len(b)} videos")
    n = len(a)
    dims = rated_dimensions([*a, *b])

    def rank(r: Rating, d: Dimension) -> int:
        lab = _get(r, d)
        return -1 if lab is None else LABEL_RANK[lab]

    out: dict[str, dict[str, float]] = {}
    keys: list[tuple[str, Any]] = [(d.value, d) for d in dims] + [("overall", None)]
    for name, dim in keys:
        win = tie = loss = 0
        for ra, rb in zip(a, b, strict=True):
            if dim is None:
                sa = sum(rank(ra, d) == LABEL_RANK[Label.Good] for d in dims)
                sb = sum(rank(rb, d) == LABEL_RANK[Label.Good] for d in dims)
            else:
                sa, sb = rank(ra, dim), rank(rb, dim)
            win += sa > sb
            tie += sa == sb
            loss += sa < sb
        out[name] = (
            {"win": win / n, "tie": tie / n, "loss": loss / n} if n else {"win": 0.0, "tie": 0.0, "loss": 0.0}
        )
    return out


def format_difference(diff: dict) -> str:
    """``all Good +4.0 ± 2.8 points, reward +0.021 ± 0.010`` from a ``paired_difference`` result."""

    def cell(d: dict, scale: float, fmt: str) -> str:
        if d["diff"] is None:
            return "n/a"
        se = "" if d["se"] is None else f" ± {d['se'] * scale:{fmt[1:]}}"
        return f"{d['diff'] * scale:{fmt}}{se}"

    return (
        f"all Good {cell(diff['all_good_rate'], 100, '+.1f')} points, "
        f"reward {cell(diff['mean_reward'], 1, '+.3f')}"
    )


# ---- replicates: several trained models of one recipe (training seeds) ---------------------------------
def _per_video(
    runs: Sequence[Sequence[Rating]], reward: RewardConfig
) -> tuple[list[float], list[float | None]]:
    """All-Good and reward of each video averaged over replicates (reward: over those rated on every
    dimension, as ``paired_difference`` counts them)."""
    dims = rated_dimensions(r for run in runs for r in run)
    scored = [[_reward_and_all_good(r, reward, dims) for r in run] for run in runs]
    good = [sum(float(s[v][1]) for s in scored) / len(scored) for v in range(len(scored[0]))]
    rewards = []
    for v in range(len(scored[0])):
        parsed = [s[v][0] for s, run in zip(scored, runs, strict=True) if _complete(run[v], dims)]
        rewards.append(sum(parsed) / len(parsed) if parsed else None)
    return good, rewards


def replicate_summary(runs: Sequence[Sequence[Rating]], reward: RewardConfig | None = None) -> dict[str, Any]:
    """A recipe's all-Good rate and mean reward averaged over its replicates, with the standard error
    of that mean from the replicates' spread (``*_seed_se``; None with one replicate)."""
    reward = reward or RewardConfig()
    per = [summarize(run, reward) for run in runs]
    out: dict[str, Any] = {"replicates": len(runs)}
    for key in ("all_good_rate", "mean_reward"):
        out[key], out[f"{key}_seed_se"] = mean_and_se([p[key] for p in per if p[key] is not None])
    return out


def replicate_difference(
    a: Sequence[Sequence[Rating]],
    b: Sequence[Sequence[Rating]],
    reward: RewardConfig | None = None,
    clusters: Sequence[Hashable] | None = None,
) -> dict[str, dict[str, Any]]:
    """Recipe A minus recipe B, each averaged over its replicates (same prompts and seeds throughout).

    ``eval_se``: the paired standard error over videos of the replicate-averaged differences (the
    evaluation's sampling). ``seed_se``: sqrt(SE_A² + SE_B²) of the replicate means (the training
    runs' own randomness); a recipe with one replicate adds nothing (right for an untrained base; for one
    trained run the seed noise is unknown). ``se`` combines both; it is conservative, as replicate
    means also carry some evaluation noise."""
    if len({len(run) for run in [*a, *b]}) != 1:
        raise ValueError("replicate difference needs the same videos for every replicate")
    reward = reward or RewardConfig()
    (good_a, rew_a), (good_b, rew_b) = _per_video(a, reward), _per_video(b, reward)
    sa, sb = replicate_summary(a, reward), replicate_summary(b, reward)
    both = [i for i, (x, y) in enumerate(zip(rew_a, rew_b, strict=True)) if x is not None and y is not None]
    per_video = {
        "all_good_rate": ([x - y for x, y in zip(good_a, good_b, strict=True)], clusters),
        "mean_reward": ([rew_a[i] - rew_b[i] for i in both], _subset(clusters, both)),
    }
    return {
        key: _recipe_difference(
            values, groups, (sa[f"{key}_seed_se"], sb[f"{key}_seed_se"]), [len(a), len(b)]
        )
        for key, (values, groups) in per_video.items()
    }


def _recipe_difference(
    values: Sequence[float],
    clusters: Sequence[Hashable] | None,
    seed_ses: tuple[float | None, float | None],
    replicates: list[int],
) -> dict[str, Any]:
    """``replicate_difference``'s entry for one measure from its per-video differences and the two recipes'
    seed SEs."""
    diff, eval_se = mean_and_cluster_se(values, clusters)
    seed_terms = [t for t in seed_ses if t is not None]
    seed_se = sum(t * t for t in seed_terms) ** 0.5 if seed_terms else None
    se = None if eval_se is None else (eval_se**2 + (seed_se or 0.0) ** 2) ** 0.5
    return {"diff": diff, "se": se, "eval_se": eval_se, "seed_se": seed_se,
            "replicates": replicates, "pairs": len(values)}  # fmt: skip


def recipes(names: Sequence[str], groups: Sequence[str | None] | None) -> dict[str, list[int]]:
    """Each recipe's replicates, as indices into ``names`` (a model without a group is a recipe of one, named
    after it), the first model's recipe first; empty when every recipe has one model (nothing to add)."""
    members: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        members.setdefault((groups[i] if groups else None) or name, []).append(i)
    return {} if all(len(m) == 1 for m in members.values()) else members


def replicate_value_summary(runs: Sequence[Sequence[float | None]]) -> tuple[float | None, float | None]:
    """A per-video number (a CLIP similarity; None: not measured) averaged over each replicate's videos, then
    over the replicates, with the standard error of that mean from the replicates' spread (None with one)."""
    return mean_and_se([m for run in runs if (m := _mean([v for v in run if v is not None])) is not None])


def replicate_value_difference(
    a: Sequence[Sequence[float | None]],
    b: Sequence[Sequence[float | None]],
    clusters: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """Recipe A minus recipe B in a per-video number, as ``replicate_difference`` computes its measures: per
    video each recipe's replicates averaged (those that measured it), videos measured on both sides only."""
    if len({len(run) for run in [*a, *b]}) != 1:
        raise ValueError("replicate difference needs the same videos for every replicate")
    per_a, per_b = (
        [_mean([v for v in video if v is not None]) for video in zip(*x, strict=True)] for x in (a, b)
    )
    pairs = [
        (i, x - y)
        for i, (x, y) in enumerate(zip(per_a, per_b, strict=True))
        if x is not None and y is not None
    ]
    values, both = [d for _, d in pairs], [i for i, _ in pairs]
    seed_ses = (replicate_value_summary(a)[1], replicate_value_summary(b)[1])
    return _recipe_difference(values, _subset(clusters, both), seed_ses, [len(a), len(b)])


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
