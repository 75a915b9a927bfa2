import json
import os
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
    monkeypatch.setattr(vbench, "installed", lambda long=False: True)
    monkeypatch.setattr(
        vbench,
        "vbench_command",
        lambda videos, out, dims, long=False: [sys.executable, str(script), str(out)],
    )


def test_run_vbench_reads_the_scores_and_refuses_a_run_that_wrote_none(tmp_path, monkeypatch):
    monkeypatch.setattr(vbench, "installed", lambda long=False: False)
    with pytest.raises(VideoliftError, match="pip install vbench"):
        run_vbench(tmp_path, tmp_path / "out", ["motion_smoothness"])
    monkeypatch.setattr(vbench, "installed", lambda long=False: True)
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


def _fake_packages(tmp_path, monkeypatch, configs: bool) -> None:
    """vbench 0.1.5 as pip installs it: vbench/VBench_full_info.json, and vbench2_beta_long without the
    VBench_full_info.json its eval_long.py defaults to, and without configs/ (``configs``: a repository
    checkout's, which has them)."""
    site = tmp_path / "site"
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
