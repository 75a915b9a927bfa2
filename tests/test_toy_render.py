import numpy as np
import pytest

from videolift.core.schema import DIMENSIONS, Dimension, Label
from videolift.toy.corpus import plan
from videolift.toy.defects import Defect, plan_severities, sample_defect, shown_spec, truth
from videolift.toy.describe import describe
from videolift.toy.grammar import all_specs, parse_prompt
from videolift.toy.render import FRAMES, SIZE, Style, render, time_warp, tracks

SC, MS, VF = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity


def test_render_is_deterministic_and_seeded():
    spec = parse_prompt("a red circle moves left in a sand desert")
    a = render(spec, 3)
    assert a.shape == (FRAMES, SIZE, SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render(spec, 3))
    assert not np.array_equal(a, render(spec, 4))  # the seed places the subject
    noisy = Defect(VF, "noise", "strong", {"sigma": 36.0})
    assert np.array_equal(render(spec, 3, [noisy]), render(spec, 3, [noisy]))
    styled = render(spec, 3, style=Style.generated(3))
    assert np.array_equal(styled, render(spec, 3, style=Style.generated(3))) and not np.array_equal(styled, a)


def test_motion_is_visible_at_this_size():
    """Evidence must survive tiny models: subjects ~16 px, moving 3 px or more per frame."""
    _, (track,) = tracks(parse_prompt("a blue square moves right on a snow field"), 0)
    steps = np.diff(track.xy[:, 0])
    assert np.all(steps >= 2.9) and track.size[0] == 16
    _, (grow,) = tracks(parse_prompt("a blue square grows on a snow field"), 0)
    assert grow.size[-1] - grow.size[0] > 20


def test_clean_renders_stay_inside_the_frame():
    for i, spec in enumerate(all_specs()):
        if i % 11:
            continue
        frames = render(spec, i).astype(int)
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert np.abs(border - np.median(border.reshape(-1, 3), axis=0)).max() < 40, spec.text


def test_time_warps_keep_the_clip_complete():
    frozen = Defect(MS, "frozen", "strong", {"start": 2, "frames": 3})
    tau = time_warp([frozen])
    assert tau[0] == 0 and tau[-1] == pytest.approx(FRAMES - 1)
    assert np.sum(np.isclose(np.diff(tau), 0)) == 3
    dropped = Defect(MS, "dropped", "mild", {"start": 5, "frames": 1})
    assert time_warp([dropped], "bounce")[4] == pytest.approx(
        4
    )  # a bounce still touches the floor on frame 4
    reversal = Defect(MS, "reversal", "mild", {"start": 3, "steps": 1, "speed": 0.5})
    assert np.sum(np.diff(time_warp([reversal])) < 0) == 1


def test_truth_follows_the_worst_defect_and_semantic_families():
    assert truth([]) == {d: Label.Good for d in DIMENSIONS}
    scene = Defect(SC, "scene", "mild", {"to": "snow"})
    colour = Defect(SC, "colour", "strong", {"subject": 0, "to": "blue"})
    blur = Defect(VF, "blur", "mild", {"sigma": 1.8})
    assert truth([scene, blur]) == {SC: Label.Normal, MS: Label.Good, VF: Label.Normal}
    assert truth([scene, colour])[SC] == Label.Bad


def test_semantic_defects_change_what_is_shown():
    spec = parse_prompt("two red circles move left in a sand desert")
    rng = np.random.default_rng(0)
    colour = sample_defect(SC, "strong", spec, rng, kind="colour")
    assert {s.colour for s in shown_spec(spec, [colour]).subjects} == {colour.params["to"]}
    count = sample_defect(SC, "strong", spec, rng, kind="count")
    assert shown_spec(spec, [count]).count == 1
    direction = sample_defect(SC, "strong", spec, rng, kind="direction")
    assert shown_spec(spec, [direction]).action != "left"
    assert describe(spec, [count]) == "a red circle moves left in a sand desert"


def test_a_training_corpus_never_shows_a_heldout_combination():
    """Pretraining learns from what is shown: a defect may not turn a training prompt into a held-out
    one on screen (a direction, colour or shape changed into a held-out combination)."""
    items = plan(2000, defect_rate=1.0, seed=0, split="train")
    assert sum(it.defects[0].kind in ("direction", "colour", "shape") for it in items) > 500
    assert [it.spec.text for it in items if shown_spec(it.spec, it.defects).split != "train"] == []


def test_defect_json_round_trip_and_validation():
    d = Defect(MS, "jump", "strong", {"frame": 2, "distance": 15.0})
    assert Defect.from_json(d.to_json()) == d
    with pytest.raises(ValueError, match="unknown motion_smoothness defect kind"):
        Defect.from_json({"dimension": "motion_smoothness", "kind": "blur", "severity": "mild"})


@pytest.mark.parametrize("n", [3, 10, 101])
def test_defect_plan_has_exact_counts_and_every_label(n):
    plan_ = plan_severities(n, 0.5, seed=1)
    for dim in DIMENSIONS:
        sev = [p[dim] for p in plan_]
        assert sev.count("mild") >= 1 and sev.count("strong") >= 1 and sev.count(None) >= 1
    items = plan(n, defect_rate=0.5, seed=1, split=None)
    for dim in DIMENSIONS:
        assert {truth(it.defects)[dim] for it in items} == set(Label)
    assert [it.seed for it in items] == [it.seed for it in plan(n, defect_rate=0.5, seed=1, split=None)]
    assert plan_severities(n, 0.0, seed=1) == [{d: None for d in DIMENSIONS}] * n
    with pytest.raises(ValueError):
        plan_severities(n, 1.5, seed=1)


def test_captions_describe_what_is_visible():
    spec = parse_prompt("two green squares move down on a grey road")
    defects = [
        Defect(SC, "weak_action", "mild", {"scale": 0.6}),
        Defect(MS, "frozen", "mild", {"start": 2, "frames": 1}),
        Defect(VF, "missing", "strong", {"radius": 0.7}),
    ]
    assert describe(spec, defects) == (
        "two green squares move down only a little on a grey road; they pause for a moment; "
        "the squares have big holes"
    )
