import json
import os
import re
import shlex
import sys

import pytest

from videolift.core.errors import VideoliftError
from videolift.evaluate import vbench
from videolift.evaluate.vbench import (
    PROMPT_FILE,
    export_for_vbench,
    is_long,
    run_vbench,
    vbench_command,
    vbench_name,
)


def _manifest(tmp_path, prompts: list[str], frames: int = 49):
    (tmp_path / "videos").mkdir(exist_ok=True)
    recs = []
    for i, prompt in enumerate(prompts):
        (tmp_path / "videos" / f"{i}.mp4").write_bytes(b"x" * (i + 1))
        recs.append({"video": f"videos/{i}.mp4", "prompt": prompt, "frames": frames, "fps": 8})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return manifest


def test_export_uses_vbench_names_and_counts_per_name(tmp_path):
    manifest = _manifest(tmp_path, ["a dog runs", "a dog runs", "a cat/sits", "a cat sits "])
    files = export_for_vbench(manifest, tmp_path, tmp_path / "vb", link=False)
    # "a cat/sits" and "a cat sits " name the same file: counted by name, not by prompt, none is lost
    assert [f.name for f in files] == [
        "a dog runs-0.mp4",
        "a dog runs-1.mp4",
        "a cat sits-0.mp4",
        "a cat sits-1.mp4",
    ]
    assert files[1].read_bytes() == b"xx" and len(list((tmp_path / "vb").iterdir())) == 4
    # VBench gets every prompt exactly as generated, by file name
    prompts = json.loads((tmp_path / PROMPT_FILE).read_text())
    assert prompts == {"a dog runs-0.mp4": "a dog runs", "a dog runs-1.mp4": "a dog runs",
                       "a cat sits-0.mp4": "a cat/sits", "a cat sits-1.mp4": "a cat sits "}  # fmt: skip
    assert vbench_name("x", 3) == "x-3.mp4"
    # VBench-Long names a clip folder by the file name cut at ".mp4": these two would have shared one
    assert vbench_name("play a.mp4 twice", 0) == "play a mp4 twice-0.mp4"
    assert (
        vbench_name("play a.mp4", 0).split(".mp4")[0] != vbench_name("play a.mp4 again", 0).split(".mp4")[0]
    )
    assert is_long(manifest)  # 49 frames at 8 fps = 6.1 s: VBench-Long territory
    (tmp_path / "short").mkdir()
    assert not is_long(_manifest(tmp_path / "short", ["a"], frames=9))


def test_long_non_ascii_prompts_fit_a_file_name_and_reruns_leave_no_stale_videos(tmp_path):
    long_prompt = "一只熊猫在竹林里吃竹子，阳光透过树叶洒下斑驳的光影，" * 4  # 104 characters, 312 bytes
    manifest = _manifest(tmp_path, [long_prompt, "a dog"])
    files = export_for_vbench(manifest, tmp_path, tmp_path / "vb")
    assert all(len(f.name.encode()) <= 255 for f in files) and files[0].is_symlink()
    assert not os.path.isabs(os.readlink(files[0])) and files[0].read_bytes() == b"x"  # relative links
    assert json.loads((tmp_path / PROMPT_FILE).read_text())[files[0].name] == long_prompt
    # VBench-Long splits the videos into clips inside the folder, and scores old clips if it finds them.
    # Its subject and background consistency reuse their first-frame videos likewise.
    cats = ("subject_consistency_cat_firstframes_videos", "background_consistency_cat_firstframes_videos")
    for work in ("split_clip", "split_scene", "temporal_filtered_cilps", *cats):
        (tmp_path / "vb" / work / files[0].stem).mkdir(parents=True)
    (tmp_path / "vb" / "notes").mkdir()  # not VBench's: left alone
    manifest.write_text(manifest.read_text().splitlines()[1] + "\n")  # a rerun with one prompt
    export_for_vbench(manifest, tmp_path, tmp_path / "vb")
    assert sorted(f.name for f in (tmp_path / "vb").iterdir()) == ["a dog-0.mp4", "notes"]


