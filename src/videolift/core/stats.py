"""Small statistics shared by the critic's and the T2V models' evaluations."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence


def mean_and_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); None where undefined."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def mean_and_cluster_se(
    values: Sequence[float], clusters: Sequence[Hashable] | None = None
) -> tuple[float | None, float | None]:
    """Mean and its standard error when values come in correlated clusters (several videos of one
    prompt): the cluster-robust error sqrt(G / (G - 1) * sum_c (sum_{i in c} (v_i - mean))^2) / n over
    G clusters. Every value its own cluster (or ``clusters`` None) gives ``mean_and_se``'s."""
    if clusters is None:
        return mean_and_se(values)
    if len(clusters) != len(values):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster labels")
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    sums: dict[Hashable, float] = {}
    for v, c in zip(values, clusters, strict=True):
        sums[c] = sums.get(c, 0.0) + (v - mean)
    g = len(sums)
    if g == 1:
        return mean, None
    return mean, math.sqrt(g / (g - 1) * sum(s * s for s in sums.values())) / n
