import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from videolift.cli import app

TOY = ("--height", "48", "--width", "48")  # the clip size the oracle rates (the tiny model makes 64x64)
# The base of the tests' stand-in LoRA critics: eval reads its config before the first video
BASE = str(Path(__file__).resolve().parents[1] / "src/videolift/toy/assets/vlm")


def test_eval_rates_every_model_on_the_same_prompts_and_seeds(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves left in a sand desert\ntwo blue squares bounce on a snow field\n")
    out = tmp_path / "eval"
    args = [
        "eval",
        "--model",
        str(tiny_cogvideox_dir),
        "--model",
        str(tiny_cogvideox_dir),
        "--prompts",
        str(prompts),
        "--oracle",
        *TOY,
        "--out",
        str(out),
        "--steps",
        "2",
        "--per-prompt",
        "2",
        "--seed",
        "5",
        "--dynamic-cfg",
        "--lossless",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "%|" not in result.stderr  # no bars: neither ours nor the libraries' loading bars
    data = json.loads((out / "eval.json").read_text())
    names = list(data["models"])
    assert len(names) == 2 and names[0] != names[1]
    seeds = [
        [json.loads(line)["seed"] for line in (out / n / "manifest.jsonl").read_text().splitlines()]
        for n in names
    ]
    assert seeds[0] == seeds[1] and len(seeds[0]) == 4
    lines = [json.loads(x) for n in names for x in (out / n / "manifest.jsonl").read_text().splitlines()]
    assert all(r["dynamic_cfg"] is True and r["lossless"] is True and r["steps"] == 2 for r in lines)
    oracle = data["summary"][names[0]]["oracle"]
    assert oracle["videos"] == 4 and 0.0 <= oracle["all_good_rate"] <= 1.0
    # What the oracle found wrong: per video in its ratings file, tallied per dimension in the summary.
    rated = [json.loads(x) for x in (out / names[0] / "oracle_ratings.jsonl").read_text().splitlines()]
    for dim, kinds in oracle["findings"].items():
        videos_with = [r for r in rated if r["findings"][dim]]
        assert sum(kinds.values()) >= len(videos_with)  # a video may show several kinds
        assert len(videos_with) == sum(r["ratings"][dim]["label"] != "Good" for r in rated)
        for kind, n in kinds.items():
            assert n == sum(kind in r["findings"][dim] for r in rated) > 0
    assert "videos with each fault" in result.output
    # The same model on the same prompts and seeds makes the same videos (up to float noise) ...
    from videolift.core.video import read_video

    for line in (out / names[0] / "manifest.jsonl").read_text().splitlines():
        video = json.loads(line)["video"]
        a, b = read_video(out / names[0] / video), read_video(out / names[1] / video)
        # lossless, so only float noise differs; unrelated seeds differ by tens of levels
        assert abs(a.astype(int) - b.astype(int)).mean() < 1.0
    # ... and the pairwise rates of each dimension add up.
    pair = data["pairwise"][f"{names[1]} vs {names[0]}"]["oracle"]
    assert all(abs(v["win"] + v["tie"] + v["loss"] - 1.0) < 1e-9 for v in pair.values())
    assert "win/tie/loss" in result.output and "Pass --lossless" not in result.output
    # The paired difference covers every pair and prints beside win/tie/loss.
    diff = data["differences"][f"{names[1]} vs {names[0]}"]["oracle"]
    assert diff["all_good_rate"]["pairs"] == 4 and -1.0 <= diff["all_good_rate"]["diff"] <= 1.0
    assert "paired difference ± SE" in result.output


def test_eval_warns_when_the_oracle_judges_lossy_videos(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert "Pass --lossless" in result.output
    (name,) = json.loads((out / "eval.json").read_text())["models"]
    record = json.loads((out / name / "manifest.jsonl").read_text().splitlines()[0])
    assert record["lossless"] is False


def test_eval_loads_its_critic_once_every_model_has_generated(tmp_path, tiny_cogvideox_dir, monkeypatch):
    """A 7B critic on the GPU beside a T2V model that is generating would not fit: the critic is checked
    first and loaded after the last model has generated."""
    import videolift.critic.answers as answers
    import videolift.data.generate as generate
    import videolift.evaluate.compare as compare
    from videolift.critic.spec import CriticSpec

    events: list[str] = []
    made = generate.generate_videos
    monkeypatch.setattr(
        generate, "generate_videos", lambda model, *a, **k: events.append("generate") or made(model, *a, **k)
    )
    monkeypatch.setattr(answers, "load_critic", lambda directory, **k: events.append("load") or "critic")
    labels = {"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Bad"}

    def rated(critic, manifest, *a):
        events.append("score")
        return [labels for _ in manifest.read_text().splitlines()]

    monkeypatch.setattr(compare, "critic_ratings", rated)
    critic = tmp_path / "critic"
    critic.mkdir()
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    args = [
        "eval",
        "--model",
        str(tiny_cogvideox_dir),
        "--model",
        f"b={tiny_cogvideox_dir}",
        "--prompts",
        str(prompts),
    ]
    refused = CliRunner().invoke(
        app, [*args, "--critic", str(critic), "--out", str(tmp_path / "x"), "--steps", "1"]
    )
    assert (
        refused.exit_code == 1 and "critic_spec.json" in refused.output and events == []
    )  # before generating
    CriticSpec(base_model=BASE, model_type="qwen2_vl").save(critic)
    result = CliRunner().invoke(
        app, [*args, "--critic", str(critic), "--out", str(tmp_path / "e"), "--steps", "1"]
    )
    assert result.exit_code == 0, result.output
    assert events == ["generate", "generate", "load", "score", "score"]


def test_eval_passes_its_sampler_device_and_dtypes_on_and_checks_them_first(
    tmp_path, tiny_cogvideox_dir, monkeypatch
):
    """--prompt-field/--limit pick the prompts, --dtype/--family/--device reach every model's generation,
    and the critic loads on --device in --critic-dtype; a bad device or dtype is refused before any video,
    as is a later model's folder generated in another --dtype."""
    import videolift.critic.answers as answers
    import videolift.evaluate.compare as compare
    from videolift.critic.spec import CriticSpec

    loaded: list[dict] = []
    monkeypatch.setattr(answers, "load_critic", lambda directory, **k: loaded.append(k) or "critic")
    monkeypatch.setattr(
        compare, "critic_ratings", lambda c, manifest, *a: [{} for _ in manifest.read_text().splitlines()]
    )
    critic = tmp_path / "critic"
    CriticSpec(base_model=BASE, model_type="qwen2_vl").save(critic)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"text": "a red circle moves left in a sand desert"}\n{"text": "a dog on a beach"}\n')
    out, model = tmp_path / "eval", str(tiny_cogvideox_dir)
    args = ["eval", "--model", model, "--model", f"b={model}", "--prompts", str(prompts), "--critic", str(critic),
            "--steps", "1", "--no-progress", "--no-report", "--prompt-field", "text", "--limit", "1"]  # fmt: skip
    for bad, said in (
        (["--device", "gpu"], "--device gpu:"),
        (["--dtype", "float8"], "--dtype: unknown dtype 'float8'"),
        (["--critic-dtype", "half"], "--critic-dtype: unknown dtype 'half'"),
        (["--offload", "gpu"], "--offload 'gpu': use none, model, sequential"),
    ):
        refused = CliRunner().invoke(app, [*args, "--out", str(out), *bad])
        assert refused.exit_code == 2 and said in refused.output, refused.output
        assert "Traceback" not in refused.output and not out.exists()
    opts = ["--dtype", "float32", "--device", "cpu", "--family", "cogvideox", "--critic-dtype", "bfloat16",
            "--offload", "model"]  # fmt: skip
    from diffusers import DiffusionPipeline

    offloaded = []
    real = DiffusionPipeline.enable_model_cpu_offload
    monkeypatch.setattr(
        DiffusionPipeline,
        "enable_model_cpu_offload",
        lambda self, **k: offloaded.append(1) or real(self, **k),
    )
    result = CliRunner().invoke(app, [*args, "--out", str(out), *opts])
    assert result.exit_code == 0, result.output
    assert offloaded  # each model's generation
    assert loaded == [{"device": "cpu", "dtype": "bfloat16"}]
    for name in ("b.1", next(p.name for p in out.iterdir() if p.is_dir() and p.name != "b.1")):
        (line,) = (out / name / "manifest.jsonl").read_text().splitlines()  # --limit 1
        assert json.loads(line)["prompt"] == "a red circle moves left in a sand desert"
        assert json.loads((out / name / "generation.json").read_text())["dtype"] == "float32"
    first = next(p for p in out.iterdir() if p.is_dir() and p.name != "b.1")
    shutil.rmtree(first)
    other = CliRunner().invoke(app, [*args, "--out", str(out), "--dtype", "bfloat16"])
    assert other.exit_code == 1 and "dtype was 'float32', now 'bfloat16'" in " ".join(other.output.split())
    assert not first.exists()  # refused before the first model generated


def test_eval_needs_a_rater(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts)])
    assert result.exit_code == 2 and "--critic DIR, --oracle and/or --clip MODEL" in result.output