def test_the_command_runs_vbenchs_launch_script_with_every_dimension(tmp_path):
    cmd = vbench_command(
        tmp_path / "vb" / "videos", tmp_path / "res", ["motion_smoothness", "dynamic_degree"]
    )
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "vbench.launch.evaluate" in cmd
    i = cmd.index("--dimension")
    assert cmd[i + 1 : i + 3] == ["motion_smoothness", "dynamic_degree"] and cmd[i + 3] == "--mode"
    assert cmd[cmd.index("--prompt_file") + 1] == str(tmp_path / "vb" / PROMPT_FILE)
    long = vbench_command(tmp_path / "vb" / "videos", tmp_path / "res", ["motion_smoothness"], long=True)
    assert (
        "vbench2_beta_long.eval_long" in long and "long_custom_input" in long and "--prompt_file" not in long
    )


def _fake_vbench(monkeypatch, tmp_path, body: str):
    """VBench replaced by a script: it is told the output folder and may write results there."""
    script = tmp_path / "fake_vbench.py"
    script.write_text(f"import json, sys\nout = sys.argv[1]\n{body}\n")
    monkeypatch.setattr(vbench, "installed", lambda long=False, env=None: True)
    monkeypatch.setattr(
        vbench,
        "vbench_command",
        lambda videos, out, dims, long=False, env=None: [sys.executable, str(script), str(out)],
    )


def test_run_vbench_reads_the_scores_and_refuses_a_run_that_wrote_none(tmp_path, monkeypatch):
    monkeypatch.setattr(vbench, "installed", lambda long=False, env=None: False)
    with pytest.raises(VideoliftError, match="pip install vbench"):
        run_vbench(tmp_path, tmp_path / "out", ["motion_smoothness"])
    monkeypatch.setattr(vbench, "installed", lambda long=False, env=None: True)
    with pytest.raises(VideoliftError, match="not human_action"):
        run_vbench(tmp_path, tmp_path / "out", ["human_action"])
    # VBench's own CLI exits 0 when its worker dies: no results file is a failure
    _fake_vbench(monkeypatch, tmp_path, "import os; os.makedirs(out, exist_ok=True)")
    with pytest.raises(VideoliftError, match="VBench failed .* no results file"):
        run_vbench(tmp_path, tmp_path / "out", ["motion_smoothness"])
    _fake_vbench(monkeypatch, tmp_path, "sys.exit(3)")
    with pytest.raises(VideoliftError, match="exit status 3"):
        run_vbench(tmp_path, tmp_path / "out", ["motion_smoothness"])
    write = "json.dump({'motion_smoothness': [0.975, [{'video_path': 'a', 'video_results': 0.975}]]}, open(out + '/results_1_eval_results.json', 'w'))"
    _fake_vbench(monkeypatch, tmp_path, write)
    assert run_vbench(tmp_path, tmp_path / "out", ["motion_smoothness"]) == {"motion_smoothness": 0.975}


# What VBench-Long imports as it loads (vbench2_beta_long/utils.py, subject_consistency.py), which neither
# the vbench wheel nor VBench's requirements.txt installs; moviepy 1.x has moviepy/editor.py, 2.x not.
LONG_MODULE_FILES = {"scenedetect/__init__.py": "", "moviepy/__init__.py": "", "moviepy/editor.py": "",
                     "dreamsim/__init__.py": ""}  # fmt: skip


