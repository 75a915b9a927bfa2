"""Defect kinds per LiFT dimension, their mild/strong parameters, and the ground-truth labels they imply.

A defect is data (kind, severity, parameters); ``toy.render`` implements its effect. Mild defects are
"minor problems" (Normal), strong ones "major problems" (Bad). Semantic defects are all major except a
wrong scene and a weakly performed action, which are minor by design (the subject and the action are
what the prompt is about). See docs/toy-world.md for the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from videolift.core.schema import DIMENSIONS, LABEL_RANK, Dimension, Label
from videolift.toy.grammar import ACTIONS, COLOURS, SCENES, SHAPES, PromptSpec

Severity = Literal["mild", "strong"]
SEVERITY_LABEL: dict[str, Label] = {"mild": Label.Normal, "strong": Label.Bad}

SEMANTIC_MINOR = ("scene", "weak_action")
SEMANTIC_MAJOR = ("colour", "shape", "count", "direction")
MOTION_KINDS = ("jitter", "jump", "frozen", "dropped", "reversal")
FIDELITY_KINDS = ("noise", "blur", "deform", "missing", "bleeding")
KINDS: dict[Dimension, tuple[str, ...]] = {
    Dimension.semantic_consistency: SEMANTIC_MINOR + SEMANTIC_MAJOR,
    Dimension.motion_smoothness: MOTION_KINDS,
    Dimension.video_fidelity: FIDELITY_KINDS,
}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "grow": "shrink", "shrink": "grow"}

# Magnitudes (mild, strong); each video draws within +-15% of the value (blur +-10%: its measurement is
# the least precise) so that labels are not tied to one exact number.
MAGNITUDE = {
    "weak_action": (0.6, 0.6),  # fraction of the normal travel / growth
    "jitter": (2.5, 5.0),  # px, sideways offset alternating frame to frame
    "jump": (7.0, 15.0),  # px, one frame shows the subject from another moment, this far along its path
    "frozen": (1, 3),  # frames the subject stands still
    "dropped": (1, 3),  # frames skipped in one step
    "reversal": (0.5, 0.75),  # backward speed, relative (1 step mild, 2 steps strong)
    "noise": (10.0, 36.0),  # Gaussian sigma, 0-255 scale
    "blur": (1.8, 3.6),  # Gaussian sigma, px (+-10%)
    "deform": (0.3, 0.7),  # log of the aspect ratio the shape is squashed to (one axis shrinks)
    "missing": (0.4, 0.7),  # radius of the hole through the middle, fraction of the shape's inradius
    "bleeding": (4.0, 7.0),  # halo width, px (opacity 0.35 mild, 0.45 strong)
}
_DISCRETE = {"frozen", "dropped"}


@dataclass(frozen=True)
class Defect:
    dimension: Dimension
    kind: str
    severity: Severity
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> Label:
        if self.kind in SEMANTIC_MINOR:
            return Label.Normal
        return SEVERITY_LABEL[self.severity]

    def to_json(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension.value,
            "kind": self.kind,
            "severity": self.severity,
            **self.params,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Defect:
        data = dict(data)
        try:
            dim = Dimension(data.pop("dimension"))
            kind, severity = data.pop("kind"), data.pop("severity")
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad defect record {data!r}: {exc}") from None
        if kind not in KINDS[dim]:
            raise ValueError(
                f"unknown {dim.value} defect kind {kind!r}; expected one of {', '.join(KINDS[dim])}"
            )
        if severity not in SEVERITY_LABEL:
            raise ValueError(f"unknown severity {severity!r}; expected mild or strong")
        return cls(dim, kind, severity, data)


def truth(defects: list[Defect] | tuple[Defect, ...]) -> dict[Dimension, Label]:
    """Ground-truth label per dimension: the worst label among that dimension's defects, else Good."""
    out = {d: Label.Good for d in DIMENSIONS}
    for defect in defects:
        if LABEL_RANK[defect.label] < LABEL_RANK[out[defect.dimension]]:
            out[defect.dimension] = defect.label
    return out


