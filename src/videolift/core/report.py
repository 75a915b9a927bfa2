"""A self-contained HTML report (opens offline): tables, matplotlib figures and frame strips, all inline."""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.jsonl import atomic_write
from videolift.core.schema import DIMENSIONS, LABELS


@dataclass
class Report:
    title: str
    sections: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, cls: str = "") -> None:
        self.sections.append(f'<p class="{cls}">{html.escape(text)}</p>')

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.sections.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig: Any, caption: str = "") -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        self._image(buf.getvalue(), caption)

    def frames(self, rows: Sequence[tuple[str, np.ndarray]], caption: str = "", scale: int = 3) -> None:
        """One frame strip per row: (label, uint8 frames (T, H, W, 3))."""
        parts = []
        for label, frames in rows:
            image, mime = frame_strip(frames, scale=scale)
            parts.append(
                f'<div class="strip"><span>{html.escape(label)}</span>'
                f'<img alt="{html.escape(label)}" src="data:{mime};base64,{base64.b64encode(image).decode()}"></div>'
            )
        cap = f"<p class='cap'>{html.escape(caption)}</p>" if caption else ""
        self.sections.append(f"<figure>{''.join(parts)}{cap}</figure>")

    def _image(self, png: bytes, caption: str) -> None:
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.sections.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">{cap}</figure>'
        )

    def write(self, path: str | Path) -> Path:
        with atomic_write(path) as handle:
            handle.write(_PAGE.format(title=html.escape(self.title), body="\n".join(self.sections)))
        return Path(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


# Larger than the toy world's clips (a real model's 49 frames of 480 x 720 made a 25-MB image a strip, each
# frame 22 px wide on the page): at most STRIP_FRAMES frames spread over the clip, STRIP_HEIGHT px high.
STRIP_FRAMES = 9
STRIP_HEIGHT = 144  # the toy world's 48 px, shown three times as large


def frame_strip(frames: np.ndarray, scale: int = 3, gap: int = 2) -> tuple[bytes, str]:
    """(image, MIME type) of at most STRIP_FRAMES of a clip's frames, spread over it, side by side: small
    ones upscaled up to ``scale`` times as pixels, to at most STRIP_HEIGHT (PNG), larger ones scaled down
    to it (JPEG)."""
    from PIL import Image

    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    frames = frames[np.linspace(0, t - 1, min(t, STRIP_FRAMES)).round().astype(int)]
    if h <= STRIP_HEIGHT:  # up to STRIP_HEIGHT, as pixels
        return frame_strip_png(frames, scale=max(1, min(scale, STRIP_HEIGHT // h)), gap=gap), "image/png"
    size = (max(1, round(w * STRIP_HEIGHT / h)), STRIP_HEIGHT)
    small = np.stack([np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS)) for frame in frames])
    buf = io.BytesIO()
    Image.fromarray(_side_by_side(small, gap)).save(buf, format="JPEG", quality=85)
    return buf.getvalue(), "image/jpeg"


def _side_by_side(frames: np.ndarray, gap: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    strip = np.full((h, t * (w + gap) - gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        strip[:, i * (w + gap) : i * (w + gap) + w] = frame
    return strip


def frame_strip_png(frames: np.ndarray, scale: int = 3, gap: int = 2) -> bytes:
    """Frames side by side, nearest-neighbour upscaled so tiny toy videos stay readable."""
    from PIL import Image

    strip = _side_by_side(np.asarray(frames, dtype=np.uint8), gap)
    image = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _literal(text: str) -> str:
    """``text`` drawn as written: matplotlib reads a ``$...$`` span as math (a model named ``a$x$`` drew an
    italic x, one named ``run$\\foo$x`` raised at savefig, after the evaluation, before its report)."""
    return text.replace("$", r"\$")


def label_rates_figure(models: Mapping[str, Mapping[str, Any]], title: str = "label rates"):
    """Stacked bars of Good/Normal/Bad per dimension for each model (``summarize`` outputs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"Good": "#4caf50", "Normal": "#ffb300", "Bad": "#e53935", "unparsed": "#9e9e9e"}
    # constrained: the suptitle clears the panel titles; the legend sits beside the bars, not on them
    names = list(models)
    dims = [d for d in DIMENSIONS if any(d.value in models[m]["dimensions"] for m in names)] or DIMENSIONS
    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims) + 1, 3), sharey=True, layout="constrained")
    for ax, dim in zip(np.atleast_1d(axes), dims, strict=True):
        bottom = np.zeros(len(names))
        for key in [lab.value for lab in LABELS] + ["unparsed"]:
            vals = np.array([models[m]["dimensions"].get(dim.value, {}).get(key, 0.0) for m in names])
            ax.bar([_literal(n) for n in names], vals, bottom=bottom, color=colours[key], label=key)
            bottom += vals
        ax.set_title(dim.value.replace("_", " "))
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=20)
    np.atleast_1d(axes)[0].set_ylabel("share of videos")
    fig.legend(*np.atleast_1d(axes)[0].get_legend_handles_labels(), fontsize=7, loc="outside right center")
    fig.suptitle(title)
    return fig


SHORT_CURVE = 30  # points: fewer are drawn with markers too


def curves_figure(curves: Mapping[str, Sequence[tuple[float, float]]], title: str, ylabel: str = "loss"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            # Markers on a short log: a line through one point (a run of one logging interval) draws nothing.
            marker = "o" if len(points) < SHORT_CURVE else None
            ax.plot(xs, ys, label=_literal(name), linewidth=1, marker=marker, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 70), fontsize=9)  # a long title wraps instead of running off
    if ax.get_legend_handles_labels()[0]:  # no curve logged (e.g. its run's log is gone): no legend
        ax.legend(fontsize=7)
    return fig


def confusion_figure(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, columns: Sequence[str] | None = None
):
    """Rows: the reference ``labels``; columns: the critic's (``columns``, e.g. with "unparsed")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    columns = labels if columns is None else columns
    fig, ax = plt.subplots(figsize=(0.9 * len(columns) + 0.6, 3))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("critic")
    ax.set_ylabel("reference")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def histogram_figure(values: Mapping[str, Sequence[float]], title: str, bins: int = 12):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, vals in values.items():
        if len(vals):
            ax.hist(vals, bins=bins, range=(0, 1), alpha=0.5, label=_literal(name))
    ax.set_xlabel("reward")
    ax.set_ylabel("videos")  # counts, not a density: the models' bars overlap
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:  # no curve logged (e.g. its run's log is gone): no legend
        ax.legend(fontsize=7)
    return fig


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
caption {{ text-align: left; font-weight: 600; padding: 4px 0; }}
figure {{ margin: 1em 0; }} img {{ image-rendering: pixelated; max-width: 100%; }}
.strip {{ display: flex; align-items: center; gap: 8px; margin: 2px 0; }}
/* a fixed label column: the rows' frames line up (a width alone let each label shrink to its own words) */
.strip span {{ flex: 0 0 150px; font-size: 12px; }} .strip img {{ min-width: 0; }}
.warn {{ background: #fff3e0; border-left: 4px solid #fb8c00; padding: 6px 10px; }}
.cap {{ font-size: 12px; color: #555; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
