"""Which shape a blob is, how intact it is, and how blurred: by fitting blurred shape templates.

A template is the renderer's own shape at the blob's centroid, area and aspect ratio (from second
moments), blurred by a range of Gaussian sigmas. The template whose soft alpha best matches the blob
names the shape and the blur; the aspect ratio measures squashing, holes measure missing parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from videolift.toy.grammar import SHAPES
from videolift.toy.render import inradius, inside
from videolift.toy.segment import Blob

SUPERSAMPLE = 4
SIZE_STEPS = (0.9, 0.95, 1.0, 1.05, 1.1)
SIGMAS = (0.0, 0.5, 0.9, 1.3, 1.7, 2.2, 2.8, 3.5, 4.3)
FINE_SIGMAS = tuple(round(0.1 * i, 1) for i in range(46))
# std(x) / std(y) of each upright, unsquashed shape (an isosceles triangle with base = height: sqrt(3)/2).
# Radius of the largest circle inside each shape, relative to its size (equal-area circle diameter).
INRADIUS = {s: inradius(s, 1.0) for s in SHAPES}
NATURAL_RATIO = {"circle": 1.0, "square": 1.0, "triangle": np.sqrt(3) / 2}


@dataclass(frozen=True)
class ShapeFit:
    shape: str
    log_aspect: float  # 0 for an undeformed shape; +-log(width/height stretch) otherwise
    hole: float  # radius of the hole(s) inside the outline, relative to the shape's inradius
    sigma: float  # blur that best explains the blob's edge
    errors: dict[str, float]  # best mean squared alpha error per shape


def _coverage(shape: str, blob: Blob, cx: float, cy: float, size: float, aspect: float) -> np.ndarray:
    y0, y1, x0, x1 = blob.box
    gx = x0 + (np.arange((x1 - x0) * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    gy = y0 + (np.arange((y1 - y0) * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    m = inside(shape, gx[None, :] - cx, gy[:, None] - cy, size, aspect)
    s = SUPERSAMPLE
    return m.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))


@lru_cache(maxsize=256)
def _blur_matrices(n: int, sigmas: tuple[float, ...]) -> np.ndarray:
    """(S, n, n) Gaussian blur matrices (zero outside, like mode="constant"); identity for sigma 0."""
    offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
    out = []
    for sigma in sigmas:
        if sigma < 0.05:
            out.append(np.eye(n))
            continue
        radius = int(4 * sigma + 0.5)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2) * (np.abs(offsets) <= radius)
        out.append(kernel / np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).sum())
    return np.stack(out)


def _blurred(cover: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """(S, h, w) coverage blurred by each sigma, each scaled to peak 1 like the blob's alpha (which is
    relative to its own peak)."""
    rows, cols = _blur_matrices(cover.shape[0], sigmas), _blur_matrices(cover.shape[1], sigmas)
    soft = rows @ cover @ cols.transpose(0, 2, 1)
    return soft / np.maximum(soft.max(axis=(1, 2), keepdims=True), 1e-6)


def fit_shape(blob: Blob) -> ShapeFit:
    """Best (shape, size, blur) template by squared alpha error inside the outline and one pixel out.

    Soft alpha (not thresholded masks) keeps a blurred square from passing for a circle; a halo further
    out (colour bleeding) does not enter the fit; holes are filled first, so they do not change the shape.
    """
    filled = ndimage.binary_fill_holes(blob.mask)
    # Only holes well inside the outline count: blocky chroma at an edge can enclose a sliver.
    holes = filled & ~blob.mask & ndimage.binary_erosion(filled, iterations=2)
    alpha = np.where(holes, 1.0, blob.alpha)
    region = blob.owned & (ndimage.distance_transform_edt(~filled) <= 1.0)
    yy, xx = np.nonzero(filled)
    y0, _, x0, _ = blob.box
    cx, cy = xx.mean() + x0 + 0.5, yy.mean() + y0 + 0.5
    ratio = (xx.std() + 1e-6) / (yy.std() + 1e-6)
    size = 2 * np.sqrt(filled.sum() / np.pi)
    target = alpha[region]
    best: dict[str, tuple[float, float, float, float]] = {}
    for shape in SHAPES:
        aspect = ratio / NATURAL_RATIO[shape]
        for step in SIZE_STEPS:
            cover = _coverage(shape, blob, cx, cy, size * step, aspect)
            errs = np.mean((_blurred(cover, SIGMAS)[:, region] - target) ** 2, axis=1)
            i = int(np.argmin(errs))
            if errs[i] < best.get(shape, (np.inf,))[0]:
                best[shape] = (float(errs[i]), SIGMAS[i], aspect, step)
    shape = min(best, key=lambda s: best[s][0])
    _, sigma, aspect, step = best[shape]
    # The blur: the winner's template on a fine grid, fitted inside the outline only, so that a colour
    # halo outside (bleeding) is not mistaken for blur.
    cover = _coverage(shape, blob, cx, cy, size * step, aspect)
    errs = np.mean((_blurred(cover, FINE_SIGMAS)[:, filled] - alpha[filled]) ** 2, axis=1)
    sigma = FINE_SIGMAS[int(np.argmin(errs))]
    return ShapeFit(
        shape=shape,
        log_aspect=float(np.log(aspect)),
        hole=float(np.sqrt(holes.sum() / np.pi) / (INRADIUS[shape] * size)),
        sigma=float(sigma),
        errors={s: round(v[0], 5) for s, v in best.items()},
    )
