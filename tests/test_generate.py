"""The generation stage in-process on a tiny CogVideoX: manifest, resume, crash states, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.errors import UsageError, VideoliftError
from videolift.core.jsonl import iter_json_lines
from videolift.core.memory import clips_per_call
from videolift.core.video import read_video
from videolift.data.generate import derive_seed, work_items

REQUIRED = {
    "video", "video_id", "prompt", "prompt_index", "candidate", "seed", "model", "lora", "base_seed", "dtype",
    "steps", "guidance", "dynamic_cfg", "frames", "height", "width", "fps", "max_sequence_length", "negative_prompt",
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox

    path = tmp_path_factory.mktemp("tiny_cogvideox")
    build_tiny_cogvideox(path)
    return path


@pytest.fixture
def prompts_txt(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle moves left\n\na dog running on the beach\na panda dancing in a bubble\n")
    return path


def invoke(*args: str):
    """Run ``videolift ...`` in-process; user errors surface as result.exception (the CLI exits 1 on them, 2
    on a UsageError)."""
    return CliRunner().invoke(app, [str(a) for a in args], standalone_mode=False)


def gen(model, prompts, out, *extra):
    return invoke(
        "generate",
        "--model",
        model,
        "--prompts",
        prompts,
        "--out",
        out,
        "--steps",
        "4",
        "--no-progress",
        *extra,
    )


def manifest(out):
    return [record for _, record in iter_json_lines(out / "manifest.jsonl")]


def test_seeds_are_deterministic_distinct_and_depend_on_base_seed():
    items = work_items(50, 4, base_seed=7)
    assert [(i.prompt_index, i.candidate) for i in items[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert len({i.seed for i in items}) == 200
    assert items[5].seed == derive_seed(7, 1, 1) == work_items(50, 4, base_seed=7)[5].seed
    assert derive_seed(8, 1, 1) != derive_seed(7, 1, 1)
    assert all(0 <= i.seed < 2**32 for i in items)


def test_generate_manifest_videos_and_resume(tiny_pipeline, prompts_txt, tmp_path):
    out = tmp_path / "out"
    result = gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2", "--batch-size", "4")
    assert result.exception is None, result.output
    assert "%|" not in result.stderr  # --no-progress: not even diffusers' "Loading pipeline components"
    records = manifest(out)
    assert [(r["prompt_index"], r["candidate"]) for r in records] == [
        (i, k) for i in range(3) for k in range(2)
    ]
    for r in records:
        assert r.keys() >= REQUIRED
        assert r["seed"] == derive_seed(0, r["prompt_index"], r["candidate"])
        assert r["video"] == f"videos/{r['prompt_index']:05d}_{r['candidate']:02d}.mp4"
        # sizes default to the pipeline's own (the tiny model samples 9x64x64)
        assert (r["frames"], r["height"], r["width"], r["steps"]) == (9, 64, 64, 4)
        assert read_video(out / r["video"]).shape == (9, 64, 64, 3)
    assert records[2]["prompt"] == "a dog running on the beach"
    assert records[0]["model"] == str(tiny_pipeline.resolve())
    # docs/generate.md's manifest line has every field a line has (`categories` came from its prompt file)
    from test_docs_examples import example

    assert set(records[0]) == set(example("generate.md", "Output")) - {"categories"}
    assert len({r["seed"] for r in records}) == 6
    assert not np.array_equal(read_video(out / records[0]["video"]), read_video(out / records[1]["video"]))
    assert "6 videos" in result.output and "6 generated here" in result.output

    # Rerunning the same command skips every finished video and rewrites the same manifest.
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()}
    result = gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2", "--batch-size", "4")
    assert result.exception is None, result.output
    assert "0 generated here, 6 already done" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()} == mtimes
    assert manifest(out) == records

    # More candidates per prompt: only the new ones are generated; the old ones keep their seeds.
    result = gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "3", "--batch-size", "4")
    assert "3 generated here, 6 already done" in result.output
    grown = manifest(out)
    assert len(grown) == 9 and [r for r in grown if r["candidate"] < 2] == records


def test_a_resumed_run_killed_before_its_merge_leaves_no_earlier_manifest(
    tiny_pipeline, prompts_txt, tmp_path, monkeypatch
):
    """An earlier manifest lists fewer videos than the resumed run: left in place by a run killed midway,
    `critic score OUT/manifest.jsonl` would read it as this run's result."""
    from videolift.data import generate

    out = tmp_path / "out"
    assert gen(tiny_pipeline, prompts_txt, out).exception is None
    assert len(manifest(out)) == 3
    killed = RuntimeError("killed")
    monkeypatch.setattr(generate, "_merged_manifest", lambda *a: (_ for _ in ()).throw(killed))
    # killed after its videos, before the merge
    assert gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2").exception is killed
    assert not (out / "manifest.jsonl").exists()
    monkeypatch.undo()
    result = gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2")
    assert "0 generated here, 6 already done" in result.output
    assert len(manifest(out)) == 6
    # Nothing to make: the manifest is rewritten, never missing meanwhile
    monkeypatch.setattr(generate, "_merged_manifest", lambda *a: (_ for _ in ()).throw(killed))
    assert gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2").exception is killed
    assert len(manifest(out)) == 6


