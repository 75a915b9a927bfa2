"""Alignment: pure pieces (scores, RS filter, reward transforms, loss coefficients, sampler, config)."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videolift.align.cache import preprocess_video
from videolift.align.config import AlignConfig
from videolift.align.data import CachedItem, StepDataset, Stream, WeightedStream, loss_coefficients
from videolift.align.weights import rescore, select_synthetic, transform_rewards
from videolift.core.errors import DataError, VideoliftError
from videolift.core.reward import RewardConfig
from videolift.core.schema import Label, all_good
from videolift.core.scores import read_scores

DIMS = ("semantic_consistency", "motion_smoothness", "video_fidelity")
REPO = Path(__file__).resolve().parents[1]


def _line(video, reward, labels):
    ratings = {d: {"label": lab, "reason": "r", "score": 0.5} for d, lab in zip(DIMS, labels, strict=True)}
    return json.dumps({"video": video, "prompt": f"prompt of {video}", "ratings": ratings, "reward": reward})


@pytest.fixture
def scores(tmp_path):
    path = tmp_path / "scores.jsonl"
    lines = [
        _line("a.mp4", 0.9, ["Good", "Good", "Good"]),
        _line("b.mp4", 0.05, ["Bad", "Bad", "Bad"]),
        _line("c.mp4", None, [None, "Good", "Good"]),  # unparsed critic answer, no reward
        _line("d.mp4", 0.667, ["Good", "Normal", "Good"]),
        _line("e.mp4", 0.9, ["good", "GOOD", "Good"]),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rwl_keeps_rewarded_videos_with_raw_reward_weights(scores):
    samples, counts = select_synthetic(read_scores(scores), "rwl")
    assert [s.video for s in samples] == ["a.mp4", "b.mp4", "d.mp4", "e.mp4"]
    assert [s.weight for s in samples] == [0.9, 0.05, 0.667, 0.9]
    assert counts["dropped_null_reward"] == 1 and counts["kept"] == 4 and counts["rated"] == 5


def test_rs_keeps_only_all_good_with_weight_one(scores):
    samples, counts = select_synthetic(read_scores(scores), "rs")
    assert [s.video for s in samples] == ["a.mp4", "e.mp4"]
    assert {s.weight for s in samples} == {1.0}
    assert counts["dropped_not_all_good"] == 3
    assert not all_good({"semantic_consistency": "Good", "motion_smoothness": None})  # unparsed
    assert not all_good({})  # rated on nothing


def test_a_subset_critics_videos_are_all_good_on_the_dimensions_it_rates(tmp_path):
    """`critic train --dimensions` critics write only their dimensions: RS keeps the videos Good on those,
    and evaluation counts them all-Good, pairs them for its differences and tables only those. A line
    without a dimension the file's other lines rate is not Good on it."""
    from videolift.evaluate.metrics import paired_difference, pairwise, summarize

    def line(video, labels):
        ratings = {d: {"label": lab, "reason": "r"} for d, lab in labels.items()}
        return json.dumps({"video": video, "prompt": "p", "ratings": ratings, "reward": 0.5})

    path = tmp_path / "scores.jsonl"
    path.write_text(
        line("a.mp4", {"semantic_consistency": "Good", "video_fidelity": "Good"}) + "\n"
        + line("b.mp4", {"semantic_consistency": "Good", "video_fidelity": "Normal"}) + "\n"
        + line("c.mp4", {"semantic_consistency": "Good", "video_fidelity": None}) + "\n"
    )  # fmt: skip
    assert [s.video for s in select_synthetic(read_scores(path), "rs")[0]] == ["a.mp4"]
    with path.open("a") as handle:  # merged with a line rated on semantics alone: not Good on fidelity
        handle.write(line("d.mp4", {"semantic_consistency": "Good"}) + "\n")
    assert [s.video for s in select_synthetic(read_scores(path), "rs")[0]] == ["a.mp4"]
    good, normal = {"semantic_consistency": "Good"}, {"semantic_consistency": "Normal"}
    summary = summarize([good, normal])
    assert summary["all_good_rate"] == 0.5 and list(summary["dimensions"]) == ["semantic_consistency"]
    assert summarize([good, {"video_fidelity": "Good"}])["all_good_rate"] == 0.0
    diff = paired_difference([good, good], [normal, good])
    assert diff["all_good_rate"]["diff"] == 0.5 and diff["mean_reward"]["pairs"] == 2
    assert list(pairwise([good], [normal])) == ["semantic_consistency", "overall"]


def test_labels_in_any_case_are_read_canonical_and_counted_as_evaluation_counts_them(scores):
    from videolift.evaluate.metrics import summarize

    items = read_scores(scores)
    e = items[4]  # rated "good", "GOOD", "Good"
    assert all(label is Label.Good for label in e.labels.values())  # one spelling for every reader
    # RS keeps the videos evaluation's all-Good rate counts, by one definition of all Good.
    kept = {s.video for s in select_synthetic(items, "rs")[0]}
    assert [i.video in kept for i in items] == [summarize([i.labels])["all_good_rate"] == 1 for i in items]


def test_an_unknown_label_is_an_error_not_merely_not_all_good():
    # Parsed before any is tested, so a Bad ahead of it does not hide it.
    with pytest.raises(ValueError, match="unknown label 'Great'"):
        all_good({"semantic_consistency": "Bad", "motion_smoothness": "Great", "video_fidelity": "Good"})


def test_rescore_recomputes_rewards_from_labels(scores):
    semantic_only = RewardConfig(
        aggregation="weighted",
        weights={"semantic_consistency": 1, "motion_smoothness": 0, "video_fidelity": 0},
    )
    items = rescore(read_scores(scores), semantic_only, scores)
    # b: Bad on semantics; c: its semantic answer was unparsed and nothing else counts, so no reward
    assert [(i.video, i.reward) for i in items] == [
        ("a.mp4", 0.9),
        ("b.mp4", 0.05),
        ("c.mp4", None),
        ("d.mp4", 0.9),
        ("e.mp4", 0.9),
    ]
    assert items[0].labels == read_scores(scores)[0].labels
    by_min = rescore(read_scores(scores), RewardConfig(aggregation="min"), scores)
    assert [i.reward for i in by_min] == [0.9, 0.05, 0.9, 0.2, 0.9]  # c: the two parsed labels count
    bad = scores.parent / "bad.jsonl"
    bad.write_text(_line("a.mp4", 0.9, ["Good", "Great", "Good"]) + "\n")
    with pytest.raises(
        DataError, match=r"bad.jsonl, line 1, field 'ratings.motion_smoothness': unknown label"
    ):
        rescore(read_scores(bad), RewardConfig(), bad)


