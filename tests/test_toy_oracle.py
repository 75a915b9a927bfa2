"""The oracle on each injected defect kind, on clean videos, and on blurred, colour-drifted, re-encoded copies."""

import numpy as np
import pytest

from videolift.core.schema import DIMENSIONS, Dimension, Label
from videolift.core.video import read_video, write_video
from videolift.toy.defects import KINDS, Defect, allowed_kinds, sample_defect, truth
from videolift.toy.grammar import parse_prompt
from videolift.toy.oracle import judge
from videolift.toy.render import Style, render

SC, MS, VF = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity
G, N, B = Label.Good, Label.Normal, Label.Bad

PROMPTS = [
    "a red circle moves left in a sand desert",
    "two blue squares bounce in the night sky",
    "a yellow triangle moves in a circle on a snow field",
    "a green square and a red triangle grow on a grey road",
]
ALL_GOOD = {d: G for d in DIMENSIONS}


def labels(frames, prompt):
    return judge(frames, prompt).labels()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_clean_videos_are_good_on_every_dimension(prompt):
    spec = parse_prompt(prompt)
    for seed in range(3):
        assert labels(render(spec, seed), spec) == ALL_GOOD, (prompt, seed)


def _cases():
    """Every defect kind that applies to each prompt, mild and strong (semantic kinds are one or the other)."""
    for p, prompt in enumerate(PROMPTS):
        spec = parse_prompt(prompt)
        for dim in KINDS:
            for severity in ("mild", "strong"):
                for kind in allowed_kinds(dim, severity, spec):
                    yield pytest.param(prompt, dim, kind, severity, id=f"{p}-{kind}-{severity}")


@pytest.mark.parametrize(("prompt", "dim", "kind", "severity"), list(_cases()))
def test_each_defect_gets_its_label_on_its_dimension_only(prompt, dim, kind, severity):
    spec = parse_prompt(prompt)
    defect = sample_defect(dim, severity, spec, np.random.default_rng(len(kind)), kind=kind)
    expected = truth([defect])
    got = labels(render(spec, 5, [defect]), spec)
    assert got == expected, (defect, judge(render(spec, 5, [defect]), spec).reason(dim))


def test_reasons_name_what_is_wrong():
    spec = parse_prompt("a red circle moves left in a sand desert")
    green = Defect(SC, "colour", "strong", {"subject": 0, "to": "green"})
    verdict = judge(render(spec, 1, [green]), spec)
    assert verdict.label(SC) == B
    assert verdict.reason(SC) == "The circle is green, but the prompt asks for red."
    assert verdict.finding_kinds() == {SC: ["colour"], MS: [], VF: []}
    right = Defect(SC, "direction", "strong", {"to": "right"})
    assert (
        judge(render(spec, 1, [right]), spec).reason(SC) == "The circle moves right instead of moving left."
    )
    frozen = Defect(MS, "frozen", "strong", {"start": 2, "frames": 3})
    assert "freezes" in judge(render(spec, 1, [frozen]), spec).reason(MS)
    assert judge(render(spec, 1), spec).reason(VF).startswith("The image is clean and sharp")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generator_like_blur_and_colour_drift_are_still_good(prompt):
    spec = parse_prompt(prompt)
    for seed in range(2):
        assert labels(render(spec, seed, style=Style.generated(seed)), spec) == ALL_GOOD
    drifted = Style(blur=0.7, gain=(1.12, 0.9, 0.92), offset=(14.0, -12.0, 8.0), flicker=0.05, noise=2.5)
    assert labels(render(spec, 7, style=drifted), spec) == ALL_GOOD


def test_a_blurry_drifted_video_keeps_its_meaning_and_motion():
    """Blur is a fidelity problem, never a reason to misread colour, shape, count or motion."""
    for prompt in PROMPTS:
        spec = parse_prompt(prompt)
        blurred = Defect(VF, "blur", "mild", {"sigma": 1.8})
        got = labels(render(spec, 2, [blurred], style=Style.generated(2)), spec)
        assert got == {SC: G, MS: G, VF: N}, prompt


def test_ordinary_yuv420p_reencode_is_still_good(tmp_path):
    for i, prompt in enumerate(PROMPTS):
        spec = parse_prompt(prompt)
        path = tmp_path / f"{i}.mp4"
        write_video(path, render(spec, i), crf=18, pix_fmt="yuv420p")
        assert labels(read_video(path), spec) == ALL_GOOD, prompt


def test_a_video_without_any_subject_is_bad():
    spec = parse_prompt("a red circle moves left in a sand desert")
    empty = np.full((9, 48, 48, 3), (176, 146, 100), dtype=np.uint8)
    verdict = judge(empty, spec)
    assert verdict.label(SC) == B and verdict.label(VF) == B
    assert "no shape" in verdict.reason(SC)