def test_jsonl_fields_are_carried_and_videos_regenerate_exactly(tiny_pipeline, tmp_path):
    prompts = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "a dog running", "categories": {"place": "real"}, "seed": "ignored"},
        {"prompt": "an owl sleeping", "categories": {"place": "imagined"}},
        {  # a toy corpus's line: its account of its own video is not carried onto the new one
            "prompt": "a red circle moves left in a sand desert",
            "split": "train",
            "shown": "a blue circle",
            "caption": "a blue circle moves left",
            "defects": [{"kind": "colour"}],
            "truth": {"semantic_consistency": "Bad"},
        },
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    result = gen(tiny_pipeline, prompts, out, "--lossless", "--guidance", "3.5", "--seed", "11")
    assert result.exception is None, result.output
    records = manifest(out)
    assert [r.get("categories") for r in records] == [{"place": "real"}, {"place": "imagined"}, None]
    assert records[2]["split"] == "train" and not records[2].keys() & {"truth", "defects", "shown", "caption"}
    assert records[0]["seed"] == derive_seed(11, 0, 0)  # our fields win over the prompt file's
    assert (records[0]["guidance"], records[0]["lossless"]) == (3.5, True)

    # The manifest line alone is enough to regenerate the video.
    from videolift.models.base import SamplerSettings
    from videolift.models.families import get_spec

    r = records[1]
    spec = get_spec("cogvideox")
    pipe = spec.load(r["model"], dtype=r["dtype"])
    settings = SamplerSettings(**{k: r[k] for k in SamplerSettings.__dataclass_fields__})
    again = spec.generate(pipe, [r["prompt"]], [r["seed"]], settings)[0].astype(int)
    stored = read_video(out / r["video"]).astype(int)
    other = spec.generate(pipe, [r["prompt"]], [r["seed"] + 1], settings)[0].astype(int)
    assert np.abs(again - stored).max() <= 3  # yuv444p crf 0: only RGB<->YUV rounding
    assert np.abs(other - stored).mean() > 5 * np.abs(again - stored).mean() + 1


def test_the_documented_plain_diffusers_snippet_regenerates_a_video_exactly(
    tiny_pipeline, prompts_txt, tmp_path
):
    """docs/generate.md's snippet, run as written on a manifest line: the frames videolift made (its CPU
    generator, its rounding to uint8)."""
    import re
    from pathlib import Path

    from videolift.models.base import SamplerSettings
    from videolift.models.families import get_spec

    out = tmp_path / "out"
    assert gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2", "--lossless").exception is None
    doc = (Path(__file__).parents[1] / "docs" / "generate.md").read_text()
    [snippet] = re.findall(r"```python\n(.*?)```", doc.split("**Regenerating**")[1], re.S)[:1]
    scope: dict = {}
    exec(snippet.replace('"OUT/manifest.jsonl"', repr(str(out / "manifest.jsonl"))), scope)
    line = scope["line"]
    assert (line["prompt_index"], line["candidate"]) == (2, 1)  # the snippet's [5]
    spec = get_spec("cogvideox")
    pipe = spec.load(line["model"], dtype=line["dtype"])
    settings = SamplerSettings(**{k: line[k] for k in SamplerSettings.__dataclass_fields__})
    assert np.array_equal(scope["video"], spec.generate(pipe, [line["prompt"]], [line["seed"]], settings)[0])
    assert np.abs(scope["video"].astype(int) - read_video(out / line["video"])).max() <= 2  # lossless


def test_resume_repairs_every_crash_state(tiny_pipeline, prompts_txt, tmp_path):
    out = tmp_path / "out"
    assert gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2").exception is None
    first = manifest(out)
    log = out / ".parts" / "rank0.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    # Killed between rename and log: the last video exists (here: with other content) but has no line.
    (out / first[-1]["video"]).write_bytes(b"not what the log would vouch for")
    # Killed mid-append: a torn last line. Killed mid-write: a temp file next to the videos.
    log.write_text("".join(lines[:-1]) + lines[-1][:25])
    (out / "videos" / ".00002_01.partial.mp4").write_bytes(b"\x00" * 100)
    # A logged video deleted by hand is generated again too.
    (out / first[0]["video"]).unlink()

    result = gen(tiny_pipeline, prompts_txt, out, "--per-prompt", "2")
    assert result.exception is None, result.output
    assert "2 generated here, 4 already done" in result.output
    assert manifest(out) == first
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(r["video"][7:] for r in first)
    for r in first:
        assert read_video(out / r["video"]).shape == (9, 64, 64, 3)
    logged = [rec for _, rec in iter_json_lines(log)]  # no torn line left behind
    assert sorted((r["prompt_index"], r["candidate"]) for r in logged) == sorted(
        [(r["prompt_index"], r["candidate"]) for r in first] + [(0, 0)]
    )