def shown_spec(spec: PromptSpec, defects: list[Defect] | tuple[Defect, ...]) -> PromptSpec:
    """What the video actually shows once the semantic defects are applied."""
    subjects, action, scene = list(spec.subjects), spec.action, spec.scene
    for d in defects:
        p = d.params
        if d.kind in ("colour", "shape"):
            target = subjects[p["subject"]]
            changed = dataclasses.replace(target, **{d.kind: p["to"]})
            subjects = [changed if s == target else s for s in subjects]
        elif d.kind == "count":
            subjects = [subjects[0], subjects[0]] if p["to"] == 2 else [subjects[p.get("keep", 0)]]
        elif d.kind == "direction":
            action = p["to"]
        elif d.kind == "scene":
            scene = p["to"]
    return PromptSpec(tuple(subjects), action, scene)


def action_scale(defects: list[Defect] | tuple[Defect, ...]) -> float:
    return next((float(d.params["scale"]) for d in defects if d.kind == "weak_action"), 1.0)


def _magnitude(kind: str, severity: Severity, rng: np.random.Generator) -> float:
    base = MAGNITUDE[kind][0 if severity == "mild" else 1]
    if kind in _DISCRETE:
        return base
    spread = 0.1 if kind == "blur" else 0.15
    return round(float(base * rng.uniform(1 - spread, 1 + spread)), 3)


def sample_defect(
    dimension: Dimension,
    severity: Severity,
    spec: PromptSpec,
    rng: np.random.Generator,
    kind: str | None = None,
    *,
    weak: bool = False,
) -> Defect:
    """A random defect of ``dimension`` at ``severity`` that makes sense for the (shown) ``spec``.

    Semantic kinds are minor or major by nature, so ``severity`` picks the kind family for semantics.
    ``weak``: the action is already weakened (a strong jump would then not fit in the clip).
    """
    if kind is None:
        kind = str(rng.choice(allowed_kinds(dimension, severity, spec, weak=weak)))
    if kind in SEMANTIC_MINOR:
        severity = "mild"
    elif kind in SEMANTIC_MAJOR:
        severity = "strong"
    params: dict[str, Any] = {}
    n = spec.count
    if kind == "colour":
        i = int(rng.integers(n))
        params = {"subject": i, "to": str(rng.choice([c for c in COLOURS if c != spec.subjects[i].colour]))}
    elif kind == "shape":
        i = int(rng.integers(n))
        params = {"subject": i, "to": str(rng.choice([s for s in SHAPES if s != spec.subjects[i].shape]))}
    elif kind == "count":
        params = {"to": 2} if n == 1 else {"to": 1, "keep": int(rng.integers(2))}
    elif kind == "direction":
        if spec.action in OPPOSITE and rng.random() < 0.6:
            params = {"to": OPPOSITE[spec.action]}
        else:
            params = {"to": str(rng.choice([a for a in ACTIONS if a != spec.action]))}
    elif kind == "scene":
        params = {"to": str(rng.choice([s for s in SCENES if s != spec.scene]))}
    elif kind == "weak_action":
        params = {"scale": MAGNITUDE["weak_action"][0]}
    elif kind == "jitter":
        params = {"amplitude": _magnitude(kind, severity, rng)}
    elif kind == "jump":  # near the ends, so the shown moment can lie far enough along the path
        params = {"frame": int(rng.choice([1, 2, 6, 7])), "distance": _magnitude(kind, severity, rng)}
    elif kind in ("frozen", "dropped"):
        frames = int(_magnitude(kind, severity, rng))
        if spec.action == "bounce":  # within one half: the floor touch stays on a frame
            half = int(rng.integers(2))
            start = int(
                rng.integers(4 * half + (1 - half), 4 * half + 5 - (frames if kind == "frozen" else 1))
            )
        else:
            start = int(rng.integers(1, 5))
        params = {"start": start, "frames": frames}
    elif kind == "reversal":
        params = {
            "start": int(rng.integers(2, 5)),
            "steps": 1 if severity == "mild" else 2,
            "speed": _magnitude(kind, severity, rng),
        }
    elif kind in ("noise", "blur"):
        params = {"sigma": _magnitude(kind, severity, rng)}
    elif kind == "deform":
        aspect = round(float(np.exp(_magnitude(kind, severity, rng))), 3)
        params = {"aspect": aspect, "axis": str(rng.choice(["x", "y"]))}
    elif kind == "missing":
        params = {"radius": _magnitude(kind, severity, rng)}
    elif kind == "bleeding":
        params = {"width": _magnitude(kind, severity, rng), "opacity": 0.35 if severity == "mild" else 0.45}
    return Defect(dimension, kind, severity, params)


