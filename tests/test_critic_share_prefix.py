"""Shared-prefix scoring (critic.prefix) answers exactly as the unshared batch: greedy answers equal and the
first answer token's logits within float rounding, on the toy critic's VLM and tiny models of every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videolift.critic import prefix as prefix_module
from videolift.critic.answers import generate_answers
from videolift.critic.collate import ChatCollator, Item
from videolift.critic.prompts import DEFAULT_QUESTIONS, user_text
from videolift.models.tiny_vlm import TinyVLMConfig, build_tiny_vlm
from videolift.models.vlm import get_family

TOY_VLM = "src/videolift/toy/assets/vlm"
CAPTIONS = [
    "a red circle",
    "two blue squares move left in a sand desert at night",
    "a green triangle bounces",
    "three yellow circles move up and down in a grass field",
]
QUESTIONS = list(DEFAULT_QUESTIONS.values())


def _load(family: str, tmp_path_factory) -> tuple:
    if family == "toy":
        from pathlib import Path

        from transformers import AutoModelForImageTextToText, AutoProcessor

        root = Path(__file__).resolve().parents[1] / TOY_VLM
        model = AutoModelForImageTextToText.from_pretrained(root).eval()
        return model, AutoProcessor.from_pretrained(root), "qwen2_vl", (9, 48)
    # A larger head than the default: logits far enough apart that a position error shows in the answers.
    model, processor = build_tiny_vlm(config=TinyVLMConfig(family=family, head_scale=10.0))
    return model, processor, family, (8, 56)


@pytest.fixture(scope="module", params=["toy", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision",
                                        "llava_next_video"])  # fmt: skip
def vlm(request, tmp_path_factory):
    model, processor, model_type, shape = _load(request.param, tmp_path_factory)
    eos = model.generation_config.eos_token_id
    collator = ChatCollator(
        processor, get_family(model_type), eos_token_ids=[eos] if isinstance(eos, int) else list(eos or [])
    )
    return request.param, model, processor, collator, shape


def _frames(shape, variant: str, v: int, family: str) -> np.ndarray:
    """``varied``: the videos differ in resolution and (not LLaVA's, whose frames stack into one tensor) in
    frame count, so their prefixes differ in length (Qwen-VL: in video tokens and rotary offsets too)."""
    n_frames, size = shape
    t, h, w = n_frames, size, size
    if variant == "varied":
        t = n_frames if family.startswith("llava") else n_frames - 2 * (v % 2)
        h, w = size * (1 + v // 2), size * (1 + v % 2)
    return np.random.default_rng(v).integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def _items(shape, variant: str, family: str = "toy") -> list[Item]:
    """Four videos x three questions; ``check``: the first question carries per-video text (suffixes of
    different lengths); ``describe``: every question carries a per-video description (a longer prefix);
    ``varied``: videos of different frame counts and resolutions."""
    items = []
    for v, caption in enumerate(CAPTIONS):
        frames = _frames(shape, variant, v, family)
        for q, question in enumerate(QUESTIONS):
            check = (
                " ".join(["circle (expected square)"] * v) or "none."
                if variant == "check" and q == 0
                else None
            )
            description = f"a {'big ' * v}shape moves" if variant == "describe" else None
            items.append(Item(frames, user_text(caption, question, description, check)))
    return items


def _answers(vlm, items, share: bool, **kwargs):
    _, model, processor, collator, _ = vlm
    logits: list[torch.Tensor] = []
    texts = generate_answers(
        model,
        processor,
        collator,
        items,
        max_new_tokens=12,
        share_prefix=share,
        first_logits=logits,
        **kwargs,
    )
    return texts, logits[0]


@pytest.mark.parametrize("variant", ["plain", "check", "describe", "varied"])
def test_shared_prefix_answers_equal_the_unshared_batchs(vlm, variant, monkeypatch):
    family, model, _, collator, shape = vlm
    assert prefix_module.supported("qwen2_vl" if family == "toy" else family)
    items = _items(shape, variant, family)
    plan = prefix_module.plan(collator, items, prefix_module.vision_token_ids(model))
    assert plan is not None and plan.prefix["input_ids"].shape[0] == len(CAPTIONS)  # one prefill per video
    calls, ran = [], []
    monkeypatch.setattr(prefix_module, "plan", lambda *a: calls.append(1) or plan)
    real = prefix_module.generate_shared
    monkeypatch.setattr(prefix_module, "generate_shared", lambda *a, **k: ran.append(r := real(*a, **k)) or r)
    shared, shared_logits = _answers(vlm, items, True)
    assert calls and len(ran) == 1 and ran[0] is not None  # the shared path ran, and did not fall back
    unshared, logits = _answers(vlm, items, False)
    assert shared == unshared
    assert torch.allclose(shared_logits, logits, rtol=1e-4, atol=1e-4), (shared_logits - logits).abs().max()


def test_the_comparison_notices_positions_off_by_one(vlm, monkeypatch):
    """The equivalence test's sensitivity: the same shared path with every continued row's positions one
    further on (the rotary offset of the Qwen-VL families, the attention-mask count of the others)."""
    family, model, _, collator, shape = vlm
    items = _items(shape, "check")
    if prefix_module._keeps_rope_deltas(model):
        real = prefix_module._continue_positions
        monkeypatch.setattr(prefix_module, "_continue_positions", lambda m, offsets: real(m, offsets + 1))
    else:  # a generic family: positions from the mask's running count
        real_generate = model.generate

        def shifted(**kwargs):
            mask = kwargs["attention_mask"]
            return real_generate(**kwargs, position_ids=(mask.long().cumsum(-1) - 1).clamp_min(0) + 1)

        monkeypatch.setattr(model, "generate", shifted)
    _, shared_logits = _answers(vlm, items, True)
    _, logits = _answers(vlm, items, False)
    assert not torch.allclose(shared_logits, logits, rtol=1e-4, atol=1e-4)


def test_sampled_answers_keep_their_seeding(vlm):
    """With --temperature the same rows are drawn in the same order: the same seed, the same answers."""
    _, _, _, _, shape = vlm
    items = _items(shape, "plain")
    torch.manual_seed(7)
    shared, _ = _answers(vlm, items, True, temperature=1.0)
    torch.manual_seed(7)
    unshared, _ = _answers(vlm, items, False, temperature=1.0)
    assert shared == unshared


def test_batches_without_a_shared_video_fall_back():
    model, processor = build_tiny_vlm()
    collator = ChatCollator(processor, get_family("qwen2_vl"), eos_token_ids=[])
    frames = [np.random.default_rng(v).integers(0, 255, (8, 56, 56, 3), dtype=np.uint8) for v in range(2)]
    one_each = [Item(f, user_text("a red circle", QUESTIONS[0])) for f in frames]
    assert prefix_module.plan(collator, one_each, prefix_module.vision_token_ids(model)) is None
    copies = [Item(f.copy(), user_text("a red circle", q)) for f in frames for q in QUESTIONS]
    assert prefix_module.plan(collator, copies, prefix_module.vision_token_ids(model)) is None
    assert not prefix_module.supported("qwen3_5")


def _slowly_sampled(seconds: list[int]) -> tuple:
    """Tiny Qwen2.5-VL and three questions about each of 8-frame clips spread over ``seconds``: its temporal
    positions are spaced by the frames' times, so a slowly sampled video's run past the text after it."""
    from videolift.core.video import Clip, FrameTiming

    model, processor = build_tiny_vlm(config=TinyVLMConfig(family="qwen2_5_vl", head_scale=10.0))
    collator = ChatCollator(processor, get_family("qwen2_5_vl"), eos_token_ids=[])
    items = []
    for v, secs in enumerate(seconds):
        frames = np.random.default_rng(v).integers(0, 255, (8, 56, 56, 3), dtype=np.uint8)
        timing = FrameTiming(24.0, tuple(int(i) for i in np.linspace(0, 24 * secs - 1, 8)), 24 * secs)
        clip = Clip(frames, timing)
        items += [Item(clip, user_text(CAPTIONS[1], q)) for q in QUESTIONS]
    return (None, model, processor, collator, None), items


def test_a_slowly_sampled_qwen2_5_vl_video_keeps_its_positions():
    """The rows' rotary offset is the unshared sequence's, not its prefix's: a 60 s clip's video positions
    run past the caption (the prefix's largest position is a video token's), not past the questions."""
    vlm, items = _slowly_sampled([5, 60])
    _, model, _, collator, _ = vlm
    assert prefix_module.plan(collator, items, prefix_module.vision_token_ids(model)) is not None
    shared, shared_logits = _answers(vlm, items, True)
    unshared, logits = _answers(vlm, items, False)
    assert shared == unshared
    assert torch.allclose(shared_logits, logits, rtol=1e-4, atol=1e-4), (shared_logits - logits).abs().max()


def test_positions_no_offset_continues_fall_back_to_the_unshared_batch(monkeypatch):
    """A clip whose video positions run past its whole prompt (15 min in 8 frames): no one offset places
    both the suffix and the answer where the unshared batch does, so the batch is not shared."""
    vlm, items = _slowly_sampled([5, 900])
    _, model, _, collator, _ = vlm
    assert prefix_module.plan(collator, items, prefix_module.vision_token_ids(model)) is not None
    calls = []
    real = prefix_module.generate_shared
    monkeypatch.setattr(
        prefix_module, "generate_shared", lambda *a, **k: calls.append(r := real(*a, **k)) or r
    )
    shared, shared_logits = _answers(vlm, items, True)
    assert calls == [None]
    unshared, logits = _answers(vlm, items, False)
    assert shared == unshared and torch.equal(shared_logits, logits)


# ---- each video processed once (ChatCollator.encode_items) ---------------------------------------------


def _encoded_alone(collator, item) -> dict[str, torch.Tensor]:
    """An item's prompt as the processor encodes it on its own, video included (what every item was)."""
    kwargs = collator.family.video_kwargs(len(item.frames), getattr(item.frames, "timing", None))
    encoded = collator.processor(
        text=[collator.render(item.user_text)],
        videos=[np.asarray(item.frames)],
        return_tensors="pt",
        **kwargs,
    )
    return {k: v for k, v in encoded.items() if isinstance(v, torch.Tensor)}


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def _timed_items(shape, variant: str) -> list[Item]:
    """``_items`` with frames that carry their timing (as decoded clips do: Qwen-VL's processors read it)."""
    from videolift.core.video import Clip, FrameTiming

    items, clips = _items(shape, variant), {}
    for it in items:
        n = len(it.frames)
        clip = clips.setdefault(
            id(it.frames), Clip(it.frames, FrameTiming(8.0, tuple(range(0, 3 * n, 3)), 3 * n))
        )
        it.frames = clip
    return items


@pytest.fixture
def video_calls(monkeypatch):
    """``count(processor)``: a list that gets an entry at every call of the processor's video processor."""
    calls: list[int] = []

    def count(processor) -> list[int]:
        cls = type(processor.video_processor)
        real = cls.__call__
        monkeypatch.setattr(cls, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
        return calls

    return count


def _one_by_one(collator, items) -> list[dict[str, torch.Tensor]]:
    return [_encoded_alone(collator, it) for it in items]


def _assert_encoded_as_alone(collator, items, calls) -> None:
    """Each item's tensors exactly as encoded alone, from one video processing per video."""
    alone = _one_by_one(collator, items)
    calls.clear()
    for got, want in zip(collator.encode_items(items), alone, strict=True):
        _assert_same_tensors(got, want)
    assert len(calls) == len(CAPTIONS)


@pytest.mark.parametrize("variant", ["plain", "check", "describe"])
@pytest.mark.parametrize("timed", [False, True])
def test_a_videos_questions_encode_as_each_alone_with_one_video_processing(vlm, variant, timed, video_calls):
    """Every tensor of every item, of the shared-prefix plan and of the unshared batch is exactly what encoding
    each question with its video gives; the video processor runs once per video (it ran per question)."""
    _, model, processor, collator, shape = vlm
    items = (_timed_items if timed else _items)(shape, variant)
    calls = video_calls(processor)
    _assert_encoded_as_alone(collator, items, calls)

    vision = prefix_module.vision_token_ids(model)
    calls.clear()
    shared, batch = prefix_module.plan(collator, items, vision), collator(items)
    assert len(calls) == 2 * len(CAPTIONS)  # once per video each, not once per question
    with pytest.MonkeyPatch.context() as patch:  # as they were built from every question encoded alone
        patch.setattr(ChatCollator, "encode_items", _one_by_one)
        reference, reference_batch = prefix_module.plan(collator, items, vision), collator(items)
    _assert_same_tensors(shared.prefix, reference.prefix)
    _assert_same_tensors(shared.suffix, reference.suffix)
    assert torch.equal(shared.rows, reference.rows)
    _assert_same_tensors(batch, reference_batch)


def test_answers_equal_those_of_every_question_encoded_alone(vlm, monkeypatch):
    items = _timed_items(vlm[4], "check")
    shared, shared_logits = _answers(vlm, items, True)
    unshared, logits = _answers(vlm, items, False)
    monkeypatch.setattr(ChatCollator, "encode_items", _one_by_one)
    assert (shared, unshared) == (_answers(vlm, items, True)[0], _answers(vlm, items, False)[0])
    assert torch.equal(shared_logits, _answers(vlm, items, True)[1])
    assert torch.equal(logits, _answers(vlm, items, False)[1])


def test_unshared_families_batch_as_each_question_alone(video_calls):
    """Qwen3.5 (never a shared prefix): its encodings, timestamps included, from one processing a video."""
    _, processor = build_tiny_vlm(config=TinyVLMConfig(family="qwen3_5"))
    collator = ChatCollator(processor, get_family("qwen3_5"), eos_token_ids=[])
    _assert_encoded_as_alone(collator, _timed_items((8, 56), "check"), video_calls(processor))


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_an_odd_frame_count_with_timing_is_still_processed_once(family, video_calls):
    """Qwen3-VL's processor pads the given frame indices to a whole temporal patch (an odd count: in place,
    in the video processor's output metadata, which are the call's own options): still one processing."""
    _, processor = build_tiny_vlm(config=TinyVLMConfig(family=family))
    collator = ChatCollator(processor, get_family(family), eos_token_ids=[])
    _assert_encoded_as_alone(collator, _timed_items((9, 56), "check"), video_calls(processor))


def test_another_video_or_other_options_are_processed_again():
    """The stand-in answers only the first call's arguments again (the same video objects, equal options)."""
    from videolift.critic.collate import _ProcessedOnce

    seen = []
    once = _ProcessedOnce(lambda videos, **kw: seen.append(1) or {"n": len(seen)})
    a, b = [np.zeros((2, 4, 4, 3), np.uint8)], [np.zeros((2, 4, 4, 3), np.uint8)]
    assert [once(a, size=1)["n"], once(a, size=1)["n"], once(b, size=1)["n"], once(a, size=2)["n"]] == [
        1,
        1,
        2,
        3,
    ]
    assert once(a, size=1) is not once(a, size=1)  # copies: the processor adds its own keys
