"""Check-then-rate (an extension): the caption words a VLM would not have written for the video.

The check model (by default the critic's base) reads the caption as its own answer to the describe
instruction, teacher-forced: one forward pass per video, no generation. Every caption word holding a
token to which the model gives less than ``check_threshold`` probability is listed with the token the
model found likeliest there, ``"two (expected a), circle (expected square)."``, or ``"none."``; the
critic reads that list before the semantic-consistency question (``spec.check_dimensions``,
``prompts.user_text``). Generative scoring of a caption
in the spirit of VQAScore; here it does, word by word, the comparison of caption and video that a small
critic does not learn from ratings alone (docs/critic.md). A model that describes what it sees names the
other colour or shape where the caption is wrong.

Training examples carry the *check model's* checks of the training videos, cached in ``OUT/checks.json``;
scoring uses the same model (for a LoRA critic on its base: the critic with its adapter switched off).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from videolift.core.video import sample_frames

CACHE_FILE = "checks.json"
NOTHING_FLAGGED = "none."


@dataclass
class Checker:
    model: Any
    collator: Any
    as_checker: Callable[[], AbstractContextManager[Any]] = nullcontext  # e.g. a LoRA adapter switched off


def load_checker(
    spec: Any,
    *,
    critic_model: Any = None,
    collator: Any = None,
    base: str | None = None,
    dtype: Any = None,
    device: Any = None,
) -> Checker:
    """The spec's check model. A LoRA critic checked by its own base reuses its weights, adapter off.
    Another model loads where the critic is and in its dtype (else ``device`` / ``dtype``, default the
    CPU in float32)."""
    from videolift.critic.descriptions import load_describer

    if spec.check_model is None and critic_model is not None and hasattr(critic_model, "disable_adapter"):
        return Checker(critic_model, collator, critic_model.disable_adapter)
    if critic_model is not None:
        device, dtype = device or critic_model.device, dtype or critic_model.dtype
    model, _, check_collator = load_describer(
        spec.check_model or base or spec.base_model,
        spec.max_pixels,
        spec.min_pixels,
        dtype=dtype or "float32",
        device=device or "cpu",
    )
    return Checker(model, check_collator)


def token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded caption, its leading space included: decoded alone, a
    sentencepiece token (Llama's ``▁red``) loses the space that says it starts a word."""
    texts = [tokenizer.decode(ids[:k], clean_up_tokenization_spaces=False) for k in range(len(ids) + 1)]
    return [texts[k + 1][len(texts[k]) :] for k in range(len(ids))]


def word_flags(
    pieces: list[str], logprobs: list[float], likeliest: list[str], threshold: float
) -> list[tuple[str, str]]:
    """(word, likeliest token at its first unlikely token) for every word with a token below threshold.
    A piece starting with whitespace starts a word (``token_pieces`` keeps the space)."""
    words: list[list[int]] = []
    for k, piece in enumerate(pieces):
        if not words or piece[:1].isspace():
            words.append([])
        words[-1].append(k)
    floor = float(np.log(threshold))
    flags = []
    for word in words:
        low = next((k for k in word if logprobs[k] < floor), None)
        if low is not None:
            flags.append(("".join(pieces[k] for k in word).strip(), likeliest[low].strip() or "end"))
    return flags


def format_check(flags: list[tuple[str, str]]) -> str:
    if not flags:
        return NOTHING_FLAGGED
    return ", ".join(f"{word} (expected {expected})" for word, expected in flags) + "."


def check_captions(
    checker: Checker, frames: list[np.ndarray], captions: list[str], *, instruction: str, threshold: float
) -> list[str]:
    """The check of each (frames, caption), in one batched forward pass."""
    import torch

    from videolift.critic.collate import IGNORE, Item

    if not frames:
        return []
    collator, tokenizer = checker.collator, checker.collator.tokenizer
    batch = collator([Item(f, instruction, answer=c) for f, c in zip(frames, captions, strict=True)])
    labels = batch.pop("labels")
    batch.pop("weights")
    device = next(checker.model.parameters()).device
    keep = int((labels != IGNORE).sum(dim=1).max()) + 1
    with checker.as_checker(), torch.inference_mode():
        logits = checker.model(
            **{k: v.to(device) for k, v in batch.items()}, logits_to_keep=keep, use_cache=False
        ).logits
    logprobs = logits[:, -keep:-1].float().log_softmax(-1).cpu()
    target = labels[:, -keep + 1 :]
    out = []
    for row, lp in zip(target, logprobs, strict=True):
        answer = row != IGNORE
        ids = row[answer].tolist()[: -len(collator.end_ids) or None]  # the caption, not the end of turn
        lp = lp[answer][: len(ids)]
        pieces = token_pieces(tokenizer, ids)
        likeliest = [tokenizer.decode([i]) for i in lp.argmax(-1).tolist()]
        chosen = lp.gather(1, torch.tensor(ids).view(-1, 1)).view(-1).tolist()
        out.append(format_check(word_flags(pieces, chosen, likeliest, threshold)))
    return out


def check_files(
    checker: Checker,
    pairs: list[tuple[Path, str]],
    *,
    num_frames: int,
    instruction: str,
    threshold: float,
    sampling: str = "uniform",
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Checks of (video file, caption) pairs, batched."""
    out: list[str] = []
    for start in tqdm(
        range(0, len(pairs), batch_size), desc="checking captions", unit="batch", disable=not progress
    ):
        chunk = pairs[start : start + batch_size]
        frames = [sample_frames(video, num_frames, sampling) for video, _ in chunk]
        out += check_captions(
            checker, frames, [c for _, c in chunk], instruction=instruction, threshold=threshold
        )
    return out


def base_checks(
    pairs: list[tuple[Path, str]],
    spec: Any,
    cache_dir: Path,
    weights: str | None,
    *,
    shared: bool = False,
    device: Any = "cpu",
    dtype: Any = "float32",
    progress: bool = True,
    log: Any = print,
) -> dict[tuple[Path, str], str]:
    """The check model's check of every training (video, caption) (``weights``: the check model's identity,
    ``weights_digest``), cached in ``cache_dir`` and split between the launch's processes
    (``text_cache.cached_texts``)."""
    from videolift.critic.spec import view_key
    from videolift.critic.text_cache import cache_file, cached_texts, split_note

    key = {
        "check_model": spec.checker,
        **({"weights": weights} if weights else {}),
        "instruction": spec.check_instruction,
        "threshold": spec.check_threshold,
        **view_key(*spec.check_view),
        "max_pixels": spec.max_pixels,
        "min_pixels": spec.min_pixels,
        "dtype": str(dtype).removeprefix("torch."),  # what it computes in decides what it flags
    }
    loaded: list[Checker] = []  # the model, once a first chunk needs it

    def compute(missing: list[tuple[Path, str]]) -> list[str]:
        if not loaded:
            loaded.append(load_checker(spec, dtype=dtype, device=device))
        return check_files(
            loaded[0],
            missing,
            num_frames=spec.check_view[0],
            sampling=spec.check_view[1],
            instruction=spec.check_instruction,
            threshold=spec.check_threshold,
        )

    return cached_texts(
        cache_file(cache_dir, CACHE_FILE, key, shared),
        key,
        "checks",
        {pair: f"{pair[0].resolve()}\t{pair[1]}" for pair in pairs},
        compute,
        lambda n, cached, processes: log(
            f"checking {n} captions with {spec.checker} ({cached} cached){split_note(processes)}"
        ),
        progress=progress,
        desc="checking captions",
    )
