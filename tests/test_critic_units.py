"""Critic pieces without training: prompts and parsing, spec checks, answer mask, metrics, families."""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from videolift.core.errors import VideoliftError
from videolift.core.schema import Dimension, Label
from videolift.core.scores import score_line
from videolift.critic.answers import Critic
from videolift.critic.collate import IGNORE, ChatCollator, Item, answer_loss
from videolift.critic.data import SFTExample, class_weights, majority_items
from videolift.critic.evaluate import evaluate_predictions, label_metrics, pairwise_accuracy
from videolift.critic.prompts import one_pass_answer, parse_one_pass
from videolift.critic.score import read_manifest, scored_for
from videolift.critic.sft import epoch_batches
from videolift.critic.spec import CriticSpec, check_checkpoint, video_processor_settings
from videolift.models.tiny_vlm import FAMILIES, TinyVLMConfig, build_tiny_vlm
from videolift.models.vlm import get_family

SC, MS, VF = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity
G, N, B = Label.Good, Label.Normal, Label.Bad


@pytest.fixture(scope="module")
def tiny_qwen():
    return build_tiny_vlm()


def frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (8, 56, 56, 3), dtype=np.uint8)


# ---- prompts and parsing ---------------------------------------------------------------------------


def test_one_pass_answer_round_trips_and_tolerates_markup():
    dims = [SC, MS, VF]
    text = one_pass_answer({SC: (B, "no panda"), MS: (G, ""), VF: (N, "a bit blurry")}, dims)
    assert (
        text
        == "Semantic consistency: Bad. no panda\nMotion smoothness: Good.\nVideo fidelity: Normal. a bit blurry"
    )
    assert parse_one_pass(text, dims) == {SC: (B, "no panda"), MS: (G, ""), VF: (N, "a bit blurry")}
    messy = "**Semantic consistency**: **bad** - no panda\n- motion smoothness: good.\nvideo fidelity: Maybe fine."
    parsed = parse_one_pass(messy, dims)
    assert parsed[SC] == (B, "no panda") and parsed[MS] == (G, "")
    assert parsed[VF][0] is None  # a line without a leading label is unparsed, not a label


def test_one_pass_reasons_typed_over_several_lines_stay_with_their_dimension():
    dims = [SC, MS, VF]
    # A rater's text box lets Enter into a reason; its second line names a dimension's title.
    reason = "The circle is green.\nMotion smoothness: fine, but the colour is wrong."
    text = one_pass_answer({SC: (B, reason), MS: (B, "it jumps"), VF: (G, "")}, dims)
    assert len(text.splitlines()) == 3
    assert parse_one_pass(text, dims) == {
        SC: (B, "The circle is green. Motion smoothness: fine, but the colour is wrong."),
        MS: (B, "it jumps"),
        VF: (G, ""),
    }
    # A model that wraps a reason onto another line: the reason is kept whole.
    wrapped = (
        "Semantic consistency: Bad. The circle\nis green.\nMotion smoothness: Good.\nVideo fidelity: Good."
    )
    assert parse_one_pass(wrapped, dims)[SC] == (B, "The circle is green.")
    # What is not a wrapped reason stays out of one: a line after a blank one, a title said again, or
    # that of a dimension the critic does not rate.
    extra = "Semantic consistency: Bad. Green.\nSemantic consistency: Good.\nVideo fidelity: Good.\n\nOverall poor."
    assert parse_one_pass(extra, [SC]) == {SC: (B, "Green.")}
    assert parse_one_pass(extra, dims)[VF] == (G, "")
    assert (
        one_pass_answer({SC: (B, "two  spaces kept")}, [SC]) == "Semantic consistency: Bad. two  spaces kept"
    )


def test_unparsed_answers_are_null_and_reward_uses_parsed_dimensions():
    critic = Critic(Path("."), CriticSpec(base_model="x", model_type="qwen2_vl"), None, None, None)
    ratings = critic.parse(
        [(SC, "Bad. The panda is missing."), (MS, "The motion is Good overall."), (VF, "good")]
    )
    assert ratings[SC] == {"label": "Bad", "reason": "The panda is missing.", "score": 0.05}
    assert ratings[MS] == {
        "label": None,
        "reason": "",
        "score": None,
        "answer": "The motion is Good overall.",
    }
    assert ratings[VF]["label"] == "Good"
    assert score_line({}, ratings, critic.spec.reward)["reward"] == pytest.approx((0.05 + 0.9) / 2)
    none = critic.parse([(SC, "?"), (MS, ""), (VF, "Fine.")])
    assert score_line({}, none, critic.spec.reward)["reward"] is None

    one_pass = Critic(
        Path("."), CriticSpec(base_model="x", model_type="qwen2_vl", layout="one_pass"), None, None, None
    )
    assert [d for d, _ in one_pass.prompts("a cat")] == [None]
    rated = one_pass.parse([(None, "Semantic consistency: Normal. ok\nVideo fidelity: Bad. blur")])
    assert [rated[d]["label"] for d in (SC, MS, VF)] == ["Normal", None, "Bad"]


# ---- spec ------------------------------------------------------------------------------------------


def test_spec_round_trip_and_mismatch_errors(tmp_path, tiny_qwen):
    processor = copy.deepcopy(tiny_qwen[1])  # resized below
    spec = CriticSpec(
        base_model="base", model_type="qwen2_vl", video_processor=video_processor_settings(processor)
    )
    spec.save(tmp_path)
    loaded = CriticSpec.load(tmp_path)
    assert loaded == spec and loaded.questions[SC].startswith("Please identify the semantic consistency")
    loaded.check_settings(num_frames=8, layout=None)
    with pytest.raises(VideoliftError, match=r"num_frames=16 \(trained with 8\)"):
        loaded.check_settings(num_frames=16)
    check_checkpoint(loaded, processor, "qwen2_vl", tmp_path)
    with pytest.raises(VideoliftError, match="trained on a 'qwen2_vl' model"):
        check_checkpoint(loaded, processor, "llava_onevision", tmp_path)
    alone = copy.deepcopy(tiny_qwen[1])  # --max-pixels alone: the processor's own minimum gives way
    get_family("qwen2_vl").configure_processor(alone, max_pixels=784, min_pixels=None)
    assert alone.video_processor.size["longest_edge"] == alone.video_processor.size["shortest_edge"] == 784
    get_family("qwen2_vl").configure_processor(processor, max_pixels=28 * 28 * 4, min_pixels=28 * 28)
    with pytest.raises(VideoliftError, match=r"video settings differ .*\(size\)"):
        check_checkpoint(loaded, processor, "qwen2_vl", tmp_path)
    with pytest.raises(VideoliftError, match="not a critic checkpoint"):
        CriticSpec.load(tmp_path / "nowhere")


