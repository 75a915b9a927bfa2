"""Reason wording for the oracle and the simulated annotators: a few paraphrases per finding and label.

Variant 0 is the oracle's; simulated annotators pick among all variants. Slots are filled with
``str.format``: {it} the subject ("the circle"), {It} capitalised, {want}/{got} prompt vs video values,
{scene}/{got_scene} scene names, {desc} a description of what the video shows.
"""

from __future__ import annotations

from videolift.core.schema import Dimension, Label

S, M, F = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity
G, N, B = Label.Good, Label.Normal, Label.Bad

PHRASES: dict[tuple[Dimension, str], dict[Label, tuple[str, ...]]] = {
    (S, "ok"): {
        G: (
            "The video shows {desc}, as the prompt asks.",
            "Everything the prompt asks for is there: {desc}.",
            "It matches the prompt: {desc}.",
        ),
        N: (
            "It mostly matches the prompt, though {it} looks slightly off.",
            "Close to the prompt, but not quite: {it} looks a little different from what was asked.",
        ),
    },
    (S, "colour"): {
        B: (
            "{It} is {got}, but the prompt asks for {want}.",
            "The prompt asks for a {want} {shape}, but the {shape} in the video is {got}.",
            "Wrong colour: the {shape} should be {want}, not {got}.",
        ),
        N: (
            "{It} looks {got}-ish rather than clearly {want}.",
            "The colour of {it} is a little off from {want}.",
        ),
    },
    (S, "shape"): {
        B: (
            "The {colour} shape is a {got}, but the prompt asks for a {want}.",
            "The prompt asks for a {colour} {want}, but the video shows a {colour} {got}.",
            "Wrong shape: a {got} instead of a {want}.",
        ),
        N: ("The {colour} shape looks more like a {got} than a {want}.",),
    },
    (S, "count"): {
        B: (
            "The video shows {got}, but the prompt asks for {want}.",
            "Wrong number of shapes: {got} instead of {want}.",
            "The prompt asks for {want}; there are {got}.",
        ),
        N: ("The number of shapes is not quite right: {got} instead of {want}.",),
    },
    (S, "action"): {
        B: (
            "{It} {got} instead of {want}.",
            "The prompt asks for {it} {want}, but it {got}.",
            "Wrong action: {it} {got}; it should be {want}.",
        ),
        N: (
            "{It} {got}; the prompt asks for {want}.",
            "{It} is not clearly {want}: it {got}.",
        ),
    },
    (S, "scene"): {
        N: (
            "The background is {got_scene}, not the {scene} the prompt asks for.",
            "The shapes are right, but the scene is {got_scene} instead of the {scene}.",
            "Wrong background: {got_scene} rather than the {scene}.",
        ),
        B: ("The background is {got_scene}, nothing like the {scene} the prompt asks for.",),
    },
    (M, "ok"): {
        G: (
            "{It} moves smoothly and steadily.",
            "The motion is smooth, with no stutter or jumps.",
            "Movement is continuous and natural.",
        ),
        N: ("The motion is mostly smooth but looks a little uneven.", "{It} moves a bit unevenly at times."),
    },
    (M, "still"): {
        G: ("Nothing moves, so there is no stutter or jump.", "The picture is static; no motion problems."),
    },
    (M, "jitter"): {
        N: (
            "{It} shakes slightly as it moves.",
            "There is a slight jitter in the motion of {it}.",
            "{It} wobbles a little.",
        ),
        B: (
            "{It} shakes violently from frame to frame.",
            "The motion of {it} is very jittery.",
            "{It} jitters badly.",
        ),
    },
    (M, "jump"): {
        N: (
            "{It} jumps out of place for one frame.",
            "There is a small glitch: {it} briefly pops to another position.",
            "{It} flickers to a slightly wrong position once.",
        ),
        B: (
            "{It} suddenly jumps far out of place for a frame.",
            "A big glitch: {it} teleports for one frame and comes back.",
            "{It} pops to a very different position for one frame.",
        ),
    },
    (M, "frozen"): {
        N: (
            "{It} stops for a moment, then continues.",
            "The motion pauses briefly.",
            "{It} hesitates for a frame.",
        ),
        B: (
            "{It} freezes for several frames.",
            "The motion stalls: {it} stands still for a long time, then moves on.",
            "{It} is stuck for several frames.",
        ),
    },
    (M, "dropped"): {
        N: (
            "{It} skips ahead, as if a frame were dropped.",
            "The motion stutters once: a frame seems to be missing.",
            "{It} jumps ahead a little at one point.",
        ),
        B: (
            "Several frames are missing: {it} leaps forward abruptly.",
            "The motion is broken: {it} skips a large part of its path.",
            "{It} suddenly leaps ahead.",
        ),
    },
    (M, "reversal"): {
        N: (
            "{It} briefly moves backwards.",
            "For a moment {it} goes the wrong way.",
            "{It} steps back once.",
        ),
        B: (
            "{It} moves backwards for several frames before continuing.",
            "The motion reverses: {it} goes back and forth.",
            "{It} turns back for a while, which looks unnatural.",
        ),
    },
    (M, "vanish"): {
        N: ("{It} disappears for a frame.", "{It} flickers out once."),
        B: ("{It} keeps disappearing.", "{It} vanishes in several frames."),
    },
    (F, "ok"): {
        G: (
            "The image is clean and sharp, and {it} is intact.",
            "Clear picture; {it} looks right.",
            "No blur, noise or distortion.",
        ),
        N: (
            "Mostly clear, though the picture looks a little soft.",
            "Fine overall, with slight quality issues.",
        ),
    },
    (F, "noise"): {
        N: (
            "The video is slightly grainy.",
            "There is some visible noise.",
            "The picture is a little noisy.",
        ),
        B: (
            "The video is covered in heavy noise.",
            "Strong grain makes the picture hard to see.",
            "Very noisy video.",
        ),
    },
    (F, "blur"): {
        N: (
            "The video is a little blurry.",
            "The edges are slightly blurred.",
            "The picture is somewhat soft.",
        ),
        B: (
            "The video is very blurry; {it} has no clear edges.",
            "Heavily blurred.",
            "{It} is a smeared blur.",
        ),
    },
    (F, "deform"): {
        N: (
            "{It} is slightly squashed.",
            "{It} looks a little distorted.",
            "{It} is somewhat stretched out of shape.",
        ),
        B: (
            "{It} is badly squashed out of shape.",
            "{It} is strongly deformed.",
            "{It} is stretched far out of shape.",
        ),
    },
    (F, "missing"): {
        N: (
            "There is a small hole in {it}.",
            "A small part of {it} is missing.",
            "{It} has a little gap in it.",
        ),
        B: (
            "A large part of {it} is missing: there is a big hole in it.",
            "{It} has a big hole.",
            "Much of {it} is missing.",
        ),
    },
    (F, "bleeding"): {
        N: (
            "The colour of {it} bleeds slightly into the background.",
            "{It} has a faint coloured halo.",
            "A little colour bleeding around {it}.",
        ),
        B: (
            "The colour of {it} bleeds strongly into the background.",
            "{It} is surrounded by a thick coloured halo.",
            "Strong colour bleeding around {it}.",
        ),
    },
    (F, "absent"): {
        # Normal: a lenient rater's flip (the oracle calls a missing subject Bad).
        N: ("The shape is hard to make out.", "The subject is barely recognisable."),
        B: ("No shape can be made out at all.", "The subject has dissolved; nothing is recognisable."),
    },
}


def phrase(dimension: Dimension, kind: str, label: Label, slots: dict[str, str], variant: int = 0) -> str:
    """The ``variant``-th wording (modulo the number available) of a finding, with its slots filled."""
    options = PHRASES[(dimension, kind)][label]
    text = options[variant % len(options)]
    it = slots.get("it", "the shape")
    filled = {**slots, "it": it, "It": it[:1].upper() + it[1:]}
    return text.format_map(_Missing(filled))


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
