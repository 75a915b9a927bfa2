"""Captions of what a toy video visibly shows (prompt after semantic defects, plus motion and quality
defects), e.g. "a green square moves left in a sand desert; it pauses for a moment". Used to pretrain
small video-language models to see before they learn to rate.
"""

from __future__ import annotations

from videolift.toy.defects import Defect, action_scale, shown_spec
from videolift.toy.grammar import SCENE_PHRASES, PromptSpec, subjects_text, verb_phrase

# (mild, strong) wording with {it} the subject(s) and (singular|plural) verb forms.
_CLAUSES = {
    "jitter": ("{it} {shakes|shake} slightly", "{it} {shakes|shake} violently"),
    "jump": (
        "{it} {jumps|jump} out of place for one frame",
        "{it} {jumps|jump} far out of place for one frame",
    ),
    "frozen": ("{it} {pauses|pause} for a moment", "{it} {freezes|freeze} for several frames"),
    "dropped": ("{it} {skips|skip} ahead once", "{it} {leaps|leap} ahead as frames are missing"),
    "reversal": ("{it} briefly {moves|move} backwards", "{it} {moves|move} backwards for a while"),
    "noise": ("the picture is grainy", "the picture is very noisy"),
    "blur": ("the picture is a little blurry", "the picture is very blurry"),
    "deform": ("{the_shape} {is|are} slightly squashed", "{the_shape} {is|are} badly squashed"),
    "missing": (
        "{the_shape} {has a small hole|have small holes}",
        "{the_shape} {has a big hole|have big holes}",
    ),
    "bleeding": (
        "{its} colour bleeds a little into the background",
        "{its} colour bleeds strongly into the background",
    ),
}


def _inflect(template: str, plural: bool) -> str:
    import re

    return re.sub(r"\{([^{}|]*)\|([^{}|]*)\}", lambda m: m.group(2 if plural else 1), template)


def describe(spec: PromptSpec, defects: list[Defect] | tuple[Defect, ...] = ()) -> str:
    """What the video rendered from ``spec`` with ``defects`` shows, in the prompt grammar's words."""
    shown = shown_spec(spec, defects)
    verb = verb_phrase(shown.action, shown.count)
    if action_scale(defects) < 1:
        verb += " only a little"
    text = f"{subjects_text(shown.subjects)} {verb} {SCENE_PHRASES[shown.scene]}"
    plural = shown.count == 2
    shape = shown.subjects[0].shape
    if plural:
        the_shape = f"the {shape}s" if shown.subjects[0] == shown.subjects[1] else "both shapes"
    else:
        the_shape = f"the {shape}"
    slots = {"it": "they" if plural else "it", "its": "their" if plural else "its", "the_shape": the_shape}
    clauses = [
        _inflect(_CLAUSES[d.kind][0 if d.severity == "mild" else 1], plural).format(**slots)
        for d in defects
        if d.kind in _CLAUSES
    ]
    return "; ".join([text, *clauses])
