"""Turn (frames, user text[, answer]) into model inputs, identically for training and generation.

The prompt (chat template with the generation prompt, video placeholders expanded by the processor)
is encoded per example, each by the processor itself, though consecutive examples holding the same
frames object (one video's questions) have their video processed once (``ChatCollator.encode_items``);
for training the answer's token ids and the end-of-turn token are appended and are the only positions
with labels. Sequences are left-padded in both cases, so answers end at
the last position: the loss only needs the last logits, and generation continues where training's
answer began.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from videolift.core.errors import VideoliftError
from videolift.models.vlm import VLMFamily

IGNORE = -100
SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
_SENTINEL = "\u2063ANSWER\u2063"


@dataclass
class Item:
    frames: np.ndarray  # (T, H, W, 3) uint8
    user_text: str
    answer: str | None = None
    weight: float = 1.0


class ChatCollator:
    def __init__(
        self,
        processor: Any,
        family: VLMFamily,
        *,
        eos_token_ids: list[int] | None = None,
        max_answer_tokens: int | None = None,
    ) -> None:
        self.processor, self.family = processor, family
        self.tokenizer = processor.tokenizer
        self.max_answer_tokens = max_answer_tokens
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.stop_ids, self.end_ids = self._end_of_turn(eos_token_ids or [])

    # ---- text ----------------------------------------------------------------------------------
    def render(self, user_text: str, answer: str | None = None) -> str:
        messages = self.family.messages(user_text, answer)
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=answer is None
        )

    def _end_of_turn(self, eos_ids: list[int]) -> tuple[list[int], list[int]]:
        """(ids that stop generation, ids appended after a training answer), read off the template:
        what it writes after an assistant answer, up to and including the first stop token."""
        tok = self.tokenizer
        stop = [i for i in [tok.eos_token_id, *eos_ids] if i is not None]
        prompt, full = self.render("x"), self.render("x", _SENTINEL)
        suffix = ""
        if full.startswith(prompt) and full[len(prompt) :].lstrip().startswith(_SENTINEL):
            suffix = full[len(prompt) :].lstrip()[len(_SENTINEL) :]
        ids = tok(suffix, add_special_tokens=False)["input_ids"] if suffix else []
        specials = set(tok.all_special_ids)
        first_special = next((i for i in ids if i in specials), None)
        if first_special is not None and first_special not in stop:
            stop.append(first_special)
        end = next((k for k, i in enumerate(ids) if i in stop), None)
        if end is None:
            if not stop:
                raise VideoliftError("the tokenizer has no end-of-sequence token to end answers with")
            return list(dict.fromkeys(stop)), [stop[0]]
        return list(dict.fromkeys(stop)), ids[: end + 1]

    # ---- tensors -------------------------------------------------------------------------------
    def encode_prompt(self, frames: np.ndarray, user_text: str) -> dict[str, torch.Tensor]:
        return self.encode_prompts(frames, [user_text])[0]

    def encode_prompts(self, frames: np.ndarray, user_texts: list[str]) -> list[dict[str, torch.Tensor]]:
        """``encode_prompt`` of each text with the same video, its video processed (resized, normalised,
        patchified) once: the processor's later calls are given the first call's video processor output
        (``_ProcessedOnce``), so each encoding is the processor's own, template expansion and tokens
        included, as if encoded alone. The vision tensors of the encodings are the same tensor objects."""
        # Frames from videolift.core.video.sample_frames carry where they were taken (a Clip's timing).
        kwargs = self.family.video_kwargs(len(frames), getattr(frames, "timing", None))
        videos = [np.asarray(frames)]
        processor = self.processor
        if len(user_texts) > 1:  # a copy, so other threads' calls never see the stand-in
            processor = copy.copy(self.processor)
            processor.video_processor = _ProcessedOnce(self.processor.video_processor)
        out = []
        for text in user_texts:
            encoded = processor(text=[self.render(text)], videos=videos, return_tensors="pt", **kwargs)
            out.append({k: v for k, v in encoded.items() if isinstance(v, torch.Tensor)})
        return out

    def encode_items(self, items: list[Item]) -> list[dict[str, torch.Tensor]]:
        """``encode_prompt`` of every item, each run of consecutive items holding the same frames object
        (one video's questions) encoded together (``encode_prompts``: its video processed once)."""
        encoded: list[dict[str, torch.Tensor]] = []
        start = 0
        for end in range(1, len(items) + 1):
            if end == len(items) or items[end].frames is not items[start].frames:
                texts = [it.user_text for it in items[start:end]]
                encoded += self.encode_prompts(items[start].frames, texts)
                start = end
        return encoded

    def answer_ids(self, answer: str) -> list[int]:
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if self.max_answer_tokens is not None:
            ids = ids[: self.max_answer_tokens]
        return ids + self.end_ids

    def __call__(self, items: list[Item]) -> dict[str, torch.Tensor]:
        """A left-padded batch; with answers also ``labels`` (answer + end of turn only) and ``weights``."""
        encoded = self.encode_items(items)
        train = items[0].answer is not None
        if any((it.answer is not None) != train for it in items):
            raise ValueError("a batch mixes items with and without answers")
        seqs: list[dict[str, torch.Tensor]] = []
        labels: list[torch.Tensor] = []
        for it, enc in zip(items, encoded, strict=True):
            seq = {k: enc[k][0] for k in SEQUENCE_KEYS if k in enc}
            n_prompt = seq["input_ids"].shape[0]
            if train:
                answer = torch.tensor(self.answer_ids(it.answer), dtype=seq["input_ids"].dtype)
                seq["input_ids"] = torch.cat([seq["input_ids"], answer])
                for key in seq:
                    if key != "input_ids":
                        fill = 1 if key == "attention_mask" else 0
                        seq[key] = torch.cat(
                            [seq[key], torch.full((len(answer),), fill, dtype=seq[key].dtype)]
                        )
                labels.append(torch.cat([torch.full((n_prompt,), IGNORE, dtype=torch.long), answer.long()]))
            seqs.append(seq)
        length = max(s["input_ids"].shape[0] for s in seqs)
        batch: dict[str, torch.Tensor] = {}
        for key in seqs[0]:
            fill = self.pad_id if key == "input_ids" else 0
            batch[key] = torch.stack([_left_pad(s[key], length, fill) for s in seqs])
        if train:
            batch["labels"] = torch.stack([_left_pad(lab, length, IGNORE) for lab in labels])
            batch["weights"] = torch.tensor([it.weight for it in items], dtype=torch.float32)
        for key in encoded[0]:
            if key not in SEQUENCE_KEYS:  # vision tensors: patches or frames, stacked along dim 0
                batch[key] = torch.cat([enc[key] for enc in encoded])
        return batch


class _ProcessedOnce:
    """Stands in for a processor's video processor while one video's prompts are encoded: a call with the
    same arguments as the first (the same video objects, equal options) is answered with a copy of the
    first call's output (the processor adds its own keys to it), any other call is computed.

    The first call's options are compared as they were when it was made: the processor may change what
    its video processor returns, and that can be the options' own objects (Qwen3-VL's processor pads the
    ``video_metadata`` frame indices it was given to a whole temporal patch, in place)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._first: tuple[tuple[Any, ...], dict[str, Any], Any] | None = None

    def __getattr__(self, name: str) -> Any:  # merge_size, temporal_patch_size, ...: the real one's
        return getattr(self._inner, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._first is not None and _same_arguments((args, kwargs), self._first[:2]):
            return copy.copy(self._first[2])
        first = copy.deepcopy(kwargs) if self._first is None else None  # options only: videos by identity
        out = self._inner(*args, **kwargs)
        if first is not None:
            self._first = (args, first, copy.copy(out))
        return out


def _same_arguments(a: Any, b: Any) -> bool:
    """The same objects, or equal plain values, all the way down (arrays and tensors: only the same ones)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_arguments(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_arguments(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray | torch.Tensor):
        return False
    try:
        return bool(a == b)
    except Exception:  # no plain truth value: not known to be equal
        return False


def _left_pad(x: torch.Tensor, length: int, fill: int) -> torch.Tensor:
    if x.shape[0] == length:
        return x
    return torch.cat([torch.full((length - x.shape[0],), fill, dtype=x.dtype), x])


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Weighted next-token cross-entropy on answer tokens only; returns (loss, answer tokens).

    Per batch: sum over tokens of w_i * CE / sum of w_i * answer tokens, i.e. a token mean in which each
    example's tokens carry its weight. Only the last logits are computed (answers end the sequences).
    """
    inputs = dict(batch)
    labels, weights = inputs.pop("labels"), inputs.pop("weights")
    keep = int((labels != IGNORE).sum(dim=1).max()) + 1
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits[:, -keep:-1].float()
    target = labels[:, -keep + 1 :]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(target.shape)
    mask = (target != IGNORE).float() * weights.to(ce.device).view(-1, 1)
    tokens = int((target != IGNORE).sum())
    return (ce * mask).sum() / mask.sum().clamp_min(1e-8), tokens