# ---- the answer mask -------------------------------------------------------------------------------


def test_labels_cover_exactly_the_answer_and_end_of_turn(tiny_qwen):
    model, processor = tiny_qwen
    collate = ChatCollator(
        processor, get_family("qwen2_vl"), eos_token_ids=[model.generation_config.eos_token_id]
    )
    tok = processor.tokenizer
    answers = ["Bad. The square moves up, not left.", "Good."]
    texts = ["a red square moves left. Please identify the motion issues in this video.", "x"]
    batch = collate([Item(frames(0), texts[0], answers[0]), Item(frames(1), texts[1], answers[1])])
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for i, (text, answer) in enumerate(zip(texts, answers, strict=True)):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        answer_ids = tok(answer, add_special_tokens=False)["input_ids"] + [end]
        n = len(answer_ids)
        assert labels[-n:].tolist() == answer_ids == ids[-n:].tolist()
        assert (labels[:-n] == IGNORE).all()
        # Everything before the answer is the processor's own encoding of the generation prompt, left-padded.
        prompt = processor(
            text=[collate.render(text)], videos=[frames(i)], return_tensors="pt", do_sample_frames=False
        )["input_ids"][0]
        pad = len(ids) - n - len(prompt)
        assert ids[pad:-n].tolist() == prompt.tolist()
        assert (ids[:pad] == tok.pad_token_id).all() and mask[:pad].sum() == 0 and mask[pad:].all()
        assert collate.render(text).endswith("<|im_start|>assistant\n")
    assert tok.decode(batch["labels"][1][batch["labels"][1] != IGNORE]) == "Good.<|im_end|>"
    # The loss on the last logits equals transformers' own masked loss over the full sequence.
    inputs = {k: v for k, v in batch.items() if k != "weights"}
    with torch.no_grad():
        ours, tokens = answer_loss(model, batch)
        theirs = model(**inputs).loss
    assert tokens == int((batch["labels"] != IGNORE).sum()) and ours.item() == pytest.approx(
        theirs.item(), rel=1e-5
    )
    # Generation batches carry no labels and end with the same prompt.
    gen = collate([Item(frames(0), texts[0])])
    assert "labels" not in gen and gen["input_ids"][0].tolist() == prompt_ids(processor, collate, texts[0])


def prompt_ids(processor, collate, text):
    return processor(
        text=[collate.render(text)], videos=[frames(0)], return_tensors="pt", do_sample_frames=False
    )["input_ids"][0].tolist()


def test_example_weights_scale_the_loss(tiny_qwen):
    model, processor = tiny_qwen
    collate = ChatCollator(processor, get_family("qwen2_vl"))
    items = [Item(frames(0), "a", "Bad. no."), Item(frames(1), "b", "Good. A longer reason here.")]
    with torch.no_grad():
        each = [answer_loss(model, collate([it]))[0].item() for it in items]
        n = [len(collate.answer_ids(it.answer)) for it in items]
        items[1].weight = 3.0
        weighted = answer_loss(model, collate(items))[0].item()
    assert weighted == pytest.approx((each[0] * n[0] + 3 * each[1] * n[1]) / (n[0] + 3 * n[1]), rel=1e-4)


# ---- families ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_and_generates_through_one_collator(family):
    model, processor = build_tiny_vlm(config=TinyVLMConfig(family=family))
    fam = get_family(model.config.model_type)
    targets = fam.lora_targets(model)
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    assert fam.vision_modules(model) and fam.projector_modules(model)
    with_vision = set(fam.lora_targets(model, vision=True))
    assert set(targets) < with_vision  # --tune-vision adds the tower's linear layers ...
    assert not any(
        t.startswith(tuple(p + "." for p in fam.projector_modules(model))) for t in with_vision
    )  # not the projector
    # LoRA with the projector trained whole: peft copies each projector module (Qwen3-VL's DeepStack
    # mergers are a ModuleList, which peft refused).
    from videolift.critic.sft_config import SFTConfig
    from videolift.critic.sft_model import prepare_model

    adapted = prepare_model(copy.deepcopy(model), fam, SFTConfig(adapter="lora", tune_projector=True))
    assert any(p.requires_grad for n, p in adapted.named_parameters() if "modules_to_save" in n)
    collate = ChatCollator(processor, fam, eos_token_ids=[model.generation_config.eos_token_id])
    loss, _ = answer_loss(
        model, collate([Item(frames(0), "a red circle", "Good. fine."), Item(frames(1), "b", "Bad.")])
    )
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad is not None
    batch = collate(
        [Item(frames(0), "a red circle"), Item(frames(1), "a much longer prompt with many words")]
    )
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=collate.pad_id)
    assert out.shape[0] == 2 and batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 3


# ---- data and metrics --------------------------------------------------------------------------------


def test_class_weights_balance_each_dimension():
    ex = [
        SFTExample(Path("v"), "t", "a", labels=((SC, lab),), origin=(Path("h"), {"line": 1}))
        for lab in (B, B, B, G)
    ]
    w = [e.weight for e in class_weights(ex, 1.0)]
    # where each example came from stays, for errors found only when training decodes its video
    assert [e.origin for e in class_weights(ex, 1.0)] == [e.origin for e in ex]
    # SC has 2 classes over 4 examples: Bad weight 4/(2*3), Good 4/(2*1), then scaled to mean 1.
    raw = [4 / 6] * 3 + [2.0]
    assert w == pytest.approx([r * 4 / sum(raw) for r in raw])
    assert sum(w[:3]) == pytest.approx(w[3])  # each class carries the same total weight
    assert [e.weight for e in class_weights(ex, 0.0)] == [1.0] * 4


