"""A trained critic, loaded for generation, and its answers: ratings of (video, caption) pairs, and a
describe-then-rate or check-then-rate critic's descriptions and checks. All (video, question) prompts of
a batch go into one left-padded ``generate`` call (KV cache on), so three questions per video cost one
batch, not three calls."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.errors import VideoliftError
from videolift.core.schema import Dimension, Label, parse_answer
from videolift.core.scores import rating_entry
from videolift.critic.prompts import parse_one_pass, user_text
from videolift.critic.spec import CriticSpec, check_checkpoint


@dataclass
class Critic:
    directory: Path
    spec: CriticSpec
    model: Any
    processor: Any
    collator: Any
    base: str | None = None  # where the base model was loaded from, if not the spec's
    share_prefix: bool = True  # a video's questions answered from one prefill of it (critic.prefix)
    _checker: Any = field(default=None, repr=False)

    @property
    def shares_prefix(self) -> bool:
        """Whether its ratings are answered from shared prefixes: asked (``share_prefix``), several
        questions per video (the per-dimension layout) and a family that supports it."""
        from videolift.critic.prefix import supported

        return self.share_prefix and self.spec.layout != "one_pass" and supported(self.spec.model_type)

    def prompts(
        self, caption: str, description: str | None = None, check: str | None = None
    ) -> list[tuple[Dimension | None, str]]:
        """(dimension, user text) per generation for one video; dimension None in the one-pass layout.
        A describe-then-rate critic needs the video's ``description`` (from ``describe``), a
        check-then-rate critic the caption's ``check`` (from ``check``)."""
        if self.spec.layout == "one_pass":
            return [(None, user_text(caption, self.spec.one_pass_question, description, check))]
        return [
            (
                d,
                user_text(
                    caption, self.spec.question(d), description, check if self.spec.check_in(d) else None
                ),
            )
            for d in self.spec.dimensions
        ]

    @property
    def checker(self) -> Any:
        """The check model of a check-then-rate critic, loaded on first use."""
        if self._checker is None:
            from videolift.critic.checks import load_checker

            self._checker = load_checker(
                self.spec, critic_model=self.model, collator=self.collator, base=self.base
            )
        return self._checker

    def parse(self, answers: list[tuple[Dimension | None, str]]) -> dict[Dimension, dict[str, Any]]:
        """Answers of one video -> {dim: {label, reason, score[, answer]}}."""
        parsed: dict[Dimension, tuple[Label | None, str, str]] = {}
        for dim, text in answers:
            if dim is None:
                for d, (label, reason) in parse_one_pass(text, self.spec.dimensions).items():
                    parsed[d] = (label, reason, text)
            else:
                label, reason = parse_answer(text)
                parsed[dim] = (label, reason, text)
        out: dict[Dimension, dict[str, Any]] = {}
        for dim in self.spec.dimensions:
            label, reason, raw = parsed[dim]
            out[dim] = rating_entry(label, reason, self.spec.reward, answer=raw)
        return out


def check_finished(directory: Path) -> None:
    """Refuse a `critic train` OUT whose run has not finished: its files may mix two runs (an
    interrupted --overwrite leaves the old critic_spec.json beside the new weights)."""
    from videolift.critic.sft_config import TRAIN_CONFIG, TRAIN_SUMMARY

    if (directory / TRAIN_CONFIG).exists() and not (directory / TRAIN_SUMMARY).exists():
        raise VideoliftError(
            f"{directory}: holds a `critic train` run that has not finished ({TRAIN_CONFIG} without "
            f"{TRAIN_SUMMARY}); continue it with --resume, or write one of its checkpoints as a critic "
            "with `videolift critic export`"
        )


