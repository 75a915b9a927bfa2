"""From blobs to tracks to actions and motion defects.

Each subject is followed across frames (position and size). Its action is recognised geometrically
(a straight path, a bounce, a circle, a change of size, nothing), which is what the prompt is checked
against. Smoothness is judged against that action's own model: the model is fitted, then each frame is
placed on it in time by dynamic programming, so a frozen, skipped or reversed moment shows up as an
irregular time step, and shaking or a one-frame glitch as an offset from the model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from videolift.toy.render import GROWTH_MID, GROWTH_SPAN, TRAVEL
from videolift.toy.segment import Blob

_GRID = np.arange(-1.5, 9.55, 0.05)
VANISH_MIN_SIZE = 10.0  # px; a smaller (blurred) shape may fade below detection without anything wrong


@dataclass
class Track:
    blobs: list[Blob | None]  # per frame; None where the subject was not found

    def states(self, *, include_clipped: bool = False, by_mass: bool = True) -> np.ndarray:
        """(T, 3) of x, y, size; NaN where missing.

        A shape cut by the frame border has a biased centroid: by default frames that lost more than a
        quarter of the usual area that way are NaN too. ``by_mass``: measure size by mass (see Blob.size).
        """
        seen = [b for b in self.blobs if b is not None]
        out = np.full((len(self.blobs), 3), np.nan)
        if not seen:
            return out
        contrast = max(b.contrast for b in seen) if by_mass else None
        whole = [b.area for b in seen if not b.touches_border]
        usual = float(np.median(whole)) if whole else 0.0
        for t, b in enumerate(self.blobs):
            if b is not None and (include_clipped or not b.touches_border or b.area >= 0.75 * usual):
                out[t] = (b.x, b.y, b.size(contrast))
        return out

    @property
    def missing(self) -> int:
        """Frames where the subject is not found though it is big enough (VANISH_MIN_SIZE) in the nearest frames
        where it is: a tiny, blurred shape may fade below detection without anything being wrong."""
        count = 0
        for t, b in enumerate(self.blobs):
            if b is None:
                near = _last_seen(self, t)
                count += near is not None and near.size() >= VANISH_MIN_SIZE
        return count


def follow(blobs: list[list[Blob]], n: int, colour_of) -> list[Track]:
    """``n`` tracks through per-frame blobs, matching by distance plus a penalty for a colour change."""
    frames = len(blobs)
    if n == 0:
        return []
    counts = [len(b) for b in blobs]
    start = min(
        (t for t in range(frames) if counts[t] == n), key=lambda t: abs(t - frames // 2), default=None
    )
    if start is None:
        start = int(np.argmax(counts))
    tracks = [Track([None] * frames) for _ in range(n)]
    for i, b in enumerate(sorted(blobs[start], key=lambda b: -b.area)[:n]):
        tracks[i].blobs[start] = b
    for order in (range(start + 1, frames), range(start - 1, -1, -1)):
        for t in order:
            _assign(tracks, blobs[t], t, colour_of)
    return tracks


def _last_seen(track: Track, t: int) -> Blob | None:
    near = [b for b in track.blobs if b is not None]
    return min(near, key=lambda b: abs(b.t - t)) if near else None


def _assign(tracks: list[Track], candidates: list[Blob], t: int, colour_of) -> None:
    if not candidates:
        return
    refs = [_last_seen(tr, t) for tr in tracks]
    best, best_cost = None, np.inf
    k = min(len(tracks), len(candidates))
    for chosen in itertools.permutations(range(len(candidates)), k):
        for slots in itertools.combinations(range(len(tracks)), k):
            cost = 0.0
            for slot, c in zip(slots, chosen, strict=True):
                ref, blob = refs[slot], candidates[c]
                if ref is not None:
                    cost += np.hypot(blob.x - ref.x, blob.y - ref.y)
                    cost += 15.0 * (colour_of(blob) != colour_of(ref)) + 20.0 * abs(blob.fill - ref.fill)
            if cost < best_cost:
                best, best_cost = (slots, chosen), cost
    for slot, c in zip(*best, strict=True):
        tracks[slot].blobs[t] = candidates[c]


def untangle_orbiting_pair(tracks: list[Track]) -> float | None:
    """Two look-alike subjects circling opposite each other can swap identities between frames.

    If their midpoint stays put while the line joining them turns, re-assign the blobs frame by frame by
    continuity of that line's angle, and return how far it turned (radians); None if not such a pair.
    """
    a, b = (_interpolate(t.states(include_clipped=True)) for t in tracks)
    if np.isnan(a).any() or np.isnan(b).any():
        return None
    mid = (a[:, :2] + b[:, :2]) / 2
    if (
        np.ptp(mid, axis=0).max() > 4
        or min(np.ptp(a[:, :2], axis=0).max(), np.ptp(b[:, :2], axis=0).max()) < 10
    ):
        return None
    axis = np.arctan2(*(a[:, :2] - b[:, :2])[:, ::-1].T)
    angle = [axis[0]]
    for step in np.diff(axis):
        angle.append(angle[-1] + (step + np.pi / 2) % np.pi - np.pi / 2)  # the line has no direction
    if abs(angle[-1] - angle[0]) < 2 * np.pi / 3:
        return None
    centre = mid.mean(axis=0)
    for t in range(len(a)):
        pair = [tracks[0].blobs[t], tracks[1].blobs[t]]
        if None in pair:
            continue
        gap = [
            abs((np.arctan2(p.y - centre[1], p.x - centre[0]) - angle[t] + np.pi) % (2 * np.pi) - np.pi)
            for p in pair
        ]
        if gap[1] < gap[0]:
            tracks[0].blobs[t], tracks[1].blobs[t] = pair[1], pair[0]
    return float(angle[-1] - angle[0])


# ---------------------------------------------------------------- action recognition


@dataclass
class Action:
    kind: str  # left/right/up/down/bounce/grow/shrink/orbit/still/back_and_forth/diagonal
    amount: float  # how much of a full action was performed (1 = the renderer's full move)
    detail: dict = field(default_factory=dict)


def _interpolate(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    t = np.arange(len(values))
    for c in range(values.shape[1]):
        ok = ~np.isnan(values[:, c])
        if ok.sum() >= 2:
            out[:, c] = np.interp(t, t[ok], values[ok, c])
    return out


def _circle_fit(p: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Algebraic (Kasa) circle fit: centre, radius, RMS radial residual."""
    a = np.column_stack([2 * p[:, 0], 2 * p[:, 1], np.ones(len(p))])
    b = (p**2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:2]
    radius = float(np.sqrt(max(sol[2] + centre @ centre, 0.0)))
    residual = float(np.sqrt(np.mean((np.linalg.norm(p - centre, axis=1) - radius) ** 2)))
    return centre, radius, residual