def test_a_resumed_run_makes_every_video_in_the_batch_an_uninterrupted_run_makes_it_in(
    tiny_pipeline, prompts_txt, tmp_path, monkeypatch
):
    """Float batching changes a video's pixels with its batch companions (on a CPU: one sample or several),
    and a lossy encode magnifies a level into many: a resumed run must batch as an uninterrupted one did."""
    from videolift.data import generate
    from videolift.models.base import DiffusersT2VSpec

    calls: list[frozenset[int]] = []
    real_generate = DiffusersT2VSpec.generate

    def recorded(self, pipe, prompts, seeds, settings):
        calls.append(frozenset(seeds))
        return real_generate(self, pipe, prompts, seeds, settings)

    monkeypatch.setattr(DiffusersT2VSpec, "generate", recorded)
    args = ("--per-prompt", "2", "--batch-size", "3")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert gen(tiny_pipeline, prompts_txt, whole, *args).exception is None
    batch_of = {seed: call for call in calls for seed in call}

    # Killed after its 5th video was logged (of 6), then rerun.
    real_append, appended = generate.append_jsonl, []
    killed = RuntimeError("killed")

    def append_then_die(path, record):
        if len(appended) == 5:
            raise killed
        real_append(path, record)
        appended.append(record)

    monkeypatch.setattr(generate, "append_jsonl", append_then_die)
    assert gen(tiny_pipeline, prompts_txt, resumed, *args).exception is killed
    monkeypatch.setattr(generate, "append_jsonl", real_append)
    calls.clear()
    result = gen(tiny_pipeline, prompts_txt, resumed, *args)
    assert "1 generated here, 5 already done" in result.output
    assert all(batch_of[seed] == call for call in calls for seed in call)  # its companions of then
    records = manifest(whole)
    assert manifest(resumed) == records
    for r in records:  # so the same bytes
        assert (whole / r["video"]).read_bytes() == (resumed / r["video"]).read_bytes(), r["video"]


def test_other_settings_or_prompts_are_refused_unless_overwrite(tiny_pipeline, prompts_txt, tmp_path):
    out = tmp_path / "out"
    assert gen(tiny_pipeline, prompts_txt, out).exception is None
    result = gen(tiny_pipeline, prompts_txt, out, "--guidance", "2")
    assert isinstance(result.exception, VideoliftError)
    assert "guidance was 6.0, now 2.0" in str(result.exception) and "--overwrite" in str(result.exception)

    changed = tmp_path / "changed.txt"
    changed.write_text("a red circle moves left\na cat running\na panda dancing in a bubble\n")
    result = gen(tiny_pipeline, changed, out)
    assert isinstance(result.exception, VideoliftError)
    assert "prompt 1 (line 2) was 'a dog running on the beach' in the earlier run" in str(result.exception)

    # A log damaged mid-file (a power loss) is named, and does not stand in the way of --overwrite.
    (log,) = (out / ".parts").glob("rank*.jsonl")
    log.write_text(log.read_text().replace("\n", "\n\x00\x00\n", 1))
    assert "rank0.jsonl, line 2: malformed JSON" in str(gen(tiny_pipeline, prompts_txt, out).exception)
    result = gen(tiny_pipeline, changed, out, "--guidance", "2", "--overwrite")
    assert result.exception is None, result.output
    assert "3 generated here, 0 already done" in result.output
    assert [r["guidance"] for r in manifest(out)] == [2.0] * 3
    assert json.loads((out / "generation.json").read_text())["guidance"] == 2.0
    assert len(list((out / "videos").iterdir())) == 3
    # --overwrite on a matching run resumes rather than starting over
    assert "0 generated here" in gen(tiny_pipeline, changed, out, "--guidance", "2", "--overwrite").output