def load_critic(
    directory: str | Path,
    *,
    base: str | None = None,
    device: Any = "auto",
    dtype: str = "auto",
    merge_lora: bool = False,
    share_prefix: bool = True,
    **expected: Any,
) -> Critic:
    """Load a critic directory (peft adapter + processor + spec, or a full model) for generation.

    ``base`` overrides the base model path recorded in the spec (e.g. after moving it); ``expected``
    settings (``num_frames=8``, ``layout=...``) must match the spec or loading fails. ``device`` auto:
    this process's GPU under a launcher (else the first, else the CPU); ``dtype`` auto: bfloat16 on a GPU,
    float32 on the CPU. ``share_prefix``: rate each video's questions from one prefill of it, where its
    family supports that (``Critic.shares_prefix``).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from videolift.core.distributed import process_state
    from videolift.critic.collate import ChatCollator
    from videolift.models.base import auto_dtype, resolve_dtype
    from videolift.models.vlm import get_family, model_type_of

    if device == "auto":
        device = process_state().device
    if dtype == "auto":
        dtype = auto_dtype(device)
    directory = Path(directory)
    check_finished(directory)
    spec = CriticSpec.load(directory)
    spec.check_settings(**expected)
    source = str(base or spec.base_model) if spec.adapter == "lora" else str(directory)
    processor = AutoProcessor.from_pretrained(str(directory))
    check_checkpoint(spec, processor, model_type_of(source), directory)
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=resolve_dtype(dtype))
    if spec.adapter == "lora":
        from peft import PeftModel

        with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(directory))
        if merge_lora:
            model = model.merge_and_unload()
    model = model.to(device).eval()
    eos = model.generation_config.eos_token_id
    family = get_family(spec.model_type)
    # As training set it: the saved processor holds the budget already, except where the family
    # applies it per call (Qwen3-VL).
    family.configure_processor(processor, spec.max_pixels, spec.min_pixels)
    collator = ChatCollator(
        processor, family, eos_token_ids=[eos] if isinstance(eos, int) else list(eos or [])
    )
    return Critic(directory, spec, model, processor, collator, base=base, share_prefix=share_prefix)


def generate(
    critic: Critic,
    items: list[Any],
    *,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
) -> list[str]:
    """One answer per ``collate.Item`` in a single left-padded ``generate`` call."""
    return generate_answers(
        critic.model,
        critic.processor,
        critic.collator,
        items,
        max_new_tokens=max_new_tokens or critic.spec.max_new_tokens,
        temperature=temperature,
        share_prefix=critic.shares_prefix,
    )


# Chat checkpoints ship sampling settings in generation_config.json (Qwen2/2.5-VL Instruct: top_k 1,
# repetition_penalty 1.05) that generate() would apply: greedy answers would penalise every token of the
# question (the end-of-turn token too) and --temperature would never sample. The critic was trained
# teacher-forced on the plain distribution, so it is read as such.
UNSHAPED_LOGITS = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "top_k": None,
    "top_p": None,
    "min_p": None,
    "typical_p": None,
}


def answer_settings(collator: Any, *, max_new_tokens: int | None, temperature: float = 0.0) -> dict[str, Any]:
    """``generate``'s settings for answers: the collator's stop ids (the end-of-turn token training
    appends, and the tokenizer's and checkpoint's own ends) and pad id, greedy or sampled, the logits
    unshaped. ``max_new_tokens`` None: left out (a saved config without a budget of its own)."""
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    budget = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    return dict(
        **budget,
        eos_token_id=collator.stop_ids,
        pad_token_id=collator.pad_id,
        num_beams=1,
        use_cache=True,
        **UNSHAPED_LOGITS,
        **sampling,
    )


def save_answer_config(model: Any, processor: Any, out: Path, max_new_tokens: int | None = None) -> None:
    """``OUT/generation_config.json`` as ``generate_answers`` answers (greedy): plain transformers
    ``generate`` then stops where the fine-tuned model was taught to end its answer, and ignores the
    base's sampling and repetition penalty, as ``critic score`` does. A full model's ``save_pretrained``
    wrote the base's (whose end of text may not be the template's end of turn: Qwen2-VL-2B's
    ``<|endoftext|>``); a peft adapter's wrote none. ``max_new_tokens``: the answer budget, if known."""
    from transformers import GenerationConfig

    from videolift.critic.collate import ChatCollator
    from videolift.critic.sft_model import eos_ids
    from videolift.models.vlm import get_family

    collator = ChatCollator(processor, get_family(model.config.model_type), eos_token_ids=eos_ids(model))
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    # temperature: a greedy config that keeps the base's (Qwen Instruct: 0.1) is refused on saving
    config.update(**answer_settings(collator, max_new_tokens=max_new_tokens), temperature=None)
    config._from_model_config = False  # the critic's own settings, never re-derived from its config.json
    config.save_pretrained(out)