def test_epoch_batches_are_disjoint_equal_and_seeded():
    r0, r1 = epoch_batches(11, 2, seed=3, epoch=1, rank=0, world=2), epoch_batches(11, 2, 3, 1, 1, 2)
    assert len(r0) == len(r1) == 3  # 6 batches (the last one partial), 3 per rank
    flat = [i for b in r0 + r1 for i in b]
    assert sorted(flat) == list(range(11))
    assert (
        len(epoch_batches(13, 2, 3, 1, 0, 2)) == len(epoch_batches(13, 2, 3, 1, 1, 2)) == 3
    )  # 7th batch dropped
    assert epoch_batches(11, 2, 3, 1, 0, 2) == r0 and epoch_batches(11, 2, 3, 2, 0, 2) != r0


def test_sft_config_refuses_values_out_of_range_naming_the_option():
    import json
    import pickle

    from videolift.critic.sft import SFTConfig

    for kwargs, message in [
        ({"batch_size": 0}, "--batch-size 0: Input should be greater than or equal to 1"),
        ({"grad_accum": 0}, "--grad-accum 0: "),
        ({"lr": 0.0}, "--lr 0.0: Input should be greater than 0"),
        ({"epochs": -1.0}, "--epochs -1.0: "),
        ({"max_steps": 0}, "--max-steps 0: "),
        ({"lora_dropout": 1.0}, "--lora-dropout 1.0: Input should be less than 1"),
        ({"warmup_ratio": 1.5}, "--warmup-ratio 1.5: "),
        ({"keep_checkpoints": 0}, "--keep-checkpoints 0: "),
        ({"dtype": "fp33"}, "--dtype fp33: unknown dtype; use one of float32"),
        ({"frame_sampling": "pairs", "num_frames": 3}, "pairs needs an even --num-frames, got 3"),
        ({"min_pixels": 10, "max_pixels": 5}, "--min-pixels 10 is above --max-pixels 5"),
        ({"betas": (0.9, 1.0)}, "betas.1 1.0: Input should be less than 1"),
        ({"no_such_setting": 1}, "no_such_setting 1: Unexpected keyword argument"),
    ]:
        with pytest.raises(VideoliftError, match=re.escape(message)):
            SFTConfig(**kwargs)
    # [] (every layer, as written by a run before `--lora-targets ""` was refused) stays readable.
    assert SFTConfig(lora_targets=[]).lora_targets == []
    # Valid settings round-trip through train_config.json and pickle (parallel critics) unchanged.
    cfg = SFTConfig(max_steps=3, batch_size=2, lora_targets=["q_proj"], extra={"a": 1})
    assert SFTConfig(**json.loads(json.dumps(cfg.comparable()))) == cfg == pickle.loads(pickle.dumps(cfg))
    assert cfg.comparable()["betas"] == [0.9, 0.999] and cfg.comparable()["lora_alpha"] == 32


def test_label_metrics_hand_computed():
    truth = [G, G, G, N, B, B]
    pred = [G, G, N, N, G, None]
    m = label_metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["accuracy_se"] == pytest.approx(math.sqrt(0.25 * 6 / 5 / 6))  # sample variance of 0/1s, over n
    # Good: P 2/3 R 2/3; Normal: P 1/2 R 1; Bad: P 0 R 0 -> F1 2/3, 2/3, 0.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["confusion"]["Good"] == {"Good": 2, "Normal": 1, "Bad": 0, "unparsed": 0}
    assert m["confusion"]["Bad"] == {"Good": 1, "Normal": 0, "Bad": 0, "unparsed": 1}
    assert (
        m["unparsed"] == 1 and m["majority_label"] == "Good" and m["majority_baseline"] == pytest.approx(0.5)
    )


def test_pairwise_accuracy_counts_ties():
    pairs = [(2, 1, 2, 0), (1, 1, 1, 1), (1, 1, 2, 1), (0, 2, 1, 1), (0, 2, None, 2)]
    p = pairwise_accuracy(pairs)
    assert p["pairs"] == 5 and p["reference_ties"] == 2
    assert p["ties_aware_accuracy"] == pytest.approx(2 / 5)  # pairs 1 and 2 agree
    assert p["decisive_accuracy"] == pytest.approx(1 / 3)  # of pairs 1, 4, 5 only 1


def test_evaluate_predictions_uses_majority_and_same_prompt_pairs():
    from videolift.core.schema import HRARecord

    def rec(vid, prompt, sc, annotator):
        return HRARecord(video=vid, prompt=prompt, annotator=annotator, ratings={SC: {"label": sc}})

    records = [
        rec("a", "p", "Good", "x"),
        rec("a", "p", "Bad", "y"),
        rec("a", "p", "Good", "z"),
        rec("b", "p", "Bad", "x"),
    ]
    items = majority_items(records)
    assert [(it.video_id, it.labels[SC]) for it in items] == [("a", G), ("b", B)]
    lines = {
        "a": {"ratings": {"semantic_consistency": {"label": "Good"}}, "reward": 0.9},
        "b": {"ratings": {"semantic_consistency": {"label": None}}, "reward": None},
    }
    report = evaluate_predictions(items, lines)
    assert report["dimensions"]["semantic_consistency"]["accuracy"] == pytest.approx(0.5)
    assert report["pairwise_same_prompt"]["semantic_consistency"]["ties_aware_accuracy"] == 0.0  # b unparsed
    pairs = [{"a": "a", "b": "b", "winner": "a", "dimension": "overall", "line": 1}]
    judged = evaluate_predictions(items, {**lines, "b": {**lines["b"], "reward": 0.05}}, pairs=pairs)
    assert judged["pairwise_judged"]["overall"]["ties_aware_accuracy"] == 1.0