def _fake_packages(tmp_path, monkeypatch, configs: bool, long_modules: bool = True) -> None:
    """vbench 0.1.5 as pip installs it: vbench/VBench_full_info.json, and vbench2_beta_long without the
    VBench_full_info.json its eval_long.py defaults to, and without configs/ (``configs``: a repository
    checkout's, which has them); ``long_modules``: with what VBench-Long imports besides."""
    site = tmp_path / "site"
    for name, text in LONG_MODULE_FILES.items() if long_modules else ():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    (site / "vbench").mkdir(parents=True)
    (site / "vbench" / "__init__.py").write_text("")
    (site / "vbench" / "VBench_full_info.json").write_text("[]")
    (site / "vbench2_beta_long").mkdir()
    (site / "vbench2_beta_long" / "__init__.py").write_text("")
    if configs:
        (site / "vbench2_beta_long" / "configs").mkdir()
        for name in vbench.LONG_CONFIGS:
            (site / "vbench2_beta_long" / "configs" / name).write_text("{}")
    monkeypatch.syspath_prepend(str(site))


def test_vbench_long_reads_vbenchs_prompt_info_and_needs_its_configs(tmp_path, monkeypatch):
    videos = tmp_path / "vb" / "videos"
    # Not installed here: the printed command names the file by a placeholder.
    long = vbench_command(videos, tmp_path / "res", ["motion_smoothness"], long=True)
    assert long[long.index("--full_json_dir") + 1] == "VBENCH_DIR/VBench_full_info.json"
    assert "--full_json_dir" not in vbench_command(videos, tmp_path / "res", ["motion_smoothness"])
    _fake_packages(tmp_path, monkeypatch, configs=False)
    long = vbench_command(videos, tmp_path / "res", ["motion_smoothness"], long=True)
    info = long[long.index("--full_json_dir") + 1]
    assert info == str(tmp_path / "site" / "vbench" / "VBench_full_info.json") and os.path.isfile(info)
    # The PyPI wheel's VBench-Long cannot run: said before it starts, not as its FileNotFoundError.
    assert vbench.unavailable(long=False) is None
    assert "clip_length_mix.yaml" in vbench.unavailable(long=True)
    with pytest.raises(VideoliftError, match="does not ship them.*pip install -e"):
        run_vbench(videos, tmp_path / "res", ["motion_smoothness"], long=True)


def test_vbench_long_from_a_checkout_is_available(tmp_path, monkeypatch):
    _fake_packages(tmp_path, monkeypatch, configs=True)
    assert vbench.unavailable(long=True) is None