def test_eval_refuses_a_bad_prompt_file_before_writing_anything(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a red circle moves left"}\n{"prompt": 5}\n')
    out = tmp_path / "eval"
    args = ["eval", "--model", "unused", "--prompts", str(prompts), "--oracle", *TOY, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "line 2, field 'prompt'" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("prompt_lines", "extra_models", "message"),
    [
        (  # the oracle cannot rate a non-toy prompt: refused before the first model generates
            ["a red circle moves left in a sand desert", "a dog running on the beach"],
            [],
            "p.txt, line 2: --oracle rates toy-world prompts only: not a toy-world prompt: 'a dog running",
        ),
        (["a red circle moves left in a sand desert"], ["b=nomodel"], "--model nomodel: no such directory"),
        (["a red circle moves left in a sand desert"], ["{model}+{tmp}/nolora"], "LoRA directory"),
        (["a red circle moves left in a sand desert"], ["{tmp}"], "not a diffusers pipeline directory"),
    ],
)
def test_eval_checks_every_model_and_prompt_before_generating(
    tmp_path, tiny_cogvideox_dir, prompt_lines, extra_models, message
):
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(prompt_lines) + "\n")
    out = tmp_path / "eval"
    models = [m.format(model=tiny_cogvideox_dir, tmp=tmp_path) for m in extra_models]
    args = ["eval", "--model", str(tiny_cogvideox_dir), *(a for m in models for a in ("--model", m))]
    result = CliRunner().invoke(app, [*args, "--prompts", str(prompts), "--oracle", *TOY, "--out", str(out),
                                      "--steps", "1", "--no-progress"])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split())
    assert "Pass --lossless" not in result.output  # lossy videos' advice only once the inputs are fine
    assert not out.exists()  # nothing generated, nothing rated


def test_eval_refuses_a_directory_that_is_no_critic_before_its_lossy_advice(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    (tmp_path / "nocritic").mkdir()
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY]
    result = CliRunner().invoke(app, [*args, "--critic", str(tmp_path / "nocritic"), "--out", str(out),
                                      "--steps", "1", "--no-progress"])  # fmt: skip
    assert result.exit_code == 1 and "nocritic" in result.output
    assert "Pass --lossless" not in result.output  # an error is not preceded by advice
    assert not out.exists()


@pytest.mark.parametrize("option", [["--guidance", "nan"], ["--guidance", "-1"], ["--fps", "0"]])
def test_eval_refuses_a_bad_sampler_number_before_touching_an_earlier_runs_summary(
    tmp_path, tiny_cogvideox_dir, option
):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "eval.json").write_text("{}")
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY]
    result = CliRunner().invoke(app, [*args, *option, "--out", str(out), "--steps", "1", "--no-progress"])
    assert result.exit_code == 2 and option[0] in result.output
    assert "Pass --lossless" not in result.output  # an error is not preceded by advice
    assert (out / "eval.json").read_text() == "{}"  # the earlier run's summary is left as it was