def test_reasons_call_a_shape_given_the_benefit_of_the_doubt_by_the_asked_name():
    """Heavily blurred squares that fit the circle template a little better are accepted as squares;
    no reason may then call them circles."""
    spec = parse_prompt("two blue squares bounce in the night sky")
    blurred = Defect(VF, "blur", "strong", {"sigma": 3.6})
    frames = render(spec, 2, [blurred], style=Style.generated(2))
    verdict = judge(frames, spec)
    assert {s["shape"] for s in verdict.measurements["subjects"]} == {"circle"}  # the fitted template
    assert verdict.labels() == {SC: G, MS: G, VF: B}
    reasons = [r.reason for r in verdict.ratings().values()]
    assert all("circle" not in r for r in reasons) and "square" in reasons[2], reasons
    # Without the benefit of the doubt (``shape_doubt=1.0``) they are the circles they fit best.
    strict = judge(frames, spec, shape_doubt=1.0)
    assert strict.labels() == {SC: B, MS: G, VF: B} and strict.finding_kinds()[SC] == ["shape"]
    assert "circle, but the prompt asks for a square" in strict.reason(SC)
    for bad in (0.9, float("nan")):  # a NaN would take any drawn shape for the asked one
        with pytest.raises(ValueError, match="shape_doubt must be a number >= 1.0"):
            judge(frames, spec, shape_doubt=bad)


@pytest.mark.parametrize(
    "shown", ["a red square moves left in a sand desert", "a green circle moves left in a sand desert"]
)
def test_a_pair_prompt_showing_one_right_subject_is_faulted_on_the_count_only(shown):
    """Either asked subject, drawn right, is matched to its own description: the reason names the missing
    one, not a wrong colour or shape of the other."""
    frames = render(parse_prompt(shown), 1)
    verdict = judge(frames, "a red square and a green circle move left in a sand desert")
    assert verdict.label(SC) == B and verdict.finding_kinds()[SC] == ["count"], verdict.reason(SC)
    assert "asks for a red circle" not in verdict.reason(SC)


def test_a_panel_flip_to_normal_on_an_empty_video_gets_a_normal_reason():
    from videolift.toy.panel import reason_as

    spec = parse_prompt("a red circle moves left in a sand desert")
    verdict = judge(np.full((9, 48, 48, 3), (176, 146, 100), dtype=np.uint8), spec)
    for variant in range(2):
        assert reason_as(verdict, VF, B, variant) == verdict.reason(VF, variant)
        lenient = reason_as(verdict, VF, N, variant)
        assert lenient and lenient not in {verdict.reason(VF, v) for v in range(2)}, lenient


@pytest.mark.parametrize(
    "prompt",
    [PROMPTS[0], "a green triangle grows on a grey road", "two red squares move right on a grey road"],
)
@pytest.mark.parametrize(
    "order", [[0] * 5 + [8] * 4, [0, 0, 0, 4, 4, 4, 8, 8, 8], [7, 0, 1, 4, 2, 5, 8, 6, 3]]
)
def test_a_freeze_and_a_leap_or_frames_out_of_order_are_bad_motion(prompt, order):
    """The subject covers the whole action, but standing still for most steps and leaping (or in shuffled
    frames, going back and forth) is the worst of motion, not a subject too still to time: such clips were
    rated Good on motion, a degenerate clip a fine-tune could drift to for free reward."""
    spec = parse_prompt(prompt)
    verdict = judge(render(spec, 3)[order], spec)
    assert verdict.label(MS) == B, verdict.reason(MS)
    kinds = set(verdict.finding_kinds()[MS])
    assert kinds & {"frozen", "dropped", "reversal"}, kinds


@pytest.mark.parametrize("shown", [[1, 3, 5, 7], [0, 1, 2], [6, 7, 8]])
def test_a_subject_seen_in_fewer_than_half_the_frames_vanishes(shown):
    """Blinking every other frame, or shown for three frames only, is Bad motion by the vanish rule (Bad
    from two frames), as with five of nine frames shown; it was Good ("nothing moves"): too few frames to
    count it as a subject left no motion to judge."""
    spec = parse_prompt(PROMPTS[0])
    frames = render(spec, 3)
    gone = [t for t in range(9) if t not in shown]
    frames[gone] = frames[0, 0, 0]  # the background
    verdict = judge(frames, spec)
    assert verdict.labels() == {SC: B, MS: B, VF: B}
    assert verdict.finding_kinds()[MS] == ["vanish"], verdict.reason(MS)
    assert verdict.reason(MS) == "The shape keeps disappearing."
    blinking = render(spec, 3)
    blinking[1::2] = blinking[0, 0, 0]  # five of nine frames shown: a subject, which vanishes
    assert judge(blinking, spec).label(MS) == B
    empty = np.full((9, 48, 48, 3), (176, 146, 100), dtype=np.uint8)  # nothing ever shown: nothing vanishes
    assert judge(empty, spec).label(MS) == G


def test_a_shape_pulsing_in_size_is_not_a_steady_picture():
    """A shape that jumps between its smallest and largest size every frame travels nowhere, but it is no
    still picture: its size counts in its jitter, as for every moving subject (it was Good, "nothing
    moves"). A picture that is really still stays Good."""
    spec = parse_prompt("a green triangle grows on a grey road")
    clean = render(spec, 3)
    pulsing = judge(clean[[0, 8] * 4 + [0]], spec)
    assert pulsing.label(MS) == B and pulsing.finding_kinds()[MS] == ["jitter"], pulsing.reason(MS)
    assert judge(clean[[0, 1] * 4 + [0]], spec).label(MS) == N  # 10 <-> 12.8 px
    assert judge(clean[[0, 1, 2, 3, 4, 3, 2, 1, 0]], spec).label(MS) == G  # grows and shrinks back smoothly
    still = judge(clean[[4] * 9], spec)
    assert still.labels() == {SC: B, MS: G, VF: G}
    assert still.reason(MS) == "Nothing moves, so there is no stutter or jump."