def test_model_retrained_in_place_is_not_resumed(tiny_pipeline, prompts_txt, tmp_path):
    """Same path, new weights (an aligned model retrained): its old videos must not count as done."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_pipeline, model)
    out = tmp_path / "out"
    assert gen(model, prompts_txt, out).exception is None
    weights = next((model / "transformer").glob("*.safetensors"))
    stat = weights.stat()  # rewritten weights: a new modification time (or size)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    result = gen(model, prompts_txt, out)
    assert isinstance(result.exception, VideoliftError) and "model_files was" in str(result.exception)
    result = gen(model, prompts_txt, out, "--overwrite")
    assert result.exception is None, result.output
    assert "3 generated here, 0 already done" in result.output
    # A run recorded before the fingerprint existed still resumes.
    config = json.loads((out / "generation.json").read_text())
    del config["model_files"]
    (out / "generation.json").write_text(json.dumps(config))
    assert "0 generated here, 3 already done" in gen(model, prompts_txt, out).output


@pytest.mark.parametrize(
    ("args", "message", "usage"),
    [  # usage errors (exit status 2) when the command line alone is wrong, not only for this model
        (["--frames", "10"], "--frames 10: CogVideoX needs frames = 4k+1", False),
        (["--height", "60"], "--height 60: must be a positive multiple of 16", False),
        (["--per-prompt", "0"], "--per-prompt 0: must be at least 1", True),
        (["--dtype", "int8"], "unknown dtype 'int8'", True),
        (["--guidance", "nan"], "--guidance nan: must be a finite number, at least 0", True),
        (["--guidance", "-2"], "--guidance -2.0: must be a finite number, at least 0", True),
    ],
)
def test_impossible_settings_name_the_option(tiny_pipeline, prompts_txt, tmp_path, args, message, usage):
    result = gen(tiny_pipeline, prompts_txt, tmp_path / "out", *args)
    assert isinstance(result.exception, VideoliftError)
    assert isinstance(result.exception, UsageError) == usage
    assert message in str(result.exception)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


@pytest.mark.parametrize("args", [["--width", "0"], ["--frames", "0"], ["--height", "-16"]])
def test_a_size_below_1_is_a_wrong_command_line_before_the_model_loads(prompts_txt, tmp_path, args):
    """No model is needed to know it (the missing one here is never looked for)."""
    line = ["generate", "--model", str(tmp_path / "no-model"), "--prompts", str(prompts_txt), *args]
    result = CliRunner().invoke(app, [*line, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"Invalid value for '{args[0]}'" in result.output
    assert not (tmp_path / "out").exists()


def test_impossible_sizes_are_named_when_batches_follow_the_clip_size(tiny_pipeline, prompts_txt, tmp_path):
    # As `eval` generates (batch_size None: sized by the clip), --frames 0 used to divide by zero.
    from videolift.data.generate import generate_videos

    with pytest.raises(VideoliftError, match="--frames 0"):
        generate_videos(
            str(tiny_pipeline), prompts_txt, tmp_path / "out", frames=0, batch_size=None, progress=False
        )
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_a_sampler_guidance_that_is_not_a_finite_scale_is_refused_by_sampler_settings():
    """The align samples build SamplerSettings too: none samples NaN into a manifest."""
    from videolift.models.base import SamplerSettings

    for guidance in (float("nan"), float("inf"), -0.5):
        with pytest.raises(UsageError, match="--guidance"):
            SamplerSettings(guidance=guidance)
    assert SamplerSettings(guidance=0.0).guidance == 0.0


def test_tiles_that_do_not_fit_the_frames_are_refused_before_a_video_is_written(tiny_pipeline, tmp_path):
    """diffusers sizes CogVideoX's decoding tiles by the VAE's config; on the tiny VAE they decode 64x64
    frames to 70x68, which used to be written as the video without a word."""
    (tmp_path / "p.txt").write_text("a red circle moves left\n")
    args = ("--frames", "9", "--height", "64", "--width", "64", "--limit", "1")
    result = gen(tiny_pipeline, tmp_path / "p.txt", tmp_path / "out", *args, "--vae-tiling")
    assert isinstance(result.exception, VideoliftError)
    assert "made 70x68 frames, not 64x64 with --vae-tiling" in str(result.exception)
    assert not list((tmp_path / "out").rglob("*.mp4")) and not (tmp_path / "out/manifest.jsonl").exists()
    # The corrected command, into the same OUT, runs: the refused run left no video to keep.
    assert gen(tiny_pipeline, tmp_path / "p.txt", tmp_path / "out", *args).exception is None  # untiled


def test_bad_inputs_are_named(tiny_pipeline, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a dog"}\n{"prompt": "a cat"\n')
    good = tmp_path / "good.txt"
    good.write_text("a dog\n")
    cases = [
        (tiny_pipeline, empty, "empty.txt: no prompts"),
        (tiny_pipeline, bad, "bad.jsonl, line 2: malformed JSON"),
        (tmp_path / "no_model", good, "no_model: no such directory, and not a Hub id"),
        (tmp_path, good, "not a diffusers pipeline directory"),
        # An align run's directory instead of the model inside it: the error says where that is.
        (tmp_path / "full_run", good, f"it is an align run: its model is {tmp_path / 'full_run/pipeline'}"),
        (tmp_path / "lora_run", good, f"generate: --model base_dir --lora {tmp_path / 'lora_run/lora'}"),
    ]
    (tmp_path / "full_run/pipeline").mkdir(parents=True)
    (tmp_path / "full_run/pipeline/model_index.json").write_text("{}")
    (tmp_path / "lora_run/lora").mkdir(parents=True)
    (tmp_path / "lora_run/align_config.json").write_text('{"model": "base_dir"}')
    for model, prompts, message in cases:
        result = gen(model, prompts, tmp_path / "out")
        assert isinstance(result.exception, VideoliftError), result.output
        assert message in str(result.exception)
    result = gen(tiny_pipeline, good, tmp_path / "out", "--lora", tmp_path / "no_lora")
    assert "--lora" in str(result.exception) and "not found" in str(result.exception)
    # A directory diffusers cannot load a LoRA from (an align run's OUT, whose LoRA is OUT/lora): named,
    # not an OSError traceback from diffusers.
    (tmp_path / "lora_run/lora/pytorch_lora_weights.safetensors").write_bytes(b"")
    result = gen(tiny_pipeline, good, tmp_path / "out", "--lora", tmp_path / "lora_run")
    assert isinstance(result.exception, VideoliftError), result.output
    assert (
        f"not a LoRA directory (no .safetensors or .bin weights in it); it is an align run: its LoRA is {tmp_path / 'lora_run/lora'}"
        in str(result.exception)
    )
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
    from videolift.models.base import check_lora_dir

    (tmp_path / "other_name").mkdir()
    (tmp_path / "other_name/my_style.safetensors").write_bytes(b"")
    check_lora_dir(tmp_path / "other_name")  # diffusers loads a directory's one .safetensors file too
    check_lora_dir(tmp_path / "other_name/my_style.safetensors")  # and a weights file itself


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_holding_another_tools_corpus_is_refused_and_left_alone(tiny_pipeline, tmp_path):
    """A toy corpus (manifest with ground truth + videos) must not be replaced by generate's manifest."""
    corpus = tmp_path / "corpus"
    made = CliRunner().invoke(app, ["toy", "corpus", "--n", "4", "--out", str(corpus), "--no-progress"])
    assert made.exit_code == 0, made.output
    before = snapshot(corpus)
    assert len(before) == 6  # manifest.jsonl + 4 videos + the corpus run's .lock
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog running\n")
    args = ["generate", "--model", str(tiny_pipeline), "--prompts", str(prompts), "--out", str(corpus)]
    for extra in ([], ["--overwrite"]):  # --overwrite deletes a generate run's files only
        result = CliRunner().invoke(app, [*args, "--steps", "1", "--limit", "1", "--no-progress", *extra])
        assert result.exit_code == 1 and "Traceback" not in result.output
        message = " ".join(result.output.split())
        assert f"{corpus / 'manifest.jsonl'} was not written by `videolift generate`" in message
        assert "Use another --out" in message
        assert snapshot(corpus) == before  # byte-identical, nothing added
    # Foreign videos alone (no manifest) are refused too.
    (corpus / "manifest.jsonl").unlink()
    result = CliRunner().invoke(app, [*args, "--steps", "1", "--no-progress"])
    assert result.exit_code == 1 and f"{corpus / 'videos'} was not written" in " ".join(result.output.split())
    assert sorted(p.name for p in corpus.iterdir()) == [".lock", "videos"]  # the corpus run's


