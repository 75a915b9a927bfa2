"""VBench adapter: lay generated videos out as VBench expects and run the ``vbench`` package if present.

VBench reads a folder of ``{prompt}-{index}.mp4`` files (its standard prompt suite samples five videos
per prompt, indices 0-4; in ``custom_input`` mode the prompt is read from the file name too). The
package, its detectron2 dependency and its model weights are GPU-user territory: videolift does not
install them. Clips of 5 s or more belong to VBench-Long, whose scripts split them first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from videolift.core.errors import VideoliftError
from videolift.core.jsonl import read_jsonl_dicts

CUSTOM_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
LONG_CLIP_SECONDS = 5.0


def vbench_name(prompt: str, index: int) -> str:
    # VBench matches file names to prompts: keep the text, drop only path separators and NULs.
    safe = re.sub(r"[/\x00]", " ", prompt).strip()[:240]
    return f"{safe}-{index}.mp4"


def export_for_vbench(manifest: Path, videos: Path, out: Path, *, link: bool = True) -> list[Path]:
    """Place each manifest video at ``out/{prompt}-{k}.mp4`` (k counts videos of that prompt)."""
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    written = []
    for rec in read_jsonl_dicts(manifest):
        k = seen.get(rec["prompt"], 0)
        seen[rec["prompt"]] = k + 1
        target = out / vbench_name(rec["prompt"], k)
        target.unlink(missing_ok=True)
        source = (videos / rec["video"]).resolve()
        if link:
            os.symlink(source, target)
        else:
            shutil.copyfile(source, target)
        written.append(target)
    return written


def long_clip_warning(manifest: Path) -> str | None:
    recs = read_jsonl_dicts(manifest)
    seconds = [r["frames"] / r["fps"] for r in recs if r.get("frames") and r.get("fps")]
    if seconds and max(seconds) >= LONG_CLIP_SECONDS:
        return (
            f"clips last up to {max(seconds):.1f} s: VBench scores clips of {LONG_CLIP_SECONDS:.0f} s or more "
            "with VBench-Long (split them into shorter clips first)"
        )
    return None


def check_dimensions(dimensions: list[str], *, custom_input: bool = True) -> None:
    """Refuse dimensions VBench cannot score on our own prompts (checked before any video is made)."""
    if custom_input and (bad := [d for d in dimensions if d not in CUSTOM_DIMENSIONS]):
        raise VideoliftError(
            f"VBench custom-input mode supports {', '.join(CUSTOM_DIMENSIONS)}; not {', '.join(bad)}"
        )


def vbench_command(
    videos_dir: Path, out: Path, dimensions: list[str], *, custom_input: bool = True, exe: str = "vbench"
) -> list[str]:
    cmd = [exe, "evaluate", "--videos_path", str(videos_dir), "--output_path", str(out), "--dimension"]
    return [*cmd, *dimensions, *(["--mode=custom_input"] if custom_input else [])]


def run_vbench(videos_dir: Path, out: Path, dimensions: list[str], *, custom_input: bool = True) -> Path:
    """Run ``vbench evaluate`` on a prepared folder; results land in ``out``."""
    exe = shutil.which("vbench")
    if exe is None:
        raise VideoliftError(
            "the `vbench` package is not installed (pip install vbench; see docs/evaluate.md)"
        )
    check_dimensions(dimensions, custom_input=custom_input)
    subprocess.run(
        vbench_command(videos_dir, out, dimensions, custom_input=custom_input, exe=exe), check=True
    )
    return out