def test_compare_models_refuses_names_that_do_not_match_the_models(tmp_path, tiny_cogvideox_dir):
    from videolift.core.errors import VideoliftError
    from videolift.evaluate.compare import compare_models

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    models = [(str(tiny_cogvideox_dir), None)] * 2
    with pytest.raises(VideoliftError, match="1 names for 2 models"):
        compare_models(models, prompts, tmp_path / "eval", oracle=True, names=["a"], progress=False)
    assert not (tmp_path / "eval").exists()


def test_eval_oracle_refuses_a_clip_size_it_cannot_rate_before_generating(tmp_path, tiny_cogvideox_dir):
    prompts, out = tmp_path / "p.txt", tmp_path / "eval"
    prompts.write_text("a red circle moves left in a sand desert\n")
    args = [
        "eval",
        "--model",
        str(tiny_cogvideox_dir),
        "--prompts",
        str(prompts),
        "--oracle",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, [*args, "--height", "64", "--frames", "9", "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output  # the options alone: a usage error
    assert "--oracle rates toy-world clips (9 x 48 x 48: frames x height x width): --height 64" in " ".join(
        result.output.split()
    )
    assert not out.exists()
    # No size given: the model's own (read from its configs) is refused as early.
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{tiny_cogvideox_dir} makes clips of 9 x 64 x 64; the oracle rates 9 x 48 x 48" in " ".join(
        result.output.split()
    )
    assert "--height 48 --width 48" in " ".join(result.output.split()) and not out.exists()


def test_eval_vbench_lays_videos_out_without_the_package_and_checks_dimensions_first(
    tmp_path, tiny_cogvideox_dir, monkeypatch
):
    monkeypatch.setattr("videolift.evaluate.vbench.installed", lambda long=False, env=None: False)  # as here
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY, "--lossless",
            "--steps", "1", "--no-progress", "--no-report", "--out", str(tmp_path / "eval")]  # fmt: skip
    refused = CliRunner().invoke(app, [*args, "--vbench", "human_action"])
    assert refused.exit_code == 2 and "not human_action" in refused.output
    assert not (tmp_path / "eval").exists()  # refused before the first video
    result = CliRunner().invoke(app, [*args, "--vbench", "motion_smoothness", "--vbench", "dynamic_degree"])
    assert result.exit_code == 0, result.output
    (name,) = json.loads((tmp_path / "eval" / "eval.json").read_text())["models"]
    assert len(list((tmp_path / "eval" / "vbench" / name / "videos").glob("*.mp4"))) == 1
    flat = " ".join(result.output.split())
    assert "vbench is not installed" in flat
    assert (
        "-m vbench.launch.evaluate" in flat
        and "--dimension motion_smoothness dynamic_degree --mode custom_input" in flat
    )
    # For VBench's own environment (its transformers==4.33.2 pin cannot share videolift's), not this Python
    assert "score them with python -m torch.distributed.run" in flat


def test_eval_vbench_python_scores_in_that_environment_and_a_bad_one_is_refused_first(
    tmp_path, tiny_cogvideox_dir, monkeypatch
):
    from test_evaluate_vbench import fake_environment, vbench_calls

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY, "--lossless",
            "--steps", "1", "--no-progress", "--no-report", "--out", str(tmp_path / "eval")]  # fmt: skip
    bare = fake_environment(tmp_path / "bare", package=False)
    for python, said in ((tmp_path / "nope", "no such file"), (bare, "vbench is not installed there")):
        refused = CliRunner().invoke(
            app, [*args, "--vbench", "motion_smoothness", "--vbench-python", str(python)]
        )
        assert refused.exit_code == 1 and f"--vbench-python {python}: {said}" in " ".join(
            refused.output.split()
        )
    alone = CliRunner().invoke(app, [*args, "--vbench-python", str(bare)])
    assert alone.exit_code == 2 and "--vbench-python needs --vbench" in alone.output
    assert not (tmp_path / "eval").exists()  # all refused before the first video
    python = fake_environment(tmp_path / "vbench-env")
    result = CliRunner().invoke(app, [*args, "--vbench", "dynamic_degree", "--vbench-python", str(python)])
    assert result.exit_code == 0, result.output
    (name,) = json.loads((tmp_path / "eval" / "eval.json").read_text())["models"]
    (call,) = vbench_calls(tmp_path / "vbench-env")  # that interpreter ran VBench's launch script
    assert "vbench.launch.evaluate" in call and call[call.index("--videos_path") + 1].endswith(
        f"{name}/videos"
    )
    assert json.loads((tmp_path / "eval" / "vbench" / "scores.json").read_text()) == {
        name: {"dynamic_degree": 0.5}
    }
    assert (
        f"VBench, {name}: dynamic_degree 0.5000" in result.output and "score them with" not in result.output
    )
    # VBench failing (after the evaluation): the error names the model, and eval.json is said to be written
    monkeypatch.setenv("FAKE_VBENCH_FAIL", f"/{name}/")
    failed = CliRunner().invoke(app, [*args, "--vbench", "dynamic_degree", "--vbench-python", str(python)])
    flat = " ".join(failed.output.split())
    assert failed.exit_code == 1 and f"VBench, model {name}: VBench failed on" in flat, failed.output
    assert (
        f"written: {tmp_path / 'eval' / 'eval.json'}" in flat and (tmp_path / "eval" / "eval.json").exists()
    )