def test_align_reward_config_reweights_the_scores_file(scores, tmp_path):
    from videolift.align.inputs import load_samples

    req = {"model": "m", "scores": scores, "videos": "v", "out": tmp_path / "o"}
    (tmp_path / "min.yaml").write_text("aggregation: min\n")
    as_scored = load_samples(AlignConfig(**req))[0]
    by_min = load_samples(AlignConfig(reward_config=tmp_path / "min.yaml", **req))[0]
    assert [s.weight for s in as_scored] == [0.9, 0.05, 0.667, 0.9]
    assert [(s.video, s.weight) for s in by_min] == [("a.mp4", 0.9), ("b.mp4", 0.05), ("c.mp4", 0.9),
                                                     ("d.mp4", 0.2), ("e.mp4", 0.9)]  # fmt: skip
    with pytest.raises(DataError, match="reward config not found"):
        load_samples(AlignConfig(reward_config=tmp_path / "nope.yaml", **req))
    # A subset critic's scores (semantics and motion) under a reward of fidelity alone: no reward, and why.
    subset = tmp_path / "subset.jsonl"
    line = json.loads(_line("a.mp4", 0.9, ["Good"] * 3))
    del line["ratings"]["video_fidelity"]
    subset.write_text(json.dumps(line) + "\n")
    (tmp_path / "vf.yaml").write_text(
        "aggregation: weighted\nweights: {semantic_consistency: 0, motion_smoothness: 0, video_fidelity: 1}\n"
    )
    with pytest.raises(VideoliftError) as info:
        load_samples(AlignConfig(**(req | {"scores": subset, "reward_config": tmp_path / "vf.yaml"})))
    assert "gives every video a null reward: it counts no dimension with a parsed label (the file rates " \
        "semantic_consistency, motion_smoothness)" in str(info.value)  # fmt: skip


def test_rewards_above_one_are_warned_about_once_loaded(scores, tmp_path):
    from videolift.align.inputs import load_samples

    req = {"model": "m", "videos": "v", "out": tmp_path / "o"}
    assert "warning" not in load_samples(AlignConfig(scores=scores, **req))[2]  # the paper's scale
    big = tmp_path / "big.jsonl"
    big.write_text(scores.read_text() + _line("f.mp4", 1e6, ["Good", "Good", "Good"]) + "\n")
    raw = load_samples(AlignConfig(scores=big, **req))[2]["warning"]
    assert str(big) in raw and "1 of 5 rewards above 1 (the largest 1e+06, line 6)" in raw
    assert "--weight-transform normalized" in raw and "real-data term" not in raw  # there is none
    exp = load_samples(AlignConfig(scores=big, weight_transform="exp", exp_temperature=0.2, **req))[2]
    assert "units of --exp-temperature (0.2)" in exp["warning"]
    assert "warning" not in load_samples(AlignConfig(scores=big, weight_transform="normalized", **req))[2]
    assert "warning" not in load_samples(AlignConfig(scores=big, method="rs", **req))[2]  # weights are 1
    # A reward config with scores above 1 rescales every reward: said the same way.
    (tmp_path / "tens.yaml").write_text("scores: {Good: 10, Normal: 2, Bad: 0}\n")
    tens = load_samples(AlignConfig(scores=scores, reward_config=tmp_path / "tens.yaml", **req))[2]
    assert "4 of 5 rewards above 1 (the largest 10, line 1)" in tens["warning"]  # c: its two parsed labels


def test_real_data_options_without_a_real_set_are_warned_about(scores, tmp_path):
    from videolift.align.inputs import load_samples

    req = {"model": "m", "scores": scores, "videos": "v", "out": tmp_path / "o"}
    assert "warning" not in load_samples(AlignConfig(lambda_real=1.0, **req))[2]  # the default: no effect
    data = load_samples(AlignConfig(lambda_real=0.5, real_batch_size=16, **req))[2]
    assert "--lambda-real 0.5, --real-batch-size 16 set without --real" in data["warning"]


def test_malformed_scores_are_located(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        _line("a.mp4", 0.9, ["Good"] * 3) + "\n" + json.dumps({"video": "b.mp4", "reward": 1}) + "\n"
    )
    with pytest.raises(DataError, match=r"s.jsonl, line 2, field 'prompt'"):
        read_scores(path)
    for reward in ("high", True, float("nan"), float("inf")):
        path.write_text(_line("a.mp4", reward, ["Good"] * 3) + "\n")
        with pytest.raises(DataError, match=r"line 1, field 'reward': expected a finite number or null"):
            read_scores(path)
    # A rating given as a bare label is not an unparsed answer: RS would drop the video silently.
    bare = json.loads(_line("a.mp4", 0.9, ["Good"] * 3)) | {"ratings": {d: "Good" for d in DIMS}}
    path.write_text(_line("a.mp4", 0.9, ["Good"] * 3) + "\n" + json.dumps(bare) + "\n")
    with pytest.raises(DataError, match=r"line 2, field 'ratings.semantic_consistency': expected"):
        read_scores(path)
    path.write_text(_line("a.mp4", 0.9, [None] * 3).replace('"score": 0.5', '"score": null') + "\n")
    assert read_scores(path)[0].labels == dict.fromkeys(DIMS)  # null labels: unparsed, accepted
    # A misspelt label or dimension is refused, not counted as "not Good" (RS) or ignored (RWL).
    path.write_text(_line("a.mp4", 0.9, ["Good", "Great", "Good"]) + "\n")
    with pytest.raises(DataError, match=r"line 1, field 'ratings.motion_smoothness': unknown label 'Great'"):
        read_scores(path)
    path.write_text(_line("a.mp4", 0.9, ["Good"] * 3).replace("video_fidelity", "fidelity") + "\n")
    with pytest.raises(DataError, match=r"line 1, field 'ratings.fidelity': unknown dimension 'fidelity'"):
        read_scores(path)
    # A negative reward under raw weights is named by its line.
    path.write_text(_line("a.mp4", 0.9, ["Good"] * 3) + "\n" + _line("b.mp4", -0.2, ["Bad"] * 3) + "\n")
    with pytest.raises(DataError, match=r"line 2, field 'reward': -0.2: weight_transform=raw needs"):
        select_synthetic(read_scores(path), "rwl", "raw")
    from videolift.align.config import AlignConfig
    from videolift.align.inputs import load_samples

    cfg = AlignConfig(model="m", scores=path, videos=tmp_path, out=tmp_path / "o", weight_transform="raw")
    with pytest.raises(DataError) as info:  # named as every reader names a line: file, line, field
        load_samples(cfg)
    assert str(info.value).startswith(f"{path}, line 2, field 'reward': -0.2: weight_transform=raw needs")
    assert len(select_synthetic(read_scores(path), "rwl", "exp")[0]) == 2


def test_reward_transforms():
    rewards = [0.05, 0.2, 0.9, 0.9]
    assert transform_rewards(rewards, "raw") == rewards
    normalized = transform_rewards(rewards, "normalized")
    assert math.isclose(sum(normalized) / 4, 1.0) and math.isclose(normalized[2] / normalized[0], 18.0)
    sharp = transform_rewards(rewards, "exp", temperature=0.1)
    assert math.isclose(sum(sharp) / 4, 1.0) and sharp[0] < sharp[1] < sharp[2] == sharp[3]
    assert sharp[2] / sharp[0] > normalized[2] / normalized[0]  # sharper than proportional
    with pytest.raises(ValueError, match="rewards >= 0"):
        transform_rewards([-0.1, 0.5], "raw")


def test_loss_coefficients_give_the_lift_objective():
    weights, syn_losses, real_losses, lam = (
        [0.9, 0.05, 0.2],
        np.array([1.0, 2.0, 3.0]),
        np.array([4.0, 6.0]),
        0.5,
    )
    coef = np.array(loss_coefficients(weights, len(real_losses), lam))
    expected = np.mean(np.array(weights) * syn_losses) + lam * real_losses.mean()
    assert math.isclose(coef @ np.concatenate([syn_losses, real_losses]), expected)
    assert loss_coefficients([1.0, 1.0], 0, 1.0) == [0.5, 0.5]