def test_mean_accuracy_error_counts_a_videos_dimensions_together():
    from videolift.core.schema import HRARecord

    def rec(vid, sc, ms):
        return HRARecord(video=vid, prompt=vid, annotator="x", ratings={SC: {"label": sc}, MS: {"label": ms}})

    items = majority_items([rec("a", "Good", "Good"), rec("b", "Good", "Good"), rec("c", "Good", "Good")])
    said = {"a": ("Good", "Good"), "b": ("Bad", "Bad"), "c": ("Good", "Bad")}  # 2, 0 and 1 of 2 right
    lines = {
        v: {"ratings": {SC.value: {"label": sc}, MS.value: {"label": ms}}, "reward": None}
        for v, (sc, ms) in said.items()
    }
    report = evaluate_predictions(items, lines)
    assert report["mean_accuracy"] == pytest.approx(0.5)
    assert report["mean_accuracy_se"] == pytest.approx(0.5 / math.sqrt(3))  # sd of (1, 0, 0.5) / sqrt(3)


def test_a_model_that_is_not_a_video_vlm_is_refused_before_its_weights_load(tmp_path, monkeypatch):
    """A text LM (or an image-only VLM): its processor has no video processor, said with the families
    videolift knows, and before AutoModelForImageTextToText reads any weight."""
    import transformers

    from test_prompts import build_tiny_chat_lm
    from videolift.models.vlm import load_vlm

    build_tiny_chat_lm(tmp_path / "lm", zero_head=False)
    loaded = []
    monkeypatch.setattr(
        transformers.AutoModelForImageTextToText, "from_pretrained", lambda *a, **k: loaded.append(a)
    )
    with pytest.raises(
        VideoliftError, match=r"its processor \(qwen2\) has no video processor.*qwen2_5_vl, qwen2_vl"
    ):
        load_vlm(tmp_path / "lm")
    assert not loaded


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs the offline hub to fail fast")
def test_an_uncached_hub_critic_base_offline_says_how_to_get_it():
    from videolift.models.vlm import model_type_of

    with pytest.raises(VideoliftError) as err:
        model_type_of("no-such-org/no-such-vlm")
    message = str(err.value)
    assert "cannot read the model config of 'no-such-org/no-such-vlm'" in message
    assert "HF_HUB_OFFLINE is set" in message and "`hf download no-such-org/no-such-vlm`" in message


def test_a_score_line_matches_its_manifest_record_as_json():
    record = {"video": "v.mp4", "prompt": "p", "seed": float("nan")}  # NaN != NaN, yet the same record
    line = {**json.loads(json.dumps(record)), "ratings": {}, "reward": 0.5}
    assert scored_for(line, record)
    assert not scored_for({**line, "seed": 1}, record) and not scored_for(None, record)


@pytest.mark.parametrize("video_id", [{"a": 1}, ["x"], True, "  "])
def test_a_manifest_video_id_that_is_not_an_id_is_refused_by_line_and_field(tmp_path, video_id):
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"video": "a.mp4", "prompt": "p", "video_id": "a"},
        {"video": "b.mp4", "prompt": "p", "video_id": video_id},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(VideoliftError, match=r"m\.jsonl.*line 2.*video_id.*not a video id"):
        read_manifest(manifest)
    rows[1]["video_id"] = 7  # integers (and no id at all) are ids
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["video"] for r in read_manifest(manifest)] == ["a.mp4", "b.mp4"]


def test_sft_settings_refuse_true_for_a_number_and_take_it_for_a_switch():
    from videolift.critic.sft import SFTConfig

    with pytest.raises(VideoliftError, match=r"--epochs: true is not a value of this setting"):
        SFTConfig(epochs=True)
    with pytest.raises(VideoliftError, match=r"--max-steps: false is not a value"):
        SFTConfig(max_steps=False)
    assert SFTConfig(gradient_checkpointing=True, tune_vision=True).gradient_checkpointing


def test_critic_train_options_default_to_their_sft_config_fields_and_say_their_descriptions():
    """Read from the command typer builds: an option whose default or help is written again in the CLI
    drifts from SFTConfig's, which the pipeline and the library API train with."""
    from typing import Literal, get_args, get_origin

    import typer

    from videolift.critic.cli import Adapter, FrameSampling, app
    from videolift.critic.sft_config import SFTConfig, option_name

    params = {p.name: p for p in typer.main.get_command(app).commands["train"].params}
    fields = SFTConfig.__pydantic_fields__
    options = {name for name in fields if name in params}
    assert options == fields.keys() - {"betas", "frame_cache_mb", "extra"}  # the settings no option sets
    for name in options:
        param, field = params[name], fields[name]
        assert option_name(name) in param.opts, name
        assert getattr(param.default, "value", param.default) == field.get_default(), name
        assert param.help == field.description and param.help, name
    for name, choices in {"adapter": Adapter, "frame_sampling": FrameSampling}.items():
        assert get_origin(fields[name].annotation) is Literal
        assert [c.value for c in choices] == list(get_args(fields[name].annotation)), name


def test_the_defaults_docs_critic_md_states_are_sft_configs():
    """docs/critic.md writes some `critic train` defaults out in its prose: they follow SFTConfig."""
    from videolift.critic.sft_config import SFTConfig, option_name

    text = " ".join((Path(__file__).parents[1] / "docs" / "critic.md").read_text().split())
    stated = ["lora_r", "lora_alpha", "lora_dropout", "warmup_ratio", "max_grad_norm", "max_answer_tokens"]
    for name in stated:
        assert f"`{option_name(name)} {SFTConfig.__pydantic_fields__[name].get_default()}`" in text, name


