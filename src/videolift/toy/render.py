"""Render a toy prompt (plus injected defects) to 9 frames of 48x48 RGB, deterministically from a seed.

Sizes are chosen so the evidence survives a 4x VAE compression and tiny models: shapes about 16 px
across, motion of 3 px or more per frame, four saturated colours on four muted backgrounds.
Positions are shape centroids; "size" is the diameter of the circle of the same area, so a circle,
square and triangle of one size cover the same area.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from videolift.toy.defects import Defect, action_scale, shown_spec
from videolift.toy.grammar import PromptSpec

SIZE = 48
FRAMES = 9
FPS = 8
SHAPE_SIZE = 16.0
SUPERSAMPLE = 4
COLOUR_RGB = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 235), "yellow": (245, 210, 30)}
SCENE_RGB = {
    "desert": (176, 146, 100),
    "snow": (228, 232, 238),
    "night": (22, 26, 64),
    "road": (112, 112, 118),
}

TRAVEL = 24.0  # px covered by a linear move or a bounce
GROWTH_SPAN = {1: 22.0, 2: 10.0}  # px a full grow/shrink changes the size by, for 1 or 2 subjects
GROWTH_MID = {1: 21.0, 2: 12.0}
ORBIT_RADIUS = 12.0
# Two subjects share the frame in lanes: top/bottom for horizontal moves, left/right otherwise.
LANES = (12.0, 36.0)


@dataclass(frozen=True)
class Style:
    """Generator-like look applied before fidelity defects: softness, colour drift, faint noise.

    A video in this style with no defect is still Good on every dimension (the oracle must cope).
    """

    blur: float = 0.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flicker: float = 0.0  # brightness change from first to last frame, relative
    noise: float = 0.0

    @classmethod
    def generated(cls, seed: int, strength: float = 1.0) -> Style:
        rng = np.random.default_rng([seed, 99])
        return cls(
            blur=0.6 * strength,
            gain=tuple(float(g) for g in 1 + rng.uniform(-0.1, 0.1, 3) * strength),
            offset=tuple(float(o) for o in rng.uniform(-12, 12, 3) * strength),
            flicker=float(rng.uniform(-0.04, 0.04) * strength),
            noise=2.0 * strength,
        )


@dataclass
class SubjectTrack:
    """Where one subject is in each frame, and how it is drawn."""

    shape: str
    rgb: np.ndarray
    xy: np.ndarray  # (T, 2) centroid
    size: np.ndarray  # (T,)
    mods: list[Defect] = field(default_factory=list)


# ---------------------------------------------------------------- trajectories


def _path(action: str, n: int, index: int, scale: float, rng_values: dict[str, float]):
    """State function tau -> (x, y, size) of subject ``index`` of ``n`` for an action (tau in [0, 8]).

    (x, y) is where the centre of the shape's bounding box would be at its largest size in the clip;
    ``tracks`` turns it into the centroid (they differ for triangles).
    """
    along, perp = rng_values["along"], rng_values["perp"]
    size = SHAPE_SIZE
    centre = SIZE / 2
    if action in ("left", "right", "up", "down"):
        travel = TRAVEL * scale
        lane = centre + 3 * perp if n == 1 else LANES[index] + perp
        sign = 1.0 if action in ("right", "down") else -1.0
        start = centre - sign * travel / 2 + along

        def state(tau):
            pos = start + sign * travel * tau / 8
            lane_arr = np.full_like(tau, lane)
            xy = (pos, lane_arr) if action in ("left", "right") else (lane_arr, pos)
            return xy[0], xy[1], np.full_like(tau, size)

    elif action == "bounce":
        amp = TRAVEL * scale
        floor = centre + 12.0
        x = centre + 3 * perp if n == 1 else LANES[index] + perp

        def state(tau):
            return np.full_like(tau, x), floor - amp * np.abs(tau - 4) / 4, np.full_like(tau, size)

    elif action in ("grow", "shrink"):
        mid, span = GROWTH_MID[n], GROWTH_SPAN[n] * scale
        sign = 1.0 if action == "grow" else -1.0
        cx = centre + 2 * along if n == 1 else (12.0, 36.0)[index]
        cy = centre + 2 * perp

        def state(tau):
            return np.full_like(tau, cx), np.full_like(tau, cy), mid + sign * span * (tau / 8 - 0.5)

    elif action == "orbit":
        phase = rng_values["phase"] + np.pi * index
        turn = rng_values["turn"]

        def state(tau):
            angle = phase + turn * 2 * np.pi * tau / 8
            return (
                centre + ORBIT_RADIUS * np.cos(angle),
                centre + ORBIT_RADIUS * np.sin(angle),
                np.full_like(tau, size),
            )

    else:
        raise ValueError(f"unknown action {action!r}")
    return state


def time_warp(
    defects: list[Defect] | tuple[Defect, ...], action: str = "", frames: int = FRAMES
) -> np.ndarray:
    """Moment of the clean action shown in each frame (tau, 0..frames-1 when no motion defect).

    Frozen, dropped and reversed steps change single steps; the sequence is then rescaled so the clip
    still starts and ends where the clean one does (the action stays complete). A bounce is rescaled
    per half, so the frame that touches the floor stays in the clip (defects stay within one half).
    """
    steps = np.ones(frames - 1)
    for d in defects:
        p = d.params
        if d.kind == "frozen":
            steps[p["start"] : p["start"] + p["frames"]] = 0.0
        elif d.kind == "dropped":
            steps[p["start"]] = 1.0 + p["frames"]
        elif d.kind == "reversal":
            steps[p["start"] : p["start"] + p["steps"]] = -p["speed"]
    if action == "bounce":
        half = (frames - 1) // 2
        for part in (slice(0, half), slice(half, frames - 1)):
            steps[part] *= half / steps[part].sum()
    else:
        steps *= (frames - 1) / steps.sum()
    return np.concatenate([[0.0], np.cumsum(steps)])


def _jump_offset(states, tau: float, distance: float) -> float:
    """Shift in tau that moves the subjects ``distance`` px (or size px) along their path, staying in [0, 8]."""
    deltas = np.linspace(-8, 8, 641)
    deltas = deltas[(tau + deltas >= 0) & (tau + deltas <= FRAMES - 1)]
    here = [np.array(s(np.array([tau])))[:, 0] for s in states]
    moved = np.max(
        [
            np.linalg.norm(np.stack(s(tau + deltas)) - h[:, None], axis=0)
            for s, h in zip(states, here, strict=True)
        ],
        axis=0,
    )
    close = np.abs(moved - distance) < 0.5
    if close.any():
        return float(deltas[close][np.argmin(np.abs(deltas[close]))])
    return float(deltas[np.argmin(np.abs(moved - distance))])


def _jitter_axis(action: str, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """Direction of the shake: across the path; radial for an orbit; any for a change of size (vertical
    for two side-by-side shapes, which a horizontal shake would push out of the frame)."""
    if action in ("left", "right") or (count == 2 and action in ("grow", "shrink")):
        return np.array([0.0, 1.0])
    if action in ("up", "down", "bounce"):
        return np.array([1.0, 0.0])
    if action == "orbit":
        return None  # radial, per subject
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def tracks(
    spec: PromptSpec, seed: int, defects: list[Defect] | tuple[Defect, ...] = ()
) -> tuple[PromptSpec, list[SubjectTrack]]:
    """The spec actually shown and every subject's per-frame centroid and size."""
    shown = shown_spec(spec, defects)
    layout_rng = np.random.default_rng([seed, 1])
    values = {
        "along": float(layout_rng.uniform(-1, 1)),
        "perp": float(layout_rng.uniform(-1, 1)),
        "phase": float(layout_rng.integers(8)) * np.pi / 4,
        "turn": float(layout_rng.choice([-1.0, 1.0])),
    }
    colour_rng = np.random.default_rng([seed, 4])
    scale = action_scale(defects)
    states = [_path(shown.action, shown.count, i, scale, values) for i in range(shown.count)]
    tau = time_warp(defects, shown.action)
    for d in defects:
        if d.kind == "jump":
            f = d.params["frame"]
            tau[f] += _jump_offset(states, tau[f], d.params["distance"])
    mods = [d for d in defects if d.kind in ("deform", "missing", "bleeding")]
    out = []
    for subject, state in zip(shown.subjects, states, strict=True):
        x, y, size = state(tau)
        y = y + centroid_offset(subject.shape, float(np.max(state(np.arange(FRAMES, dtype=float))[2])))
        rgb = np.clip(np.array(COLOUR_RGB[subject.colour]) + colour_rng.integers(-10, 11, 3), 0, 255)
        out.append(SubjectTrack(subject.shape, rgb.astype(float), np.stack([x, y], 1), size, mods))
    for d in defects:
        if d.kind == "jitter":
            _add_jitter(out, shown.action, d.params["amplitude"], np.random.default_rng([seed, 2]))
    return shown, out