def test_stream_shards_disjointly_covers_epochs_and_resumes():
    ranks = [Stream(10, 2, seed=3, rank=r, world=2) for r in range(2)]
    # One epoch (10 samples) = 2.5 micro-steps of 2 x 2: the first two steps never repeat a sample.
    seen = [i for k in range(2) for s in ranks for i in s.indices(k)]
    assert len(seen) == len(set(seen)) == 8
    epoch = [i for k in range(5) for s in ranks for i in s.indices(k)]  # 20 positions = 2 epochs
    assert sorted(epoch[:10]) == list(range(10)) and sorted(epoch[10:]) == list(range(10))
    fresh = Stream(10, 2, seed=3, rank=1, world=2)  # a resumed process: same indices, no state
    assert fresh.indices(7) == ranks[1].indices(7)
    assert len({tuple(Stream(10, 2, seed=s).indices(0)) for s in range(5)}) > 1  # the seed matters


def test_weighted_stream_draws_by_weight_reproducibly():
    weights = [0.0, 1.0, 3.0, 6.0]
    stream = WeightedStream(weights, 4, seed=3, rank=0, world=2)
    drawn = np.array([i for k in range(3000) for i in stream.indices(k)])
    freq = np.bincount(drawn, minlength=4) / drawn.size
    assert freq[0] == 0 and np.allclose(freq, np.array(weights) / 10, atol=0.015)
    assert WeightedStream(weights, 4, seed=3, rank=0, world=2).indices(17) == stream.indices(17)  # resume
    other_rank = WeightedStream(weights, 4, seed=3, rank=1, world=2)
    assert [other_rank.indices(k) for k in range(10)] != [stream.indices(k) for k in range(10)]
    for bad in ([0.0, 0.0], [], [1.0, -0.5], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="weighted sampling"):
            WeightedStream(bad, 2, seed=0)


def test_weighted_sampling_estimates_the_same_objective_with_less_variance():
    """Drawn by weight with every coefficient at the mean weight, a batch's synthetic loss has the
    expectation of the paper's uniform estimator, mean(w * loss), and (skewed weights) less variance."""
    rng = np.random.default_rng(0)
    weights = np.exp(rng.uniform(0, 1, 50) / 0.1)
    weights /= weights.mean()  # exp weights, as `--weight-transform exp`
    losses = rng.uniform(0.5, 1.5, 50)
    target = float(np.mean(weights * losses))

    def estimates(stream, coef_weights) -> np.ndarray:
        out = []
        for k in range(4000):
            ids = stream.indices(k)
            coef = loss_coefficients([coef_weights[i] for i in ids], 0, 1.0)
            out.append(float(np.dot(coef, losses[ids])))
        return np.array(out)

    uniform = estimates(Stream(50, 8, seed=1), weights)
    weighted = estimates(WeightedStream(list(weights), 8, seed=1), [weights.mean()] * 50)
    for est in (uniform, weighted):
        assert abs(est.mean() - target) < 4 * est.std() / np.sqrt(est.size)
    assert weighted.std() < 0.5 * uniform.std()


def test_text_dropout_swaps_in_the_empty_prompt_reproducibly(tmp_path):
    import torch
    from safetensors.torch import save_file

    def tensor_file(name: str, value: float) -> Path:
        save_file({"t": torch.full((2, 3), value)}, str(tmp_path / f"{name}.safetensors"))
        return tmp_path / f"{name}.safetensors"

    syn = [CachedItem(tensor_file(f"lat{i}", i), tensor_file(f"txt{i}", i), 1.0) for i in range(4)]
    real = [
        CachedItem(tensor_file(f"rlat{i}", 10 + i), tensor_file(f"rtxt{i}", 10 + i), 1.0) for i in range(4)
    ]
    empty = tensor_file("empty", -1)

    def dataset(p: float, rank: int = 0) -> StepDataset:
        return StepDataset(
            syn, Stream(4, 2, seed=5, rank=rank, world=2), real, Stream(4, 2, seed=6, rank=rank, world=2),
            length=200, empty_text=empty if p else None, text_dropout=p,
        )  # fmt: skip

    on, off = dataset(0.25), dataset(0.0)
    texts = torch.stack([on[k]["text"][:, 0, 0] for k in range(200)])  # (steps, 2 syn + 2 real)
    dropped = texts == -1
    assert 0.18 < float(dropped.float().mean()) < 0.32  # about 1 in 4, synthetic and real rows alike
    assert dropped[:, :2].any() and dropped[:, 2:].any()
    for k in range(20):  # the rest is untouched: same latents, and the prompt where not dropped
        a, b = on[k], off[k]
        assert torch.equal(a["params"], b["params"]) and a["ids"] == b["ids"]
        kept = a["text"][:, 0, 0] != -1
        assert torch.equal(a["text"][kept], b["text"][kept])
    assert torch.equal(dataset(0.25)[7]["text"], on[7]["text"])  # a function of (seed, rank, step)
    assert not torch.equal(
        torch.stack([dataset(0.25, rank=1)[k]["text"][:, 0, 0] == -1 for k in range(20)]), dropped[:20]
    )
    with pytest.raises(ValueError, match="empty prompt"):
        StepDataset(syn, Stream(4, 2, seed=5), text_dropout=0.1)


