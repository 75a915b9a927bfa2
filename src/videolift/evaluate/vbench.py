"""VBench adapter: lay generated videos out as VBench expects and run the ``vbench`` package if present.

VBench's custom-input mode scores a folder of videos; each video's prompt comes from ``prompts.json``
(``{file name: prompt}``, VBench's ``--prompt_file``) beside the folder, and its file name
``{prompt}-{index}.mp4`` carries a readable (shortened) copy. Clips of 5 s or more belong to
VBench-Long (``vbench2_beta_long``, ``long_custom_input`` mode: it splits them itself and reads the
prompts from the file names). videolift runs VBench's own launch scripts, one process, not its
``vbench evaluate`` wrapper (which takes one dimension, goes through a shell and exits 0 whatever
happens), with the current Python or with another environment's (``Environment``, ``probe``): vbench
0.1.5 pins transformers and numpy below what videolift needs. The package, its detectron2 dependency
and model weights are GPU-user territory: videolift does not install them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from videolift.core.errors import UsageError, VideoliftError
from videolift.core.jsonl import atomic_write, read_json, read_jsonl_dicts

CUSTOM_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
LONG_CLIP_SECONDS = 5.0
PROMPT_FILE = "prompts.json"
NAME_BYTES = 200  # of a file name's prompt part: Linux allows 255 bytes, UTF-8 prompts may not fit
# What VBench-Long writes inside the videos folder (its spelling); it reuses them when they exist.
LONG_WORK_DIRS = ("split_clip", "split_scene", "temporal_filtered_cilps",
                  "subject_consistency_cat_firstframes_videos", "background_consistency_cat_firstframes_videos")  # fmt: skip
# VBench-Long's eval_long.py defaults to a VBench_full_info.json beside itself that vbench 0.1.5 does not
# ship; it reads vbench's own (as its README does). Where vbench is not installed here: a placeholder.
FULL_INFO = "VBench_full_info.json"
VBENCH_DIR = "VBENCH_DIR"
# Read by VBench-Long from vbench2_beta_long/configs/, which the PyPI wheel (0.1.5) lacks too.
LONG_CONFIGS = ("clip_length_mix.yaml", "slow_fast_params.yaml", "subject_mapping_table.yaml",
                "background_mapping_table.yaml")  # fmt: skip
# Imported by VBench-Long as it loads (vbench2_beta_long/utils.py: scenedetect, moviepy.editor; its subject and
# background consistency: dreamsim), installed neither by the vbench wheel nor by its repository's
# requirements.txt; moviepy 2 has no moviepy.editor. Module -> what pip installs.
LONG_MODULES = {"scenedetect": "scenedetect", "moviepy": "moviepy<2", "dreamsim": "dreamsim"}
MODULES = {False: ("vbench", "vbench.launch.evaluate", "custom_input"),
           True: ("vbench2_beta_long", "vbench2_beta_long.eval_long", "long_custom_input")}  # fmt: skip


def vbench_name(prompt: str, index: int) -> str:
    """``{prompt}-{index}.mp4``: the prompt without path separators, NULs, doubled spaces or ``.mp4``, cut
    to ``NAME_BYTES`` bytes of UTF-8 at a character boundary. (VBench-Long names a video's clip folder
    by the file name cut at its first ``.mp4``: "a.mp4 x-0.mp4" and "a.mp4 y-0.mp4" would share one.)"""
    safe = " ".join(re.sub(r"[/\x00]", " ", prompt).replace(".mp4", " mp4").split())
    safe = safe.encode()[:NAME_BYTES].decode(errors="ignore").strip()
    return f"{safe}-{index}.mp4"


def export_for_vbench(manifest: Path, videos: Path, out: Path, *, link: bool = True) -> list[Path]:
    """Place each manifest video at ``out/{prompt}-{k}.mp4`` (k counts videos given that name) and
    write ``out/../prompts.json``; videos of an earlier export are removed first (VBench scores every
    video in the folder), and so are VBench-Long's clips of them (it would score those instead of
    splitting the new videos). Links are relative, so a moved or copied OUT still points at its own videos."""
    if out.is_dir():
        for old in out.iterdir():
            if old.suffix == ".mp4" and (old.is_symlink() or old.is_file()):
                old.unlink()
            elif old.name in LONG_WORK_DIRS and old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    written, prompts = [], {}
    for rec in read_jsonl_dicts(manifest):
        stem = vbench_name(rec["prompt"], 0).removesuffix("-0.mp4")
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        target = out / vbench_name(rec["prompt"], k)
        source = (videos / rec["video"]).resolve()
        if link:
            os.symlink(os.path.relpath(source, out.resolve()), target)
        else:
            shutil.copyfile(source, target)
        written.append(target)
        prompts[target.name] = rec["prompt"]
    # ASCII (\u escapes): VBench opens it in the locale's encoding (launch/evaluate.py), where UTF-8 file
    # names would not match its keys.
    with atomic_write(out.parent / PROMPT_FILE) as handle:
        json.dump(prompts, handle, indent=1)
    return written


def clip_seconds(manifest: Path) -> float | None:
    recs = read_jsonl_dicts(manifest)
    seconds = [r["frames"] / r["fps"] for r in recs if r.get("frames") and r.get("fps")]
    return max(seconds) if seconds else None


def is_long(manifest: Path) -> bool:
    """Clips VBench scores with VBench-Long (5 s or more, by its README)."""
    return (clip_seconds(manifest) or 0.0) >= LONG_CLIP_SECONDS


def check_dimensions(dimensions: list[str], *, custom_input: bool = True) -> None:
    """Refuse dimensions VBench cannot score on our own prompts (checked before any video is made)."""
    if custom_input and (bad := [d for d in dimensions if d not in CUSTOM_DIMENSIONS]):
        raise UsageError(
            f"VBench custom-input mode supports {', '.join(CUSTOM_DIMENSIONS)}; not {', '.join(bad)}"
        )


@dataclass(frozen=True)
class Environment:
    """Another Python environment VBench runs in (``--vbench-python``): its interpreter and where its
    packages ``vbench``, ``vbench2_beta_long`` and VBench-Long's ``LONG_MODULES`` are (None: not there)."""

    python: str
    packages: dict[str, Path | None]