# A stand-in for VBench's own environment (--vbench-python): an interpreter script that logs how it was
# called and runs this Python on a site of its own, where vbench sits as its wheel lays it out, its launch
# scripts write a results file, and torch.distributed.run just runs the module (that environment's torch).
LAUNCH = """import argparse, json, os, time
from pathlib import Path
here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--output_path", default="./evaluation_results/")
parser.add_argument("--full_json_dir", default=os.path.join(here, "..", "VBench_full_info.json"))
parser.add_argument("--videos_path", required=True)
parser.add_argument("--dimension", nargs="+", required=True)
parser.add_argument("--mode", choices=["custom_input", "vbench_standard", "vbench_category"], default="vbench_standard")
parser.add_argument("--prompt", default="None")
parser.add_argument("--prompt_file")
args = parser.parse_args()
if args.prompt_file is not None and args.mode != "custom_input":
    raise Exception("must set --mode=custom_input for using external prompt")
assert args.mode == "custom_input", args.mode
fail = os.environ.get("FAKE_VBENCH_FAIL")  # a run that fails (a GPU out of memory, ...)
if fail and fail in args.videos_path:
    raise SystemExit("CUDA out of memory")
unsupported = {"object_class", "multiple_objects", "scene", "appearance_style", "color", "spatial_relationship"}
assert not set(args.dimension) & unsupported, "not supported for custom input"
videos = [os.path.join(args.videos_path, f) for f in os.listdir(args.videos_path)
          if Path(f).suffix.lower() in (".mp4", ".gif", ".jpg", ".png")]
if args.prompt_file:
    # VBench reads it in the locale's encoding (FAKE_VBENCH_ENCODING: a machine whose locale is another),
    # its keys joined to --videos_path, and wants a prompt for every video
    with open(args.prompt_file, encoding=os.environ.get("FAKE_VBENCH_ENCODING")) as f:
        given = json.load(f)
    assert type(given) == dict
    given = {os.path.abspath(os.path.join(args.videos_path, k)): v for k, v in given.items()}
    missing = {os.path.abspath(v) for v in videos} - set(given)
    assert not missing, f"The prompts for the following videos are not found in the prompt file: {missing}"
os.makedirs(args.output_path, exist_ok=True)
name = "results_" + time.strftime("%Y-%m-%d-%H:%M:%S")
scores = {}
for i, dim in enumerate(args.dimension):
    per_video = [{"video_path": v, "video_results": 0.5 + i / 10} for v in videos]
    scores[dim] = [sum(r["video_results"] for r in per_video) / len(per_video), per_video]
with open(os.path.join(args.output_path, name + "_eval_results.json"), "w") as f:
    json.dump(scores, f)
"""
# VBench-Long's eval_long.py: imports what it needs, reads --full_json_dir and its configs whatever the mode,
# splits each video into clips under VIDEOS/split_clip/<file name cut at its first ".mp4">/ (reusing them
# when there are as many folders as videos), takes each folder as one video, and scores
# [score, per clip, per video].
LONG = """import argparse, json, os, time
import scenedetect, dreamsim
from moviepy import editor
here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--output_path", default="./evaluation_results/")
parser.add_argument("--full_json_dir", default=os.path.join(here, "VBench_full_info.json"))
parser.add_argument("--videos_path", required=True)
parser.add_argument("--dimension", nargs="+", required=True)
parser.add_argument("--mode", choices=["custom_input", "vbench_standard", "vbench_category",
                    "long_vbench_standard", "long_custom_input"], default="vbench_standard")
parser.add_argument("--prompt", default="")
parser.add_argument("--prompt_file")
args = parser.parse_args()
if (args.prompt_file is not None or args.prompt) and args.mode != "custom_input":
    raise Exception("must set --mode=custom_input for using external prompt")
assert args.mode == "long_custom_input", args.mode
json.load(open(args.full_json_dir))
for config in ("clip_length_mix.yaml", "slow_fast_params.yaml", "subject_mapping_table.yaml",
               "background_mapping_table.yaml"):
    open(os.path.join(here, "configs", config)).close()
videos = [f for f in os.listdir(args.videos_path) if f.endswith(".mp4")]
clips = os.path.join(args.videos_path, "split_clip")
if not (os.path.isdir(clips) and len(os.listdir(clips)) == len(videos)):
    for video in videos:
        folder = os.path.join(clips, video.split(".mp4")[0])
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, video.split(".mp4")[0] + "_000.mp4"), "w").close()
folders = sorted(os.listdir(clips))
assert len(folders) == len(videos), f"{len(videos)} videos split into {len(folders)} folders"
os.makedirs(args.output_path, exist_ok=True)
scores = {}
for i, dim in enumerate(args.dimension):
    per_clip = [{"video_path": os.path.join(clips, d, c), "video_results": 0.5 + i / 10}
                for d in folders for c in os.listdir(os.path.join(clips, d))]
    per_video = [{"video_path": os.path.join(args.videos_path, d + ".mp4"), "video_results": 0.5 + i / 10}
                 for d in folders]
    scores[dim] = [sum(r["video_results"] for r in per_clip) / len(per_clip), per_clip, per_video]
with open(os.path.join(args.output_path, "results_" + time.strftime("%Y-%m-%d-%H:%M:%S") + "_eval_results.json"), "w") as f:
    json.dump(scores, f)
"""
RUN = """import runpy, sys
i = sys.argv.index("-m")
assert sys.argv[1:i] == ["--standalone", "--nproc_per_node", "1"], sys.argv
sys.argv = sys.argv[i + 1 :]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def fake_environment(root, *, package: bool = True, configs: bool = True, long_modules: bool = True):
    """``root/bin/python``, an interpreter of another environment (calls logged to ``root/calls.log``)."""
    site = root / "site"
    files = {"torch/__init__.py": "", "torch/distributed/__init__.py": "", "torch/distributed/run.py": RUN}
    if package:
        files |= {"vbench/__init__.py": "", "vbench/VBench_full_info.json": "[]", "vbench/launch/__init__.py": "",
                  "vbench/launch/evaluate.py": LAUNCH, "vbench2_beta_long/__init__.py": "",
                  "vbench2_beta_long/eval_long.py": LONG}  # fmt: skip
        if configs:
            files |= {f"vbench2_beta_long/configs/{name}": "{}" for name in vbench.LONG_CONFIGS}
    if long_modules:
        files |= LONG_MODULE_FILES
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    log, real = shlex.quote(str(root / "calls.log")), shlex.quote(sys.executable)
    python.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nPYTHONPATH={shlex.quote(str(site))} exec {real} "$@"\n'
    )
    python.chmod(0o755)
    return python


def vbench_calls(root) -> list[list[str]]:
    """The VBench runs by the fake interpreter of ``root``, as argument lists (its probes left out)."""
    lines = (root / "calls.log").read_text().splitlines() if (root / "calls.log").exists() else []
    return [line.split() for line in lines if line.startswith("-m torch.distributed.run")]


def test_vbench_runs_with_another_environments_python_and_its_scores_are_read(tmp_path):
    python = fake_environment(tmp_path / "env")
    env = vbench.probe(python)
    assert env.python == str(python) and env.packages["vbench"] == tmp_path / "env" / "site" / "vbench"
    _manifest(tmp_path, ["a dog runs"], frames=9)
    export_for_vbench(tmp_path / "manifest.jsonl", tmp_path, tmp_path / "vb" / "videos")
    scores = run_vbench(
        tmp_path / "vb" / "videos", tmp_path / "res", ["motion_smoothness", "dynamic_degree"], env=env
    )
    assert scores == {"motion_smoothness": 0.5, "dynamic_degree": 0.6}
    (call,) = vbench_calls(tmp_path / "env")
    assert call[call.index("-m", 1) + 1] == "vbench.launch.evaluate" and "--prompt_file" in call
    # VBench-Long: VBench_full_info.json is that environment's vbench's, not a placeholder
    long = run_vbench(
        tmp_path / "vb" / "videos", tmp_path / "long", ["motion_smoothness"], long=True, env=env
    )
    assert long == {"motion_smoothness": 0.5}
    call = vbench_calls(tmp_path / "env")[-1]
    assert "vbench2_beta_long.eval_long" in call
    assert call[call.index("--full_json_dir") + 1] == str(
        tmp_path / "env" / "site" / "vbench" / "VBench_full_info.json"
    )
    assert "vbench" not in sys.modules  # asked in a subprocess, never imported here


def test_an_interpreter_that_cannot_run_vbench_is_refused_by_name(tmp_path):
    def refused(python, said: str) -> None:
        with pytest.raises(VideoliftError, match=f"--vbench-python {re.escape(str(python))}: {said}"):
            vbench.probe(python)

    refused(tmp_path / "nope" / "python", "no such file")
    refused(tmp_path, "is a directory")
    (tmp_path / "text").write_text("not a program")
    refused(tmp_path / "text", "is not executable")
    (tmp_path / "false").write_text("#!/bin/sh\necho 'broken interpreter' >&2\nexit 1\n")
    (tmp_path / "false").chmod(0o755)
    refused(tmp_path / "false", r"does not run as a Python interpreter \(broken interpreter\)")
    bare = fake_environment(tmp_path / "bare", package=False)
    refused(bare, rf"vbench is not installed there \({re.escape(str(bare))} -m pip install vbench\)")
    # The PyPI wheel's VBench-Long (no configs/) can score short clips only
    wheel = vbench.probe(fake_environment(tmp_path / "wheel", configs=False))
    assert vbench.unavailable(env=wheel) is None
    said = vbench.unavailable(long=True, env=wheel)
    assert said.startswith(f"--vbench-python {wheel.python}: VBench-Long lacks clip_length_mix.yaml")
    with pytest.raises(VideoliftError, match="VBench-Long lacks"):
        run_vbench(tmp_path, tmp_path / "res", ["motion_smoothness"], long=True, env=wheel)
    assert not vbench_calls(tmp_path / "wheel")


def test_eval_refuses_long_clips_its_vbench_environment_cannot_score_before_scoring_any(tmp_path):
    from videolift.evaluate.cli import _vbench

    for name, frames in (("short", 9), ("long", 49)):  # 49 frames at 8 fps: VBench-Long's
        (tmp_path / name).mkdir()
        _manifest(tmp_path / name, [f"a {name} clip"], frames=frames)
    wheel = vbench.probe(fake_environment(tmp_path / "wheel", configs=False))
    with pytest.raises(VideoliftError, match="--vbench-python .*VBench-Long lacks .*a rerun keeps them"):
        _vbench({"models": ["short", "long"]}, tmp_path, ["motion_smoothness"], wheel)
    assert not vbench_calls(tmp_path / "wheel") and (tmp_path / "vbench" / "long" / "videos").is_dir()
    # An environment from VBench's repository scores both
    checkout = vbench.probe(fake_environment(tmp_path / "checkout"))
    _vbench({"models": ["short", "long"]}, tmp_path, ["motion_smoothness"], checkout)
    assert [c[c.index("-m", 1) + 1] for c in vbench_calls(tmp_path / "checkout")] == [
        "vbench.launch.evaluate",
        "vbench2_beta_long.eval_long",
    ]
    scores = json.loads((tmp_path / "vbench" / "scores.json").read_text())
    assert scores == {"short": {"motion_smoothness": 0.5}, "long": {"motion_smoothness": 0.5}}


def test_vbench_long_needs_the_modules_it_imports_that_vbench_does_not_install(tmp_path, monkeypatch):
    # vbench2_beta_long imports scenedetect and moviepy.editor as it loads, dreamsim for subject and background
    # consistency: a checkout without them would fail after the videos are made, on its ImportError.
    _fake_packages(tmp_path, monkeypatch, configs=True, long_modules=False)
    assert vbench.unavailable(long=False) is None
    said = vbench.unavailable(long=True)
    assert said == (
        "VBench-Long imports scenedetect, moviepy<2, dreamsim, which vbench does not install "
        "(pip install scenedetect 'moviepy<2' dreamsim)"
    )
    with pytest.raises(VideoliftError, match="VBench-Long imports"):
        run_vbench(tmp_path / "videos", tmp_path / "res", ["motion_smoothness"], long=True)
    # moviepy 2 has no moviepy.editor
    for name in ("scenedetect/__init__.py", "moviepy/__init__.py", "dreamsim/__init__.py"):
        (tmp_path / "site" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "site" / name).write_text("")
    assert "imports moviepy<2," in vbench.unavailable(long=True)
    # Another environment: refused before VBench runs, naming its pip
    python = fake_environment(tmp_path / "env", long_modules=False)
    env = vbench.probe(python)
    assert vbench.unavailable(env=env) is None
    assert vbench.unavailable(long=True, env=env).startswith(
        f"--vbench-python {python}: VBench-Long imports scenedetect, moviepy<2, dreamsim"
    )
    assert f"({python} -m pip install scenedetect" in vbench.unavailable(long=True, env=env)
    with pytest.raises(VideoliftError, match="VBench-Long imports"):
        run_vbench(tmp_path / "videos", tmp_path / "res", ["motion_smoothness"], long=True, env=env)
    assert not vbench_calls(tmp_path / "env")


EDGE_PROMPTS = [
    "a cat/sits on a mat",  # a path separator
    "a cat sits on a mat",  # the same file name as the one above
    "a dog runs",
    "a dog runs",  # a duplicate
    "play a.mp4 file",  # VBench-Long cuts a clip folder's name at ".mp4"
    "play a.mp4 file again",
    "一只熊猫在竹林里吃竹子，阳光透过树叶洒下斑驳的光影，" * 4,  # 312 bytes of UTF-8
    "un café très élégant — «naïve» façade",
]


@pytest.mark.parametrize("frames", [9, 49], ids=["vbench", "vbench-long"])
def test_vbench_scores_every_video_of_awkward_prompts_as_its_scripts_expect_them(tmp_path, frames):
    env = vbench.probe(fake_environment(tmp_path / "env"))
    _manifest(tmp_path, EDGE_PROMPTS, frames=frames)
    files = export_for_vbench(tmp_path / "manifest.jsonl", tmp_path, tmp_path / "vb" / "videos")
    assert len({f.name for f in files}) == len(EDGE_PROMPTS)
    long = is_long(tmp_path / "manifest.jsonl")
    assert long == (frames == 49)
    scores = run_vbench(
        tmp_path / "vb" / "videos",
        tmp_path / "res",
        ["motion_smoothness", "dynamic_degree"],
        long=long,
        env=env,
    )
    assert scores == {"motion_smoothness": 0.5, "dynamic_degree": 0.6}
    (results,) = (tmp_path / "res").glob("results_*_eval_results.json")
    per_video = json.loads(results.read_text())["motion_smoothness"][-1]
    assert len(per_video) == len(EDGE_PROMPTS)  # each video scored as one (VBench-Long: one clip folder each)


def test_the_prompt_file_reads_the_same_whatever_vbenchs_locale(tmp_path, monkeypatch):
    # VBench opens --prompt_file in the locale's encoding: non-ASCII file names must still match its keys
    env = vbench.probe(fake_environment(tmp_path / "env"))
    _manifest(tmp_path, ["un café très élégant", "一只熊猫"], frames=9)
    export_for_vbench(tmp_path / "manifest.jsonl", tmp_path, tmp_path / "vb" / "videos")
    assert (tmp_path / "vb" / PROMPT_FILE).read_bytes().isascii()
    monkeypatch.setenv("FAKE_VBENCH_ENCODING", "latin-1")
    scores = run_vbench(tmp_path / "vb" / "videos", tmp_path / "res", ["motion_smoothness"], env=env)
    assert scores == {"motion_smoothness": 0.5}


def test_a_vbench_failure_on_a_later_model_keeps_the_earlier_ones_scores(tmp_path, monkeypatch):
    """scores.json was written once every model had been scored: a failure on the second model left the
    first's scores unwritten (and an earlier run's scores.json in place), the error naming a folder only."""
    from videolift.evaluate.cli import _vbench

    names = ["first", "second", "third"]
    for name in names:
        (tmp_path / name).mkdir()
        _manifest(tmp_path / name, [f"a {name} clip"], frames=9)
    env = vbench.probe(fake_environment(tmp_path / "env"))
    scores = tmp_path / "vbench" / "scores.json"
    scores.parent.mkdir()
    scores.write_text('{"earlier": {"motion_smoothness": 0.1}}')  # an earlier run's, of other videos
    monkeypatch.setenv("FAKE_VBENCH_FAIL", f"{os.sep}second{os.sep}")
    with pytest.raises(VideoliftError) as raised:
        _vbench({"models": names}, tmp_path, ["motion_smoothness"], env)
    said = str(raised.value)
    assert said.startswith("VBench, model second: VBench failed on ") and "exit status 1" in said
    assert f"the scores of first are in {scores}" in said and said.endswith("; not run on third")
    assert json.loads(scores.read_text()) == {"first": {"motion_smoothness": 0.5}}
    assert len(vbench_calls(tmp_path / "env")) == 2
    # Failing on the first model: no scores, and none of the earlier run's left to be taken for this one's
    monkeypatch.setenv("FAKE_VBENCH_FAIL", f"{os.sep}first{os.sep}")
    with pytest.raises(VideoliftError, match=r"^VBench, model first: .*; not run on second, third$"):
        _vbench({"models": names}, tmp_path, ["motion_smoothness"], env)
    assert not scores.exists()