def test_qwen2_5_vl_spaces_its_temporal_patches_by_where_the_frames_were_taken():
    # 8 frames spread over a 49-frame clip at 8 fps: 1.31 frames a second, so each temporal patch of 2
    # frames covers 1.53 s. Without the clip's timing the processor assumes 24 fps (0.083 s a patch),
    # which Qwen2.5-VL's rotary positions round to the same time for every patch.
    from videolift.core.video import FrameTiming, sample_frames

    model, processor = build_tiny_vlm(config=TinyVLMConfig(family="qwen2_5_vl"))
    collate = ChatCollator(processor, get_family(model.config.model_type))
    video = np.random.default_rng(0).integers(0, 255, (49, 28, 28, 3), dtype=np.uint8)
    clip = sample_frames(video, 8, fps=8.0)
    assert clip.timing == FrameTiming(8.0, clip.timing.indices, 49)
    batch = collate([Item(clip, "a red circle", "Good. fine.")])
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([2 / (8 / 49 * 8)], rel=1e-4)
    with torch.no_grad():
        loss, _ = answer_loss(model, batch)
    assert torch.isfinite(loss)


def test_answers_ignore_the_checkpoints_own_sampling_settings(tiny_qwen, monkeypatch):
    # Qwen2/2.5-VL Instruct ship top_k 1 and repetition_penalty 1.05 in generation_config.json; here
    # exaggerated so the answers would change if generate() applied them: a penalty under 1 rewards
    # repeating the prompt's tokens, which greedy decoding otherwise does not do.
    from videolift.critic import answers as answering
    from videolift.critic.answers import generate_answers

    model, processor = tiny_qwen
    collate = ChatCollator(
        processor, get_family("qwen2_vl"), eos_token_ids=[model.generation_config.eos_token_id]
    )
    items = [Item(frames(0), "a red square moves left. Rate the motion.")]

    def answers(temperature: float = 0.0, seeds: range = range(1)) -> list[str]:
        out = []
        for seed in seeds:
            torch.manual_seed(seed)
            out += generate_answers(
                model, processor, collate, items, max_new_tokens=12, temperature=temperature
            )
        return out

    plain = answers()
    saved = model.generation_config
    model.generation_config = copy.deepcopy(saved)
    model.generation_config.update(
        do_sample=True, top_k=1, top_p=0.001, repetition_penalty=1e-4, temperature=0.1
    )
    try:
        assert answers() == plain  # greedy is the plain argmax
        assert len(set(answers(1.0, range(4)))) > 1  # and --temperature samples (top_k 1 would not)
        monkeypatch.delitem(answering.UNSHAPED_LOGITS, "repetition_penalty")
        assert answers() != plain  # the checkpoint's penalty, were it applied, changes the answer
    finally:
        model.generation_config = saved


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_gradient_checkpointing_trains_without_deprecated_calls(adapter):
    import warnings

    from videolift.critic.sft_config import SFTConfig
    from videolift.critic.sft_model import prepare_model

    model, processor = build_tiny_vlm(config=TinyVLMConfig(family="qwen2_vl"))
    fam = get_family(model.config.model_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers 5.2x: gradient_checkpointing_enable
        model = prepare_model(model, fam, SFTConfig(adapter=adapter, gradient_checkpointing=True))
    base = model.get_base_model() if adapter == "lora" else model
    assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
    model.train()
    collate = ChatCollator(processor, fam)
    loss, _ = answer_loss(model, collate([Item(frames(0), "a", "Bad. no.")]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_onevision"])
@pytest.mark.parametrize(("adapter", "tune_vision"), [("lora", False), ("lora", True), ("full", False)])
def test_gradient_checkpointing_backpropagates_through_the_vision_tower_only_when_it_trains(
    family, adapter, tune_vision
):
    """A frozen vision tower has nothing to train: with gradient checkpointing (the GPU recipes') its
    activations must not require grad, else autograd records, recomputes and differentiates the whole
    tower for each video (transformers 5 hooks every sub-model's input embeddings, the vision patch
    embedding too). The LoRA gradients are those of a run without checkpointing."""
    from videolift.critic.sft_config import SFTConfig
    from videolift.critic.sft_model import prepare_model

    fam = get_family(family)
    grads, vision_grad = [], []
    for checkpointing in (False, True):
        model, processor = build_tiny_vlm(config=TinyVLMConfig(family=family))
        (tower,) = (model.get_submodule(name) for name in fam.vision_modules(model))
        cfg = SFTConfig(
            adapter=adapter, gradient_checkpointing=checkpointing, tune_vision=tune_vision, lora_dropout=0.0
        )
        model = prepare_model(model, fam, cfg)
        model.train()
        tower.register_forward_hook(lambda _m, _i, out: vision_grad.append(_first_tensor(out).requires_grad))
        loss, _ = answer_loss(model, ChatCollator(processor, fam)([Item(frames(0), "a", "Bad. no.")]))
        loss.backward()
        # (a LLaVA tower's unused pooling head has LoRA layers that get no gradient either way)
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert vision_grad == [tune_vision, tune_vision]
    assert grads[0].keys() == grads[1].keys() and any(g is not None for g in grads[0].values())
    for name, grad in grads[0].items():
        if grad is None or grads[1][name] is None:
            assert grad is grads[1][name], name
        else:
            torch.testing.assert_close(grads[1][name], grad, msg=name)


def _first_tensor(out: object) -> torch.Tensor:
    """A module's output tensor (transformers returns tuples and ModelOutputs too)."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if hasattr(out, "values") else out
    return next(v for v in values if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("command", ["critic score", "generate"])
def test_sharded_jobs_let_ranks_wait_hours_at_their_barriers(
    monkeypatch, tmp_path, command, tiny_cogvideox_dir
):
    """A rank that finishes its share first waits at a barrier for the others: torch's default 30 minutes
    would kill it on a long run, so both sharded jobs ask accelerate for hours."""
    import accelerate

    asked = {}

    class Stop(Exception):
        pass

    def partial_state(**kwargs):
        asked.update(kwargs)
        raise Stop

    monkeypatch.setattr(accelerate, "PartialState", partial_state)
    with pytest.raises(Stop):
        if command == "critic score":
            from videolift.critic.score import score_manifest

            score_manifest(None, tmp_path / "m.jsonl", tmp_path, tmp_path / "s.jsonl")
        else:
            from videolift.data.generate import generate_videos

            (tmp_path / "p.txt").write_text("a prompt\n")
            generate_videos(str(tiny_cogvideox_dir), tmp_path / "p.txt", tmp_path / "out", device="cpu")
    assert asked["timeout"].total_seconds() >= 6 * 3600


def test_training_batches_are_made_one_ahead_and_their_errors_surface_when_due():
    """The next micro-batch (decoding its videos) is made while the current one trains."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from videolift.critic.sft import _prefetched

    made = []

    def make(i: int) -> int:
        made.append(i)
        if i == 3:
            raise ValueError("video 3 does not decode")
        return 10 * i

    used = []
    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(ValueError, match="video 3"):
        for i, value in _prefetched(pool, make, range(6)):
            time.sleep(0.05)  # training on batch i
            assert i + 1 in made  # the next one was made meanwhile
            used.append(value)
    assert used == [0, 10, 20]  # batch 3's error surfaced when it was due, not a step early
    made.clear()
    with ThreadPoolExecutor(max_workers=1) as pool:
        for i, _ in _prefetched(pool, make, range(100)):
            if i == 1:
                break  # e.g. --stop-at-step
    assert made == [0, 1, 2]  # one ahead at most, dropped


def test_without_clipping_the_gradient_norm_is_measured_in_float32_and_the_gradients_left_alone():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from videolift.critic.sft import _clipped_norm

    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float16))
    p.grad = torch.full((4,), 60000.0, dtype=torch.float16)  # its norm overflows float16
    single = SimpleNamespace(distributed_type=DistributedType.NO, unscale_gradients=lambda: None)
    assert float(_clipped_norm(single, [p], 0.0)) == pytest.approx(120000.0)
    assert torch.equal(p.grad, torch.full((4,), 60000.0, dtype=torch.float16))  # not clipped, not NaN
    assert _clipped_norm(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED), [p], 0.0) is None