def recognise(states: np.ndarray, n_subjects: int) -> Action:
    """The action one track performs, from its (T, 3) states (NaN rows allowed)."""
    ok = ~np.isnan(states[:, 0])
    if ok.sum() < 3:
        return Action("still", 0.0, {"reason": "too few frames"})
    s = _interpolate(states)
    p, size = s[:, :2], s[:, 2]
    smooth = np.array([p[max(t - 1, 0) : t + 2].mean(axis=0) for t in range(len(p))])
    extent = max(np.linalg.norm(a - b) for a, b in itertools.combinations(smooth, 2))
    # Ends as medians of three frames: robust to one glitched or shaken frame.
    net = np.median(p[-3:], axis=0) - np.median(p[:3], axis=0)
    growth = float(np.median(size[-3:]) - np.median(size[:3]))

    centre, radius, resid = _circle_fit(p[ok])
    angles = np.unwrap(np.arctan2(p[ok, 1] - centre[1], p[ok, 0] - centre[0]))
    turn = angles[-1] - angles[0]
    steps = np.diff(angles)
    with_turn = np.mean(steps * np.sign(turn) > -0.35) if len(steps) else 0.0
    if 6 <= radius <= 24 and abs(turn) >= 1.3 * np.pi and resid <= 0.5 * radius and with_turn >= 0.7:
        return Action("orbit", min(abs(turn) / (2 * np.pi), 1.0), {"radius": radius, "turn": float(turn)})

    if abs(growth) >= 3 and extent < max(8.0, 0.5 * abs(growth)):
        # Relative change (largest / smallest size): a squashed or blurred shape changes size in proportion.
        mid, span = GROWTH_MID.get(n_subjects, GROWTH_MID[1]), GROWTH_SPAN.get(n_subjects, GROWTH_SPAN[1])
        full = np.log((mid + span / 2) / (mid - span / 2))
        change = np.log(np.max(size) / max(np.min(size), 1.0))
        return Action("grow" if growth > 0 else "shrink", float(change / full))
    if extent < 5:
        return Action("still", extent / TRAVEL)

    y = p[:, 1]
    k = int(_vertex(y))
    drop, rise = y[k] - y[0], y[k] - y[-1]
    x_range = np.ptp(smooth[:, 0])
    # Down to a lowest point in the middle and back up, with little sideways drift: a bounce.
    if min(drop, rise) >= max(5.0, 0.4 * max(drop, rise)) and x_range < 0.5 * min(drop, rise) + 3:
        return Action("bounce", min(drop, rise) / TRAVEL)
    distance = float(np.linalg.norm(net))
    if distance < 0.4 * extent:
        return Action("back_and_forth", extent / TRAVEL)
    angle = float(np.degrees(np.arctan2(net[1], net[0])))  # 0 = right, 90 = down (image y grows down)
    names = {0.0: "right", 90.0: "down", 180.0: "left", -180.0: "left", -90.0: "up"}
    axis = min(names, key=lambda a: abs(angle - a))
    # How far it went: the range of positions along the direction of travel (a turn back does not count).
    along = p @ (net / max(distance, 1e-6))
    return Action(names[axis], float(np.ptp(along)) / TRAVEL, {"angle": angle, "off_axis": abs(angle - axis)})


