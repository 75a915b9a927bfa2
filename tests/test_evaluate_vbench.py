import json

import pytest

from videolift.core.errors import VideoliftError
from videolift.evaluate.vbench import export_for_vbench, long_clip_warning, run_vbench, vbench_name


def test_export_uses_vbench_names_and_counts_per_prompt(tmp_path):
    (tmp_path / "videos").mkdir()
    recs = []
    for i, prompt in enumerate(["a dog runs", "a dog runs", "a cat/sits"]):
        (tmp_path / "videos" / f"{i}.mp4").write_bytes(b"x" * (i + 1))
        recs.append({"video": f"videos/{i}.mp4", "prompt": prompt, "frames": 49, "fps": 8})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))
    files = export_for_vbench(manifest, tmp_path, tmp_path / "vb", link=False)
    assert [f.name for f in files] == ["a dog runs-0.mp4", "a dog runs-1.mp4", "a cat sits-0.mp4"]
    assert files[1].read_bytes() == b"xx"
    assert vbench_name("x", 3) == "x-3.mp4"
    assert long_clip_warning(manifest) is not None  # 49 frames at 8 fps = 6.1 s: VBench-Long territory
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({**recs[0], "frames": 9}) + "\n")
    assert long_clip_warning(short) is None


def test_run_vbench_explains_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(VideoliftError, match="pip install vbench"):
        run_vbench(tmp_path, tmp_path / "out", ["motion_smoothness"])
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/vbench")
    with pytest.raises(VideoliftError, match="not human_action"):
        run_vbench(tmp_path, tmp_path / "out", ["human_action"])