def allowed_kinds(
    dimension: Dimension, severity: Severity, spec: PromptSpec, *, weak: bool = False
) -> tuple[str, ...]:
    if dimension == Dimension.semantic_consistency:
        if severity == "mild":
            # A weaker orbit is no longer a circle; two growing shapes change size too little to weaken.
            weak_ok = spec.action != "orbit" and not (spec.count == 2 and spec.action in ("grow", "shrink"))
            return SEMANTIC_MINOR if weak_ok else ("scene",)
        return SEMANTIC_MAJOR
    drop = set()
    if spec.action == "bounce":  # a bounce already turns round: a reversal is not a visible defect
        drop.add("reversal")
    if (
        spec.count == 2 and spec.action == "orbit"
    ):  # (only through a count defect) radial shaking would collide
        drop.add("jitter")
    if not timed(spec):
        drop.update(("frozen", "dropped", "reversal"))
    if severity == "strong" and (weak or (spec.count == 2 and spec.action in ("grow", "shrink"))):
        drop.add("jump")  # a short path has no moment far enough away
    return tuple(k for k in KINDS[dimension] if k not in drop)


def timed(spec: PromptSpec) -> bool:
    """Whether the action changes enough over the clip (>= 12 px, see toy.trajectory) for frozen, skipped
    or reversed steps to show: not so for two shapes growing side by side (10 px)."""
    return not (spec.action in ("grow", "shrink") and spec.count == 2)


def plan_severities(n: int, rate: float, seed: int) -> list[dict[Dimension, Severity | None]]:
    """Per video and dimension: no defect, mild or strong. Stratified, so the counts are exact.

    For each dimension round(rate * n) videos get a defect (at least 2 when rate > 0 and n >= 3, so every
    label occurs), half mild and half strong; which videos is a seeded permutation per dimension.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"defect rate must be within [0, 1], got {rate}")
    rng = np.random.default_rng([seed, 7])
    plan: list[dict[Dimension, Severity | None]] = [{d: None for d in DIMENSIONS} for _ in range(n)]
    k = round(rate * n)
    if rate > 0 and n >= 3:
        k = min(max(k, 2), n - 1) if rate < 1 else n
    for dim in DIMENSIONS:
        order = rng.permutation(n)[:k]
        for j, i in enumerate(order):
            plan[i][dim] = "mild" if j % 2 == 0 else "strong"
    return plan


def sample_defects(
    spec: PromptSpec, severities: dict[Dimension, Severity | None], rng: np.random.Generator
) -> list[Defect]:
    """Concrete defects for one video. Semantic first: motion defects must fit the action actually shown."""
    defects: list[Defect] = []
    sev = severities.get(Dimension.semantic_consistency)
    if sev:
        # A training prompt's video must not show a held-out combination (a direction, colour or shape
        # changed into one): pretraining learns from what is shown. Redrawn, so the rest keep their draws.
        for _ in range(100):
            semantic = sample_defect(Dimension.semantic_consistency, sev, spec, rng)
            if spec.split == "heldout" or shown_spec(spec, [semantic]).split == "train":
                break
        else:  # unreachable: a count or scene change never leaves the split
            raise RuntimeError(f"no {sev} semantic defect of {spec.text!r} keeps it a training video")
        defects.append(semantic)
    shown, weak = shown_spec(spec, defects), action_scale(defects) < 1
    for dim in (Dimension.motion_smoothness, Dimension.video_fidelity):
        if sev := severities.get(dim):
            defects.append(sample_defect(dim, sev, shown, rng, weak=weak))
    return defects