# ---------------------------------------------------------------- smoothness


@dataclass
class Smoothness:
    frozen: int = 0  # steps where the subject stood still
    reversed: int = 0  # steps backwards
    backwards: float = 0.0  # total backward motion, in steps
    skip: float = 1.0  # largest step relative to the typical one
    jitter: float = 0.0  # RMS offset from the path, px
    glitch: float = 0.0  # px a single frame jumped off its place
    glitch_frame: int | None = None
    timed: bool = True  # False when nothing moves, so time steps cannot be judged


def _design(kind: str, tau: np.ndarray, detail: dict) -> list[np.ndarray]:
    """Per coordinate (x, y, size), the columns of a linear model in tau."""
    one = np.ones_like(tau)
    if kind in ("left", "right", "up", "down", "diagonal"):
        return [np.column_stack([one, tau])] * 2 + [one[:, None]]
    if kind in ("grow", "shrink"):
        return [one[:, None]] * 2 + [np.column_stack([one, tau])]
    if kind == "bounce":
        vertex = detail.get("vertex", 4.0)
        return [one[:, None], np.column_stack([one, np.abs(tau - vertex)]), one[:, None]]
    quad = np.column_stack([one, tau, tau**2])  # still, back and forth: any smooth path
    return [quad] * 3


def _orbit_design(tau: np.ndarray, detail: dict) -> np.ndarray:
    """A circle traversed at angular rate omega, linear in (cx, cy, b, c): stacked x rows then y rows."""
    w = detail["omega"]
    one, zero, cos, sin = np.ones_like(tau), np.zeros_like(tau), np.cos(w * tau), np.sin(w * tau)
    return np.vstack([np.column_stack([one, zero, cos, sin]), np.column_stack([zero, one, sin, -cos])])