def _add_jitter(
    subject_tracks: list[SubjectTrack], action: str, amplitude: float, rng: np.random.Generator
) -> None:
    """Shake: every frame moves sideways, alternating direction, the same for all subjects (like a camera)."""
    axis = _jitter_axis(action, len(subject_tracks), rng)
    magnitude = amplitude * rng.uniform(0.75, 1.25, FRAMES) * np.where(np.arange(FRAMES) % 2 == 0, 1.0, -1.0)
    magnitude *= rng.choice([-1.0, 1.0])
    for track in subject_tracks:
        if axis is None:
            radial = track.xy - SIZE / 2
            direction = radial / np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-6)
        else:
            direction = np.broadcast_to(axis, track.xy.shape)
        track.xy = track.xy + magnitude[:, None] * direction


# ---------------------------------------------------------------- rasterisation

_GRID = (np.arange(SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE


def inside(shape: str, dx: np.ndarray, dy: np.ndarray, size: float, aspect: float = 1.0) -> np.ndarray:
    """Point-in-shape for coordinates relative to the centroid; triangles point up.

    ``aspect`` > 1 stretches the shape horizontally and squashes it vertically, keeping its area.
    """
    stretch = np.sqrt(aspect)
    dx, dy = dx / stretch, dy * stretch
    if shape == "circle":
        return dx**2 + dy**2 <= (size / 2) ** 2
    if shape == "square":
        half = size * np.sqrt(np.pi) / 4  # same area as the circle
        return np.maximum(np.abs(dx), np.abs(dy)) <= half
    if shape == "triangle":
        side = size * np.sqrt(np.pi / 2)  # base = height = side, same area as the circle
        top = dy + 2 * side / 3  # distance below the apex
        return (top >= 0) & (top <= side) & (np.abs(dx) <= top / 2)
    raise ValueError(f"unknown shape {shape!r}")


def inradius(shape: str, size: float) -> float:
    """Radius of the largest circle inside the shape (centred on the centroid for all three shapes)."""
    if shape == "circle":
        return size / 2
    if shape == "square":
        return size * np.sqrt(np.pi) / 4
    return size * np.sqrt(np.pi / 2) / (1 + np.sqrt(5))  # triangle with base = height


def centroid_offset(shape: str, size: float) -> float:
    """How far the centroid lies below the centre of the bounding box."""
    return size * np.sqrt(np.pi / 2) / 6 if shape == "triangle" else 0.0


def shape_mask(
    shape: str, cx: float, cy: float, size: float, mods: list[Defect] = (), grid=_GRID
) -> np.ndarray:
    """Supersampled boolean mask of one subject, squashed (deform) or with a hole (missing part)."""
    dx = grid[None, :] - cx
    dy = grid[:, None] - cy
    # A deformed shape is squashed along one axis (never stretched: it must not grow into a neighbour).
    squash = next((d for d in mods if d.kind == "deform"), None)
    if squash is not None:
        factor = squash.params["aspect"]
        dx, dy = (dx * factor, dy) if squash.params["axis"] == "x" else (dx, dy * factor)
    mask = inside(shape, dx, dy, size)
    for d in mods:
        if d.kind == "missing":
            # Keep at least a 1.5 px rim, or small shapes would dissolve into a thin ring.
            radius = min(d.params["radius"] * inradius(shape, size), inradius(shape, size) - 1.5)
            mask &= dx**2 + dy**2 > radius**2
    return mask


def _downsample(mask: np.ndarray) -> np.ndarray:
    s = SUPERSAMPLE
    return mask.reshape(SIZE, s, SIZE, s).mean(axis=(1, 3))


def _draw(frame: np.ndarray, t: int, subject_tracks: list[SubjectTrack]) -> None:
    """Halos (colour bleeding) first, then the shapes. Each halo pixel belongs to the nearest subject,
    so neighbouring halos never stack into something as strong as a shape."""
    masks = [shape_mask(tr.shape, *tr.xy[t], tr.size[t], tr.mods) for tr in subject_tracks]
    if any(d.kind == "bleeding" for tr in subject_tracks for d in tr.mods):
        dists = np.stack([ndimage.distance_transform_edt(~m) / SUPERSAMPLE for m in masks])
        nearest = dists.argmin(axis=0)
        for i, track in enumerate(subject_tracks):
            for d in track.mods:
                if d.kind == "bleeding":
                    ring = (
                        (dists[i] > 0) & (dists[i] <= d.params["width"]) & (nearest == i) & (dists.min(0) > 0)
                    )
                    frame += (_downsample(ring) * d.params["opacity"])[..., None] * (track.rgb - frame)
    for track, mask in zip(subject_tracks, masks, strict=True):
        frame += _downsample(mask)[..., None] * (track.rgb - frame)


def render(
    spec: PromptSpec, seed: int, defects: list[Defect] | tuple[Defect, ...] = (), style: Style | None = None
) -> np.ndarray:
    """uint8 frames (9, 48, 48, 3) of ``spec`` with ``defects``; same inputs, same pixels."""
    shown, subject_tracks = tracks(spec, seed, defects)
    bg_rng = np.random.default_rng([seed, 5])
    bg = np.clip(np.array(SCENE_RGB[shown.scene]) + bg_rng.integers(-6, 7, 3), 0, 255).astype(float)
    frames = np.broadcast_to(bg, (FRAMES, SIZE, SIZE, 3)).copy()
    for t in range(FRAMES):
        _draw(frames[t], t, subject_tracks)
    if style is not None:
        frames = apply_style(frames, style, seed)
    for d in defects:
        if d.kind == "blur":
            frames = ndimage.gaussian_filter(
                frames, (0, d.params["sigma"], d.params["sigma"], 0), mode="nearest"
            )
    for d in defects:
        if d.kind == "noise":
            frames = frames + np.random.default_rng([seed, 3]).normal(0, d.params["sigma"], frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def apply_style(frames: np.ndarray, style: Style, seed: int) -> np.ndarray:
    """Float frames in the generator-like style (see ``Style``)."""
    out = np.asarray(frames, dtype=float)
    if style.blur > 0:
        out = ndimage.gaussian_filter(out, (0, style.blur, style.blur, 0), mode="nearest")
    ramp = 1 + style.flicker * (np.arange(len(out)) / max(len(out) - 1, 1) - 0.5)
    out = out * np.array(style.gain) * ramp[:, None, None, None] + np.array(style.offset)
    if style.noise > 0:
        out = out + np.random.default_rng([seed, 98]).normal(0, style.noise, out.shape)
    return out