OPTION = "--vbench-python"
# Run by the other interpreter, given the packages to find: find_spec locates a top-level package without
# importing it.
PROBE = """import importlib.util, json, sys
def where(name):
    spec = importlib.util.find_spec(name)
    return next(iter(spec.submodule_search_locations or []), None) if spec else None
print(json.dumps({name: where(name) for name in sys.argv[1:]}))"""
PROBED = ("vbench", "vbench2_beta_long", *LONG_MODULES)


def probe(python: str | Path) -> Environment:
    """The environment of interpreter ``python`` (a path, or a command on PATH), asked in a subprocess so
    that vbench never enters this process. Refused unless it runs and has the vbench package."""
    found = shutil.which(str(python))
    if found is None:
        raise VideoliftError(f"{OPTION} {python}: {_not_runnable(Path(python))}")
    found = os.path.abspath(found)  # not resolved: a venv's python is a symlink that must stay one
    answer = _ask(found)
    if isinstance(answer, str):
        raise VideoliftError(f"{OPTION} {python}: does not run as a Python interpreter ({answer})")
    env = Environment(found, {name: Path(d) if d else None for name, d in answer.items()})
    if why := unavailable(env=env):
        raise VideoliftError(why)
    return env


def _ask(python: str) -> dict[str, str | None] | str:
    """``PROBE``'s answer from ``python``, or why it gave none."""
    try:
        done = subprocess.run(
            [python, "-c", PROBE, *PROBED],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:  # e.g. a file that is no program
        return str(exc)
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        return answer
    return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def _not_runnable(path: Path) -> str:
    if path.is_dir():
        return "is a directory; give the environment's interpreter (e.g. ENV/bin/python)"
    if path.exists():
        return "is not executable"
    return "no such file (nor a command on PATH)"


def installed(long: bool = False, env: Environment | None = None) -> bool:
    return _package_dir(MODULES[long][0], env) is not None


def _package_dir(name: str, env: Environment | None = None) -> Path | None:
    """Where package ``name`` is installed in ``env`` (None: here), found without importing it (vbench
    imports torch and more)."""
    if env is not None:
        return env.packages.get(name)
    spec = importlib.util.find_spec(name)
    locations = spec.submodule_search_locations if spec else None
    return Path(next(iter(locations))) if locations else None


def unavailable(long: bool = False, env: Environment | None = None) -> str | None:
    """Why VBench cannot score in ``env`` (default: this Python), or None when it can."""
    there = f"{OPTION} {env.python}: " if env else ""  # the user named that interpreter: say which
    if not installed(long, env):
        package = MODULES[long][0] if installed(False, env) else "vbench"  # name the one missing
        pip = f"{env.python} -m pip" if env else "pip"  # that environment's pip, not whichever is on PATH
        return f"{there}{package} is not installed{' there' if env else ''} ({pip} install vbench)"
    if not long:
        return None
    configs = (_package_dir(MODULES[True][0], env) or Path()) / "configs"
    if missing := [c for c in LONG_CONFIGS if not (configs / c).is_file()]:
        return (
            f"{there}VBench-Long lacks {', '.join(missing)} in {configs} (the PyPI wheel, vbench 0.1.5, does not "
            "ship them): install VBench from a clone of its repository (pip install -e VBench)"
        )
    if missing := [pip for name, pip in LONG_MODULES.items() if not _long_module(name, env)]:
        pip = f"{env.python} -m pip" if env else "pip"
        return (
            f"{there}VBench-Long imports {', '.join(missing)}, which vbench does not install "
            f"({pip} install {shlex.join(missing)})"
        )
    return None


def _long_module(name: str, env: Environment | None) -> bool:
    """Whether VBench-Long's import of ``name`` would succeed (moviepy: the 1.x that has moviepy.editor)."""
    where = _package_dir(name, env)
    return where is not None and (name != "moviepy" or (where / "editor.py").is_file())


def vbench_command(
    videos_dir: Path, out: Path, dimensions: list[str], *, long: bool = False, env: Environment | None = None
) -> list[str]:
    """VBench's launch script under ``torch.distributed.run`` (one process) with ``env``'s Python (None:
    this one), as an argument list."""
    _, module, mode = MODULES[long]
    cmd = [
        env.python if env else sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "1",
        "-m",
        module,
    ]
    cmd += ["--videos_path", str(videos_dir), "--output_path", str(out), "--dimension", *dimensions]
    cmd += ["--mode", mode]
    if not long:  # VBench-Long reads prompts from the file names only
        cmd += ["--prompt_file", str(videos_dir.parent / PROMPT_FILE)]
    else:
        vbench_dir = _package_dir(MODULES[False][0], env)
        cmd += ["--full_json_dir", str(vbench_dir / FULL_INFO) if vbench_dir else f"{VBENCH_DIR}/{FULL_INFO}"]
    return cmd


def run_vbench(
    videos_dir: Path, out: Path, dimensions: list[str], *, long: bool = False, env: Environment | None = None
) -> dict[str, float]:
    """Run VBench on a prepared folder, in ``env`` (None: here); its results land in ``out``. Returns each
    dimension's score, read from the results file the run wrote (a run that wrote none failed, whatever
    it exited with)."""
    if why := unavailable(long, env):
        raise VideoliftError(f"{why}; see docs/evaluate.md")
    check_dimensions(dimensions)
    before = set(out.glob("*_eval_results.json")) if out.is_dir() else set()
    done = subprocess.run(vbench_command(videos_dir, out, dimensions, long=long, env=env), check=False)
    new = sorted(set(out.glob("*_eval_results.json")) - before) if out.is_dir() else []
    if done.returncode or not new:
        raise VideoliftError(
            f"VBench failed on {videos_dir} (exit status {done.returncode}, "
            f"{'no' if not new else 'a'} results file in {out}): see its output above"
        )
    results = read_json(new[-1])
    return {dim: float(value[0]) for dim, value in results.items() if isinstance(value, list) and value}