def _fit(kind: str, tau: np.ndarray, states: np.ndarray, detail: dict, drop: int | None = None):
    """Least-squares model coefficients (optionally without one frame)."""
    keep = ~np.isnan(states[:, 0])
    if drop is not None:
        keep[drop] = False
    if kind == "orbit":  # the centre from the geometry (timing-free), then the phase from the frames
        centre, _, _ = _circle_fit(states[keep, :2])
        x = _orbit_design(tau, detail)[:, 2:]
        rows = np.concatenate([keep, keep])
        target = np.concatenate([states[:, 0] - centre[0], states[:, 1] - centre[1]])
        sol, *_ = np.linalg.lstsq(x[rows], target[rows], rcond=None)
        return [np.concatenate([centre, sol]), np.array([np.nanmedian(states[keep, 2])])]
    coefs = []
    for c, x in enumerate(_design(kind, tau, detail)):
        if kind == "bounce" and c == 1:  # the floor is where the lowest frame is; fit only the slope
            floor = float(np.nanmax(states[keep, 1]))
            slope = np.linalg.lstsq(x[keep, 1:], states[keep, 1] - floor, rcond=None)[0]
            coefs.append(np.concatenate([[floor], slope]))
            continue
        sol, *_ = np.linalg.lstsq(x[keep], states[keep, c], rcond=None)
        coefs.append(sol)
    return coefs


def _curve(kind: str, coefs, tau: np.ndarray, detail: dict) -> np.ndarray:
    if kind == "orbit":
        xy = (_orbit_design(tau, detail) @ coefs[0]).reshape(2, -1).T
        return np.column_stack([xy, np.full(len(tau), coefs[1][0])])
    return np.column_stack([x @ c for x, c in zip(_design(kind, tau, detail), coefs, strict=True)])


def _place_in_time(states: np.ndarray, curve: np.ndarray, prior: float) -> np.ndarray:
    """Moment (tau on the grid) of each frame: nearest point of the curve, preferring steps of 1 (Viterbi)."""
    frames, g = len(states), len(_GRID)
    cost = np.zeros((frames, g))
    for t in range(frames):
        if not np.isnan(states[t, 0]):
            cost[t] = ((curve - states[t]) ** 2).sum(axis=1)
    trans = prior * (_GRID[None, :] - _GRID[:, None] - 1.0) ** 2  # [from, to]
    total = cost[0].copy()
    back = np.zeros((frames, g), dtype=int)
    for t in range(1, frames):
        scores = total[:, None] + trans
        back[t] = np.argmin(scores, axis=0)
        total = scores[back[t], np.arange(g)] + cost[t]
    path = [int(np.argmin(total))]
    for t in range(frames - 1, 0, -1):
        path.append(back[t][path[-1]])
    return _GRID[path[::-1]]


GLITCH_MIN = 3.0  # px; a frame less out of place than this is not treated as a glitch
MIN_TIMED_EXTENT = (
    12.0  # px over the clip; less change does not show frozen, skipped or reversed steps reliably
)


