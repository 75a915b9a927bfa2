"""The oracle rater: any toy-world video plus its prompt -> Good/Normal/Bad per LiFT dimension, with reasons.

It looks only at pixels: subjects are found by colour contrast (``segment``), named by nearest palette
hue and best-fitting shape template (``shapes``), followed over time and their action recognised
(``trajectory``). Each check yields findings with a label following the LiFT guideline (Good = no
clear problem, Normal = minor, Bad = major); a dimension's label is its worst finding. Thresholds sit
between the measured ranges of mild and strong injected defects (docs/toy-world.md).
"""

from __future__ import annotations

import colorsys
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from videolift.core.schema import DIMENSIONS, LABEL_RANK, Dimension, Label, Rating
from videolift.toy.grammar import (
    ACTION_PHRASES,
    SCENE_NAMES,
    SCENE_PHRASES,
    PromptSpec,
    parse_prompt,
    subjects_text,
)
from videolift.toy.phrases import phrase
from videolift.toy.render import COLOUR_RGB, FRAMES, SCENE_RGB, SIZE
from videolift.toy.segment import Blob, Segmentation, segment
from videolift.toy.shapes import ShapeFit, fit_shape
from videolift.toy.trajectory import (
    VANISH_MIN_SIZE,
    Action,
    Smoothness,
    Track,
    follow,
    recognise,
    smoothness,
    untangle_orbiting_pair,
)

S, M, F = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity
G, N, B = Label.Good, Label.Normal, Label.Bad

# (Normal from, Bad from) per measurement; see docs/toy-world.md for the measured ranges behind them.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "noise": (3.0, 13.5),  # sigma, 0-255
    "blur": (1.5, 2.65),  # sigma, px
    "deform": (0.17, 0.5),  # |log aspect ratio|
    "missing": (0.22, 0.5),  # hole radius / inradius
    "bleeding": (0.07, 0.09),  # alpha excess 2-3.5 px out (Normal), 4.75-6 px out (Bad)
    "jitter": (1.1, 3.4),  # px RMS off the path
    "jump": (3.5, 10.5),  # px one frame is out of place
    "frozen": (1, 2),  # steps standing still
    "dropped": (1.6, 2.8),  # largest step / typical step
    "reversal": (1, 2),  # steps backwards (or REVERSAL_BACKWARDS steps of backward motion for Bad)
    "vanish": (1, 2),  # frames where a subject is missing
    "weak": (0.75, 0.25),  # fraction of the full action performed (Normal below, Bad below)
    "off_axis": (25.0, 55.0),  # degrees off the asked direction
}
REVERSAL_BACKWARDS = 1.1  # typical steps of backward motion in all: a major reversal
SCENE_MAX_DISTANCE = 90.0  # farther from every scene colour: an unrecognisable background
MIN_SATURATION = 0.25  # a greyer subject has no palette colour
# The asked-for shape is accepted unless another fits clearly better (heavy blur blurs the difference).
SHAPE_DOUBT = 1.3
SHAPE_FITS_PER_TRACK = 3


def _hue(rgb) -> tuple[float, float]:
    h, _, s = colorsys.rgb_to_hls(*(np.asarray(rgb, dtype=float) / 255))
    return h * 360, s


_PALETTE_HUES = {name: _hue(rgb)[0] for name, rgb in COLOUR_RGB.items()}


def colour_name(rgb) -> str:
    """Nearest palette colour by hue; 'grey' for an unsaturated colour."""
    hue, sat = _hue(rgb)
    if sat < MIN_SATURATION:
        return "grey"
    return min(
        _PALETTE_HUES, key=lambda c: min(abs(hue - _PALETTE_HUES[c]), 360 - abs(hue - _PALETTE_HUES[c]))
    )


def scene_name(rgb) -> str | None:
    dist = {s: float(np.linalg.norm(np.asarray(rgb) - np.array(v))) for s, v in SCENE_RGB.items()}
    best = min(dist, key=dist.get)
    return best if dist[best] <= SCENE_MAX_DISTANCE else None