def test_resume_conflicts_name_changed_settings_and_accept_newer_options_at_default(tmp_path):
    from videolift.align.checkpoints import STATE_FILE, checkpoint_conflicts

    cfg = AlignConfig(model="m", scores="s.jsonl", videos="v", out=tmp_path / "run", lr=1e-3)
    saved = cfg.model_dump(mode="json")
    assert cfg.resume_conflicts(saved) == []
    moved = cfg.model_copy(update={"max_steps": 99, "log_every": 7, "out": tmp_path / "moved"})
    assert moved.resume_conflicts(saved) == []
    (lr,) = cfg.model_copy(update={"lr": 2e-3}).resume_conflicts(saved)
    assert lr == "lr: 0.001 in the checkpoint, 0.002 now"
    # A checkpoint from a version without syn_sampling: fine at the default, a conflict otherwise.
    older = {k: v for k, v in saved.items() if k != "syn_sampling"}
    assert cfg.resume_conflicts(older) == []
    (new,) = cfg.model_copy(update={"syn_sampling": "weighted"}).resume_conflicts(older)
    assert new.startswith("syn_sampling: 'weighted' now; the checkpoint predates it")
    (gone,) = cfg.resume_conflicts({**saved, "retired_option": 1})
    assert "retired_option" in gone and "not an option of this version" in gone
    # A full fine-tune from before --full-scope trained every weight, not the blocks the default now trains.
    before_scope = {k: v for k, v in saved.items() if k != "full_scope"}
    (scope,) = cfg.resume_conflicts(before_scope)
    assert scope == "full_scope: 'blocks' now; the checkpoint predates it (it did 'all')"
    assert cfg.model_copy(update={"full_scope": "all"}).resume_conflicts(before_scope) == []
    # LoRA has no scope: its old checkpoints resume under the default, and the scope may change.
    lora = cfg.model_copy(update={"finetune": "lora"})
    lora_before_scope = {k: v for k, v in lora.model_dump(mode="json").items() if k != "full_scope"}
    assert lora.resume_conflicts(lora_before_scope) == []
    assert lora.model_copy(update={"full_scope": "all"}).resume_conflicts(lora.model_dump(mode="json")) == []
    assert lora.resume_conflicts(saved) == ["finetune: 'full' in the checkpoint, 'lora' now"]
    # The validation samples' guidance watches the run, trains nothing: it may change, or come after the
    # checkpoint's version, and leaves the fingerprint of runs without it as it was.
    guided = AlignConfig(**cfg.model_dump() | {"validation_guidance": 2.5, "validation_guidance_2": 1.5})
    assert guided.resume_conflicts(saved) == [] and guided.resume_conflicts(older) == []
    before = {k: v for k, v in saved.items() if not k.startswith("validation_guidance")}
    assert (
        guided.resume_conflicts(before) == [] and cfg.resume_conflicts(guided.model_dump(mode="json")) == []
    )
    assert guided.training_fingerprint() == cfg.training_fingerprint()
    # Paths are compared by where they lead: another spelling of the same model or file is no conflict.
    model = tmp_path / "model"
    model.mkdir()
    spelled = cfg.model_copy(update={"model": f"{model}/", "scores": tmp_path / "x" / ".." / "s.jsonl"})
    here = spelled.model_copy(update={"model": str(model), "scores": tmp_path / "s.jsonl"})
    assert spelled.resume_conflicts(here.model_dump(mode="json")) == []
    (other,) = spelled.resume_conflicts({**here.model_dump(mode="json"), "model": str(tmp_path / "other")})
    assert other.startswith("model: ")

    # Checkpoints written before the config was kept in them: the hash, then OUT/align_config.json.
    ckpt = tmp_path / "run" / "checkpoints" / "step-0000010"
    ckpt.mkdir(parents=True)
    (ckpt / STATE_FILE).write_text(json.dumps({"step": 10, "fingerprint": cfg.training_fingerprint()}))
    assert checkpoint_conflicts(cfg, ckpt) == []
    (ckpt / STATE_FILE).write_text(json.dumps({"step": 10, "fingerprint": "from-an-older-field-set"}))
    (missing,) = checkpoint_conflicts(cfg, ckpt)
    assert "align_config.json is missing" in missing
    (tmp_path / "run" / "align_config.json").write_text(json.dumps(older))
    assert checkpoint_conflicts(cfg, ckpt) == []
    reseeded = cfg.model_copy(update={"seed": 5})
    assert checkpoint_conflicts(reseeded, ckpt) == ["seed: 0 in the checkpoint, 5 now"]
    # A checkpoint's own copy of its config wins over OUT/align_config.json.
    state = {"step": 10, "fingerprint": "x", "config": {**saved, "seed": 4}}
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    assert checkpoint_conflicts(cfg, ckpt) == ["seed: 4 in the checkpoint, 0 now"]


def test_resume_refuses_inputs_edited_at_the_same_path(tmp_path):
    from videolift.align.checkpoints import STATE_FILE, checkpoint_conflicts

    scores, rewards = tmp_path / "s.jsonl", tmp_path / "reward.yaml"
    scores.write_text('{"video": "a.mp4"}\n')
    rewards.write_text("aggregation: min\n")
    cfg = AlignConfig(model="m", scores=scores, videos="v", out=tmp_path / "run", reward_config=rewards)
    ckpt = tmp_path / "run" / "checkpoints" / "step-0000010"
    ckpt.mkdir(parents=True)
    state = {"step": 10, "config": cfg.model_dump(mode="json"), "inputs": cfg.input_hashes()}
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    assert cfg.input_hashes()["real"] is None and checkpoint_conflicts(cfg, ckpt) == []
    scores.touch()  # a new mtime, the same bytes
    assert checkpoint_conflicts(cfg, ckpt) == []
    rewards.write_text("aggregation: mean\n")
    (edited,) = checkpoint_conflicts(cfg, ckpt)
    assert edited.startswith("reward_config:") and "content differs" in edited
    # A changed path is reported once, as a changed setting.
    other = tmp_path / "t.jsonl"
    other.write_text("{}\n")
    moved = checkpoint_conflicts(cfg.model_copy(update={"scores": other}), ckpt)
    assert [c.split(":")[0] for c in moved] == ["scores", "reward_config"]
    # Checkpoints written before the hashes were kept compare inputs by path only.
    del state["inputs"]
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    assert checkpoint_conflicts(cfg, ckpt) == []


