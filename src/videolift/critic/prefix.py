"""Several questions about one video answered from one prefill of the video (``critic score``'s default).

LiFT's ``per_dimension`` layout asks one question per dimension, each a sequence holding the same video and
caption: ``chat template, video tokens, caption, " ", question, generation prompt``. Encoded separately,
the video goes through the vision tower and the language model once per question. Here the questions of
one video share their **longest common token prefix** (computed from the tokenized sequences, so it ends
wherever the tokenizer's boundaries put it: past the caption, and past the questions' common words):

1. the prefixes of a chunk's videos, left-padded together, go through the model once (vision tower
   included), ``use_cache`` on, keeping only the last logits;
2. the cache's rows are repeated, one per question (``Cache.batch_select_indices``), and the model's
   stored multimodal rotary offsets (``rope_deltas``, Qwen-VL) set to the rows' unshared sequences';
3. one ``generate`` call continues every (video, question) row from that cache, in the same row order
   as the unshared batch: each row is its prefix, then masked padding up to the longest suffix, then its
   suffix (the rest of the question and the generation prompt).

Each question's sequence is the processor's own, but its video is processed (resized, normalised,
patchified) once per video, not once per question (``ChatCollator.encode_items``).

Positions are those of the unshared sequence: ``generate`` derives them from the attention mask (a
cumulative count of unmasked tokens), so masked padding between prefix and suffix takes no position, as
left padding takes none; Qwen-VL adds each row's rotary offset, the one its unshared sequence gets
(``_row_offsets``). Masked padding is never attended to. Sampling (``--temperature``) draws from the
same rows in the same order, one call as before.

A batch falls back to the unshared path (``None`` from ``plan``) when nothing is shared (one question per
video), when a video's questions do not carry the same vision inputs, or when a suffix holds vision
tokens (``plan``), and where no one rotary offset per row places both its suffix and its answer as the
unshared batch does (``generate_shared`` returns None). Families: ``SHARED_MODEL_TYPES`` (each tested against the unshared path); others, e.g. Qwen3.5
(linear-attention layers whose recurrent state would run over the padding), always fall back.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from videolift.critic.collate import SEQUENCE_KEYS, Item, _left_pad

# The families whose answers from a shared prefix equal the unshared ones (tests/test_critic_share_prefix.py).
SHARED_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "llava_next_video"})

_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "image_token_index", "video_token_index")


def supported(model_type: str) -> bool:
    return model_type in SHARED_MODEL_TYPES


@dataclass
class SharedBatch:
    prefix: dict[str, torch.Tensor]  # one left-padded row per video, with its vision inputs
    rows: torch.Tensor  # the prefix row of each item
    suffix: dict[str, torch.Tensor]  # per item: masked padding, then its suffix (sequence keys only)

    @property
    def length(self) -> int:
        """Tokens of each row before the answer."""
        return self.prefix["input_ids"].shape[1] + self.suffix["input_ids"].shape[1]


def _groups(items: list[Item]) -> list[list[int]]:
    """Runs of consecutive items that hold the same frames (one video's questions)."""
    groups: list[list[int]] = []
    for i, item in enumerate(items):
        if groups and items[groups[-1][0]].frames is item.frames:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _common_prefix(ids: list[torch.Tensor]) -> int:
    n = min(len(x) for x in ids)
    stacked = torch.stack([x[:n] for x in ids])
    differs = (stacked != stacked[:1]).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else n


def vision_token_ids(model: Any) -> set[int]:
    config = model.config
    return {v for k in _VISION_TOKEN_KEYS if isinstance(v := getattr(config, k, None), int)}


def plan(collator: Any, items: list[Item], vision_tokens: set[int]) -> SharedBatch | None:
    """The shared-prefix batch of ``items`` (each video's questions consecutive, with the same frames
    object), or None where the unshared batch must be used."""
    groups = _groups(items)
    if all(len(g) == 1 for g in groups):
        return None
    encoded = collator.encode_items(items)  # each video processed once
    prefixes: list[dict[str, torch.Tensor]] = []
    suffixes: list[dict[str, torch.Tensor]] = [{} for _ in items]
    vision: list[dict[str, torch.Tensor]] = []
    rows: list[int] = []
    for row, group in enumerate(groups):
        seqs = [{k: encoded[i][k][0] for k in SEQUENCE_KEYS if k in encoded[i]} for i in group]
        extra = [{k: v for k, v in encoded[i].items() if k not in SEQUENCE_KEYS} for i in group]
        if any(  # one video's encodings hold the same tensors (encode_items), not only equal ones
            e.keys() != extra[0].keys()
            or any(e[k] is not extra[0][k] and not torch.equal(e[k], extra[0][k]) for k in e)
            for e in extra
        ):
            return None  # not one video's questions
        ids = [s["input_ids"] for s in seqs]
        # At least one token of each question left to feed generate (its first logits come from it).
        cut = min(_common_prefix(ids), min(len(x) for x in ids) - 1)
        if cut <= 0 or any(not torch.equal(s[k][:cut], seqs[0][k][:cut]) for s in seqs for k in s):
            return None
        for i, s in zip(group, seqs, strict=True):
            tail = {k: v[cut:] for k, v in s.items()}
            if any(int(t) in vision_tokens for t in tail["input_ids"]) or (
                "mm_token_type_ids" in tail and bool(tail["mm_token_type_ids"].any())
            ):
                return None  # vision inputs after the prefix: not shareable
            suffixes[i] = tail
            rows.append(row)
        prefixes.append({k: v[:cut] for k, v in seqs[0].items()})
        vision.append(extra[0])
    return SharedBatch(
        prefix=_stack_left_padded(collator, prefixes)
        | {k: torch.cat([v[k] for v in vision]) for k in vision[0]},
        rows=torch.tensor(rows),
        suffix=_stack_left_padded(collator, suffixes),
    )


def _stack_left_padded(collator: Any, seqs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    length = max(s["input_ids"].shape[0] for s in seqs)
    return {
        key: torch.stack(
            [_left_pad(s[key], length, collator.pad_id if key == "input_ids" else 0) for s in seqs]
        )
        for key in seqs[0]
    }


def _cache_kwarg() -> str:
    """generate's name for a cache to continue from (``cache`` since transformers 5.25)."""
    from transformers import GenerationMixin

    params = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    return "cache" if "cache" in params else "past_key_values"


def generate_shared(model: Any, batch: SharedBatch, device: Any, **generate_kwargs: Any) -> Any | None:
    """``model.generate`` over every (video, question) row of ``batch``, the prefixes prefilled once; returns
    generate's output (sequences: the row's tokens, ``batch.length`` of them, then the answer), or None
    (nothing run) where the rows' positions cannot be continued as the unshared rows' (``_row_offsets``)."""
    prefix = {k: v.to(device) for k, v in batch.prefix.items()}
    rows = batch.rows.to(device)
    full = {
        key: torch.cat([prefix[key][rows], value.to(device)], dim=1) for key, value in batch.suffix.items()
    }
    offsets = None
    if _keeps_rope_deltas(model):
        offsets = _row_offsets(model, prefix, rows, full)
        if offsets is None:
            return None
    else:
        # As generate numbers a prompt: left padding takes no position (a plain forward would count it).
        mask = prefix["attention_mask"]
        prefix["position_ids"] = (mask.long().cumsum(-1) - 1).clamp_min(0)
    out = model(**prefix, use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)
    cache = out.past_key_values if cache is None else cache
    cache.batch_select_indices(rows)
    if offsets is not None:
        _continue_positions(model, offsets)
    return model.generate(**full, **{_cache_kwarg(): cache}, **generate_kwargs)


def _keeps_rope_deltas(model: Any) -> bool:
    """Qwen-VL: multimodal rotary positions, computed by the model from the attention mask, their
    per-row offsets kept for continuing."""
    return any(hasattr(module, "rope_deltas") for module in model.modules())


def _rope_module(model: Any) -> Any:
    return next(m for m in model.modules() if hasattr(m, "rope_deltas") and hasattr(m, "get_rope_index"))


def _row_offsets(
    model: Any, prefix: dict[str, torch.Tensor], rows: torch.Tensor, full: dict[str, torch.Tensor]
) -> torch.Tensor | None:
    """Qwen-VL's rotary offset of each continued row: the one the unshared sequence (its prefix, then its
    suffix) gets from the model's ``get_rope_index``; None where one offset does not place the row's suffix
    where the unshared sequence has it.

    generate numbers the tokens after a prefilled cache by the attention mask's running count plus one
    stored offset per row (``rope_deltas``: the sequence's largest position + 1 - its length). The prefix's
    own offset is not the row's: where the video's positions run past the text after it (Qwen2.5-VL spaces
    a slowly sampled video's temporal positions by its frame times), the prefix's largest position is a
    video token's, and its suffix and answer would sit that much further on than unshared."""
    module = _rope_module(model)
    params = inspect.signature(module.get_rope_index).parameters
    vision: dict[str, torch.Tensor] = {}
    for key in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts"):
        value = prefix.get(key)
        if value is None or key not in params:
            continue
        if value.shape[0] != prefix["input_ids"].shape[0]:
            return None  # not one video per prefix: its entries cannot be repeated per row
        vision[key] = value[rows]
    if "mm_token_type_ids" not in full or not vision:
        return None
    positions, deltas = module.get_rope_index(
        full["input_ids"],
        mm_token_type_ids=full["mm_token_type_ids"],
        attention_mask=full["attention_mask"],
        **vision,
    )
    mask = full["attention_mask"]
    counted = (mask.long().cumsum(-1) - 1).unsqueeze(0) + deltas.view(1, -1, 1).to(mask.device)
    tail = mask.bool().clone()
    tail[:, : prefix["input_ids"].shape[1]] = False
    if not torch.equal(positions.to(counted.device)[:, tail], counted.expand_as(positions)[:, tail]):
        return None
    return deltas


def _continue_positions(model: Any, offsets: torch.Tensor) -> None:
    """What the continued rows need to sit where the unshared rows do. generate numbers text tokens by
    the attention mask's running count (padding takes no position); Qwen-VL adds each row's multimodal
    rotary offset, kept by the model (from the prefill, one per prefix): the unshared row's instead."""
    _rope_module(model).rope_deltas = offsets