@dataclass
class Subject:
    """One followed subject: what it is and how it moves and looks."""

    track: Track
    colour: str
    shape: str
    action: Action
    motion: Smoothness
    fits: list[ShapeFit]
    bleed: tuple[float, float]  # alpha excess in the near and far halo ring
    called: str = ""  # the asked shape, when given the benefit of the doubt (see ``name_as_asked``)

    @property
    def name(self) -> str:
        """The shape a reason calls it by."""
        return self.called or self.shape

    @property
    def noun(self) -> str:
        return f"the {self.name}"

    def shape_error(self, shape: str) -> float:
        """Mean template error of a shape over the fitted frames (lower: more like that shape)."""
        return float(np.mean([f.errors[shape] for f in self.fits]))

    def clearly_not(self, shape: str, doubt: float = SHAPE_DOUBT) -> bool:
        """Another shape fits clearly better than ``shape``: ``shape``'s error is over ``doubt`` times the
        best fit's (else ``shape`` gets the benefit of the doubt; 1.0: none)."""
        return self.shape != shape and self.shape_error(shape) > doubt * self.shape_error(self.shape)


@dataclass
class Finding:
    kind: str
    label: Label
    slots: dict[str, str] = field(default_factory=dict)


@dataclass
class Judgement:
    spec: PromptSpec
    findings: dict[Dimension, list[Finding]]
    ok_slots: dict[Dimension, dict[str, str]]
    measurements: dict[str, Any]

    def label(self, dim: Dimension) -> Label:
        labels = [f.label for f in self.findings[dim]]
        return min(labels, key=LABEL_RANK.__getitem__) if labels else G

    def top_findings(self, dim: Dimension) -> list[Finding]:
        """The findings that carry the label: the worst ones, one per kind, at most two."""
        label = self.label(dim)
        out: list[Finding] = []
        for f in self.findings[dim]:
            if f.label == label and all(o.kind != f.kind for o in out):
                out.append(f)
        return out[:2]

    def reason(self, dim: Dimension, variant: int = 0) -> str:
        """Why this label: the worst findings in words (``variant`` picks a paraphrase)."""
        top = self.top_findings(dim)
        if not top:
            return self.reason_when_good(dim, variant)
        return " ".join(phrase(dim, f.kind, f.label, f.slots, variant + i) for i, f in enumerate(top))

    def reason_when_good(self, dim: Dimension, variant: int = 0) -> str:
        kind = "still" if dim == M and self.measurements.get("still") else "ok"
        return phrase(dim, kind, G, self.ok_slots[dim], variant)

    def ratings(self) -> dict[Dimension, Rating]:
        return {d: Rating(label=self.label(d), reason=self.reason(d)) for d in DIMENSIONS}

    def labels(self) -> dict[Dimension, Label]:
        return {d: self.label(d) for d in DIMENSIONS}

    def finding_kinds(self) -> dict[Dimension, list[str]]:
        """Every kind of fault found per dimension (e.g. shape and colour), not only those in the reason."""
        return {d: sorted({f.kind for f in self.findings[d]}) for d in DIMENSIONS}


def _grade(value: float, key: str) -> Label | None:
    normal, bad = THRESHOLDS[key]
    if value >= bad:
        return B
    if value >= normal:
        return N
    return None


def _bleed(blob: Blob, sigma: float) -> tuple[float, float]:
    """Alpha outside the outline beyond what the blur explains, in a near ring (2-3.5 px out) and a far
    ring (4.75-6 px out). The first 2 px are left out: chroma subsampling smears colour that far."""
    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~blob.mask) - 0.5
    # Relative to this subject's own contrast: a brighter neighbour must not dim its halo.
    excess = blob.dist / max(blob.contrast, 1.0) - ndtr(-outside / max(sigma, 0.05))
    rings = []
    for lo, hi in ((2.0, 3.5), (4.75, 6.0)):
        ring = blob.owned & ~blob.mask & (outside >= lo) & (outside <= hi)
        rings.append(float(excess[ring].mean()) if ring.any() else 0.0)
    return rings[0], rings[1]


def _fit_blobs(track: Track) -> list[Blob]:
    """The few largest whole (not border-cut) blobs: shape, blur and holes read best on big ones."""
    whole = [b for b in track.blobs if b is not None and not b.touches_border]
    if not whole:
        whole = [b for b in track.blobs if b is not None]
    return sorted(whole, key=lambda b: -b.area)[:SHAPE_FITS_PER_TRACK]