def test_eval_vae_tiling_reaches_the_decoder(tmp_path, tiny_cogvideox_dir):
    """--vae-tiling decodes in tiles as `generate --vae-tiling` does: on the tiny VAE, whose tiles do not
    add up to 48x48 frames, that is the size error (a big model's frames fit its tiles)."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY, "--lossless",
            "--steps", "1", "--frames", "9", "--no-progress"]  # fmt: skip
    tiled = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "tiled"), "--vae-tiling"])
    assert tiled.exit_code == 1 and "not 48x48 with --vae-tiling" in " ".join(tiled.output.split())
    plain = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "plain"), "--no-report"], env={"COLUMNS": "200"}
    )
    assert plain.exit_code == 0, plain.output
    assert "┃ semantic Good ┃ motion Good ┃ fidelity Good ┃" in plain.output  # each dimension by name


def test_eval_refuses_a_model_folder_holding_another_tools_files(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    out = tmp_path / "eval"
    (out / "b.1").mkdir(parents=True)  # the second model's folder
    (out / "b.1" / "manifest.jsonl").write_text('{"video": "videos/mine.mp4"}\n')
    model = str(tiny_cogvideox_dir)
    args = ["eval", "--model", model, "--model", f"b={model}"]
    result = CliRunner().invoke(app, [*args, "--prompts", str(prompts), "--oracle", *TOY, "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "manifest.jsonl was not written by `videolift generate`" in " ".join(result.output.split())
    assert sorted(p.name for p in out.rglob("*")) == ["b.1", "manifest.jsonl"]  # only what was there


def test_eval_refuses_a_later_models_folder_of_other_settings_before_any_video(tmp_path, tiny_cogvideox_dir):
    """The second model's folder holds videos of other settings: refused before the first model generates
    (not after it generated and was rated), with advice that works for eval: --overwrite."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    out, model = tmp_path / "eval", str(tiny_cogvideox_dir)
    args = ["eval", "--model", model, "--model", f"b={model}", "--prompts", str(prompts), "--oracle", *TOY,
            "--out", str(out), "--no-report", "--no-progress"]  # fmt: skip
    assert CliRunner().invoke(app, [*args, "--steps", "1"]).exit_code == 0
    first = next(p for p in out.iterdir() if p.is_dir() and p.name != "b.1")
    shutil.rmtree(first)
    result = CliRunner().invoke(app, [*args, "--steps", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "b.1 holds an earlier generation run" in text and "steps was 1, now 2" in text
    assert not first.exists()  # nothing generated
    # So is a LoRA diffusers cannot load (an empty directory), before the first model generates.
    (tmp_path / "empty").mkdir()
    empty = [*args[:4], f"{model}+{tmp_path / 'empty'}", *args[5:], "--steps", "2"]
    result = CliRunner().invoke(app, empty)
    assert result.exit_code == 1 and "not a LoRA directory" in result.output and not first.exists()
    result = CliRunner().invoke(app, [*args, "--steps", "2", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "b.1" / "generation.json").read_text())["steps"] == 2


def test_eval_refuses_a_later_models_folder_of_other_prompts_before_any_video(tmp_path, tiny_cogvideox_dir):
    """A prompt edited since the second model's folder was made: `generate` would refuse that folder, so
    eval refuses it before the first model generates and is rated, not after."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\ntwo blue squares bounce on a snow field\n")
    out, model = tmp_path / "eval", str(tiny_cogvideox_dir)
    args = ["eval", "--prompts", str(prompts), "--oracle", *TOY, "--out", str(out), "--steps", "1",
            "--per-prompt", "2", "--no-report", "--no-progress"]  # fmt: skip
    assert CliRunner().invoke(app, [*args, "--model", f"b={model}"]).exit_code == 0
    prompts.write_text("a red circle moves left in a sand desert\ntwo red squares bounce on a snow field\n")
    result = CliRunner().invoke(app, [*args, "--model", model, "--model", f"b={model}"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "b.1 holds an earlier generation run" in text and "prompt 1 (line 2) was 'two blue squares" in text
    assert sorted(p.name for p in out.iterdir()) == ["b.1", "eval.json"]  # the first model generated nothing
    # Prompts only added at the end resume: nothing refused.
    prompts.write_text("a red circle moves left in a sand desert\ntwo blue squares bounce on a snow field\n"
                       "a red circle moves left in a sand desert\n")  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--model", model, "--model", f"b={model}"])
    assert result.exit_code == 0, result.output


def test_model_options_name_replicates_of_a_recipe():
    from videolift.evaluate.cli import parse_models

    models, names, groups = parse_models(
        ["base_dir", "rs=runs/s0/pipeline", "rs=runs/s1/pipeline+runs/s1/lora", "runs/a=b/pipeline"]
    )
    assert models == [("base_dir", None), ("runs/s0/pipeline", None), ("runs/s1/pipeline", "runs/s1/lora"),
                      ("runs/a=b/pipeline", None)]  # fmt: skip
    # align's OUT/pipeline is named by its run: OUT.
    assert names == ["base_dir", "rs.1", "rs.2", "a=b"] and groups == [None, "rs", "rs", None]
    assert parse_models(["THUDM/CogVideoX-2b", "aligned/pipeline", "x/lora_run", "b+aligned/lora"])[1] == [
        "CogVideoX-2b", "aligned", "lora_run", "aligned-2"]  # fmt: skip
    with pytest.raises(typer.BadParameter, match="collide"):
        parse_models(["x/rs", "rs=y/pipeline"])  # a recipe named like another model


def test_model_options_that_name_existing_folders_are_taken_whole(tmp_path, monkeypatch):
    """Run folders named like `lr=1e-4` or `base+ema` are models, not NAME= / +LORA parts."""
    from videolift.evaluate.cli import parse_models

    monkeypatch.chdir(tmp_path)
    for folder in ("lr=1e-4/lora", "base+ema/lora", "runs/a+b"):
        (tmp_path / folder).mkdir(parents=True)
    models, names, groups = parse_models(
        ["lr=1e-4", "base+ema", "./base+ema+base+ema/lora", "rs=runs/a+b", "rs=runs/a+b+adapter", "Org/id+lora",
         "lr=1e-4+lr=1e-4/lora", "base+ema+lr=1e-4/lora", "hub=Org/id+x"]
    )  # fmt: skip
    assert models == [("lr=1e-4", None), ("base+ema", None), ("./base+ema", "base+ema/lora"),
                      ("runs/a+b", None), ("runs/a+b", "adapter"), ("Org/id", "lora"),
                      ("lr=1e-4", "lr=1e-4/lora"), ("base+ema", "lr=1e-4/lora"), ("Org/id", "x")]  # fmt: skip
    assert groups == [None, None, None, "rs", "rs", None, None, None, "hub"]
    assert names[:2] == ["lr=1e-4", "base+ema"]


def test_eval_compares_recipes_over_their_replicates(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves left in a sand desert\ntwo blue squares bounce on a snow field\n")
    out = tmp_path / "eval"
    model = str(tiny_cogvideox_dir)
    args = ["eval", "--model", model, "--model", f"same={model}", "--model", f"same={model}", "--prompts",
            str(prompts), "--oracle", *TOY, "--lossless", "--out", str(out), "--steps", "1", "--fps", "4"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "eval.json").read_text())
    assert list(data["models"])[1:] == ["same.1", "same.2"]
    record = json.loads((out / "same.2" / "manifest.jsonl").read_text().splitlines()[0])
    assert (record["height"], record["width"], record["fps"]) == (48, 48, 4)  # the model's own is 64
    group = data["groups"]["same"]
    assert group["members"] == ["same.1", "same.2"] and group["oracle"]["replicates"] == 2
    # three copies of one model: the recipe equals the reference, replicates agree, no seed spread
    d = data["group_differences"][f"same vs {list(data['models'])[0]}"]["oracle"]["all_good_rate"]
    assert d["diff"] == 0.0 and d["seed_se"] == 0.0 and d["replicates"] == [2, 1]
    assert "recipes, 2 vs 1 replicates" in result.output
    html = (out / "report.html").read_text()  # self-contained: tables, figures and frames inline
    assert "recipes averaged over their replicates" in html and "same.2" in html
    assert html.count("data:image/png;base64,") >= 1 + 2  # label rates + a frame strip per prompt


def test_the_comparison_table_prints_a_critic_that_parsed_nothing(capsys):
    """An undertrained critic may parse no label at all: its mean reward is null (eval.json says so),
    which the table shows as n/a instead of failing before the report is written."""
    from videolift.evaluate.cli import print_comparison
    from videolift.evaluate.metrics import summarize

    unparsed = summarize(
        [{"semantic_consistency": None, "motion_smoothness": None, "video_fidelity": None}] * 2
    )
    good = summarize([{"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Bad"}])
    print_comparison({"summary": {"base": {"critic": unparsed}, "aligned": {"critic": good}}, "pairwise": {}})
    out = capsys.readouterr().out
    assert unparsed["mean_reward"] is None and "n/a" in out and "0.0%" in out and "100.0%" in out


def test_the_run_report_guards_every_aligned_model_and_shows_what_the_critic_did_not_parse(
    tmp_path, monkeypatch
):
    """report.html of a run: the reward-hacking guard for each aligned model (RS too), said to be not
    computable where the critic parsed nothing (it used to raise before writing the report), and
    unparsed answers as a column of the confusion matrices."""
    from videolift.evaluate.metrics import summarize
    from videolift.pipeline.run_report import write_report

    good = {"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Good"}
    bad = dict.fromkeys(good, "Bad")
    (tmp_path / "eval").mkdir()
    rated = {"base": [bad, good], "aligned_rwl": [good, good], "aligned_rs": [bad, bad]}
    evaluation = {"summary": {n: {"oracle": summarize(r)} for n, r in rated.items()}, "pairwise": {}}
    (tmp_path / "eval/eval.json").write_text(json.dumps(evaluation))
    for name in rated:  # no videos to show: the frame grid is empty
        (tmp_path / "eval" / name).mkdir()
        (tmp_path / "eval" / name / "manifest.jsonl").write_text("")
    confusion = {"Good": {"Good": 1, "Normal": 0, "Bad": 0, "unparsed": 3}, "Normal": {}, "Bad": {}}
    (tmp_path / "critic_eval.json").write_text(
        json.dumps({"dimensions": {"video_fidelity": {"confusion": confusion}}})
    )

    def model(oracle: float, critic: float | None) -> dict:
        return {
            "model": "m",
            "oracle_all_good_rate": 0.5,
            "oracle_mean_reward": oracle,
            "critic_mean_reward": critic,
        }

    summary = {
        "critic": {"accuracy": None},
        "base": model(0.5, 0.5),
        "aligned_rwl": model(0.6, None),  # the critic parsed nothing on its videos
        "aligned_rs": model(0.4, 0.8),  # the critic's gain, not the oracle's
        "wall_seconds": 1.0,
    }
    from videolift.pipeline import run_report as demo_report

    drawn = []
    figure = demo_report.confusion_figure
    monkeypatch.setattr(demo_report, "confusion_figure", lambda m, *a: drawn.append(m) or figure(m, *a))
    html = write_report(tmp_path, summary).read_text()
    assert drawn == [[[1, 0, 0, 3], [0, 0, 0, 0], [0, 0, 0, 0]]]  # Good / Normal / Bad / unparsed
    assert "Reward-hacking guard (aligned_rwl): not computable, the critic parsed no answer" in html
    assert "Reward-hacking guard (aligned_rs): oracle gain -0.100 vs critic gain +0.300" in html
    assert "BELOW 0.7" in html
    summary["align_rewards"] = "oracle"  # a perfect critic: no guard
    assert "Reward-hacking guard" not in write_report(tmp_path, summary).read_text()

    # A run aligned with --validation-real shows its held-out loss; one without, no such figure.
    curves = demo_report.curves_figure
    titles: dict[str, dict] = {}
    monkeypatch.setattr(
        demo_report, "curves_figure", lambda c, t, *a: titles.update({t: c}) or curves(c, t, *a)
    )
    write_report(tmp_path, summary)
    assert not any("held-out" in t for t in titles)
    (tmp_path / "aligned_rwl" / "logs").mkdir(parents=True)
    lines = [{"step": 0, "val_loss": 0.055, "clips": 64}, {"step": 50, "val_loss": 0.053, "clips": 64}]
    (tmp_path / "aligned_rwl/logs/validation.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_report(tmp_path, summary)
    held_out = next(c for t, c in titles.items() if "held-out clips" in t)
    assert held_out == {"aligned_rwl": [(0, 0.055), (50, 0.053)]}


def test_the_guard_holds_the_oracle_to_the_critics_gain_whatever_its_sign_and_targets_are_stated():
    from videolift.pipeline.run_report import _guard_text, reward_hacking_check, target_rows

    def run(oracle: float, critic: float, se: float | None = None) -> dict:
        paired = {} if se is None else {"aligned_rwl vs base": {"critic": {"mean_reward": {"se": se}}}}
        return {
            "critic": {"accuracy": {"mean": 0.9}},
            "base": {"oracle_all_good_rate": 0.1, "oracle_mean_reward": 0.5, "critic_mean_reward": 0.5},
            "aligned_rwl": {
                "oracle_all_good_rate": 0.2,
                "oracle_mean_reward": 0.5 + oracle,
                "critic_mean_reward": 0.5 + critic,
            },  # fmt: skip
            "differences": paired,
        }

    assert reward_hacking_check(run(+0.10, +0.10))["ok"]
    assert not reward_hacking_check(run(+0.05, +0.10))["ok"]  # half the critic's gain
    assert not reward_hacking_check(run(-0.20, -0.01))[
        "ok"
    ]  # the critic saw a small loss, the oracle a big one
    assert reward_hacking_check(run(-0.005, -0.01))["ok"]
    # The paired difference counts only videos the critic rated in full on both models: it wins over the
    # table's means (a partly parsed answer's reward is there), and its SE is the one reported.
    partial = run(+0.10, +0.10, se=0.01)
    partial["differences"]["aligned_rwl vs base"]["critic"]["mean_reward"]["diff"] = 0.20
    assert reward_hacking_check(partial)["critic_gain"] == 0.20 and not reward_hacking_check(partial)["ok"]
    partial["differences"]["aligned_rwl vs base"]["critic"]["mean_reward"]["diff"] = None  # no full pair
    assert reward_hacking_check(partial)["critic_gain"] == pytest.approx(0.10)
    weak, _ = _guard_text("aligned_rwl", reward_hacking_check(run(+0.05, +0.006, se=0.006)))
    assert "passes" in weak and "within two standard errors of zero" in weak
    blind, _ = _guard_text("aligned_rwl", reward_hacking_check(run(+0.05, 0.0, se=0.0)))  # same labels
    assert "passes" in blind and "within two standard errors of zero" in blind
    sure, _ = _guard_text("aligned_rwl", reward_hacking_check(run(+0.10, +0.05, se=0.01)))
    assert "within two standard errors" not in sure
    hacked, style = _guard_text("aligned_rwl", reward_hacking_check(run(+0.01, +0.10, se=0.01)))
    assert "may exploit the critic" in hacked and style == "warn"
    # A critic that sees a loss has no reward being hacked: the model got worse, more than it says
    worse, style = _guard_text("aligned_rwl", reward_hacking_check(run(-0.20, -0.01, se=0.001)))
    assert "exploit" not in worse and "got worse, and the critic misses how much" in worse and style == "warn"
    rows = {r[0]: r[2] for r in target_rows(run(+0.10, +0.10))}
    assert rows == {"critic mean accuracy >= 0.85": "met",
                    "aligned_rwl oracle all-Good >= base + 0.15": "NOT MET",  # +0.10
                    "aligned_rwl: oracle gain >= 0.7 x critic gain": "met"}  # fmt: skip
    no_oracle = run(0.1, 0.1)
    no_oracle["base"]["oracle_all_good_rate"] = None
    assert target_rows(no_oracle) == []  # outside the toy world the demo's targets do not apply


def test_the_frame_grid_pairs_videos_by_prompt_and_seed_and_the_oracle_rewards_are_drawn(tmp_path):
    import numpy as np

    from videolift.core.video import write_video
    from videolift.evaluate.eval_report import distributions, frame_grid

    good = {
        d: {"label": "Good", "reason": ""}
        for d in ("semantic_consistency", "motion_smoothness", "video_fidelity")
    }
    for name, order in (("base", [0, 1]), ("aligned", [1, 0])):  # the same videos, in another order
        root = tmp_path / name
        (root / "videos").mkdir(parents=True)
        lines, rated = [], []
        for i in order:
            video = f"videos/{name}_{i}.mp4"
            write_video(
                root / video,
                np.full((3, 8, 8, 3), 40 * i + (100 if name == "aligned" else 0), np.uint8),
                fps=8,
            )
            lines.append({"video": video, "prompt": f"prompt {i}", "seed": 10 + i})
            rated.append({"video": video, "ratings": good})
        (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (root / "oracle_ratings.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rated))

    class Shown:
        frames_of, figures = [], []

        def frames(self, rows, caption):
            self.frames_of.append((caption, [(label, clip[0, 0, 0, 0]) for label, clip in rows]))

        def figure(self, fig):
            self.figures.append(fig.axes[0].get_title())

        def paragraph(self, *_):
            pass

    rep = Shown()
    frame_grid(rep, tmp_path, ["base", "aligned"])
    for caption, rows in rep.frames_of:
        i = int(caption.split('"prompt ')[1][0])
        assert f"(seed {10 + i})" in caption and "oracle labels" in caption
        assert [label for label, _ in rows] == ["base oracle S:G M:G V:G", "aligned oracle S:G M:G V:G"]
        assert abs(int(rows[0][1]) - 40 * i) <= 3 and abs(int(rows[1][1]) - (40 * i + 100)) <= 3
    summary = {"base": {}, "aligned": {}}  # no label rates to draw: the rewards come from the files
    distributions(rep, {"summary": summary}, tmp_path)
    assert "oracle reward per video" in rep.figures


def test_a_rerun_interrupted_midway_leaves_no_stale_summary_or_report(
    tmp_path, tiny_cogvideox_dir, monkeypatch
):
    prompts, out = tmp_path / "p.txt", tmp_path / "eval"
    prompts.write_text("a red circle moves left in a sand desert\n")
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--oracle", *TOY,
            "--steps", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (out / "eval.json").is_file() and (out / "report.html").is_file()

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    # Rerun as it was: every video kept, and said (a rerun said nothing of what it reused)
    again = CliRunner().invoke(app, [*args, "--overwrite"])
    kept = f"{tiny_cogvideox_dir.name}: 1 of its 1 videos kept from an earlier run"
    assert again.exit_code == 0 and kept in again.output

    monkeypatch.setattr("videolift.data.generate.generate_videos", interrupted)  # imported at call time
    result = CliRunner().invoke(app, [*args, "--steps", "2", "--overwrite"])
    assert result.exit_code == 130 and "Interrupted" in result.output
    assert not (out / "eval.json").exists() and not (out / "report.html").exists()


def test_findings_are_tallied_most_frequent_first():
    """The report's fault table lists each dimension's most frequent fault first (ties by name)."""
    from videolift.evaluate.compare import tally_findings

    tally = tally_findings(
        [
            {"motion_smoothness": ["jitter"]},
            {"motion_smoothness": ["teleport", "jitter"]},
            {"video_fidelity": []},
        ]
    )
    assert list(tally["motion_smoothness"].items()) == [("jitter", 2), ("teleport", 1)]
    assert tally["video_fidelity"] == {}


def test_eval_on_two_processes_reports_and_runs_vbench_once(tmp_path, tiny_cogvideox_dir):
    """Under torchrun every process generates and scores its share; the main one alone prints, writes the
    report and runs VBench (N VBench runs into one results folder would take each other's files)."""
    import os
    import subprocess
    import sys

    from test_evaluate_vbench import fake_environment, vbench_calls

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\na blue square moves up on a grey road\n")
    python = fake_environment(tmp_path / "vbench-env")
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "videolift.cli", "eval", "--model",
           tiny_cogvideox_dir, "--prompts", prompts, "--oracle", *TOY, "--lossless", "--steps", "1",
           "--no-progress", "--out", tmp_path / "eval", "--vbench", "dynamic_degree", "--vbench-python", python]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    done = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(vbench_calls(tmp_path / "vbench-env")) == 1
    assert done.stdout.count("written: ") == 1 and done.stdout.count("report: ") == 1, done.stdout
    assert len(json.loads((tmp_path / "eval" / "eval.json").read_text())["models"]) == 1


def test_the_critic_reward_histogram_uses_the_evaluations_reward_mapping(tmp_path):
    """`eval --reward-config` maps the labels of every table; the critic's reward histogram drew the scores
    file's own rewards, the critic's mapping (`critic train --reward-config`, or the paper's)."""
    import matplotlib.pyplot as plt

    from videolift.evaluate.eval_report import distributions

    dims = ("semantic_consistency", "motion_smoothness", "video_fidelity")
    lines = [
        {"video": "a.mp4", "ratings": {d: {"label": "Good"} for d in dims}, "reward": 0.9},  # paper's
        {"video": "b.mp4", "ratings": {d: {"label": "Bad"} for d in dims}, "reward": 0.05},
        {"video": "c.mp4", "ratings": {d: {"label": None} for d in dims}, "reward": None},  # unparsed
        {"video": "d.mp4", "ratings": {}, "reward": None, "error": "cannot decode"},
    ]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "critic_scores.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    drawn = {}

    class Shown:
        def figure(self, fig):
            drawn[fig.axes[0].get_title()] = sorted(p.get_x() for p in fig.axes[0].patches if p.get_height())
            plt.close(fig)

        def paragraph(self, *_):
            pass

    mapping = {"scores": {"Good": 1.0, "Normal": 0.5, "Bad": 0.0}}  # eval --reward-config
    distributions(Shown(), {"summary": {"m": {}}, "reward_config": mapping}, tmp_path)
    # two videos with a reward, in the first and the last of 12 bins over [0, 1]: 0 and 1, not 0.05 and 0.9
    assert drawn["critic reward per video"] == pytest.approx([0.0, 11 / 12])


def test_eval_maps_labels_by_the_critics_own_reward_mapping_and_says_so(
    tmp_path, tiny_cogvideox_dir, monkeypatch
):
    """`critic train --reward-config` stores a mapping in the critic's spec, which `critic score` writes as
    each video's reward; `eval --critic` reported mean rewards by the paper's mapping all the same, unsaid.
    Now it takes the critic's, names it in eval.json, the printed summary and the report; --reward-config
    still overrides it, and the paper's mapping goes without a note."""
    import videolift.critic.answers as answers
    import videolift.evaluate.compare as compare
    from videolift.core.reward import RewardConfig
    from videolift.critic.spec import CriticSpec

    labels = {"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Bad"}
    monkeypatch.setattr(answers, "load_critic", lambda directory, **k: "critic")
    monkeypatch.setattr(
        compare,
        "critic_ratings",
        lambda critic, manifest, *a: [labels for _ in manifest.read_text().splitlines()],
    )
    own = RewardConfig(scores={"Good": 1.0, "Normal": 0.5, "Bad": 0.0})
    critic = tmp_path / "critic"
    critic.mkdir()
    CriticSpec(base_model=BASE, model_type="qwen2_vl", reward=own).save(critic)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moves left in a sand desert\n")
    out = tmp_path / "e"
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--prompts", str(prompts), "--critic", str(critic),
            "--out", str(out), "--steps", "1", "--no-progress"]  # fmt: skip

    def evaluated(*extra: str) -> tuple[dict, str]:
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        return json.loads((out / "eval.json").read_text()), " ".join(result.output.split())

    data, said = evaluated()
    (name,) = data["models"]
    assert data["reward_config"] == own.model_dump(mode="json")
    assert data["reward_source"] == f"the critic's ({critic / 'critic_spec.json'})"
    assert data["summary"][name]["critic"]["mean_reward"] == pytest.approx(
        2 / 3
    )  # (1 + 1 + 0) / 3, not 0.617
    assert "note: Rewards" in said and "Good 1, Normal 0.5, Bad 0; mean over the rated dimensions" in said
    assert "Not the paper's (Good 0.9, Normal 0.2, Bad 0.05" in said
    assert "Good 1, Normal 0.5, Bad 0" in (out / "report.html").read_text()

    paper = tmp_path / "paper.yaml"
    paper.write_text("{}\n")  # every default: the paper's mapping, over the critic's own
    data, said = evaluated("--reward-config", str(paper))
    assert data["reward_config"] == RewardConfig().model_dump(mode="json")
    assert data["reward_source"] == f"--reward-config {paper}"
    assert data["summary"][name]["critic"]["mean_reward"] == pytest.approx(1.85 / 3)
    assert "note: Rewards" not in said and "Not the paper's" not in (out / "report.html").read_text()

    CriticSpec(base_model=BASE, model_type="qwen2_vl").save(critic)  # a critic of the paper's mapping
    data, said = evaluated()
    assert data["reward_config"] == RewardConfig().model_dump(mode="json") and "note: Rewards" not in said


def test_the_run_summary_and_report_name_a_reward_mapping_that_is_not_the_papers(tmp_path, capsys):
    """The pipeline's summary.json records the evaluation's mapping (the one alignment used); the printed
    summary and report.html name it when it is not the paper's, so the rewards and the guard's gains are
    not read as the paper's."""
    import time

    from videolift.core.reward import RewardConfig
    from videolift.evaluate.metrics import summarize
    from videolift.pipeline.cli import print_summary
    from videolift.pipeline.run import build_summary
    from videolift.pipeline.run_report import write_report

    good = {"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Bad"}
    custom = RewardConfig(aggregation="min")
    source = "align.settings.reward_config (min.yaml), the mapping alignment used"
    evaluation = {
        "summary": {"base": {"oracle": summarize([good], custom), "critic": summarize([good], custom)}},
        "pairwise": {},
        "reward_config": custom.model_dump(mode="json"),
        "reward_source": source,
    }
    (tmp_path / "eval" / "base").mkdir(parents=True)
    (tmp_path / "eval" / "base" / "manifest.jsonl").write_text("")
    (tmp_path / "eval" / "eval.json").write_text(json.dumps(evaluation))
    summary = build_summary(evaluation, {}, {"base": ("t2v", None)}, time.time())
    assert summary["reward_config"] == custom.model_dump(mode="json") and summary["reward_source"] == source
    assert summary["base"]["oracle_mean_reward"] == pytest.approx(0.05)  # the minimum, not the mean
    html = " ".join(write_report(tmp_path, summary).read_text().split())
    assert (
        f"map labels by {source}: Good 0.9, Normal 0.2, Bad 0.05; minimum over the rated dimensions" in html
    )
    print_summary(summary)
    assert "align.settings.reward_config (min.yaml)" in " ".join(capsys.readouterr().out.split())

    paper = {**evaluation, "reward_config": RewardConfig().model_dump(mode="json"), "reward_source": "x"}
    summary = build_summary(paper, {}, {"base": ("t2v", None)}, time.time())
    assert "map labels by" not in write_report(tmp_path, summary).read_text()
    print_summary(summary)
    assert "note:" not in capsys.readouterr().out
    older = {k: v for k, v in paper.items() if k != "reward_source"}  # recorded before reward_source
    assert (
        build_summary(older, {}, {"base": ("t2v", None)}, time.time())["reward_source"]
        == "the paper's (default)"
    )


def test_model_and_recipe_names_in_square_brackets_are_printed_as_written(capsys):
    """A model named after its folder ("t2v[b]") or by NAME= ("[a]=...") was read as rich markup in the
    tables and lines of `eval`: printed "t2v" and ".1", and a "[/x]" raised rich's MarkupError."""
    from videolift.evaluate.cli import print_comparison, print_recipes
    from videolift.evaluate.metrics import replicate_difference, replicate_summary, summarize

    good = summarize([{"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Bad"}])
    diff = {"all_good_rate": {"diff": 0.0, "se": 0.0}, "mean_reward": {"diff": 0.0, "se": 0.0}}
    print_comparison(
        {
            "summary": {"t2v[b]": {"critic": good}, "[/x].1": {"critic": good}},
            "pairwise": {"[/x].1 vs t2v[b]": {"critic": {"overall": {"win": 0, "tie": 1, "loss": 0}}}},
            "differences": {"[/x].1 vs t2v[b]": {"critic": diff}},
        }
    )
    out = capsys.readouterr().out
    assert "t2v[b]" in out and "[/x].1 vs t2v[b] (critic, win/tie/loss)" in out, out
    labels = [[{"semantic_consistency": "Good", "motion_smoothness": "Good", "video_fidelity": "Good"}]]
    print_recipes(
        {
            "groups": {
                "[/x]": {"members": ["[/x].1"], "oracle": replicate_summary(labels)},
                "[b]": {"members": ["[b].1"], "oracle": replicate_summary(labels)},
            },
            "group_differences": {"[/x] vs [b]": {"oracle": replicate_difference(labels, labels)}},
        }
    )
    out = capsys.readouterr().out
    assert "[b]" in out and "[/x] vs [b] (oracle, recipes" in out, out