@pytest.mark.parametrize("limit", ["0", "-2"])
def test_limit_below_one_is_refused(tiny_pipeline, prompts_txt, tmp_path, limit):
    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_pipeline), "--prompts", str(prompts_txt), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--limit", limit, "--steps", "1", "--no-progress"])
    assert result.exit_code == 2 and "--limit" in result.output and "Traceback" not in result.output
    assert not out.exists()
    with pytest.raises(VideoliftError, match="--limit 0: must be at least 1"):  # the library call too
        from videolift.data.generate import generate_videos

        generate_videos(str(tiny_pipeline), prompts_txt, out, limit=0)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("prompts.csv", b'prompt,id\na red circle,1\n"two, blue squares,2\na cat,3\n', "prompts.csv, line 3: unterminated quote"),
        ("latin.txt", "a dog\ncafé terrace\n".encode("latin-1"), "latin.txt, line 2: not UTF-8 text"),
    ],
)  # fmt: skip
def test_broken_prompt_files_are_refused_before_any_output(tiny_pipeline, tmp_path, name, content, message):
    prompts = tmp_path / name
    prompts.write_bytes(content)
    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_pipeline), "--prompts", str(prompts), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--steps", "1", "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs the offline hub to fail fast")
def test_unknown_hub_model_is_a_clear_error(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a dog\n")
    result = gen("no-such-org/no-such-model", good, tmp_path / "out")
    assert isinstance(result.exception, VideoliftError)
    message = str(result.exception)
    assert "cannot read the model index of 'no-such-org/no-such-model'" in message
    # Offline, the library's "no file named model_index.json" is not the reason, nor --family the fix.
    assert "HF_HUB_OFFLINE is set" in message and "`hf download no-such-org/no-such-model`" in message
    assert "model_index.json" not in message and "--family" not in message
    result = gen("no-such-org/no-such-model", good, tmp_path / "out", "--family", "cogvideox")
    message = str(result.exception)
    assert "cannot load CogVideoXPipeline 'no-such-org/no-such-model'" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert not (tmp_path / "out").exists()


def test_hub_failure_online_gives_the_librarys_first_line(monkeypatch):
    from huggingface_hub import constants

    from videolift.core.hub import hub_failure

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert hub_failure("org/m", OSError("org/m is not a valid model\nmore")) == "org/m is not a valid model"
    assert hub_failure("org/m", OSError()) == "OSError"


def test_hub_failure_offline_keeps_a_local_models_own_reason(monkeypatch, tmp_path):
    """A local directory that fails to load (a weight file missing) is not blamed on HF_HUB_OFFLINE."""
    from huggingface_hub import constants

    from videolift.core.hub import hub_failure

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    missing = OSError("no file named diffusion_pytorch_model.bin found in directory x/transformer.")
    assert hub_failure(str(tmp_path), missing) == str(missing)
    assert "HF_HUB_OFFLINE is set" in hub_failure("org/m", missing)


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online"])
@pytest.mark.parametrize("model", ["./models/mine", "/data/models/mine", "~/mine", "runs/a/pipeline"])
def test_hub_failure_says_a_missing_path_is_missing_not_to_download(monkeypatch, model, offline):
    """A mistyped local path is not a Hub id: offline it was told to run `hf download ./models/mine`, online
    it got huggingface_hub's "Repo id must be in the form 'repo_name' or 'namespace/repo_name'"."""
    from huggingface_hub import constants

    from videolift.core.hub import hub_failure

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    error = ValueError(f"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{model}'.")
    assert hub_failure(model, error) == f"no such directory {model}, and not a Hub id like owner/name"


def test_an_align_model_path_that_does_not_exist_is_not_sent_to_the_hub(tmp_path):
    """``align --model ./typo`` (and eval's, critic's, --clip's): no such directory, before any output."""
    from align_world import make_world

    world, out = make_world(tmp_path, size=32), tmp_path / "out"
    args = ["align", "--model", "./typo/pipeline", "--scores", str(world / "scores.jsonl"), "--videos"]
    result = CliRunner().invoke(app, [*args, str(world), "--out", str(out), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no such directory ./typo/pipeline, and not a Hub id" in " ".join(result.output.split())
    assert "hf download" not in result.output and not out.exists()


def test_a_device_torch_cannot_use_is_refused_before_anything_is_written(
    tiny_pipeline, prompts_txt, tmp_path
):
    import torch

    unusable = ["gpu"] + ([] if torch.cuda.is_available() else ["cuda"])  # "cuda" ran on the CPU, unnoticed
    for device in unusable:
        result = gen(tiny_pipeline, prompts_txt, tmp_path / "out", "--device", device)
        assert isinstance(result.exception, VideoliftError) and f"--device {device}: " in str(
            result.exception
        )
        assert not (tmp_path / "out").exists()


def test_lora_is_loaded_on_top_and_recorded(tiny_pipeline, prompts_txt, tmp_path):
    from diffusers import CogVideoXPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = CogVideoXPipeline.from_pretrained(tiny_pipeline)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    pipe.transformer.add_adapter(lora)  # random B: the adapter really changes the output
    CogVideoXPipeline.save_lora_weights(
        tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(pipe.transformer)
    )

    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert gen(tiny_pipeline, prompts_txt, base, "--limit", "1").exception is None
    result = gen(tiny_pipeline, prompts_txt, tuned, "--limit", "1", "--lora", tmp_path / "lora")
    assert result.exception is None, result.output
    [record] = manifest(tuned)
    assert record["lora"] == str((tmp_path / "lora").resolve())
    assert record["seed"] == manifest(base)[0]["seed"]
    difference = np.abs(read_video(base / record["video"]).astype(int) - read_video(tuned / record["video"]))
    assert difference.mean() > 1


def test_library_bars_switch_off_inside_the_block_and_restore_afterwards():
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from videolift.core.progress import library_bars

    libraries = (diffusers_logging, transformers_logging)
    for m in libraries:  # whatever the environment (HF_HUB_DISABLE_PROGRESS_BARS) set
        m.enable_progress_bar()
    with library_bars(False):
        assert not any(m.is_progress_bar_enabled() for m in libraries)
    assert all(m.is_progress_bar_enabled() for m in libraries)
    transformers_logging.disable_progress_bar()  # a caller's own choice survives the block
    try:
        with library_bars(True):
            assert transformers_logging.is_progress_bar_enabled()
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()


def test_batch_size_unset_is_chosen_by_clip_size(tiny_pipeline, prompts_txt, tmp_path, monkeypatch):
    """`eval` leaves it unset: 4 clips of 9x64x64 per call, and one per call at real sizes."""
    from videolift.data.generate import generate_videos
    from videolift.models.cogvideox import CogVideoXSpec

    calls = []
    sample = CogVideoXSpec.generate
    monkeypatch.setattr(
        CogVideoXSpec,
        "generate",
        lambda self, pipe, texts, *a: calls.append(len(texts)) or sample(self, pipe, texts, *a),
    )
    five = tmp_path / "five.txt"
    five.write_text("".join(f"a dog running number {i}\n" for i in range(5)))
    generate_videos(
        tiny_pipeline, five, tmp_path / "a", per_prompt=2, steps=1, batch_size=None, progress=False
    )
    assert calls == [4, 4, 2]  # prompts 0-1's candidates, 2-3's, then 4's (`batches`)
    assert clips_per_call(49, 480, 720, cap=4) == 1 and clips_per_call(9, 48, 48, cap=4) == 4
    # The rule is what sizes the calls: asked of the run's clip size, its answer is the batch.
    asked = []
    monkeypatch.setattr(
        "videolift.data.generate.clips_per_call", lambda *size, cap: asked.append((*size, cap)) or 1
    )
    calls.clear()
    generate_videos(
        tiny_pipeline, prompts_txt, tmp_path / "b", per_prompt=2, steps=1, batch_size=None, progress=False
    )
    assert asked == [(9, 64, 64, 4)] and set(calls) == {1}


def test_a_family_the_model_was_not_saved_with_is_refused(tiny_pipeline, prompts_txt, tmp_path):
    # `--family wan` on a CogVideoX directory failed deep in diffusers with an AttributeError.
    result = gen(tiny_pipeline, prompts_txt, tmp_path / "out", "--family", "wan")
    assert isinstance(result.exception, VideoliftError), result.output
    assert "is a CogVideoXPipeline, not a WanPipeline: --family wan does not fit it" in str(result.exception)
    assert not (tmp_path / "out").exists()

    # A class no family knows (a subclass saved under its own name, say): --family says how to load it.
    import shutil

    from videolift.models.families import spec_for

    other = tmp_path / "other"
    shutil.copytree(tiny_pipeline, other)
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps(index | {"_class_name": "MyCogVideoXPipeline"}))
    assert spec_for(str(other), "cogvideox").pipeline_class == "CogVideoXPipeline"


def test_generate_and_eval_share_their_sampling_options(tmp_path, prompts_txt):
    """Written out twice, they had drifted: eval refused `--steps 0` and generate did not, `--lossy` was
    eval's only, and their help differed."""
    import typer.main

    commands = typer.main.get_command(app).commands
    shared = ("steps", "guidance", "dynamic_cfg", "frames", "height", "width", "fps", "negative_prompt")
    for name in (*shared, "lossless", "vae_tiling", "offload"):
        a, b = (next(p for p in commands[c].params if p.name == name) for c in ("generate", "eval"))
        assert (a.opts, a.secondary_opts, a.help, a.min, a.max, a.default) == (
            b.opts, b.secondary_opts, b.help, b.min, b.max, b.default), name  # fmt: skip
    result = CliRunner().invoke(app, ["generate", "--model", "m", "--prompts", str(prompts_txt),
                                      "--out", str(tmp_path / "o"), "--steps", "0"])  # fmt: skip
    assert result.exit_code == 2 and "--steps" in result.output and not (tmp_path / "o").exists()


def test_offloaded_generation_makes_the_same_videos_and_resumes_across_it(
    tiny_pipeline, prompts_txt, tmp_path, monkeypatch
):
    """--offload model: diffusers' hooks move each component to the device while it runs (here the CPU,
    the only device there is); the videos are the same, so a run resumes whether offloaded or not."""
    from diffusers import DiffusionPipeline

    plain, offloaded = tmp_path / "plain", tmp_path / "offloaded"
    assert gen(tiny_pipeline, prompts_txt, plain, "--lossless").exception is None
    calls = []
    real = DiffusionPipeline.enable_model_cpu_offload

    def spy(self, *args, **kwargs):
        calls.append((str(self.device), kwargs))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload", spy)
    result = gen(tiny_pipeline, prompts_txt, offloaded, "--lossless", "--offload", "model")
    assert result.exception is None, result.output
    # loaded in CPU memory, run on the device (diffusers re-arms its hooks after each call: more calls)
    assert calls[0] == ("cpu", {"device": torch.device("cpu")})
    for record in manifest(plain):
        assert np.array_equal(read_video(plain / record["video"]), read_video(offloaded / record["video"]))
    assert manifest(plain) == manifest(offloaded)
    result = gen(tiny_pipeline, prompts_txt, offloaded, "--lossless")  # the same run, not another
    assert result.exception is None and "0 generated here, 3 already done" in result.output, result.output

    # sequential: diffusers' layer-by-layer hooks (their meta-device weights need an accelerator: the
    # call itself is what is checked here)
    seen = []
    monkeypatch.setattr(
        DiffusionPipeline, "enable_sequential_cpu_offload", lambda self, **kw: seen.append(kw)
    )
    result = gen(tiny_pipeline, prompts_txt, tmp_path / "seq", "--offload", "sequential", "--limit", "1")
    assert result.exception is None and seen == [{"device": torch.device("cpu")}], result.output
    result = gen(tiny_pipeline, prompts_txt, tmp_path / "bad", "--offload", "cpu")
    assert "--offload 'cpu': use none, model, sequential" in str(result.exception)
    assert not (tmp_path / "bad").exists()


def test_auto_dtype_is_bfloat16_on_a_gpu_only_where_the_gpu_has_it(monkeypatch):
    """As the critic's `auto_dtype`: a GPU without bfloat16 generates in float32."""
    from types import SimpleNamespace

    import torch

    from videolift.data.generate_model import device_and_dtype

    state = SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_and_dtype(state, "auto", "auto") == (torch.device("cuda", 0), "bfloat16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_and_dtype(state, "auto", "auto")[1] == "float32"
    assert device_and_dtype(state, "cpu", "auto") == (torch.device("cpu"), "float32")
    assert device_and_dtype(state, "auto", "float16")[1] == "float16"


def test_auto_dtype_on_a_gpu_is_the_models_own_recommendation(
    tiny_pipeline, prompts_txt, tmp_path, monkeypatch
):
    """diffusers' CogVideoX docs (and THUDM's cards): CogVideoX-2B in float16, 5B and 1.5 in bfloat16.
    `--dtype auto` gave every model bfloat16 on a GPU, CogVideoX-2B included (the LiFT paper's model)."""
    from types import SimpleNamespace

    import videolift.data.generate as generate_module
    from videolift.core.jsonl import read_json
    from videolift.data.generate_model import device_and_dtype
    from videolift.models.families import spec_for

    two_b = tmp_path / "cogvideox-2b-like"
    five_b = tmp_path / "cogvideox-5b-like"
    for path, rotary in ((two_b, False), (five_b, True)):
        (path / "transformer").mkdir(parents=True)
        (path / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXPipeline"}))
        config = read_json(tiny_pipeline / "transformer" / "config.json")
        config["use_rotary_positional_embeddings"] = rotary
        (path / "transformer" / "config.json").write_text(json.dumps(config))
    assert spec_for(str(two_b)).gpu_dtype(str(two_b)) == "float16"
    assert spec_for(str(five_b)).gpu_dtype(str(five_b)) is None  # auto_dtype's: bfloat16
    assert spec_for(str(tmp_path / "gone"), "cogvideox").gpu_dtype(str(tmp_path / "gone")) is None

    gpu = SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_and_dtype(gpu, "auto", "auto", lambda: "float16")[1] == "float16"
    assert device_and_dtype(gpu, "auto", "auto", lambda: None)[1] == "bfloat16"
    assert device_and_dtype(gpu, "auto", "bfloat16", lambda: "float16")[1] == "bfloat16"  # given: kept
    assert device_and_dtype(gpu, "cpu", "auto", lambda: "float16")[1] == "float32"  # not on a CPU

    seen = []

    def stop(state, device, dtype, gpu_dtype=None):
        seen.append(gpu_dtype())
        raise RuntimeError("stop")

    monkeypatch.setattr(generate_module, "device_and_dtype", stop)
    with pytest.raises(RuntimeError, match="stop"):
        generate_module.generate_videos(str(two_b), prompts_txt, tmp_path / "out", progress=False)
    assert seen == ["float16"]  # generate asks the model's family


def test_frames_help_gives_each_familys_rule():
    """`--frames` help said 4k+1 only; LTX-Video needs 8k+1 (check_sampling refuses a 4k+1 such as 13)."""
    from videolift.data import sampler_options as opt

    text = opt.Frames.__metadata__[0].help
    assert "4k+1" in text and "8k+1 for LTX-Video" in text