def observe(frames: np.ndarray) -> tuple[Segmentation, list[Subject]]:
    """Segment, follow and measure every subject of a clip."""
    seg = segment(frames)
    counts = [len(b) for b in seg.blobs]
    n = int(min(round(float(np.median(counts))), 3))
    tracks = follow(seg.blobs, n, lambda b: colour_name(b.rgb))
    orbit_turn = None
    if n == 2 and _look_alike(tracks):
        orbit_turn = untangle_orbiting_pair(tracks)
    subjects = []
    for track in tracks:
        blobs = [b for b in track.blobs if b is not None]
        if not blobs:
            continue
        colour = Counter(colour_name(b.rgb) for b in blobs).most_common(1)[0][0]
        fitted = _fit_blobs(track)
        fits = [fit_shape(b) for b in fitted]
        shape = Counter(f.shape for f in fits).most_common(1)[0][0]
        sigma = float(np.median([f.sigma for f in fits]))
        bleeds = np.array([_bleed(b, sigma) for b in fitted])
        # A shape cut by the frame border has a biased centroid: good enough to recognise the action,
        # not to judge smoothness (unless most frames are cut).
        # Sizes from colour mass are the steadiest (sub-pixel, blur-proof) unless a halo adds to the mass.
        by_mass = float(np.median(bleeds[:, 0])) < THRESHOLDS["bleeding"][0]
        states = track.states(by_mass=by_mass)
        if np.isnan(states[:, 0]).sum() > len(states) // 2:
            states = track.states(include_clipped=True, by_mass=by_mass)
        action = recognise(track.states(include_clipped=True, by_mass=by_mass), n)
        if orbit_turn is not None:
            radius = float(
                np.nanmedian(np.linalg.norm(states[:, :2] - np.nanmean(states[:, :2], axis=0), axis=1))
            )
            action = Action(
                "orbit", min(abs(orbit_turn) / (2 * np.pi), 1.0), {"radius": radius, "turn": orbit_turn}
            )
        subjects.append(
            Subject(
                track,
                colour,
                shape,
                action,
                smoothness(states, action),
                fits,
                tuple(np.median(bleeds, axis=0)),
            )
        )
    return seg, subjects


def _look_alike(tracks: list[Track]) -> bool:
    """Same colour and similar fill ratio: a pair whose identities the tracker could confuse."""
    looks = []
    for track in tracks:
        blobs = [b for b in track.blobs if b is not None]
        if not blobs:
            return False
        looks.append(
            (
                Counter(colour_name(b.rgb) for b in blobs).most_common(1)[0][0],
                np.median([b.fill for b in blobs]),
            )
        )
    return looks[0][0] == looks[1][0] and abs(looks[0][1] - looks[1][1]) < 0.12


# ---------------------------------------------------------------- checks per dimension


def _action_text(action: Action) -> str:
    if action.kind in ACTION_PHRASES:
        return ACTION_PHRASES[action.kind][0]
    return {"still": "does not move", "back_and_forth": "moves back and forth"}.get(
        action.kind, "moves oddly"
    )


def _match(spec: PromptSpec, subjects: list[Subject]) -> list[tuple[Any, Subject]]:
    """Pair prompt subjects with observed ones so that as many attributes as possible agree."""
    wanted = list(spec.subjects)
    k = min(len(wanted), len(subjects))
    best, best_score = [], -1
    # With fewer shapes seen than asked, any asked subject may be the one drawn (not just the first).
    for asked in itertools.combinations(wanted, k):
        for perm in itertools.permutations(subjects, k):
            pairs = list(zip(asked, perm, strict=True))
            score = sum((w.colour == s.colour) + (w.shape == s.shape) for w, s in pairs)
            if score > best_score:
                best, best_score = pairs, score
    return best


def _count_text(subjects: list[Subject]) -> str:
    if not subjects:
        return "no shape"
    first = subjects[0]
    if len(subjects) == 1:
        return f"only one {first.colour} {first.name}"
    if len(subjects) == 2 and all((s.colour, s.name) == (first.colour, first.name) for s in subjects):
        return f"two {first.colour} {first.name}s"
    return f"{len(subjects)} shapes"


def name_as_asked(spec: PromptSpec, subjects: list[Subject], doubt: float = SHAPE_DOUBT) -> None:
    """Call a subject by the asked shape where it gets the benefit of the doubt, so that no reason
    says "the circle" of what the semantic verdict accepted as the asked square."""
    for want, got in _match(spec, subjects):
        if not got.clearly_not(want.shape, doubt):  # also when it is the asked shape: the same name
            got.called = want.shape