def test_under_fp16_mixed_precision_the_measured_gradient_norm_is_the_unscaled_one(monkeypatch):
    """fp16 autocast (accelerate's on a GPU) backpropagates the loss times the GradScaler's scale (65536 at
    first): without clipping the norm was measured on those scaled gradients. Emulated on the CPU: the
    accelerator given a CPU GradScaler and the fp16 setting that accelerate gives it only on a GPU."""
    from accelerate import Accelerator

    from videolift.core.distributed import fresh_accelerator
    from videolift.critic.sft import _clipped_norm

    accelerator = fresh_accelerator(cpu=True)
    accelerator.native_amp, accelerator.scaler = True, torch.amp.GradScaler("cpu", init_scale=1024.0)
    monkeypatch.setattr(Accelerator, "mixed_precision", property(lambda self: "fp16"))
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    x = torch.tensor([[3.0, 4.0]])
    accelerator.backward(model(x).sum())  # gradient x, of norm 5
    assert float(_clipped_norm(accelerator, list(model.parameters()), 0.0)) == pytest.approx(5.0)
    optimizer.step()  # the scaler steps with the gradients unscaled once, not twice
    assert torch.allclose(model.weight.detach(), -0.1 * x)


def test_label_metrics_majority_ties_go_to_the_worse_label_and_macro_f1_skips_unseen_labels():
    """The majority baseline of a tie is the worse label (the conservative baseline), and macro-F1 averages
    only labels seen in the reference or the predictions (a perfect critic scores 1, not 2/3)."""
    good, normal, bad = Label.Good, Label.Normal, Label.Bad
    assert label_metrics([good, bad], [good, good])["majority_label"] == "Bad"
    assert label_metrics([good, good, normal], [good, good, normal])["macro_f1"] == 1.0


def test_merged_scores_and_their_summary_replace_an_earlier_pair_together(tmp_path, monkeypatch):
    """The merge wrote the scores, then their summary: a failure (or a kill) between the two left the new
    scores beside the old summary, which names another run's critic and settings."""
    import errno

    from videolift.critic import score

    out = tmp_path / "s.jsonl"
    old = {
        out: b'{"video": "a.mp4", "old": true}\n',
        score.summary_path(out): b'{"run": {"temperature": 0.5}}\n',
    }
    for path, data in old.items():
        path.write_bytes(data)
    parts = score.parts_dir(out)
    parts.mkdir()
    record = {"video": "a.mp4", "prompt": "a cat"}
    line = {**record, "ratings": {"semantic_consistency": {"label": "Good", "score": 1.0}}, "reward": 1.0}
    (parts / "rank0.jsonl").write_text(json.dumps(line) + "\n")
    synced = []
    real_fsync = os.fsync

    def second_fails(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:  # the scores written, their summary not
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", second_fails)
    with pytest.raises(OSError, match="No space left on device"):
        score._merge([record], parts, out, 0.0, {}, {"temperature": 0.0})
    assert {path: path.read_bytes() for path in old} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, score.summary_path(out).name, parts.name]
    )
    monkeypatch.undo()
    score._merge([record], parts, out, 0.0, {}, {"temperature": 0.0})  # the rerun's merge: the new pair
    assert json.loads(score.summary_path(out).read_text())["run"] == {"temperature": 0.0}
    assert json.loads(out.read_text()) == line and not parts.exists()