def smoothness(states: np.ndarray, action: Action) -> Smoothness:
    """Time-step irregularities and offsets of one track relative to its own action's model."""
    kind = action.kind
    frames = len(states)
    valid = ~np.isnan(states[:, 0])
    if valid.sum() < 4:
        return Smoothness(timed=False)
    detail = dict(action.detail)
    if kind == "orbit":
        detail["omega"] = detail["turn"] / (frames - 1)
    if kind == "bounce":
        detail["vertex"] = _vertex(states[:, 1])
    if kind == "still":
        centre = np.nanmedian(states, axis=0)
        off = (states - centre)[valid]
        # Size counts too, as for every other action (a shape pulsing from frame to frame travels nowhere
        # but is no steady picture), off a smooth (quadratic) course: growing a little, or growing and
        # shrinking back, is not shaking.
        t = np.flatnonzero(valid)
        off[:, 2] = states[t, 2] - np.polyval(np.polyfit(t, states[t, 2], 2), t)
        offsets = np.linalg.norm(off, axis=1)
        return Smoothness(jitter=float(np.sqrt(np.mean(offsets**2))), timed=False)

    tau = np.arange(frames, dtype=float)
    for _ in range(2):  # fit the model, place frames in time on it, refit with those times
        coefs = _fit(kind, tau, states, detail)
        resid = np.linalg.norm(states - _curve(kind, coefs, tau, detail), axis=1)
        worst = int(np.nanargmax(resid))
        if resid[worst] > 3 * max(np.nanmedian(resid), 0.5):
            coefs = _fit(kind, tau, states, detail, drop=worst)
        curve = _curve(kind, coefs, _GRID, detail)
        speed = float(np.median(np.linalg.norm(np.diff(curve, axis=0), axis=1)) / 0.05)
        tau = _place_in_time(states, curve, prior=0.02 * max(speed, 0.5) ** 2)
    offset = np.linalg.norm(states - _curve(kind, coefs, tau, detail), axis=1)

    # A bounce has two phases (down, up): each step is compared with the typical step of its phase.
    vertex = detail.get("vertex")
    idx = np.flatnonzero(valid)

    def per_frame_steps(kept: np.ndarray, pace: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Step (tau per frame) starting at each frame, and the typical step of its phase (NaN: unknown),
        at least ``pace``."""
        steps = np.full(frames - 1, np.nan)
        for a, b in zip(kept[:-1], kept[1:], strict=True):
            steps[a:b] = (tau[b] - tau[a]) / (b - a)
        phase = np.arange(frames - 1) >= vertex if vertex is not None else np.zeros(frames - 1, dtype=bool)
        overall = np.nanmedian(steps)
        typical = np.array([_median_or_nan(steps[phase == p]) for p in phase])
        return steps, np.maximum(np.maximum(np.nan_to_num(typical, nan=overall), 0.5 * overall), pace)

    out = Smoothness()
    span = float(np.nanmax(tau[valid]) - np.nanmin(tau[valid]))
    pace = 0.0
    steps, typical = per_frame_steps(idx)
    if speed * span < MIN_TIMED_EXTENT:  # too little motion to judge its timing
        out.timed = False
    elif np.nanmedian(steps) < 0.2:
        # It covers the distance, yet most steps stand still or go back (a long freeze and one leap,
        # frames out of order): broken timing, not a still subject. Its steps are compared with the
        # even pace that covers the same span (the median step, ~0 or negative, would explain it away).
        pace = span / max(int(idx[-1] - idx[0]), 1)
        steps, typical = per_frame_steps(idx, pace)
    # A single frame out of place: its neighbours agree with each other and the usual pace, it does not.
    best = 0.0
    for j in range(1, len(idx) - 1):
        a, t, b = idx[j - 1], idx[j], idx[j + 1]
        merged = (tau[b] - tau[a]) / (b - a)
        usual = typical[a]
        mid = _curve(kind, coefs, np.array([(tau[a] * (b - t) + tau[b] * (t - a)) / (b - a)]), detail)[0]
        jump = float(np.linalg.norm(states[t] - mid))
        if jump > max(best, GLITCH_MIN) and abs(merged - usual) <= 0.35 * usual:
            best, out.glitch_frame = jump, int(t)
    if out.glitch_frame is not None:
        out.glitch = best
        steps, typical = per_frame_steps(idx[idx != out.glitch_frame], pace)
    rest = offset[valid & (np.arange(frames) != (-1 if out.glitch_frame is None else out.glitch_frame))]
    out.jitter = float(np.sqrt(np.mean(rest**2))) if len(rest) else 0.0
    if out.timed:
        ratio = (steps / typical)[~np.isnan(steps)]
        out.frozen = int(np.sum(np.abs(ratio) < 0.35))
        out.reversed = int(np.sum(ratio <= -0.35))
        out.backwards = float(-ratio[ratio < 0].sum())
        out.skip = float(ratio.max())
    return out


def _vertex(y: np.ndarray) -> float:
    """Frame of the lowest point (largest y), the middle of a plateau if it rests there."""
    top = np.nanmax(y)
    low = np.flatnonzero(np.nan_to_num(y, nan=-np.inf) >= top - 1.5)
    return float(np.clip(np.round(low.mean()), 2, len(y) - 3))


def _median_or_nan(values: np.ndarray) -> float:
    """Median of the known values, NaN when there are none (np.nanmedian would warn)."""
    known = values[~np.isnan(values)]
    return float(np.median(known)) if known.size else np.nan