def set_answer_budget(out: Path, max_new_tokens: int) -> None:
    """The answer budget (``critic_spec.json``'s) in ``OUT/generation_config.json``."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(out)
    config.max_new_tokens = max_new_tokens
    config.save_pretrained(out)


def generate_answers(
    model: Any,
    processor: Any,
    collator: Any,
    items: list[Any],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    share_prefix: bool = False,
    first_logits: list[Any] | None = None,
) -> list[str]:
    """Greedy (or sampled) answers of any VLM to ``collate.Item`` prompts, in one batched call.

    ``share_prefix``: consecutive items with the same frames (one video's questions) are answered from one
    prefill of their common token prefix (``critic.prefix``; the unshared batch where it does not apply);
    the caller checks that the model's family supports it (``critic.prefix.supported``).
    ``first_logits``: a list that receives the (items, vocabulary) logits of the answers' first tokens.
    """
    import torch

    device = next(model.parameters()).device
    settings = answer_settings(collator, max_new_tokens=max_new_tokens, temperature=temperature)
    if first_logits is not None:  # tests: the logits of each answer's first token
        settings |= {"return_dict_in_generate": True, "output_logits": True}
    shared = out = None
    if share_prefix:
        from videolift.critic.prefix import plan, vision_token_ids

        shared = plan(collator, items, vision_token_ids(model))
    with torch.inference_mode():
        if shared is not None:
            from videolift.critic.prefix import generate_shared

            n = shared.length
            out = generate_shared(model, shared, device, **settings)
        if out is None:
            batch = {k: v.to(device) for k, v in collator(items).items()}
            n = batch["input_ids"].shape[1]
            out = model.generate(**batch, **settings)
    if first_logits is not None:
        first_logits.append(out.logits[0].float().cpu())
        out = out.sequences
    return processor.batch_decode(out[:, n:], skip_special_tokens=True)


def describe(critic: Critic, frames: list[np.ndarray]) -> list[str]:
    """A describe-then-rate critic's own greedy descriptions of videos, in one generate call."""
    from videolift.critic.collate import Item

    if not frames:
        return []
    items = [Item(f, critic.spec.describe_instruction) for f in frames]
    return [t.strip() for t in generate(critic, items, max_new_tokens=critic.spec.describe_max_new_tokens)]


def check(critic: Critic, videos: list[tuple[np.ndarray, str]]) -> list[str]:
    """A check-then-rate critic's checks of (frames, caption) pairs, in one forward pass; the frames as
    ``spec.check_view`` samples them."""
    from videolift.critic.checks import check_captions

    return check_captions(
        critic.checker,
        [frames for frames, _ in videos],
        [caption for _, caption in videos],
        instruction=critic.spec.check_instruction,
        threshold=critic.spec.check_threshold,
    )


def rate(
    critic: Critic,
    videos: list[tuple[np.ndarray, str]],
    *,
    temperature: float = 0.0,
    descriptions: list[str] | None = None,
    checks: list[str] | None = None,
) -> list[dict[Dimension, dict[str, Any]]]:
    """Ratings of (frames, caption) pairs, all their questions in one generate call. A describe-then-rate
    critic describes the videos first (one more call) unless ``descriptions`` are given; a
    check-then-rate critic checks the captions first (one forward pass) unless ``checks`` are given."""
    from videolift.critic.collate import Item

    if critic.spec.describe and descriptions is None:
        descriptions = describe(critic, [frames for frames, _ in videos])
    if critic.spec.check and checks is None:
        if critic.spec.check_frames:
            raise ValueError("this critic's check model reads its own frames (check_frames): pass checks=")
        checks = check(critic, videos)
    seen = descriptions if critic.spec.describe else [None] * len(videos)
    checked = checks if critic.spec.check else [None] * len(videos)
    jobs = [
        (v, dim, Item(frames, text))
        for v, (frames, caption) in enumerate(videos)
        for dim, text in critic.prompts(caption, seen[v], checked[v])
    ]
    answers = generate(critic, [job[2] for job in jobs], temperature=temperature) if jobs else []
    per_video: list[list[tuple[Dimension | None, str]]] = [[] for _ in videos]
    for (v, dim, _), answer in zip(jobs, answers, strict=True):
        per_video[v].append((dim, answer))
    return [critic.parse(a) for a in per_video]