def test_scoring_over_parts_of_other_settings_keeps_the_finished_pair_until_the_merge(tmp_path, monkeypatch):
    """A finished OUT (scores and summary) beside OUT.parts of a run of other settings that was killed: a
    third run with --overwrite removes the parts, but OUT and its summary stay whole until its merge replaces
    both (docs/formats.md); killed too, it left the old summary beside no scores file."""
    from types import SimpleNamespace

    import videolift.critic.score as score
    from videolift.core.video import write_video

    for i in range(2):
        write_video(tmp_path / f"videos/v{i}.mp4", np.zeros((4, 16, 16, 3), np.uint8))
    manifest = tmp_path / "m.jsonl"
    lines = [{"video": f"videos/v{i}.mp4", "prompt": "p", "seed": i} for i in range(2)]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    signature, killed = {"critic": "A"}, []

    def rate_chunk(critic, chunk, frames, log_path, **kw):  # a critic's lines, without the critic
        if killed:
            raise KeyboardInterrupt
        for record in chunk:
            score.append_jsonl(log_path, {**record, "ratings": {}, "reward": 1.0})

    monkeypatch.setattr(score, "_run_signature", lambda *a: dict(signature))
    monkeypatch.setattr(score, "_rate_chunk", rate_chunk)
    spec = SimpleNamespace(check_view=(2, "uniform"), num_frames=2, frame_sampling="uniform")
    critic = SimpleNamespace(prompts=lambda text: ["question"], spec=spec)
    out = tmp_path / "scores.jsonl"

    def run(**kw):
        return score.score_manifest(
            critic, manifest, tmp_path, out, progress=False, log=lambda *a: None, **kw
        )

    run()
    pair = out.read_bytes(), score.summary_path(out).read_bytes()
    for critic_name in ("B", "C"):  # B killed with its parts left; C (other settings again) killed over them
        signature["critic"], killed[:] = critic_name, [True]
        with pytest.raises(KeyboardInterrupt):
            run(overwrite=True)
        assert (out.read_bytes(), score.summary_path(out).read_bytes()) == pair
    killed.clear()
    assert run(overwrite=True).skipped == 0
    assert json.loads(score.summary_path(out).read_text())["run"] == {"critic": "C"}


def test_critic_accuracy_errors_are_clustered_by_prompt():
    """The critic's answers on videos of one prompt are correlated (the pipeline's test split keeps a
    prompt's videos together): its accuracy's standard error counts prompts, as eval's errors do."""
    truth = [G, G, G, G]
    pred = [G, G, B, B]  # both videos of prompt p right, both of q wrong: two pieces of evidence, not four
    clustered = label_metrics(truth, pred, ["p", "p", "q", "q"])
    assert clustered["accuracy"] == 0.5
    assert clustered["accuracy_se"] == pytest.approx(0.5)  # sqrt(2 / 1 * (1² + 1²)) / 4
    assert label_metrics(truth, pred)["accuracy_se"] == pytest.approx(math.sqrt(1 / 3) / 2)  # per video
    assert label_metrics(truth, pred, ["p"] * 4)["accuracy_se"] is None  # one prompt: no spread to measure

    from videolift.core.schema import HRARecord

    def rec(vid, prompt):
        ratings = {SC: {"label": "Good"}, MS: {"label": "Good"}}
        return HRARecord(video=vid, prompt=prompt, annotator="x", ratings=ratings)

    items = majority_items([rec("a", "p"), rec("b", "p"), rec("c", "q"), rec("d", "q")])
    said = {"a": "Good", "b": "Good", "c": "Bad", "d": "Bad"}
    lines = {v: {"ratings": {SC.value: {"label": x}, MS.value: {"label": x}}} for v, x in said.items()}
    report = evaluate_predictions(items, lines)
    assert report["dimensions"]["semantic_consistency"]["accuracy_se"] == pytest.approx(0.5)
    assert report["mean_accuracy"] == 0.5 and report["mean_accuracy_se"] == pytest.approx(0.5)


