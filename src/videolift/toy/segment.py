"""From pixels to blobs: background and noise estimates, and the foreground subjects of each frame.

Works on any RGB clip (clean renders, re-encoded or blurred copies, generated videos): the background
colour is estimated from each frame's border, a pixel's "alpha" is its colour distance to the background
relative to the strongest contrast nearby, and a subject is a connected region with alpha >= 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BORDER = 2  # px of frame border that estimate the background
CONTRAST_WINDOW = 19  # px; local-contrast window (must reach a subject's core from its halo)
MIN_CONTRAST = 45.0  # colour distance a subject must reach against the background
MIN_DISTANCE = 20.0
MIN_AREA = 12  # px; smaller regions are noise
MIN_CORE = 3  # px with alpha >= 0.8: a region without a solid core is a compression ringing
HALO_REACH = 9  # px around a subject searched for colour bleeding
NOISE_DENOISE = 4.0  # sigma above which frames are median-filtered before segmentation
NOISE_STRONG = 15.0  # sigma above which the filter is 5x5 instead of 3x3
_NOISE_CAL = 1.18  # f - median3x3(f) underestimates Gaussian sigma by this factor (measured)


@dataclass
class Blob:
    """One connected foreground region in one frame."""

    t: int
    x: float  # centroid
    y: float
    area: int  # pixels with alpha >= 0.5
    mass: float  # colour distance to the background summed over the region and its rim (kept by blur)
    contrast: float  # colour distance of the region's core (90th percentile)
    soft_area: float  # alpha summed over the hole-filled region (a colour halo outside does not count)
    rgb: np.ndarray  # median colour of the core (alpha >= 0.8)
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 (exclusive ends) of the crop around it
    mask: np.ndarray  # bool crop: the region
    alpha: np.ndarray  # float crop: alpha around it
    dist: np.ndarray  # float crop: colour distance to the background
    touches_border: bool
    fill: float  # region area / bounding-box area: a cheap shape cue for tracking
    owned: np.ndarray  # bool crop: pixels nearer to this region than to any other

    def size(self, contrast: float | None = None) -> float:
        """Diameter of the circle with the same area as the (hole-filled) region.

        With ``contrast`` (the subject's full contrast, from its clearest frame) the area is mass / contrast
        instead: steadier, and blur does not change it (a small blurred shape never reaches its full
        contrast, so its half-height region is too large). A colour halo adds to the mass, though.
        """
        area = self.soft_area if contrast is None else self.mass / contrast
        return float(2 * np.sqrt(area / np.pi))


@dataclass
class Segmentation:
    background: np.ndarray  # (3,) median background colour over the clip
    noise: float  # estimated Gaussian noise sigma (0-255 scale)
    blobs: list[list[Blob]]  # per frame
    height: int
    width: int


def _border_pixels(frames: np.ndarray) -> np.ndarray:
    b = BORDER
    return np.concatenate(
        [
            frames[:, :b].reshape(len(frames), -1, 3),
            frames[:, -b:].reshape(len(frames), -1, 3),
            frames[:, b:-b, :b].reshape(len(frames), -1, 3),
            frames[:, b:-b, -b:].reshape(len(frames), -1, 3),
        ],
        axis=1,
    )


def estimate_noise(frames: np.ndarray) -> float:
    """Robust sigma of pixel noise, from residuals against a 3x3 median in flat regions.

    Per channel, only where the smoothed clip is flat (7x7 range of a Gaussian-smoothed clip < 36 in every channel: thin
    structures such as a ring still count as structure) and away from 0 and 255, whose
    clipping would hide noise; mean absolute value of the 98% smallest residuals.
    """
    smooth = ndimage.median_filter(frames, size=(1, 3, 3, 1))
    coarse = ndimage.gaussian_filter(frames, (0, 1.5, 1.5, 0))  # flatness must not depend on the noise
    spread = ndimage.maximum_filter(coarse, size=(1, 7, 7, 1)) - ndimage.minimum_filter(
        coarse, size=(1, 7, 7, 1)
    )
    flat = np.broadcast_to((spread.max(axis=-1) < 36)[..., None], smooth.shape)
    residual = np.abs(frames - smooth)
    sigmas = []
    for usable in (flat & (smooth >= 40) & (smooth <= 215), flat):  # unclipped if possible
        for c in range(3):
            r = residual[..., c][usable[..., c]]
            if len(r) >= 200:
                r = r[r <= np.percentile(r, 98)]
                sigmas.append(float(np.sqrt(np.pi / 2) * r.mean()))
        if sigmas:
            return float(np.median(sigmas) * _NOISE_CAL)
    return float(np.sqrt(np.pi / 2) * residual.mean() * _NOISE_CAL)


def segment(frames: np.ndarray) -> Segmentation:
    """Background, noise and per-frame blobs of a uint8 (T, H, W, 3) clip."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
    f = frames.astype(np.float32)
    bg_t = np.median(_border_pixels(f), axis=1)
    noise = estimate_noise(f)
    if noise > NOISE_DENOISE:
        k = 5 if noise > NOISE_STRONG else 3
        f = ndimage.median_filter(f, size=(1, k, k, 1))
        bg_t = np.median(_border_pixels(f), axis=1)
    dist = np.linalg.norm(f - bg_t[:, None, None, :], axis=-1)
    # The local peak comes from a 3x3 median so single noisy pixels do not set it.
    peak = ndimage.maximum_filter(
        ndimage.median_filter(dist, size=(1, 3, 3)), size=(1, CONTRAST_WINDOW, CONTRAST_WINDOW)
    )
    alpha = np.where(peak >= MIN_CONTRAST, np.clip(dist / np.maximum(peak, 1e-6), 0, 1), 0.0)
    mask = (alpha >= 0.5) & (dist >= MIN_DISTANCE)
    # What is left of the noise after filtering must not count as mass (see Blob.size).
    floor = MIN_DISTANCE + (
        0.0 if noise <= NOISE_DENOISE else 2.0 * noise * (0.25 if noise > NOISE_STRONG else 0.4)
    )
    blobs = [_frame_blobs(t, f[t], dist[t], alpha[t], mask[t], floor) for t in range(len(f))]
    return Segmentation(np.median(bg_t, axis=0), noise, blobs, frames.shape[1], frames.shape[2])


def _frame_blobs(
    t: int, frame: np.ndarray, dist: np.ndarray, alpha: np.ndarray, mask: np.ndarray, floor: float
) -> list[Blob]:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return []
    # Each halo pixel belongs to the nearest region, so neighbours do not count each other's edges.
    _, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    owner = labels[iy, ix]
    h, w = mask.shape
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[sl] == i
        area = int(region.sum())
        if area < MIN_AREA or int((alpha[sl][region] >= 0.8).sum()) < MIN_CORE:
            continue
        y0, y1 = max(sl[0].start - HALO_REACH, 0), min(sl[0].stop + HALO_REACH, h)
        x0, x1 = max(sl[1].start - HALO_REACH, 0), min(sl[1].stop + HALO_REACH, w)
        own = labels[y0:y1, x0:x1] == i
        a = alpha[y0:y1, x0:x1]
        d = dist[y0:y1, x0:x1]
        filled = ndimage.binary_fill_holes(own)
        body = ndimage.binary_dilation(filled, iterations=3) & (owner[y0:y1, x0:x1] == i)
        contrast = float(np.percentile(d[own], 90))
        # Holes count as filled: the size of a shape with a hole is the size of its outline.
        holes = filled & ~own
        mass = float(np.where(d >= floor, d, 0.0)[body & ~holes].sum() + holes.sum() * contrast)
        yy, xx = np.nonzero(own)
        weights = a[own]
        core = own & (a >= 0.8)
        rgb = np.median(frame[y0:y1, x0:x1][core if core.sum() >= 3 else own], axis=0)
        out.append(
            Blob(
                t=t,
                x=float(np.average(xx + x0 + 0.5, weights=weights)),
                y=float(np.average(yy + y0 + 0.5, weights=weights)),
                area=area,
                mass=mass,
                contrast=contrast,
                soft_area=float(filled.sum() - (1 - np.clip(a[own], 0, 1)).sum()),
                rgb=rgb,
                box=(y0, y1, x0, x1),
                mask=own,
                alpha=a,
                dist=d,
                touches_border=sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w,
                fill=area / float((sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)),
                owned=owner[y0:y1, x0:x1] == i,
            )
        )
    return out