def test_resume_refuses_a_model_rebuilt_at_the_same_path(tmp_path):
    from videolift.align.checkpoints import STATE_FILE, checkpoint_conflicts
    from videolift.core.files import weights_digest

    model = tmp_path / "model"
    (model / "transformer").mkdir(parents=True)
    weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"weights")
    (tmp_path / "s.jsonl").write_text('{"video": "a.mp4"}\n')
    cfg = AlignConfig(model=str(model), scores=tmp_path / "s.jsonl", videos="v", out=tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "step-0000010"
    ckpt.mkdir(parents=True)
    state = {"step": 10, "config": cfg.model_dump(mode="json"), "inputs": cfg.input_hashes()}
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    (model / "transformer" / "config.json").write_text("{}")  # a config saved again: not the weights
    assert checkpoint_conflicts(cfg, ckpt) == []
    weights.write_bytes(b"other weights")
    (rebuilt,) = checkpoint_conflicts(cfg, ckpt)
    assert rebuilt.startswith(f"model: {model}") and "content differs" in rebuilt
    # A copy elsewhere is the same model (its path is compared as a setting); a Hub id cannot be seen.
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert weights_digest(copy) == weights_digest(model) and weights_digest("THUDM/CogVideoX-2b") is None
    # A component that is a link to a shared folder is read through the link.
    shutil.move(copy / "transformer", tmp_path / "shared")
    (copy / "transformer").symlink_to(tmp_path / "shared")
    assert weights_digest(copy) == weights_digest(model)
    (tmp_path / "shared" / weights.name).write_bytes(b"retrained")
    assert weights_digest(copy) != weights_digest(model)
    # Checkpoints written before model weights were hashed compare the model by path.
    del state["inputs"]["model"]
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    assert checkpoint_conflicts(cfg, ckpt) == []


def test_preprocess_video_cuts_resizes_and_crops():
    frames = np.zeros((20, 48, 80, 3), np.uint8)
    frames[:, :, 40:] = 200  # right half bright
    out = preprocess_video(frames, num_frames=9, stride=2, height=32, width=32)
    assert out.shape == (9, 32, 32, 3) and out.dtype == np.uint8
    assert out[0, :, -1].mean() > 150 and out[0, :, 0].mean() < 50  # centre crop keeps both halves
    with pytest.raises(ValueError, match="fewer than 13"):
        preprocess_video(frames, num_frames=13, stride=2)
    assert preprocess_video(frames).shape == frames.shape


@pytest.mark.parametrize(
    ("frames", "stride", "height", "width"),
    [(None, 1, None, None), (9, 2, 32, 32), (None, 3, 16, 48), (10, 2, None, 32), (7, 1, 64, 40)],
)
def test_the_shape_predicted_from_metadata_is_the_one_preprocessing_makes(frames, stride, height, width):
    from videolift.align.cache import preprocessed_shape

    clip = np.zeros((20, 48, 80, 3), np.uint8)
    p = {"frames": frames, "stride": stride, "height": height, "width": width}
    made = preprocess_video(clip, num_frames=frames, stride=stride, height=height, width=width).shape[:3]
    assert preprocessed_shape(20, 48, 80, p) == made
    with pytest.raises(ValueError, match="has 7 frames \\(stride 3\\), fewer than 9"):
        preprocessed_shape(20, 48, 80, {**p, "frames": 9, "stride": 3})


def test_config_yaml_overrides_and_errors(tmp_path):
    req = {"model": "m", "scores": "s.jsonl", "videos": "v", "out": "o"}
    for name in ("cogvideox2b_lift.yaml", "toy.yaml"):
        cfg = AlignConfig.load(REPO / "configs" / "align" / name, **req)
        assert cfg.betas == (0.9, 0.95) and cfg.weight_decay == 1e-4
    paper = AlignConfig.load(REPO / "configs/align/cogvideox2b_lift.yaml", **req)
    assert (paper.finetune, paper.lr, paper.warmup_steps, paper.mixed_precision) == (
        "full",
        1e-5,
        200,
        "bf16",
    )
    # the release's global batch on 8 GPUs (it mixes real and generated videos in one batch)
    assert (paper.batch_size + paper.real_batch_size) * paper.grad_accum * 8 == 64
    assert (paper.lr_scheduler, paper.full_scope) == ("cosine", "blocks")
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.001\nmethod: rs\n")
    cfg = AlignConfig.load(path, lr=None, max_steps=7, **req)
    assert (cfg.lr, cfg.method, cfg.max_steps) == (0.001, "rs", 7)
    assert cfg.training_fingerprint() == cfg.model_copy(update={"max_steps": 9}).training_fingerprint()
    assert cfg.training_fingerprint() != cfg.model_copy(update={"lr": 0.1}).training_fingerprint()
    path.write_text("lrr: 1\n")
    with pytest.raises(DataError, match="field 'lrr'"):
        AlignConfig.load(path, **req)
    with pytest.raises(DataError, match="height and width"):
        AlignConfig.load(None, height=64, **req)
    assert AlignConfig.load(None, lora_targets="to_q, ff.net.2", **req).lora_targets == ["to_q", "ff.net.2"]
    path.write_text("lora_targets: [to_v]\n")
    assert AlignConfig.load(path, **req).lora_targets == ["to_v"]  # YAML lists as before
    with pytest.raises(DataError, match="--lora-targets  , : needs at least one module name"):
        AlignConfig.load(None, lora_targets=" , ", **req)  # an option's value is named as typed
    path.write_text("mixed_precision: no\n")  # YAML 1.1 reads an unquoted no as false
    assert AlignConfig.load(path, **req).mixed_precision == "no"
    # The dtype names every --dtype takes mean the same here.
    assert AlignConfig.load(None, **req, mixed_precision="bfloat16").mixed_precision == "bf16"
    with pytest.raises(DataError, match="--mixed-precision: "):  # not a TypeError from the mapping
        AlignConfig.load(None, **req, mixed_precision=["bf16"])
    with pytest.raises(DataError, match="^--batch-size 0: Input should be greater than or equal to 1$"):
        AlignConfig.load(path, **req, batch_size=0)
    with pytest.raises(DataError, match="^--model is required: give it here or in --config$"):
        AlignConfig.load(None, **{k: v for k, v in req.items() if k != "model"})
    path.write_text("mixed_precision: yes\n")
    with pytest.raises(DataError, match="mixed_precision"):
        AlignConfig.load(path, **req)
    path.write_text("max_steps: yes\nema_decay: on\n")  # pydantic would read true as 1
    with pytest.raises(DataError, match=r"field 'max_steps': true is not a value of this setting"):
        AlignConfig.load(path, **req)
    path.write_text("gradient_checkpointing: yes\n")  # a switch takes it
    assert AlignConfig.load(path, **req).gradient_checkpointing is True
    # Settings the optimizer or the seeding would fail on (or diverge with) are named before any work.
    for text, field in [("betas: [2.0, 0.95]\n", "betas.0"), ("seed: -1\n", "seed"), ("seed: 4294967296\n", "seed"),
                        ("lr: .inf\n", "lr"), ("lambda_real: .inf\n", "lambda_real"), ("max_grad_norm: .nan\n", "max_grad_norm"),
                        ("cache_dir: ''\n", "cache_dir")]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(DataError, match=f"field '{field}'"):
            AlignConfig.load(path, **req)


def test_step_log_means_undo_the_loss_coefficients():
    """The logged synthetic loss is mean(w * loss) with the rewards recovered from the coefficients,
    averaged over the micro-steps since the last line; then the log starts afresh."""
    import torch

    from videolift.align.step_log import StepLog

    class OneRank:  # reduce over one process: the identity
        device = "cpu"

        def reduce(self, tensor, reduction):
            return tensor

    log = StepLog(samples_per_step=4, world=1)
    coef = torch.tensor(loss_coefficients([1.0, 3.0], n_real=2, lambda_real=1.0))
    for per in ([0.2, 0.4, 0.1, 0.3], [0.4, 0.2, 0.3, 0.1]):
        per = torch.tensor(per)
        log.add((coef * per).sum(), per, coef, 2)
    log.steps = 2
    row = log.row(OneRank(), step=2, lr=1e-4, grad_norm=torch.tensor(0.5), has_real=True)
    # micro-step 1: w*loss = (0.2, 1.2) -> 0.7; micro-step 2: (0.4, 0.6) -> 0.5
    assert row["loss_syn_weighted"] == pytest.approx(0.6)
    assert row["loss_syn"] == pytest.approx(0.3)
    assert row["loss_real"] == pytest.approx(0.2)
    assert row["weight_mean"] == pytest.approx(2.0)
    assert row["loss"] == pytest.approx(0.6 + 1.0 * 0.2)  # the objective: syn weighted + lambda * real
    assert (row["step"], row["grad_norm"], row["world_size"]) == (2, 0.5, 1)
    assert row["samples_per_s"] == pytest.approx(4 * row["steps_per_s"])
    empty = log.row(OneRank(), step=3, lr=1e-4, grad_norm=None, has_real=False)
    assert empty["loss_real"] is None and empty["grad_norm"] is None and empty["steps_per_s"] == 0


def test_a_line_without_its_reward_or_ratings_is_an_error_not_a_dropped_video(tmp_path):
    from videolift.align.inputs import load_samples

    path = tmp_path / "s.jsonl"
    path.write_text(
        _line("a.mp4", 0.9, ["Good"] * 3) + "\n" + json.dumps({"video": "b.mp4", "prompt": "p"}) + "\n"
    )
    with pytest.raises(DataError, match=r"s.jsonl, line 2, field 'reward': missing"):
        read_scores(path)
    (tmp_path / "min.yaml").write_text("aggregation: min\n")
    req = {"model": "m", "scores": path, "videos": "v", "out": tmp_path / "o"}
    with pytest.raises(DataError, match=r"s.jsonl, line 2, field 'ratings': missing"):
        load_samples(AlignConfig(reward_config=tmp_path / "min.yaml", **req))


def test_align_help_shows_the_defaults_that_apply_and_the_choices():
    """The options default to None (only those given override --config), so the help text carries
    AlignConfig's defaults and choices; typer alone would show neither."""
    from typer.testing import CliRunner

    from videolift.cli import app

    text = " ".join(CliRunner().invoke(app, ["align", "--help"], env={"COLUMNS": "300"}).output.split())
    for shown in ("AdamW learning rate [default: 1e-05]", "[default: constant_with_warmup]",
                  "constant_with_warmup | cosine | linear.", "rwl | rs. rwl: reward-weighted",
                  "no | bf16 | fp16.", "recompute activations in backward [default: off]",
                  "[default: to_q,to_k,to_v,to_out.0]", "relative to [required, here or in --config]"):  # fmt: skip
        assert shown in text, shown
    assert "[default: None]" not in text
    # An empty path (OUT="" in a script) is refused, not taken for the current directory.
    empty = CliRunner().invoke(app, ["align", "--model", "m", "--scores", "s", "--videos", "v", "--out", ""])
    assert empty.exit_code != 0 and "--out: is empty" in empty.output


def test_the_video_check_split_over_ranks_gives_every_rank_the_sequential_verdict(tmp_path):
    """Each rank probes every world-th video; from the gathered summaries every rank must raise what a
    single process checking the files in order raises first (a missing file or a size mismatch,
    whichever comes first), so ranks fail together with the same message."""
    from align_world import align_config, make_world, score_line, square_video
    from videolift.align.inputs import load_samples
    from videolift.align.video_check import check_videos, summarize
    from videolift.core.video import write_video

    world = make_world(tmp_path)
    write_video(world / "videos/small.mp4", square_video((220, 30, 30), 0, size=32), crf=0, pix_fmt="yuv444p")
    base = (world / "scores.jsonl").read_text()
    gone, small = (
        score_line("videos/gone.mp4", "a", "Good", 0.9),
        score_line("videos/small.mp4", "b", "Good", 0.9),
    )

    class Summaries(Exception):
        pass

    def verdicts(extra: str, world_size: int) -> list[str | None]:
        (world / "scores.jsonl").write_text(base + extra)
        cfg = align_config(world, tmp_path / "run", real=world / "real.jsonl")
        synthetic, real, _ = load_samples(cfg)
        shares = []  # each rank's summary, as gather_object would collect them

        def keep(mine):
            shares.extend(mine)
            raise Summaries

        said = []
        for rank in range(world_size if world_size > 1 else 0):  # one process gathers nothing
            with pytest.raises(Summaries):
                check_videos(cfg, synthetic, real, rank=rank, world=world_size, gather=keep)
        for rank in range(world_size):
            try:
                check_videos(
                    cfg, synthetic, real, rank=rank, world=world_size, gather=lambda mine: shares or 1 / 0
                )
                said.append(None)
            except VideoliftError as exc:
                said.append(str(exc))
        return said

    for extra, expected in (
        ("", None),
        (small + gone, "cannot share a batch: 9x64x64"),
        (gone + small, "line 5, field 'video': no video at"),
    ):
        sequential = verdicts(extra, 1)[0]
        assert (sequential is None) if expected is None else (expected in sequential), sequential
        for world_size in (2, 3):
            assert verdicts(extra, world_size) == [sequential] * world_size
    assert "small.mp4" in verdicts(small + gone, 2)[0]  # not the missing file on line 6
    assert summarize([(3, ("shape", (9, 8, 8), "x")), (1, ("shape", (9, 8, 8), "y"))])[1] == {
        (9, 8, 8): (1, "y")
    }


def test_resume_refuses_a_checkpoint_past_max_steps(tmp_path):
    """Resuming a 10-step run with --max-steps 5 would export the 10-step weights as a 5-step run's."""
    from align_world import align_config, make_world
    from videolift.align.checkpoints import STATE_FILE, resume_point
    from videolift.core.errors import VideoliftError

    world = make_world(tmp_path)
    cfg = align_config(world, tmp_path / "run", max_steps=10, resume=True)
    step = tmp_path / "run/checkpoints/step-0000010"
    step.mkdir(parents=True)
    state = {"step": 10, "config": cfg.model_dump(mode="json"), "inputs": cfg.input_hashes()}
    (step / STATE_FILE).write_text(json.dumps(state))
    assert resume_point(cfg, step.parent) == step
    assert resume_point(cfg.model_copy(update={"max_steps": 20}), step.parent) == step  # a longer run
    with pytest.raises(VideoliftError, match="at step 10, past --max-steps 5"):
        resume_point(cfg.model_copy(update={"max_steps": 5}), step.parent)


def test_a_video_on_several_lines_of_the_scores_is_warned_about(tmp_path):
    from align_world import align_config, make_world
    from videolift.align.inputs import load_samples

    world = make_world(tmp_path)
    lines = (world / "scores.jsonl").read_text()
    assert "warning" not in load_samples(align_config(world, tmp_path / "run"))[2]
    (world / "scores.jsonl").write_text(lines + lines.splitlines(keepends=True)[0])  # concatenated by mistake
    synthetic, _, data = load_samples(align_config(world, tmp_path / "run"))
    assert len(synthetic) == 5  # still trained as given
    assert "1 video(s) on more than one line (e.g. videos/v0.mp4, lines 1, 5)" in data["warning"]
    # The same file written another way ("./", a doubled slash) is the same video, trained twice as well.
    again = lines.splitlines(keepends=True)[1].replace('"videos/v1.mp4"', '"./videos//v1.mp4"')
    (world / "scores.jsonl").write_text(lines + again)
    assert (
        "(e.g. videos/v1.mp4, lines 2, 5)"
        in load_samples(align_config(world, tmp_path / "run"))[2]["warning"]
    )


def test_the_run_folders_a_model_may_not_lie_in_name_the_exports():
    from videolift.align.config import RUN_DIRS
    from videolift.models.base import FULL_DIR, LORA_DIR

    assert {FULL_DIR, LORA_DIR} <= set(RUN_DIRS)


def test_an_empty_real_set_and_a_file_for_a_directory_are_refused_before_any_work(tmp_path):
    from align_world import align_config, make_world
    from videolift.align.inputs import load_samples
    from videolift.align.preflight import check_video_roots
    from videolift.align.trainer import train
    from videolift.align.video_check import check_videos

    world = make_world(tmp_path)
    (world / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: the real set has no records \(--real\)"):
        load_samples(align_config(world, tmp_path / "run", real=world / "empty.jsonl"))
    (tmp_path / "a_file").write_text("")
    for option, cfg in [("--out", align_config(world, tmp_path / "a_file")),
                        ("--cache-dir", align_config(world, tmp_path / "run", cache_dir=tmp_path / "a_file"))]:  # fmt: skip
        with pytest.raises(VideoliftError, match=f"{option} .*a_file is a file; it names a directory"):
            train(cfg, progress=False)
    # A videos root that is a file or missing: one line naming it, not "no video at" its first record's path.
    for option, given in [("--videos", {"videos": tmp_path / "a_file"}),
                          ("--real-videos", {"real": world / "real.jsonl", "real_videos": tmp_path / "gone"}),
                          ("--validation-real-videos", {"validation_real": world / "real.jsonl",
                                                        "validation_real_videos": tmp_path / "a_file"})]:  # fmt: skip
        with pytest.raises(VideoliftError, match=f"^{option} .*(a_file: not a directory|gone: not found)$"):
            check_video_roots(align_config(world, tmp_path / "run", **given))  # preflight's, on every rank
    line = json.loads((world / "scores.jsonl").read_text().splitlines()[0]) | {"video": "videos"}
    (world / "dir.jsonl").write_text(json.dumps(line) + "\n")  # a video path naming a directory
    dir_cfg = align_config(world, tmp_path / "run", scores=world / "dir.jsonl")
    with pytest.raises(
        VideoliftError, match=r"dir\.jsonl, line 1, field 'video': .*videos is a directory, not a"
    ):
        check_videos(dir_cfg, load_samples(dir_cfg)[0], [])
    (world / "empty.jsonl").write_text("")  # an empty scores file is said to be one
    with pytest.raises(DataError, match=r"empty\.jsonl: the scores file has no records"):
        load_samples(align_config(world, tmp_path / "run", scores=world / "empty.jsonl"))
    assert not (tmp_path / "run").exists()  # no align_config.json left behind


@pytest.mark.parametrize(
    "kind, moved", [("NO", True), ("MULTI_GPU", True), ("DEEPSPEED", True), ("FSDP", False)]
)
def test_fsdp_shards_the_transformer_from_where_it_is(kind, moved):
    """FSDP's prepare moves a block at a time; moving the whole model first would not fit big ones."""
    from types import SimpleNamespace

    import torch
    from accelerate.utils import DistributedType

    from videolift.align.trainable import place_for_training

    model = torch.nn.Linear(2, 2).eval()
    place_for_training(
        model, SimpleNamespace(distributed_type=DistributedType[kind], device=torch.device("meta"))
    )
    assert model.weight.device.type == ("meta" if moved else "cpu") and model.training


def test_the_cache_reads_16_clips_at_a_time_or_fewer_when_they_are_large(tmp_path, monkeypatch):
    from videolift.align import cache as cache_mod
    from videolift.align.cache import EncodingCache

    cache = EncodingCache(tmp_path, "fp", {})

    def chunk_sizes(shape: tuple[int, ...], n: int) -> list[int]:
        monkeypatch.setattr(cache, "_load_video", lambda *_: np.zeros(shape, np.uint8))
        todo = [(tmp_path / f"{i}.st", tmp_path / f"{i}.mp4") for i in range(n)]
        return [len(clips) for _, clips in cache._read_chunks(None, None, todo, {})]

    assert chunk_sizes((9, 48, 48, 3), 40) == [16, 16, 8]  # toy clips: as ever (batching moves the rounding)
    monkeypatch.setattr(cache_mod, "READ_BYTES", 3 * 9 * 480 * 720 * 3)  # three of these
    assert chunk_sizes((9, 480, 720, 3), 7) == [3, 3, 1]


def test_align_and_critic_train_take_each_others_names_for_checkpoints_and_workers(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import videolift.align.trainer as trainer
    from videolift.cli import app

    got = []
    monkeypatch.setattr(trainer, "train", lambda cfg, **k: got.append(cfg))
    args = ["align", "--model", "m", "--scores", "s", "--videos", "v", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--save-every", "7", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert (got[0].checkpoint_every, got[0].num_workers) == (7, 3)
    shown = CliRunner().invoke(app, ["critic", "score", "--help"], env={"COLUMNS": "300"}).output
    assert "--workers,--num-workers" in shown.replace(" ", "")  # critic train's alias: its own tests


def test_the_step_log_sums_where_the_loss_is_without_reading_it_each_micro_step():
    """Reading a GPU value to the host waits for the GPU: the log's sums stay on the loss's device (meta
    tensors stand in for a GPU's: reading one raises) until a log line reads them once."""
    import torch

    from videolift.align.step_log import StepLog

    log = StepLog(samples_per_step=3, world=1)
    for _ in range(2):  # the coefficients come where the loss is: batch_loss's copy
        log.add(
            torch.empty((), device="meta"), torch.empty(3, device="meta"), torch.empty(3, device="meta"), 2
        )
    assert log.acc.device.type == "meta" and log.acc.shape == (6,)  # the values: the test above


def test_align_refuses_validation_settings_without_what_they_set(tmp_path):
    """The sampler's steps need prompts; when and with which seed: prompts or held-out clips; the
    held-out clips' folder: the held-out clips."""
    from typer.testing import CliRunner

    from videolift.cli import app

    args = ["align", "--model", "m", "--scores", "s", "--videos", "v", "--out", str(tmp_path / "o")]
    said = CliRunner().invoke(app, [*args, "--validation-steps", "3", "--validation-real", "r.jsonl"])
    assert said.exit_code == 2 and "--validation-steps: needs --validation-prompts" in said.output
    said = CliRunner().invoke(app, [*args, "--validation-every", "3", "--validation-seed", "1"])
    assert said.exit_code == 2, said.output
    assert (
        "--validation-every, --validation-seed: needs --validation-prompts or --validation-real"
        in said.output
    )
    said = CliRunner().invoke(app, [*args, "--validation-real-videos", "v"])
    assert (
        said.exit_code == 2  # a settings validator's refusal of options: a usage error all the same
        and "(--validation-real-videos) needs validation_real (--validation-real)" in said.output
    )
    said = CliRunner().invoke(app, [*args, "--validation-guidance", "2", "--validation-guidance-2", "1"])
    assert said.exit_code == 2, said.output
    assert "--validation-guidance, --validation-guidance-2: needs --validation-prompts" in said.output


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("option", ["--validation-guidance", "--validation-guidance-2"])
def test_align_refuses_a_validation_guidance_that_is_no_positive_finite_number(tmp_path, option, value):
    from typer.testing import CliRunner

    from videolift.cli import app

    args = ["align", "--model", "m", "--scores", "s", "--videos", "v", "--out", str(tmp_path / "o")]
    said = CliRunner().invoke(app, [*args, "--validation-prompts", "p.txt", f"{option}={value}"])
    assert said.exit_code == 2, said.output
    why = "greater than 0" if value in ("0", "-1") else "a finite number"
    assert f"Error: {option} {float(value)}: Input should be {why}" in said.output
    (tmp_path / "c.yaml").write_text(f"{option[2:].replace('-', '_')}: {value.replace('inf', '.inf')}\n")
    with pytest.raises(DataError, match=f"{option[2:].replace('-', '_')}"):
        AlignConfig.load(tmp_path / "c.yaml", model="m", scores="s", videos="v", out=tmp_path / "o")


def test_align_trains_on_the_cpu_where_accelerate_would_pick_a_macs_mps(monkeypatch, tmp_path):
    """Every stage runs on CUDA or the CPU: accelerate picks MPS on an Apple-silicon Mac, where align's
    float64 rank checksums fail and the device would depend on which stage made accelerate's state first."""
    import torch
    from accelerate.state import AcceleratorState, PartialState

    from videolift.align.trainer import _accelerator

    # What accelerate's state picks without cpu=True on such a Mac (its probe differs between versions).
    monkeypatch.setattr(PartialState, "default_device", property(lambda self: torch.device("mps")))
    AcceleratorState._reset_state(reset_partial_state=True)  # as a fresh process: no stage before it
    try:
        accelerator = _accelerator(AlignConfig(model="m", scores="s", videos="v", out=tmp_path))
        assert accelerator.device.type == "cpu"
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_rewards_of_one_are_on_the_scale_and_not_warned_about():
    """A reward config with Good = 1 gives all-Good videos a reward of exactly 1: the warning is for rewards
    above the [0, 1] scale only."""
    from videolift.align.weights import reward_scale_warning
    from videolift.core.scores import ScoredVideo

    assert reward_scale_warning([ScoredVideo("a", "p", 1.0, {}, 1)], "raw", 0.1) is None
    assert "1 of 2 rewards above 1" in reward_scale_warning(
        [ScoredVideo("a", "p", 1.0, {}, 1), ScoredVideo("b", "p", 1.5, {}, 2)], "raw", 0.1
    )


def test_a_video_rewritten_in_place_is_another_cache_entry(tmp_path):
    """Without --hash-content a video is known by path, size and modification time: one re-rendered in place
    at the same size must not reuse the old video's latents."""
    import os

    from videolift.align.cache import file_identity

    path = tmp_path / "v.mp4"
    path.write_bytes(b"a" * 10)
    before = file_identity(path, hash_content=False)
    path.write_bytes(b"b" * 10)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later write, whatever the clock
    assert file_identity(path, hash_content=False) != before


def test_whether_the_start_samples_are_missing_is_the_main_processs_call(tmp_path, monkeypatch):
    """Ranks must agree to sample (a collective): a rank that sees the step's folder (its own file system,
    a slow mount) samples when the main process finds it missing, and none does when it is there."""
    from types import SimpleNamespace

    import accelerate.utils

    from videolift.align import trainer

    cfg = SimpleNamespace(out=tmp_path, validation_every=2, checkpoint_every=2, max_steps=4)
    (tmp_path / "validation" / "step-0000000").mkdir(parents=True)  # what this rank sees
    run = SimpleNamespace(cfg=cfg, prompts=["a red circle"], main=False, held_paths=[])
    sampled = []
    monkeypatch.setattr(trainer, "write_samples", lambda *a: sampled.append(a[6]))
    for main_says in (True, False):
        monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objs, m=main_says: [m])
        trainer._measure_start(
            SimpleNamespace(**vars(run), spec=0, pipe=0, model=0, accelerator=0, writer=0), 0
        )
    assert sampled == [0]


def test_a_resumed_ema_goes_back_beside_the_weights_it_averages(tmp_path, monkeypatch):
    """accelerate loads a registered object's state onto the CPU (``load_custom_state``: map_location "cpu")
    and diffusers' EMAModel keeps the tensors it is given: on a GPU the first update after a --resume took
    CPU averages minus CUDA weights (a device error). The meta device stands in for the GPU."""
    from types import SimpleNamespace

    import torch
    from accelerate import checkpointing
    from accelerate.checkpointing import load_custom_state, save_custom_state
    from diffusers.training_utils import EMAModel

    from videolift.align import trainer

    monkeypatch.setattr(checkpointing, "logger", logging.getLogger("accelerate"))  # (needs no process state)
    ema = EMAModel([torch.nn.Parameter(torch.ones(3))], decay=0.9)
    save_custom_state(ema, str(tmp_path))
    ema.to(device="meta")  # made from the weights on the accelerator, as the trainer makes it

    def load_checkpoint(accelerator: Any, checkpoint: Path, **_: Any) -> dict:
        load_custom_state(ema, str(checkpoint))  # what accelerator.load_state does with it
        return {"step": 2, "world_size": 1}

    monkeypatch.setattr(trainer, "load_checkpoint", load_checkpoint)
    monkeypatch.setattr(trainer, "assert_ranks_in_sync", lambda *_: [])
    gpu = SimpleNamespace(device=torch.device("meta"))
    run = SimpleNamespace(
        resume_from=tmp_path, accelerator=gpu, say=print, world=1, main=False, model=None, ema=ema
    )
    assert trainer._resume(run) == 2
    assert [p.device.type for p in ema.shadow_params] == ["meta"]
    assert [p.dtype for p in ema.shadow_params] == [torch.float32]  # the averages keep their precision


def test_docs_name_every_setting_a_resume_may_change():
    """docs/align.md's list of what may change on `--resume` is the one the checkpoint check applies."""
    from videolift.align.config import RESUMABLE_CHANGES

    text = " ".join((REPO / "docs/align.md").read_text().split())
    start = text.index("Only `max_steps`")
    listed = set(re.findall(r"`(\w+)`", text[start : text.index("may change between a run and its resume")]))
    assert listed == RESUMABLE_CHANGES - {"resume", "overwrite"}


def test_rs_needs_each_lines_ratings(tmp_path):
    """RS keeps videos by their labels: a line without ratings (or with null) is refused by file, line and
    field, not dropped as not all Good (a video that could not be read has {}: dropped)."""
    from videolift.align.inputs import load_samples

    req = {"model": "m", "videos": "v", "out": tmp_path / "o"}
    path = tmp_path / "s.jsonl"
    for ratings, said in (({}, "missing"), ({"ratings": None}, "expected an object")):
        path.write_text(
            _line("a.mp4", 0.9, ["Good"] * 3)
            + "\n"
            + json.dumps({"video": "b.mp4", "prompt": "p", "reward": 0.9} | ratings)
            + "\n"
        )
        with pytest.raises(DataError, match=rf"s.jsonl, line 2, field 'ratings': {said}"):
            load_samples(AlignConfig(scores=path, method="rs", **req))
        assert len(load_samples(AlignConfig(scores=path, **req))[0]) == 2  # RWL: its reward is what counts
    error = {"video": "c.mp4", "prompt": "p", "ratings": {}, "reward": None, "error": "file not found"}
    path.write_text(_line("a.mp4", 0.9, ["Good"] * 3) + "\n" + json.dumps(error) + "\n")
    assert [s.video for s in load_samples(AlignConfig(scores=path, method="rs", **req))[0]] == ["a.mp4"]


def test_the_weight_options_that_weigh_nothing_are_warned_about(scores, tmp_path):
    """The options that shape RWL's weights change nothing under RS, and --exp-temperature nothing without
    exp weights: said, as the real options without --real are."""
    from videolift.align.inputs import load_samples

    req = {"model": "m", "videos": "v", "out": tmp_path / "o"}
    assert "warning" not in load_samples(AlignConfig(scores=scores, method="rs", **req))[2]
    (tmp_path / "min.yaml").write_text("aggregation: min\n")
    rs = dict(scores=scores, method="rs", weight_transform="exp", exp_temperature=0.5, **req)
    data = load_samples(AlignConfig(reward_config=tmp_path / "min.yaml", **rs))[2]
    assert (
        f"--weight-transform exp, --exp-temperature 0.5, --reward-config {tmp_path / 'min.yaml'} set"
        in (data["warning"])
    )
    assert "--method rs weights every video it keeps 1" in data["warning"]
    assert "warning" not in load_samples(AlignConfig(scores=scores, weight_transform="exp", exp_temperature=0.5,
                                                     **req))[2]  # fmt: skip
    raw = load_samples(AlignConfig(scores=scores, exp_temperature=0.5, **req))[2]
    assert "--exp-temperature 0.5 set, but the temperature is --weight-transform exp's" in raw["warning"]