def test_mean_accuracy_error_is_that_of_the_mean_of_the_dimensions_accuracies():
    """A video rated on some dimensions only: the mean accuracy is the mean of the dimensions' accuracies,
    and its error is that mean's (each video's influence on it), not that of the videos' shares."""
    from videolift.core.schema import HRARecord

    def rec(vid, dims):
        return HRARecord(video=vid, prompt=vid, annotator="x", ratings={d: {"label": "Good"} for d in dims})

    items = majority_items([rec("a", [SC, MS]), rec("b", [SC, MS]), rec("c", [SC])])
    said = {"a": "Good", "b": "Bad", "c": "Good"}
    lines = {v: {"ratings": {SC.value: {"label": x}, MS.value: {"label": x}}} for v, x in said.items()}
    report = evaluate_predictions(items, lines)
    assert report["mean_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # influences 1/2 * sum over its dimensions of (right - accuracy) / n: 13/72, -17/72, 4/72
    influences = [13 / 72, -17 / 72, 4 / 72]
    assert report["mean_accuracy_se"] == pytest.approx(math.sqrt(3 / 2 * sum(x * x for x in influences)))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_a_qwen_checkpoint_without_video_settings_gets_qwens_video_budget_not_its_images(family, tmp_path):
    # Qwen's own Qwen2-VL / Qwen2.5-VL repos ship only the image processor's preprocessor_config.json
    # (min_pixels 3136, max_pixels 12845056); transformers then builds the video processor from it, so every
    # frame got an image's budget. qwen-vl-utils (and the video processor's own defaults) give video frames
    # 128 * 28 * 28 to 768 * 28 * 28 pixels.
    from videolift.models.vlm import load_vlm

    base = tmp_path / "base"
    build_tiny_vlm(base, TinyVLMConfig(family=family))
    (base / "processor_config.json").unlink()  # the layout of Qwen's repos: image settings only
    legacy = {
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
    }  # fmt: skip
    (base / "preprocessor_config.json").write_text(json.dumps(legacy))
    _, processor = load_vlm(base)
    video = processor.video_processor
    assert (video.size["shortest_edge"], video.size["longest_edge"]) == (128 * 28 * 28, 768 * 28 * 28)
    assert processor.image_processor.size["longest_edge"] == 12845056  # images keep theirs
    fam = get_family(family)
    fam.configure_processor(processor, None, None)

    def grid(height: int, width: int) -> list[int]:
        clip = np.zeros((8, height, width, 3), np.uint8)
        out = processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[clip], return_tensors="pt",
                        do_sample_frames=False)  # fmt: skip
        return out["video_grid_thw"][0].tolist()

    # qwen-vl-utils' smart_resize of a 720p frame under 768 * 28 * 28 pixels: 560 x 1008 (not 728 x 1288);
    # a 56 x 56 frame is enlarged to 336 x 336 (100,352 pixels at least), not kept at 56 x 56.
    assert grid(720, 1280) == [4, 560 // 14, 1008 // 14]
    assert grid(56, 56) == [4, 336 // 14, 336 // 14]
    # --max-pixels still applies on top, and a checkpoint with video settings of its own keeps them.
    fam.configure_processor(processor, 56 * 56, None)
    assert grid(56, 56) == [4, 4, 4]
    build_tiny_vlm(tmp_path / "own", TinyVLMConfig(family=family))
    _, own = load_vlm(tmp_path / "own")
    assert own.video_processor.size["longest_edge"] == own.video_processor.size["shortest_edge"] == 56 * 56


def test_scoring_with_check_frames_decodes_once_and_keeps_only_the_sampled_frames(tmp_path, monkeypatch):
    """With --check-frames the critic and its check model view a clip differently: scoring read the whole
    clip as RGB for the two views (a 60-s 1080p clip is ~11 GB, in each decoding thread), not only the
    frames they sample."""
    import videolift.core.video as video
    from videolift.critic.score import _frame_loader
    from videolift.critic.spec import CriticSpec

    frames = np.random.default_rng(0).integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
    video.write_video(tmp_path / "v.mp4", frames, fps=8, crf=0, pix_fmt="yuv444p")
    whole = video.read_video(tmp_path / "v.mp4")
    spec = CriticSpec(
        base_model="b",
        model_type="qwen2_vl",
        num_frames=4,
        frame_sampling="pairs",
        check=True,
        check_frames=3,
    )
    converted = []
    to_rgb = video._to_rgb
    monkeypatch.setattr(video, "_to_rgb", lambda frame, size=None: converted.append(1) or to_rgb(frame, size))
    [(fed, seen)] = _frame_loader(spec, tmp_path)([{"video": "v.mp4"}])
    pairs, uniform = video.pair_indices(30, 4), video.sample_indices(30, 3)
    assert np.array_equal(fed, whole[pairs]) and np.array_equal(seen, whole[uniform])
    assert fed.timing.indices == tuple(pairs) and seen.timing == video.FrameTiming(8.0, tuple(uniform), 30)
    assert len(converted) == len(set(pairs) | set(uniform))
    [(fed, seen)] = _frame_loader(spec.model_copy(update={"check_frames": None}), tmp_path)(
        [{"video": "v.mp4"}]
    )
    assert seen is fed  # one view: the same frames object (its questions encoded together)


@pytest.mark.parametrize(
    ("pair", "said"),
    [
        ({"b": "v1", "winner": "a"}, "field 'a': missing or empty"),
        ({"a": 5, "b": "v1", "winner": "a"}, "field 'a': expected a string, got a number"),  # was "missing"
        ({"a": "v0", "b": "", "winner": "a"}, "field 'b': missing or empty"),
    ],
)
def test_a_pairs_line_whose_video_id_is_no_string_says_what_it_is(tmp_path, pair, said):
    from videolift.core.errors import DataError
    from videolift.critic.evaluate import read_pairs

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(pair) + "\n")
    with pytest.raises(DataError, match=rf"pairs\.jsonl, line 1, {said}$"):
        read_pairs(str(path))


def test_the_video_feature_cache_encodes_each_video_once_within_its_budget():
    """Videos known by their pixels: one seen before is not encoded again, one repeated in a batch is
    encoded once, and the least recently used leave when the budget is full (then encoded again)."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from videolift.critic.vision_cache import DIGESTS, VideoFeatureCache, video_digests

    calls: list[int] = []

    def get_video_features(pixels, grid, return_dict=True):  # one feature row of 4 floats per pixel row
        calls.append(len(grid))
        return SimpleNamespace(pooler_output=torch.split(pixels[:, :4] * 2, grid.prod(-1).tolist()))

    def batch(*videos: int) -> dict:
        b = {
            "pixel_values_videos": torch.cat([torch.full((2, 6), float(v)) for v in videos]),
            "video_grid_thw": torch.tensor([[1, 1, 2]] * len(videos)),
            "input_ids": torch.zeros(len(videos), 3, dtype=torch.long),
        }
        return b | {DIGESTS: video_digests(b)}

    per_video = 2 * 4 * 4  # bytes of one video's features
    cache = VideoFeatureCache(
        SimpleNamespace(autocast=nullcontext),  # a real Accelerator would set accelerate's process-wide state
        SimpleNamespace(get_video_features=get_video_features),
        2 * per_video,
    )
    out = cache.inputs(batch(1, 2, 1))
    assert calls == [2] and "pixel_values_videos" not in out and DIGESTS not in out
    assert out["input_ids"].shape == (3, 3)  # the rest of the batch as it was
    features = out["mm_encoder_outputs"]["video"].pooler_output
    assert [float(f[0, 0]) for f in features] == [2.0, 4.0, 2.0]
    cache.inputs(batch(2, 1))
    assert calls == [2] and (cache.encoded, cache.reused) == (2, 3)
    cache.inputs(batch(3))  # the budget holds two videos: 2, used before 1 in the last batch, leaves
    assert calls == [2, 1] and cache.bytes == 2 * per_video
    cache.inputs(batch(1))
    assert calls == [2, 1]
    cache.inputs(batch(2))
    assert calls == [2, 1, 1]
    # A batch without videos passes through unchanged.
    plain = {"input_ids": torch.zeros(1, 3, dtype=torch.long)}
    assert cache.inputs(plain).keys() == plain.keys() and video_digests(plain) is None


def test_the_critic_commands_print_paths_in_square_brackets_as_written(capsys):
    """`critic eval`'s table title (the critic's directory) and the commands' lines naming files were read
    as rich markup: "runs/[v2]/critic" was printed "runs//critic", and "[/x]" raised rich's MarkupError."""
    from videolift.core.schema import HRARecord
    from videolift.critic.cli import _log, _print_report

    items = majority_items([HRARecord(video="a", prompt="p", annotator="x", ratings={SC: {"label": "Good"}})])
    report = evaluate_predictions(items, {"a": {"ratings": {SC.value: {"label": "Good"}}, "reward": None}})
    _print_report(report | {"critic": "runs/[v2]/critic"})
    assert "critic runs/[v2]/critic: 1 videos" in capsys.readouterr().out
    _log("finished; critic in runs/[/x]/critic")
    assert "critic in runs/[/x]/critic" in capsys.readouterr().err
