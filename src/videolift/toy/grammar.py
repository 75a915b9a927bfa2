"""The toy prompt grammar: 1-2 coloured shapes doing one action in one scene, and its held-out split.

"a red circle moves left in a sand desert", "two blue squares bounce in the night sky",
"a green triangle and a yellow circle move in a circle on a snow field". Every prompt parses back to
its ``PromptSpec``; a fixed set of (colour, shape, action) combinations never appears in training.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
ACTIONS = ("left", "right", "up", "down", "bounce", "grow", "shrink", "orbit")
LINEAR_ACTIONS = ("left", "right", "up", "down")
# Two shapes circling opposite each other would touch at 48x48: the grammar keeps orbits single.
PAIR_ACTIONS = tuple(a for a in ACTIONS if a != "orbit")
SCENES = ("desert", "snow", "night", "road")

# (singular verb phrase, plural verb phrase, gerund) per action.
ACTION_PHRASES = {
    "left": ("moves left", "move left", "moving left"),
    "right": ("moves right", "move right", "moving right"),
    "up": ("moves up", "move up", "moving up"),
    "down": ("moves down", "move down", "moving down"),
    "bounce": ("bounces", "bounce", "bouncing"),
    "grow": ("grows", "grow", "growing"),
    "shrink": ("shrinks", "shrink", "shrinking"),
    "orbit": ("moves in a circle", "move in a circle", "moving in a circle"),
}
SCENE_PHRASES = {
    "desert": "in a sand desert",
    "snow": "on a snow field",
    "night": "in the night sky",
    "road": "on a grey road",
}
SCENE_NAMES = {"desert": "sand desert", "snow": "snow field", "night": "night sky", "road": "grey road"}

# Held-out combinations: a prompt in which any subject has one of these (colour, shape) with this action
# is held out. Each action, colour and shape still appears in training with other partners.
HELDOUT_COMBOS = frozenset(
    {
        ("red", "circle", "left"),
        ("green", "square", "right"),
        ("blue", "triangle", "up"),
        ("yellow", "circle", "down"),
        ("red", "triangle", "bounce"),
        ("green", "circle", "grow"),
        ("blue", "square", "shrink"),
        ("yellow", "triangle", "orbit"),
    }
)

Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class Subject:
    colour: str
    shape: str

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {', '.join(COLOURS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {', '.join(SHAPES)}")

    @property
    def text(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class PromptSpec:
    """What a toy prompt asks for. Two equal subjects read "two red circles"."""

    subjects: tuple[Subject, ...]
    action: str
    scene: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.subjects) <= 2:
            raise ValueError(f"a toy prompt has 1 or 2 subjects, got {len(self.subjects)}")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if self.scene not in SCENES:
            raise ValueError(f"unknown scene {self.scene!r}; expected one of {', '.join(SCENES)}")

    @property
    def count(self) -> int:
        return len(self.subjects)

    @property
    def text(self) -> str:
        return f"{subjects_text(self.subjects)} {verb_phrase(self.action, len(self.subjects))} {SCENE_PHRASES[self.scene]}"

    @property
    def split(self) -> Split:
        held = any((s.colour, s.shape, self.action) in HELDOUT_COMBOS for s in self.subjects)
        return "heldout" if held else "train"

    def categories(self) -> dict[str, str | int]:
        """Category fields carried into prompt files and manifests."""
        kind = (
            "single" if self.count == 1 else ("pair_same" if self.subjects[0] == self.subjects[1] else "pair")
        )
        return {"layout": kind, "count": self.count, "action": self.action, "scene": self.scene}


def subjects_text(subjects: tuple[Subject, ...]) -> str:
    if len(subjects) == 1:
        return f"a {subjects[0].text}"
    if subjects[0] == subjects[1]:
        return f"two {subjects[0].colour} {subjects[0].shape}s"
    return f"a {subjects[0].text} and a {subjects[1].text}"


def verb_phrase(action: str, count: int) -> str:
    return ACTION_PHRASES[action][0 if count == 1 else 1]


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SUBJECT = rf"(?:{_alternatives(COLOURS)}) (?:{_alternatives(SHAPES)})"
_PROMPT_RE = re.compile(
    rf"^(?P<subjects>a {_SUBJECT}(?: and a {_SUBJECT})?|two (?:{_alternatives(COLOURS)}) (?:{_alternatives(SHAPES)})s)"
    rf" (?P<verb>{_alternatives(p for phrases in ACTION_PHRASES.values() for p in phrases[:2])})"
    rf" (?P<scene>{_alternatives(SCENE_PHRASES.values())})$"
)


def parse_prompt(text: str, *, shown: bool = False) -> PromptSpec:
    """Inverse of ``PromptSpec.text`` (case- and whitespace-tolerant, optional final full stop).
    ``shown``: the text says what a video shows, where a defect may have two shapes circle."""
    norm = " ".join(str(text).lower().split()).rstrip(".")
    match = _PROMPT_RE.match(norm)
    if match is None:
        raise ValueError(
            f"not a toy-world prompt: {text!r} (expected e.g. 'a red circle moves left in a sand desert')"
        )
    words = match["subjects"].split()
    if words[0] == "two":
        subjects = (Subject(words[1], words[2][:-1]),) * 2
    else:
        subjects = tuple(
            Subject(c, s) for c, s in re.findall(rf"a ({_alternatives(COLOURS)}) (\w+)", match["subjects"])
        )
    count = len(subjects)
    action = next(
        (a for a, phrases in ACTION_PHRASES.items() if match["verb"] == phrases[0 if count == 1 else 1]), None
    )
    if action is None:  # singular verb with a plural subject or the other way round
        raise ValueError(f"verb {match['verb']!r} does not agree with {match['subjects']!r} in {text!r}")
    scene = next(s for s, phrase in SCENE_PHRASES.items() if phrase == match["scene"])
    spec = PromptSpec(subjects, action, scene)
    if count == 2 and action not in PAIR_ACTIONS and not shown:  # a defect may show it; no prompt asks it
        raise ValueError(f"not a toy-world prompt: {text!r} (orbits have one subject)")
    if spec.text != norm:  # e.g. "a red circle and a red circle ...": the grammar writes "two red circles"
        raise ValueError(f"not a toy-world prompt: {text!r} (the grammar writes it {spec.text!r})")
    return spec


def all_specs() -> Iterator[PromptSpec]:
    """Every prompt of the grammar, in a fixed order."""
    singles = [Subject(c, s) for c in COLOURS for s in SHAPES]
    groups = [(s,) for s in singles] + [(s, s) for s in singles] + list(itertools.permutations(singles, 2))
    for subjects in groups:
        for action in ACTIONS if len(subjects) == 1 else PAIR_ACTIONS:
            for scene in SCENES:
                yield PromptSpec(tuple(subjects), action, scene)


def split_specs(split: Split) -> list[PromptSpec]:
    return [spec for spec in all_specs() if spec.split == split]


# Layout mix for sampling: half single subjects, a quarter two equal, a quarter two different.
LAYOUT_WEIGHTS = {"single": 0.5, "pair_same": 0.25, "pair": 0.25}


def sample_spec(rng: np.random.Generator, split: Split | None = "train") -> PromptSpec:
    """One random prompt of ``split`` (any split for None) with the layout mix above."""
    while True:
        layout = rng.choice(list(LAYOUT_WEIGHTS), p=list(LAYOUT_WEIGHTS.values()))
        first = Subject(str(rng.choice(COLOURS)), str(rng.choice(SHAPES)))
        if layout == "single":
            subjects: tuple[Subject, ...] = (first,)
        elif layout == "pair_same":
            subjects = (first, first)
        else:
            second = Subject(str(rng.choice(COLOURS)), str(rng.choice(SHAPES)))
            if second == first:
                continue
            subjects = (first, second)
        actions = ACTIONS if len(subjects) == 1 else PAIR_ACTIONS
        spec = PromptSpec(subjects, str(rng.choice(actions)), str(rng.choice(SCENES)))
        if split is None or spec.split == split:
            return spec


def sample_distinct(n: int, split: Split, seed: int = 0) -> list[PromptSpec]:
    """``n`` different prompts of ``split``; ValueError when the split has fewer."""
    total = len(split_specs(split))
    if n > total:
        raise ValueError(f"the {split} split has only {total} different prompts, asked for {n}")
    rng = np.random.default_rng(seed)
    seen: dict[PromptSpec, None] = {}
    while len(seen) < n:
        if len(seen) > 0.8 * total:  # the rejection sampler slows down: fill from the full list
            rest = [s for s in split_specs(split) if s not in seen]
            for i in rng.permutation(len(rest))[: n - len(seen)]:
                seen[rest[i]] = None
            break
        seen.setdefault(sample_spec(rng, split), None)
    return list(seen)