def _semantic(
    spec: PromptSpec, seg: Segmentation, subjects: list[Subject], doubt: float = SHAPE_DOUBT
) -> list[Finding]:
    out: list[Finding] = []
    if len(subjects) != spec.count:
        want = subjects_text(spec.subjects) if spec.count == 2 else f"just one {spec.subjects[0].text}"
        out.append(Finding("count", B, {"want": want, "got": _count_text(subjects)}))
    for want, got in _match(spec, subjects):
        if got.colour != want.colour:
            out.append(
                Finding(
                    "colour", B, {"it": got.noun, "shape": got.name, "want": want.colour, "got": got.colour}
                )
            )
        if got.clearly_not(want.shape, doubt):
            out.append(Finding("shape", B, {"colour": got.colour, "want": want.shape, "got": got.shape}))
    gerund = ACTION_PHRASES[spec.action][2]
    for sub in subjects:
        action = sub.action
        slots = {"it": sub.noun, "want": gerund}
        if action.kind != spec.action:
            out.append(Finding("action", B, {**slots, "got": _action_text(action)}))
            continue
        if action.kind in ("left", "right", "up", "down"):
            off = _grade(action.detail.get("off_axis", 0.0), "off_axis")
            if off:
                out.append(Finding("action", off, {**slots, "got": f"{_action_text(action)} at a slant"}))
        normal, bad = THRESHOLDS["weak"]
        if action.kind != "orbit" and action.amount < normal:
            label = B if action.amount < bad else N
            out.append(Finding("action", label, {**slots, "got": f"{_action_text(action)} only a little"}))
    got_scene = scene_name(seg.background)
    if got_scene != spec.scene:
        seen = SCENE_PHRASES[got_scene].split(" ", 1)[1] if got_scene else "an unrecognisable background"
        out.append(Finding("scene", N, {"scene": SCENE_NAMES[spec.scene], "got_scene": seen}))
    return out


def _motion(subjects: list[Subject]) -> list[Finding]:
    out: list[Finding] = []
    for sub in subjects:
        m, it = sub.motion, {"it": sub.noun}
        checks = [
            ("jump", _grade(m.glitch, "jump")),
            ("jitter", _grade(m.jitter, "jitter")),
            ("vanish", _grade(sub.track.missing, "vanish")),
        ]
        if m.timed:
            bad_reversal = m.reversed >= THRESHOLDS["reversal"][1] or m.backwards >= REVERSAL_BACKWARDS
            reversal = B if bad_reversal else (N if m.reversed >= THRESHOLDS["reversal"][0] else None)
            checks += [
                ("frozen", _grade(m.frozen, "frozen")),
                ("dropped", _grade(m.skip, "dropped")),
                ("reversal", reversal),
            ]
        out += [Finding(kind, label, it) for kind, label in checks if label]
    return out


def _glimpsed(seg: Segmentation) -> list[Finding]:
    """No subject is found in most frames, yet one shows in some: it vanishes for most of the clip (Bad from
    two frames), which is no still picture to call smooth."""
    if any(b.size() >= VANISH_MIN_SIZE for frame in seg.blobs for b in frame):
        return [Finding("vanish", B, {"it": "the shape"})]
    return []


def _fidelity(seg: Segmentation, subjects: list[Subject]) -> list[Finding]:
    if not subjects:
        return [Finding("absent", B)]
    out: list[Finding] = []
    if label := _grade(seg.noise, "noise"):
        out.append(Finding("noise", label, {"it": subjects[0].noun}))
    sigma = float(np.median([f.sigma for s in subjects for f in s.fits]))
    if label := _grade(sigma, "blur"):
        out.append(Finding("blur", label, {"it": subjects[0].noun}))
    for sub in subjects:
        it = {"it": sub.noun}
        aspect = float(np.median([abs(f.log_aspect) for f in sub.fits]))
        hole = float(np.median([f.hole for f in sub.fits]))
        near, far = sub.bleed
        bleed = B if far >= THRESHOLDS["bleeding"][1] else (N if near >= THRESHOLDS["bleeding"][0] else None)
        for kind, label in (
            ("deform", _grade(aspect, "deform")),
            ("missing", _grade(hole, "missing")),
            ("bleeding", bleed),
        ):
            if label:
                out.append(Finding(kind, label, it))
    return out


