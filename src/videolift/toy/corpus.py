"""A toy corpus: prompts, seeds and injected defects planned up front, then rendered to MP4s + manifest.

The plan is a pure function of (n, defect rate, seed, split), so a corpus can be re-rendered exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.files import lock_run, replacing
from videolift.core.jsonl import write_jsonl
from videolift.core.video import write_video
from videolift.toy.defects import Defect, plan_severities, sample_defects, shown_spec, truth
from videolift.toy.describe import describe
from videolift.toy.grammar import PromptSpec, Split, sample_spec
from videolift.toy.render import FPS, render


@dataclass(frozen=True)
class Item:
    video_id: str
    spec: PromptSpec
    seed: int
    defects: tuple[Defect, ...]

    def record(self, video: str) -> dict[str, Any]:
        """The manifest record: what was asked, what was injected, and the truth it implies."""
        return {
            "video_id": self.video_id,
            "video": video,
            "prompt": self.spec.text,
            "seed": self.seed,
            "split": self.spec.split,
            "shown": shown_spec(self.spec, self.defects).text,
            "caption": describe(self.spec, self.defects),
            "defects": [d.to_json() for d in self.defects],
            "truth": {d.value: label.value for d, label in truth(self.defects).items()},
            **self.spec.categories(),
        }

    def render(self) -> np.ndarray:
        return render(self.spec, self.seed, self.defects)


def plan(n: int, *, defect_rate: float = 0.0, seed: int = 0, split: Split | None = "train") -> list[Item]:
    """``n`` items: prompts drawn from ``split`` (None: both), each with its own seed and defects."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    severities = plan_severities(n, defect_rate, seed)
    rng = np.random.default_rng([seed, 11])
    width = max(6, len(str(n - 1)))
    items = []
    for i in range(n):
        spec = sample_spec(rng, split)
        video_seed = int(rng.integers(2**31))
        defects = tuple(sample_defects(spec, severities[i], np.random.default_rng([video_seed, 12])))
        items.append(Item(f"toy-{i:0{width}d}", spec, video_seed, defects))
    return items


_TOKEN = "[0-9a-f]" * 8  # ``replacing``'s token in a temporary's name
# What a killed ``write_corpus`` leaves (SIGTERM or kill -9 skip ``replacing``'s cleanup): the hidden
# temporaries of its videos and manifest (``.NAME.TOKEN.tmp``), and the half-written file of the one
# ``write_video`` or ``write_jsonl`` was writing (``..NAME.TOKEN.partial.tmp``, ``..NAME.TOKEN.tmp.X.tmp``).
LEFTOVERS = (
    f"videos/.*.mp4.{_TOKEN}.tmp",
    f"videos/..*.mp4.{_TOKEN}.partial.tmp",
    f".manifest.jsonl.{_TOKEN}.tmp",
    f"..manifest.jsonl.{_TOKEN}.tmp.*.tmp",
)


def write_corpus(items: list[Item], out: Path, *, progress: bool = True, remove: Iterable[Path] = ()) -> Path:
    """Render every item to ``out/videos/<id>.mp4`` (lossless, yuv444p) and write ``out/manifest.jsonl``,
    all together (``replacing``): an earlier corpus there stays whole until every video is rendered, and
    then goes, its manifest and ``remove`` (its videos the new corpus has none of) with it. ``out`` is
    locked for the run (``out/.lock``), so what killed runs left (``LEFTOVERS``) is removed first:
    never a live run's temporaries, and never files of other names."""
    out = Path(out)
    rels = [f"videos/{item.video_id}.mp4" for item in items]
    held = lock_run(out, "videolift toy corpus")
    try:
        for leftover in [p for pattern in LEFTOVERS for p in out.glob(pattern)]:
            leftover.unlink(missing_ok=True)
        with replacing(*(out / rel for rel in rels), out / "manifest.jsonl", remove=remove) as temps:
            for item, temp in zip(_progress(items, progress), temps[:-1], strict=True):
                write_video(temp, item.render(), fps=FPS, crf=0, pix_fmt="yuv444p")
            write_jsonl(temps[-1], [item.record(rel) for item, rel in zip(items, rels, strict=True)])
    finally:
        if held is not None:
            held.close()
    return out / "manifest.jsonl"


def _progress(items: list[Item], enabled: bool) -> Iterator[Item]:
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc="rendering", unit="video")
