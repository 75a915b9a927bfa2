"""Deterministic, resumable batches over cached tensors.

The order of samples is a pure function of (seed, micro-step, rank): the stream is a chain of
seeded permutations of the dataset, each micro-step takes the next ``batch x world`` positions
and rank r the r-th slice. Resuming at micro-step k needs no saved sampler state, and ranks
always see disjoint shards of each global batch. A run resumed under another process count goes on
from the position the checkpoint had reached (``origin``: the checkpoint's micro-step and the batches
of all ranks drawn before it), neither drawing again what was drawn nor skipping what was not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videolift.align.cache import load_tensor


@dataclass(frozen=True)
class CachedItem:
    latent: Path
    text: Path
    weight: float


class Stream:
    """An endless, seeded sequence of item indices, sharded over ranks."""

    def __init__(
        self,
        size: int,
        batch: int,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        origin: tuple[int, int] = (0, 0),
    ):
        if size < 1:
            raise ValueError("empty dataset")
        self.size, self.batch, self.seed, self.rank, self.world = size, batch, seed, rank, world
        self.origin = origin  # (micro-step, batches of all ranks drawn before it): see batches_drawn
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._perms[epoch]

    def indices(self, micro_step: int) -> list[int]:
        start = (batches_drawn(self.origin, micro_step, self.world) + self.rank) * self.batch
        return [int(self._perm(p // self.size)[p % self.size]) for p in range(start, start + self.batch)]


def batches_drawn(origin: tuple[int, int], micro_step: int, world: int) -> int:
    """The batches of all ranks a ``Stream`` has drawn before ``micro_step``, from ``origin`` (a
    micro-step and the batches drawn before it) on with ``world`` ranks: ``micro_step x world`` for a run
    that kept one process count throughout (origin (0, 0))."""
    return origin[1] + (micro_step - origin[0]) * world


class WeightedStream:
    """Indices drawn with replacement, with probability proportional to ``weights``; like ``Stream``
    a pure function of (seed, micro-step, rank), so resuming needs no saved state (under another process
    count too: the micro-steps after the checkpoint draw afresh)."""

    def __init__(self, weights: list[float], batch: int, *, seed: int, rank: int = 0, world: int = 1):
        w = np.asarray(weights, dtype=np.float64)
        if w.size < 1 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weighted sampling needs finite weights >= 0 with a positive sum")
        self.p, self.size = w / w.sum(), w.size
        self.batch, self.seed, self.rank, self.world = batch, seed, rank, world

    def indices(self, micro_step: int) -> list[int]:
        rng = np.random.default_rng([self.seed, micro_step, self.rank, 2])
        return [int(i) for i in rng.choice(self.size, self.batch, p=self.p)]


class StepDataset(torch.utils.data.Dataset):
    """Item k is the whole batch of micro-step k: synthetic samples first, then real ones.

    Returns ``params`` (B, ...) latent-distribution parameters, ``text`` (B, L, D), ``coef`` (B,) the
    per-sample loss coefficients (see ``loss_coefficients``), ``n_syn`` and the dataset ``ids``.
    """

    def __init__(
        self,
        synthetic: list[CachedItem],
        syn_stream: Stream | WeightedStream,
        real: list[CachedItem] | None = None,
        real_stream: Stream | None = None,
        lambda_real: float = 1.0,
        length: int = 0,
        empty_text: Path | None = None,
        text_dropout: float = 0.0,
    ):
        if text_dropout and empty_text is None:
            raise ValueError("text_dropout needs the empty prompt's cached embedding")
        self.synthetic, self.syn_stream = synthetic, syn_stream
        self.real = real if real and lambda_real > 0 else []
        self.real_stream, self.lambda_real, self.length = real_stream, lambda_real, length
        self.empty_text, self.text_dropout = empty_text, text_dropout

    def _texts(self, items: list[CachedItem], micro_step: int) -> list[Path]:
        """Each item's prompt embedding, or with probability ``text_dropout`` the empty prompt's:
        a pure function of (seed, rank, micro-step), like the batch itself."""
        texts = [it.text for it in items]
        if self.text_dropout:
            s = self.syn_stream
            drop = (
                np.random.default_rng([s.seed, s.rank, micro_step, 1]).random(len(items)) < self.text_dropout
            )
            texts = [self.empty_text if d else t for d, t in zip(drop, texts, strict=True)]
        return texts

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, micro_step: int) -> dict:
        syn_ids = self.syn_stream.indices(micro_step)
        items = [self.synthetic[i] for i in syn_ids]
        real_ids = self.real_stream.indices(micro_step) if self.real else []
        items += [self.real[i] for i in real_ids]
        coef = loss_coefficients([self.synthetic[i].weight for i in syn_ids], len(real_ids), self.lambda_real)
        return {
            "params": torch.stack([load_tensor(it.latent) for it in items]),
            "text": torch.stack([load_tensor(t) for t in self._texts(items, micro_step)]),
            "coef": torch.tensor(coef, dtype=torch.float32),
            "n_syn": len(syn_ids),
            "ids": syn_ids + [-1 - i for i in real_ids],  # real ids are negative: -1 - index
        }


def loss_coefficients(weights: list[float], n_real: int, lambda_real: float) -> list[float]:
    """Per-sample factors c_i so that sum_i c_i * loss_i is the LiFT objective on one batch:

        mean_syn(w_i * loss_i) + lambda * mean_real(loss_i)

    The synthetic mean divides by the batch size, not by the sum of weights: a batch of
    low-reward videos contributes little, as in the expectation E[r * loss] of the paper.
    """
    coef = [w / len(weights) for w in weights]
    if n_real:
        coef += [lambda_real / n_real] * n_real
    return coef