CLIP_SHAPE = (FRAMES, SIZE, SIZE, 3)
CLIP_SIZE = f"{FRAMES} x {SIZE} x {SIZE}"  # frames x height x width, for messages


def sizes_not_rated(frames: int | None, height: int | None, width: int | None) -> list[str]:
    """``"name value"`` of each clip size given (None: the model's own) that the oracle cannot rate."""
    given = {"frames": frames, "height": height, "width": width}
    return [
        f"{k} {v}" for (k, v), own in zip(given.items(), CLIP_SHAPE, strict=False) if v not in (None, own)
    ]


def model_size_error(
    model: str, family: str | None, frames: int | None, height: int | None, width: int | None
) -> str | None:
    """How ``model`` sampled at these sizes (None: its own) makes clips the oracle cannot rate, as far as
    its configs tell before it loads (a Hub id: not at all); None when they fit or cannot be told."""
    from videolift.models.families import spec_for

    if not Path(model).expanduser().is_dir():
        return None
    size = spec_for(model, family).own_sampling(model, frames, height, width)
    if size is None or not sizes_not_rated(*size):
        return None
    return (
        f"makes clips of {' x '.join(map(str, size))}; the oracle rates {CLIP_SIZE} (frames x height x width)"
    )


class ClipSizeError(ValueError):
    """A clip the oracle cannot rate: not the toy world's size."""


def check_clip(frames: np.ndarray) -> None:
    """The oracle's measures are in the toy world's pixels and frames: another size would be rated
    (a one-frame clip moves smoothly), but meaninglessly. ClipSizeError naming the shape."""
    if tuple(frames.shape) != CLIP_SHAPE:
        got = "x".join(map(str, frames.shape))
        raise ClipSizeError(
            f"the oracle rates toy-world clips of {FRAMES} frames of {SIZE}x{SIZE} RGB, got {got}"
        )


def judge(frames: np.ndarray, prompt: str | PromptSpec, shape_doubt: float = SHAPE_DOUBT) -> Judgement:
    """Rate a clip against its prompt on the three LiFT dimensions. ``shape_doubt``: how much worse the
    asked shape may fit than the best-fitting one and still count as drawn (1.0: only if it fits best)."""
    if not 1.0 <= shape_doubt < math.inf:  # NaN too: it would take any drawn shape for the asked one
        raise ValueError(f"shape_doubt must be a number >= 1.0 (1.0: strict), got {shape_doubt}")
    check_clip(frames)
    spec = prompt if isinstance(prompt, PromptSpec) else parse_prompt(prompt)
    seg, subjects = observe(frames)
    name_as_asked(spec, subjects, shape_doubt)
    first = subjects[0].noun if subjects else "the shape"
    desc = f"{subjects_text(spec.subjects)} {ACTION_PHRASES[spec.action][2]} {SCENE_PHRASES[spec.scene]}"
    findings = {
        S: _semantic(spec, seg, subjects, shape_doubt),
        M: _motion(subjects) if subjects else _glimpsed(seg),
        F: _fidelity(seg, subjects),
    }
    measurements = {
        "noise": seg.noise,
        "count": len(subjects),
        "still": all(s.action.kind == "still" for s in subjects),
        "subjects": [
            {
                "colour": s.colour,
                "shape": s.shape,
                "action": s.action.kind,
                "amount": round(s.action.amount, 3),
                "jitter": round(s.motion.jitter, 2),
                "glitch": round(s.motion.glitch, 2),
                "frozen": s.motion.frozen,
                "reversed": s.motion.reversed,
                "skip": round(s.motion.skip, 2),
                "sigma": round(float(np.median([f.sigma for f in s.fits])), 2),
                "aspect": round(float(np.median([abs(f.log_aspect) for f in s.fits])), 3),
                "hole": round(float(np.median([f.hole for f in s.fits])), 3),
                "bleed": [round(v, 3) for v in s.bleed],
            }
            for s in subjects
        ],
    }
    ok = {"it": first, "desc": desc}
    return Judgement(spec, findings, {S: ok, M: ok, F: ok}, measurements)
