import json
import re
from pathlib import Path

import pytest
import yaml

from videolift.align.config import AlignConfig
from videolift.core.distributed import TRAINING_TIMEOUT_SECONDS
from videolift.core.errors import DataError, OptionError, VideoliftError
from videolift.pipeline.config import PipelineConfig
from videolift.pipeline.demo_cli import PRESET

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pipeline"


# What the GPU recipes read (relative to where `videolift run` starts): your ratings, prompts, real set.
RECIPE_DATA = ("data/hra.jsonl", "data/align_prompts.txt", "data/openvid.jsonl", "data/heldout_prompts.txt")
# Smallest valid content of each kind of input (they are read at load, as their stages will read them).
HRA_LINE = '{"video": "v.mp4", "prompt": "a dog", "ratings": {"video_fidelity": {"label": "Good"}}}\n'


def write_input(path: Path) -> Path:
    """A valid input file of the kind its name says: ratings / a real set (JSONL), prompts, a reward config."""
    if path.suffix == ".yaml":
        path.write_text("aggregation: mean\n")
    elif path.suffix == ".txt":
        path.write_text("a dog runs on the beach\n")
    else:  # an HRA line is also a valid real-set and prompts line (video, prompt)
        path.write_text(HRA_LINE)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipeline_configs_validate(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if PipelineConfig.model_validate(yaml.safe_load(path.read_text())).toy:
        assert PipelineConfig.load(path).workdir == path.parent / yaml.safe_load(path.read_text())["workdir"]
        return
    with pytest.raises(DataError, match=r"field 'hra\.file'.*no such file"):
        PipelineConfig.load(path)  # its data is named, and looked for, at load
    (tmp_path / "data").mkdir()
    for name in RECIPE_DATA:
        write_input(tmp_path / name)
    cfg = PipelineConfig.load(path)
    assert cfg.workdir.is_absolute() or str(cfg.workdir).startswith(str(path.parent))


def test_toy_example_matches_the_demo_preset():
    example = yaml.safe_load((CONFIGS / "toy.yaml").read_text())
    preset = yaml.safe_load(PRESET.read_text())
    example.pop("workdir"), preset.pop("workdir")
    assert example == preset


def test_bad_config_names_file_and_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("critic: {adapter: half}\n")
    with pytest.raises(DataError, match=r"p\.yaml, field 'critic\.adapter'"):
        PipelineConfig.load(path)
    path.write_text("align: {methods: [rwl], nonsense: 1}\n")
    with pytest.raises(DataError, match="align.nonsense"):
        PipelineConfig.load(path)


def test_real_set_is_a_file_or_toy_renders_not_both(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("align: {real: real.jsonl, real_toy: 8}\n")
    with pytest.raises(DataError, match=r"p\.yaml.*not both"):
        PipelineConfig.load(path)


def test_demo_samples_with_the_toy_base_steps():
    """The demo samples with the step count the committed toy base was judged with (docs/toy-world.md);
    its guidance is lower on purpose (2 vs 3: fine-tuned models lose fidelity at 3, docs/results/align.md)."""
    import json

    from videolift.toy.pretrain_t2v import T2VPretrainConfig

    preset = PipelineConfig.load(PRESET)
    asset = Path(__file__).resolve().parents[1] / "src" / "videolift" / "toy" / "assets" / "t2v"
    recorded = json.loads((asset / "videolift_pretrain.json").read_text())["config"]
    cfg = T2VPretrainConfig()
    assert preset.sampler.steps == cfg.sample_steps
    assert preset.sampler.guidance < cfg.guidance
    assert (recorded["sample_steps"], recorded["guidance"]) == (cfg.sample_steps, cfg.guidance)
    assert preset.sampler.dynamic_cfg is False and preset.sampler.lossless is True


def test_sampler_vae_tiling_reaches_generation_and_leaves_untiled_stages_as_they_were():
    from videolift.pipeline.config import Sampler
    from videolift.pipeline.stages import generation_settings

    plain = generation_settings(Sampler())
    assert "vae_tiling" not in plain  # a finished stage's recorded settings do not change
    assert generation_settings(Sampler(vae_tiling=True)) == {**plain, "vae_tiling": True}
    assert "dtype" not in plain  # unset: generate's auto, the settings of runs before the option
    assert generation_settings(Sampler(dtype="float16")) == {**plain, "dtype": "float16"}


def test_sampler_guidance_and_fps_are_the_model_familys_unless_set():
    # Unset, generate picks the family's own (Wan 2.1: 5 and 16); a value that is set reaches it, 8 fps too.
    from videolift.pipeline.config import Sampler
    from videolift.pipeline.stages import generation_settings

    plain = generation_settings(Sampler())
    assert "guidance" not in plain and "fps" not in plain and "guidance_2" not in plain
    assert generation_settings(Sampler(guidance=6.0, fps=8)) == {**plain, "guidance": 6.0, "fps": 8}
    # A two-expert Wan 2.2's low-noise guidance: only when set (finished stages keep their settings).
    assert generation_settings(Sampler(guidance=4.0, guidance_2=3.0)) == {
        **plain,
        "guidance": 4.0,
        "guidance_2": 3.0,
    }


def test_current_memory_follows_allocations_and_the_peak_keeps_them():
    import numpy as np

    from videolift.core.memory import current_rss_mb, peak_rss_mb

    before = current_rss_mb()
    block = np.ones(200 << 20, np.uint8)  # 200 MB, touched
    during = current_rss_mb()
    del block
    assert during - before > 150 and current_rss_mb() < during - 150 and peak_rss_mb() > during - 1


def test_oracle_rewards_only_in_the_toy_world(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "t2v: THUDM/CogVideoX-2b\nhra: {source: file, file: h.jsonl, videos: v}\nalign: {rewards: oracle}\n"
    )
    with pytest.raises(DataError, match=r"p\.yaml.*oracle.*toy world"):
        PipelineConfig.load(path)
    path.write_text("align: {rewards: oracle}\n")  # the toy base: a perfect critic is at hand
    assert PipelineConfig.load(path).align.rewards == "oracle"
    assert PipelineConfig.load(CONFIGS / "toy.yaml").align.rewards == "critic"  # the LiFT loop


def test_a_toy_run_refuses_a_clip_size_the_oracle_cannot_rate(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sampler: {height: 64, frames: 9}\n")  # the oracle and the panel rate every toy video
    with pytest.raises(
        DataError, match=r"p\.yaml.*sampler\.height 64: the toy world's oracle rates clips of 9 x 48 x 48"
    ):
        PipelineConfig.load(path)
    path.write_text("sampler: {height: 48, width: 48, frames: 9}\n")  # its own size, said explicitly
    assert PipelineConfig.load(path).sampler.height == 48


def test_a_negative_guidance_is_refused_when_the_file_loads(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sampler: {guidance: -1}\n")  # not only when the generate stage runs, naming --guidance
    with pytest.raises(DataError, match=r"p\.yaml.*sampler\.guidance"):
        PipelineConfig.load(path)


def test_a_toy_run_refuses_a_t2v_of_another_size_before_generating(tmp_path, tiny_cogvideox_dir, capsys):
    from videolift.pipeline.run import run_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(f"t2v: {tiny_cogvideox_dir}\nworkdir: {tmp_path / 'w'}\n")  # 9 x 64 x 64 clips
    with pytest.raises(VideoliftError) as refused:
        run_pipeline(PipelineConfig.load(path), progress=False)
    assert "makes clips of 9 x 64 x 64; the oracle rates 9 x 48 x 48" in str(refused.value)
    assert "sampler.height 48" in str(refused.value) and not (tmp_path / "w" / "hra_videos").exists()
    path.write_text(path.read_text() + "sampler: {height: 48, width: 48}\n")  # the size the oracle rates
    run_pipeline(PipelineConfig.load(path), progress=False, plan=True)  # passes: the first stage would run
    assert "generate:hra_videos: would run" in " ".join(capsys.readouterr().out.split())


def test_set_edits_nested_settings_with_yaml_values(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("align:\n  settings: {lr: 0.001}\nevaluate:\n")
    cfg = PipelineConfig.load(
        path,
        sets=["align.settings.seed=3", "align.methods=[rs]", "evaluate.prompts.n=5", "sampler.guidance=2.5"],
    )
    assert cfg.align.settings == {"lr": 0.001, "seed": 3}  # merged into the section, not replacing it
    assert (cfg.align.methods, cfg.evaluate.prompts.n, cfg.sampler.guidance) == (["rs"], 5, 2.5)
    # Unquoted, as a user types it, `no` is YAML's false: align takes it as its "no".
    unquoted = PipelineConfig.load(
        path, sets=["align.settings.mixed_precision=no", "evaluate={}"]
    ).align.settings
    assert AlignConfig(model="m", scores="s", videos="v", out="o", **unquoted).mixed_precision == "no"
    with pytest.raises(DataError, match=r"p\.yaml.*'align\.methods\.0'"):
        PipelineConfig.load(path, sets=["align.methods=[dpo]"])  # validated like the file itself
    with pytest.raises(DataError, match=r"'align\.methods': names no method: give at least one of rwl, rs"):
        PipelineConfig.load(path, sets=["align.methods=[]"])
    with pytest.raises(DataError, match=r"'critic\.lora_targets': names no layer: give at least one"):
        PipelineConfig.load(path, sets=["critic.lora_targets=[]"])
    with pytest.raises(DataError, match=r"p\.yaml.*KEY=VALUE"):
        PipelineConfig.load(path, sets=["align.settings.seed"])
    with pytest.raises(DataError, match=r"align\.settings\.lr is not a section"):
        PipelineConfig.load(path, sets=["align.settings.lr.x=1"])
    with pytest.raises(DataError, match=r"--set 'align\.methods=\[rwl': the value is not YAML"):
        PipelineConfig.load(path, sets=["align.methods=[rwl"])
    path.write_text("sampler: {steps: 2\n")
    with pytest.raises(DataError, match=r"p\.yaml, line 2: malformed YAML"):
        PipelineConfig.load(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(DataError, match=r"p\.yaml: expected a mapping of settings, got a list"):
        PipelineConfig.load(path, sets=["seed=1"])
    path.write_text(
        "{}\n"
    )  # values past YAML's (Python's) limits, and a seed numpy cannot take, named at load
    with pytest.raises(DataError, match=r"--set 'seed=9+': the value is not YAML \(Exceeds the limit"):
        PipelineConfig.load(path, sets=["seed=" + "9" * 5000])
    with pytest.raises(DataError, match=r"field 'seed'"):
        PipelineConfig.load(path, sets=["seed=4294967296"])


def test_no_progress_silences_the_libraries_loading_bars_during_the_stages(tmp_path, monkeypatch):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from videolift.pipeline import run as pipeline

    during = []
    monkeypatch.setattr(
        pipeline,
        "_run_stages",
        lambda *a: during.append(
            (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())
        ),
    )
    path = tmp_path / "p.yaml"
    path.write_text("seed: 0\n")
    pipeline.run_pipeline(PipelineConfig.load(path), progress=False)
    pipeline.run_pipeline(PipelineConfig.load(path), progress=True)
    assert during == [(False, False), (True, True)]
    assert diffusers_logging.is_progress_bar_enabled()  # restored after the run


def test_no_progress_reaches_the_toy_stages_and_the_critics_own_process(tmp_path, monkeypatch, capfd):
    """The demo's log under --no-progress held the toy panel's "rating" bar, the real clips' "rendering"
    bar, and transformers' "Loading weights" / "Writing model shards" from the critics' processes."""
    from transformers.utils import logging as transformers_logging

    from videolift.critic import train as critic_train
    from videolift.pipeline import stages
    from videolift.toy.corpus import plan, write_corpus

    path = tmp_path / "p.yaml"
    path.write_text("seed: 0\n")
    cfg = PipelineConfig.load(path)
    stages.real_toy_stage(3, 0, tmp_path / "real", progress=False).run()
    assert len((tmp_path / "real/manifest.jsonl").read_text().splitlines()) == 3
    write_corpus(plan(3, defect_rate=0.5, seed=1, split="train"), tmp_path / "clips", progress=False)
    stages.toy_panel_stage(cfg, tmp_path / "clips", tmp_path / "hra.jsonl", progress=False).run()
    assert len((tmp_path / "hra.jsonl").read_text().splitlines()) == 3 * cfg.hra.annotators
    err = capfd.readouterr().err
    assert "rendering" not in err and "rating" not in err, err

    bars = []
    monkeypatch.setattr(
        critic_train, "train_critic", lambda **kw: bars.append(transformers_logging.is_progress_bar_enabled())
    )
    transformers_logging.enable_progress_bar()  # as a freshly spawned process starts
    stages._train_critic_quietly(base="b", out=tmp_path / "c")
    assert bars == [False] and transformers_logging.is_progress_bar_enabled()  # and restored after


def test_cli_run_set_reaches_the_config(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from videolift.cli import app
    from videolift.pipeline import run as pipeline

    seen = {}

    def fake_run(cfg, **kwargs):
        seen["cfg"], seen["progress"] = cfg, kwargs["progress"]
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run)
    path = tmp_path / "p.yaml"
    path.write_text("seed: 0\n")
    result = CliRunner().invoke(app, ["run", str(path), "--set", "align.settings.seed=7", "--set", "seed=2"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].align.settings == {"seed": 7} and seen["cfg"].seed == 2
    assert seen["progress"] is True
    result = CliRunner().invoke(app, ["run", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert seen["progress"] is False


def test_a_missing_model_directory_is_refused_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t2v").mkdir()
    path = tmp_path / "p.yaml"
    path.write_text("t2v: t2v\nvlm: ./vlm\n")
    with pytest.raises(DataError, match=r"p\.yaml, field 'vlm'.*'\./vlm': no such directory"):
        PipelineConfig.load(path)
    path.write_text("t2v: t2v\nvlm: Qwen/Qwen2-VL-2B-Instruct\n")  # a Hub id is left to the loader
    assert PipelineConfig.load(path).vlm == "Qwen/Qwen2-VL-2B-Instruct"


def _load_with(tmp_path, text: str = "{}\n", sets: tuple[str, ...] = ()) -> PipelineConfig:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return PipelineConfig.load(path, sets=sets)


def test_a_workdir_in_the_t2v_models_directory_is_refused_at_load(tmp_path):
    # align refuses an OUT in its model (the checkpoints would count as the model's weights): the run
    # found out at its align stage, after generating, rating and training the critic.
    model = tmp_path / "t2v"
    model.mkdir()
    for workdir, says in ((model, "is also t2v"), (model / "run", f"is inside t2v {model}")):
        with pytest.raises(
            DataError, match=f"workdir {workdir} {says}: give the run a workdir outside the model"
        ):
            _load_with(tmp_path, f"t2v: {model}\nworkdir: {workdir}\n")
    _load_with(tmp_path, f"t2v: {model}\nworkdir: {tmp_path / 'run'}\n")


def test_the_workdir_check_reads_a_relative_workdir_from_the_config_files_folder(tmp_path, monkeypatch):
    # t2v is read from the current directory, a relative workdir from the config file's: so is the check.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "cfg").mkdir()
    (tmp_path / "toy").mkdir()  # a folder named like the committed base's short name
    ok = tmp_path / "cfg/a.yaml"
    ok.write_text("t2v: model\nworkdir: model/run\n")  # cfg/model/run: not in ./model
    assert PipelineConfig.load(ok).workdir == tmp_path / "cfg/model/run"
    bad = tmp_path / "cfg/b.yaml"
    bad.write_text(f"t2v: {tmp_path / 'model'}\nworkdir: ../model/run\n")  # ./model/run
    with pytest.raises(DataError, match="b.yaml, field 'workdir': workdir .*model/run is inside t2v"):
        PipelineConfig.load(bad)
    with pytest.raises(OptionError, match="field 'workdir': workdir model/run is inside t2v"):
        PipelineConfig.load(bad, workdir=Path("model/run"))  # --workdir: from the current directory
    toy = tmp_path / "cfg/c.yaml"
    toy.write_text(f"workdir: {tmp_path / 'toy/run1'}\n")  # t2v: toy is the committed base, not ./toy
    assert PipelineConfig.load(toy).workdir == tmp_path / "toy/run1"


@pytest.mark.parametrize(
    "text, field, message",
    [
        ("align: {settings: {learning_rate: 0.1}}", "learning_rate", "Extra inputs are not permitted"),
        ("align: {settings: {max_steps: one}}", "max_steps", "valid integer"),
        ("align: {settings: {text_dropout: 2}}", "text_dropout", "less than 1"),
        ("align: {settings: {lora_targets: []}}", "lora_targets", "at least one module"),
        ("align: {settings: {height: 64}}", "", "both height and width"),  # AlignConfig's own checks
        # Filled in by the pipeline: said where they are set instead of silently replaced or clashing.
        ("align: {settings: {method: rs}}", "method", "align.methods"),
        ("align: {settings: {model: m}}", "model", "t2v"),
        ("align: {settings: {real: r.jsonl}}", "real", "align.real"),
        ("align: {settings: {scores: s.jsonl}}", "scores", "set by the pipeline"),
        ("align: {settings: {videos: v}}", "videos", "set by the pipeline"),
        ("align: {settings: {out: o}}", "out", "set by the pipeline"),
        ("align: {settings: {resume: true}}", "resume", "set by the pipeline"),
    ],
)
def test_align_settings_are_alignconfig_fields_checked_at_load(tmp_path, text, field, message):
    where = "align.settings" + (f".{field}" if field else "")
    with pytest.raises(DataError, match=rf"p\.yaml, field '{re.escape(where)}': .*{re.escape(message)}"):
        _load_with(tmp_path, text)


def test_align_settings_edited_by_set_are_checked_and_pipeline_defaults_may_be_overridden(tmp_path):
    with pytest.raises(
        DataError, match=r"p\.yaml, field 'align\.settings\.learnin_rate': Extra inputs.*\(set by"
    ):
        _load_with(tmp_path, sets=("align.settings.learnin_rate=1",))
    with pytest.raises(
        DataError, match=r"'align\.settings\.lr': .*greater than 0 \(set by --set align\.settings\.lr="
    ):
        _load_with(tmp_path, sets=("align.settings.lr=-1",))  # the file is not blamed alone
    cfg = _load_with(
        tmp_path, sets=("align.settings.seed=3", "align.settings.cache_dir=c", "align.settings.lr=1")
    )
    assert cfg.align.settings == {"seed": 3, "cache_dir": "c", "lr": 1}  # as written: the stage merges it


@pytest.mark.parametrize(
    "edit, field, message",
    [
        ("hra.test_fraction=1.5", "hra.test_fraction", "less than 1"),
        ("hra.test_fraction=0", "hra.test_fraction", "greater than 0"),
        ("hra.annotators=0", "hra.annotators", "greater than or equal to 1"),
        ("hra.prompts.n=0", "hra.prompts.n", "greater than or equal to 1"),
        ("critic.num_frames=0", "critic.num_frames", "greater than or equal to 1"),
        ("critic.batch_size=0", "critic.batch_size", "greater than or equal to 1"),
        ("critic.lr=0", "critic.lr", "greater than 0"),
        ("critic.epochs=0", "critic.epochs", "greater than 0"),
        ("critic.max_steps=0", "critic.max_steps", "greater than or equal to 1"),
        ("critic.score_batch_size=0", "critic.score_batch_size", "greater than or equal to 1"),
        ("critic.frame_sampling=pairs", "critic.frame_sampling", "even num_frames, got 9"),
        ("sampler.steps=0", "sampler.steps", "greater than or equal to 1"),
        ("sampler.batch_size=0", "sampler.batch_size", "greater than or equal to 1"),
        ("sampler.frames=0", "sampler.frames", "greater than or equal to 1"),
        ("sampler.fps=0", "sampler.fps", "greater than or equal to 1"),
        ("evaluate.prompts.per_prompt=0", "evaluate.prompts.per_prompt", "greater than or equal to 1"),
        ("align.prompts.n=0", "align.prompts.n", "greater than or equal to 1"),
        # YAML reads yes / on as true, which pydantic would take as 1
        ("critic.epochs=yes", "critic.epochs", "yes, no, on and off"),
        ("sampler.steps=on", "sampler.steps", "true is not a value of this setting"),
        ("align.settings.max_steps=true", "align.settings.max_steps", "true is not a value"),
    ],
)
def test_counts_and_fractions_out_of_range_are_refused_at_load(tmp_path, edit, field, message):
    with pytest.raises(DataError, match=rf"p\.yaml, field '{re.escape(field)}': .*{re.escape(message)}"):
        _load_with(tmp_path, "critic: {num_frames: 9}\n", sets=(edit,))


@pytest.mark.parametrize(
    "text, field, message",
    [
        ("align: {real: nope.jsonl}", "align.real", "'nope.jsonl': no such file"),
        ("align: {real: v}", "align.real", "'v': a directory, not a file"),
        ("align: {prompts: {file: nope.txt}}", "align.prompts.file", "no such file"),
        ("evaluate: {prompts: {file: nope.txt}}", "evaluate.prompts.file", "no such file"),
        ("hra: {prompts: {file: nope.txt}}", "hra.prompts.file", "no such file"),
        ("hra: {source: file, file: nope.jsonl, videos: v}", "hra.file", "no such file"),
        ("hra: {source: file, file: h.jsonl, videos: nope}", "hra.videos", "'nope': no such directory"),
        ("hra: {source: file, file: h.jsonl, videos: h.jsonl}", "hra.videos", "a file, not a directory"),
        ("hra: {source: file, videos: v}", "hra.file", "hra.source 'file' needs"),
        ("hra: {source: file, file: h.jsonl}", "hra.videos", "hra.source 'file' needs"),
        ("align: {settings: {reward_config: nope.yaml}}", "align.settings.reward_config", "no such file"),
        ("align: {settings: {real_videos: nope}}", "align.settings.real_videos", "no such directory"),
        (
            "align: {settings: {validation_real: nope.jsonl}}",
            "align.settings.validation_real",
            "no such file",
        ),
        (
            "align: {settings: {validation_real: h.jsonl, validation_real_videos: h.jsonl}}",
            "align.settings.validation_real_videos",
            "a file, not a directory",
        ),
        ("align: {settings: {validation_prompts: v}}", "align.settings.validation_prompts", "not a file"),
        # Beyond the toy world, prompts come from files (only toy runs draw their own).
        (
            "t2v: THUDM/CogVideoX-2b\nhra: {source: file, file: h.jsonl, videos: v}\n",
            "align.prompts.file",
            "only toy runs draw their own",
        ),
        (
            "t2v: o/m\nhra: {source: file, file: h.jsonl, videos: v}\nalign: {prompts: {file: h.jsonl}}\n",
            "evaluate.prompts.file",
            "only toy runs draw their own",
        ),
    ],
)
def test_input_files_are_looked_for_at_load(tmp_path, monkeypatch, text, field, message):
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "h.jsonl")
    (tmp_path / "v").mkdir()
    with pytest.raises(DataError, match=rf"p\.yaml, field '{re.escape(field)}': .*{re.escape(message)}"):
        _load_with(tmp_path, text)


@pytest.mark.parametrize(
    "text, name, content, message",
    [
        ("align: {settings: {reward_config: rc.yaml}}", "rc.yaml", "scores: {Good: -1, Normal: 0.5, Bad: 0}\n",
         "rc.yaml, field 'scores': must be finite and at least 0"),
        ("align: {real: r.jsonl}", "r.jsonl", '{"video": "a.mp4"}\n', "r.jsonl, line 1, field 'prompt'"),
        ("align: {settings: {validation_real: r.jsonl}}", "r.jsonl", "\n", "the real set has no records (--validation-real)"),
        ("align: {settings: {validation_prompts: p.txt}}", "p.txt", "\n", "p.txt: no prompts in file"),
        ("evaluate: {prompts: {file: e.txt}}", "e.txt", "\n", "e.txt: no prompts in file"),
        ("hra: {source: file, file: h.jsonl, videos: v}", "h.jsonl", HRA_LINE.replace("Good", "Great"),
         "h.jsonl, line 1, field 'ratings.video_fidelity.label'"),
        ("hra: {source: file, file: h.jsonl, videos: v}", "h.jsonl", HRA_LINE + HRA_LINE.replace('"video_fidelity": {"label": "Good"}', ""),
         "h.jsonl, line 2, field 'ratings': no rating"),  # as `hra split` refuses it
    ],
)  # fmt: skip
def test_input_files_are_read_at_load_not_hours_later_by_their_stage(
    tmp_path, monkeypatch, text, name, content, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v").mkdir()
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        _load_with(tmp_path, text)


def test_input_files_are_looked_for_where_the_run_starts(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("h.jsonl", "p.txt", "r.jsonl", "rc.yaml"):
        write_input(data / name)
    (data / "v").mkdir()
    text = (
        "t2v: THUDM/CogVideoX-2b\nhra: {source: file, file: h.jsonl, videos: v, prompts: {file: gone.txt}}\n"
        "align: {real: r.jsonl, prompts: {file: p.txt}, settings: {reward_config: rc.yaml, real_videos: v}}\n"
        "evaluate: {prompts: {file: p.txt}}\n"
    )
    monkeypatch.chdir(data)
    cfg = _load_with(tmp_path, text)  # hra.prompts is not read when the ratings are given
    assert (cfg.hra.file, cfg.align.real) == (Path("h.jsonl"), Path("r.jsonl"))
    monkeypatch.chdir(tmp_path)  # the file's directory is not where relative paths are read from
    with pytest.raises(
        DataError, match=rf"field 'hra\.file': 'h\.jsonl': no such file.*read from {tmp_path}"
    ):
        _load_with(tmp_path, text)


@pytest.mark.parametrize(
    "edit, field, status",
    [  # a value --set gives is the command line's (2); a file it names that is missing is not (1)
        ("align.settings.learnin_rate=1", "align.settings.learnin_rate", 2),
        ("align.settings.max_steps=one", "align.settings.max_steps", 2),
        ("align.real=nope.jsonl", "align.real", 1),
        ("hra.test_fraction=1.5", "hra.test_fraction", 2),
        ("sampler.steps=0", "sampler.steps", 2),
        ("align.methods=[]", "align.methods", 2),  # a run generated and scored, then aligned nothing
        ("critic.lora_targets=[]", "critic.lora_targets", 2),  # every layer, as unset, but another stage key
    ],
)
@pytest.mark.parametrize("plan", [False, True], ids=["run", "plan"])
def test_cli_run_refuses_bad_settings_before_any_stage_and_writes_nothing(
    tmp_path, monkeypatch, edit, field, status, plan
):
    from typer.testing import CliRunner

    from videolift.cli import app
    from videolift.pipeline import run as pipeline

    def no_stage(cfg, **kwargs):
        raise AssertionError("a stage was reached")

    if not plan:  # on a bad config, the real run would start generating videos
        monkeypatch.setattr(pipeline, "run_pipeline", no_stage)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("workdir: w\n")
    args = ["run", "p.yaml", "--set", edit, "--no-progress", *(["--plan"] if plan else [])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == status, result.output
    assert not isinstance(result.exception, AssertionError)
    text = " ".join(result.output.split())
    assert f"p.yaml, field '{field}'" in text and "Traceback" not in text, result.output
    assert list(tmp_path.iterdir()) == [tmp_path / "p.yaml"]  # no workdir, nothing written


def test_stages_are_keyed_on_what_changes_their_result_and_on_every_file_they_read(tmp_path):
    """A stage reruns when a file it reads changes (a prompts file edited in place, the real set, a
    retrained LoRA), and not for settings that change only how it runs (which used to retrain the
    critic, or wipe alignment's checkpoints and start over)."""
    from videolift.pipeline.stages import (
        align_stage,
        critic_stage,
        critic_train_config,
        evaluate_stage,
        generate_stage,
        generation_settings,
    )

    t2v, lora, real = tmp_path / "t2v", tmp_path / "lora", tmp_path / "real.jsonl"
    for d in (t2v, lora):
        d.mkdir()
        (d / "weights.bin").write_text("w")
    prompts = tmp_path / "heldout.txt"
    for path in (real, prompts):
        path.write_text("x\n")

    def cfg(*sets: str) -> PipelineConfig:
        return _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\n", sets)

    def keys(make, *sets: str) -> tuple[str, list]:
        stage = make(cfg(*sets))
        return stage.key(), stage.inputs

    critic = lambda c: critic_stage(c, "vlm", tmp_path, "critic", True)  # noqa: E731
    assert keys(critic)[0] == keys(critic, "critic.score_batch_size=4", "critic.label_only_baseline=false")[0]
    assert keys(critic)[0] == keys(critic, "critic.val_every=0")[0]  # logs a loss, trains the same critic
    assert critic_train_config(cfg("critic.val_every=5")).val_every == 5
    # How long ranks wait reaches `critic train` (default: its own) and trains the same critic.
    assert keys(critic)[0] == keys(critic, "critic.ddp_timeout=7200")[0]
    assert critic_train_config(cfg("critic.ddp_timeout=7200")).ddp_timeout == 7200
    assert critic_train_config(cfg()).ddp_timeout == TRAINING_TIMEOUT_SECONDS
    with pytest.raises(VideoliftError, match="critic.ddp_timeout"):
        cfg("critic.ddp_timeout=0")
    assert keys(critic)[0] != keys(critic, "critic.lr=0.5")[0]
    # A large critic's settings reach `critic train`, and while unset leave earlier runs' keys alone.
    assert set(critic(cfg()).settings) == set(critic(cfg("critic.grad_accum=1")).settings)
    gpu = ("critic.gradient_checkpointing=true", "critic.dtype=bfloat16", "critic.max_pixels=200704",
           "critic.lora_targets=[q_proj, v_proj]", "critic.weight_decay=0.01", "critic.warmup_ratio=0.1",
           "critic.grad_accum=4", "critic.lora_r=128", "critic.lora_alpha=256")  # fmt: skip
    sft = critic_train_config(cfg(*gpu))
    assert (sft.gradient_checkpointing, sft.dtype, sft.max_pixels, sft.lora_targets) == (
        True, "bfloat16", 200704, ["q_proj", "v_proj"])  # fmt: skip
    assert (sft.weight_decay, sft.warmup_ratio, sft.grad_accum, sft.lora_r, sft.lora_alpha) == (
        0.01, 0.1, 4, 128, 256)  # fmt: skip
    assert {"grad_accum", "dtype", "max_pixels"} <= critic(cfg(*gpu)).settings.keys()
    assert (
        critic(cfg())
        .settings.keys()
        .isdisjoint({"grad_accum", "dtype", "max_pixels", "gradient_checkpointing"})
    )

    align = lambda c: align_stage(c, str(t2v), "rwl", real, False)  # noqa: E731
    for resumable in ("log_every=5", "checkpoint_every=7", "num_workers=1", "encode_batch_size=2"):
        assert keys(align)[0] == keys(align, f"align.settings.{resumable}")[0], resumable
    assert keys(align)[0] != keys(align, "align.settings.max_steps=9")[0]
    assert real in keys(align)[1]

    def evaluate(c: PipelineConfig):
        return evaluate_stage(
            c, str(t2v), {"rwl": (str(t2v), str(lora))}, generation_settings(c.sampler), False
        )

    assert {t2v, lora} <= set(keys(evaluate)[1])
    assert prompts in keys(evaluate, f"evaluate.prompts.file={prompts}")[1]

    def generate(c: PipelineConfig):
        gen = generation_settings(c.sampler)
        return generate_stage(c, str(t2v), gen, c.align.prompts, "train", "align_videos", False)

    assert prompts in keys(generate, f"align.prompts.file={prompts}")[1]
    # Offloading reaches generation but makes the same videos: finished stages stay finished.
    assert generation_settings(cfg("sampler.offload=model").sampler)["offload"] == "model"
    assert "offload" not in generation_settings(cfg().sampler)
    for stage in (generate, evaluate):
        assert keys(stage)[0] == keys(stage, "sampler.offload=model")[0]


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "[]\n", "0\n"])
def test_a_config_that_is_not_a_mapping_is_refused_even_when_empty(tmp_path, text):
    """A truncated or empty file used to launch the default run (hundreds of videos)."""
    from videolift.align.config import AlignConfig

    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=r"p\.yaml: expected a mapping of settings, got"):
        PipelineConfig.load(path)
    with pytest.raises(DataError, match=r"p\.yaml: expected a mapping of AlignConfig fields, got"):
        AlignConfig.load(path, model="m", scores="s.jsonl", videos="v", out="o")


def test_home_in_paths_is_expanded_and_blank_paths_are_refused(tmp_path, monkeypatch):
    """`~/runs` was a folder named `~` beside the config (and `~/prompts.txt` was "no such file")."""
    from videolift.align.config import AlignConfig

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home/t2v").mkdir(parents=True)
    write_input(tmp_path / "home/heldout.txt")
    cfg = _load_with(tmp_path, "workdir: ~/runs\nt2v: ~/t2v\nevaluate: {prompts: {file: ~/heldout.txt}}\n")
    home = tmp_path / "home"
    assert (cfg.workdir, cfg.t2v, cfg.evaluate.prompts.file) == (
        home / "runs",
        str(home / "t2v"),
        home / "heldout.txt",
    )
    (home / "rc.yaml").write_text("aggregation: mean\n")
    settings = _load_with(tmp_path, "align: {settings: {reward_config: ~/rc.yaml, cache_dir: ~/cache}}\n")
    assert settings.align.settings == {
        "reward_config": str(home / "rc.yaml"),
        "cache_dir": str(home / "cache"),
    }
    aligned = AlignConfig.load(None, model="~/t2v", scores="~/s.jsonl", videos="~/v", out="~/o")
    assert (aligned.model, aligned.out, aligned.scores) == (str(home / "t2v"), home / "o", home / "s.jsonl")
    for text, field in [("workdir: ''\n", "workdir"), ("t2v: ' '\n", "t2v"), ("vlm: ''\n", "vlm")]:
        with pytest.raises(DataError, match=rf"p\.yaml, field '{field}': .*is empty"):
            _load_with(tmp_path, text)


@pytest.mark.parametrize(
    "edit, field, message",
    [
        ("critic.min_pixels=1000", "critic", "min_pixels 1000 is above max_pixels 10"),
        ("critic.lr=.inf", "critic.lr", "finite number"),
        ("critic.epochs=.nan", "critic.epochs", "finite number"),
        ("sampler.guidance=.nan", "sampler.guidance", "finite number"),
    ],
)
def test_critic_and_sampler_values_the_stages_refuse_are_refused_at_load(tmp_path, edit, field, message):
    """They were found only when their stage started, after generation and rating (or never: an infinite
    learning rate trained)."""
    with pytest.raises(DataError, match=rf"p\.yaml, field '{re.escape(field)}': .*{re.escape(message)}"):
        _load_with(tmp_path, "critic: {max_pixels: 10}\n", sets=(edit,))


@pytest.mark.parametrize(
    "edit", ["critic.check_frames=9", "critic.check_threshold=0.2", "critic.check_threshold=0.05"]
)
def test_check_settings_without_check_are_refused_at_load_not_left_unused(tmp_path, edit):
    """As `critic train --check-*` without --check: a plain critic was trained, its spec recording the
    check frames and threshold of a check it never had."""
    with pytest.raises(DataError, match=r"p\.yaml, field 'critic': .*needs critic\.check: true"):
        _load_with(tmp_path, sets=(edit,))
    assert _load_with(tmp_path, "critic: {check: true}\n", sets=(edit,)).critic.check


def test_a_bad_value_from_the_command_line_is_not_blamed_on_the_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from videolift.align.config import AlignConfig
    from videolift.cli import app

    path = tmp_path / "p.yaml"
    path.write_text("lr: 0.001\n")
    with pytest.raises(DataError, match=r"^--lr -1.0: Input should be greater than 0$"):  # as typed
        AlignConfig.load(path, model="m", scores="s.jsonl", videos="v", out="o", lr=-1.0)
    path.write_text("lr: -1\n")
    with pytest.raises(DataError, match=r"p\.yaml, field 'lr'"):  # from the file: named so
        AlignConfig.load(path, model="m", scores="s.jsonl", videos="v", out="o", max_steps=3)
    with pytest.raises(DataError, match=r"p\.yaml with the command-line options: give both height and width"):
        AlignConfig.load(path, model="m", scores="s.jsonl", videos="v", out="o", lr=0.1, height=64)
    with pytest.raises(DataError, match=r"p\.yaml, field 'seed': .*\(set by --set seed=\.\.\.\)"):
        _load_with(tmp_path, sets=("seed=-1",))
    with pytest.raises(
        DataError, match=r"field 'critic': .*above max_pixels 10 \(edited by --set critic\.min_pixels\)"
    ):
        _load_with(tmp_path, "critic: {max_pixels: 10}\n", sets=("critic.min_pixels=1000",))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("workdir: w\n")
    for args in (["run", "run.yaml", "--workdir", "", "--plan"], ["demo", "--out", " "]):
        said = CliRunner().invoke(app, args)
        assert said.exit_code == 2 and "is empty" in said.output, said.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "run.yaml"]  # nothing written


def test_a_hub_model_keys_generation_and_evaluation_and_a_local_vlm_keys_the_critic(tmp_path):
    """Another Hub id in `t2v` reused the first model's videos ("up to date"); a base VLM rebuilt in
    place kept the critic trained from the old one. A critic recorded before the VLM was tracked stays
    done."""
    from videolift.pipeline.runner import Runner
    from videolift.pipeline.stages import (
        critic_stage,
        evaluate_stage,
        generate_stage,
        generation_settings,
    )

    cfg = _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\n")
    gen = generation_settings(cfg.sampler)

    def generate(t2v: str):
        return generate_stage(cfg, t2v, gen, cfg.align.prompts, "train", "align_videos", False).key()

    def evaluate(t2v: str):
        return evaluate_stage(cfg, t2v, {}, gen, False).key()

    for key in (generate, evaluate):
        assert key("THUDM/CogVideoX-2b") != key("THUDM/CogVideoX-5b")

    vlm = tmp_path / "vlm"
    vlm.mkdir()
    (vlm / "model.safetensors").write_text("old")
    before = critic_stage(cfg, str(vlm), tmp_path, "critic", True).key()
    (vlm / "model.safetensors").write_text("rebuilt, and bigger")
    assert critic_stage(cfg, str(vlm), tmp_path, "critic", True).key() != before

    # A record of the version before (keyed on the ratings only) is still done.
    split = cfg.workdir / "hra_split"
    split.mkdir(parents=True)
    (split / "train.jsonl").write_text(HRA_LINE)
    (cfg.workdir / "critic").mkdir()
    runner, stage = Runner(cfg.workdir), critic_stage(cfg, str(vlm), tmp_path, "critic", True)
    old = stage.key(runner.relative, variant=(stage.settings, [split / "train.jsonl"]))
    runner.manifest["stages"][stage.name] = {
        "key": old,
        "settings": stage.settings,
        "outputs": stage.output_prints(runner.relative),
    }
    assert runner.why_to_run(stage) is None


def test_the_split_is_keyed_as_before_group_by_existed_unless_grouped_by_prompt(tmp_path):
    """Splits recorded before `hra.group_by` existed stay done; grouping by prompt redoes the split."""
    from videolift.pipeline.stages import split_stage

    hra = tmp_path / "hra.jsonl"
    write_input(hra)
    default = split_stage(_load_with(tmp_path), hra)
    assert set(default.settings) == {"test_fraction", "seed"}
    by_prompt = split_stage(_load_with(tmp_path, sets=("hra.group_by=prompt",)), hra)
    assert by_prompt.key() != default.key()


def test_evaluate_oracle_false_turns_the_oracle_off_in_a_toy_run(tmp_path, monkeypatch):
    """`evaluate.oracle: false` is obeyed in the toy world (where the oracle is on by default)."""
    from videolift.evaluate import compare
    from videolift.pipeline.stages import evaluate_stage, generation_settings

    seen = {}
    monkeypatch.setattr(compare, "compare_models", lambda *a, **kw: seen.update(kw) or {})
    cfg = _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\nevaluate: {{oracle: false}}\n")
    assert cfg.toy
    stage = evaluate_stage(cfg, str(tmp_path), {}, generation_settings(cfg.sampler), False)
    assert stage.settings["oracle"] is False
    stage.run()
    assert seen["oracle"] is False


def test_a_critic_rating_one_dimension_leaves_all_good_videos_for_rs(tmp_path):
    """Scores rating only semantic_consistency, all Good, have all-Good videos: RS is not skipped."""
    from videolift.pipeline.stages import any_all_good

    good = {"semantic_consistency": {"label": "Good", "reason": "", "score": 1.0}}
    lines = [{"video": f"{i}.mp4", "prompt": "p", "ratings": good, "reward": 1.0} for i in range(2)]
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert any_all_good(scores)


def test_a_local_t2v_is_not_keyed_by_its_directory_name(tmp_path):
    """A local t2v is keyed by its files, not its name: earlier runs' generation and evaluation stay done."""
    from videolift.pipeline.stages import evaluate_stage, generate_stage, generation_settings

    cfg = _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\n")
    gen = generation_settings(cfg.sampler)
    t2v = tmp_path / "CogVideoX-2b"
    t2v.mkdir()
    generate = generate_stage(cfg, str(t2v), gen, cfg.align.prompts, "train", "align_videos", False)
    evaluate = evaluate_stage(cfg, str(t2v), {}, gen, False)
    assert "model" not in generate.settings and "model" not in evaluate.settings


def test_a_damaged_train_split_or_other_rated_videos_are_not_taken_as_the_critics(tmp_path):
    """Found by editing the workdir by hand: a truncated hra_split/train.jsonl left the split "up to date"
    (only test.jsonl was its output) and the critic retrained on the damaged half; and pointing
    `hra.videos` at other clips of the same ratings kept the critic trained on the first ones."""
    from videolift.pipeline.runner import Runner
    from videolift.pipeline.stages import critic_eval_stage, critic_stage, split_stage

    hra = tmp_path / "hra.jsonl"
    hra.write_text("".join(HRA_LINE.replace("v.mp4", f"v{i}.mp4") for i in range(8)))
    cfg = _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\n")
    runner = Runner(cfg.workdir)
    runner.run(split_stage(cfg, hra))
    train = cfg.workdir / "hra_split" / "train.jsonl"
    train.write_text(train.read_text().splitlines(keepends=True)[0])
    assert "train.jsonl changed" in Runner(cfg.workdir).why_to_run(split_stage(cfg, hra))

    first, second = tmp_path / "clips", tmp_path / "clips_reencoded"
    for d in (first, second):
        d.mkdir()
    (first / "v0.mp4").write_bytes(b"a")
    (second / "v0.mp4").write_bytes(b"bb")
    for make in (
        lambda c, v: critic_stage(c, "vlm", v, "critic", True),
        lambda c, v: critic_eval_stage(c, v, "critic", False),
    ):
        human = _load_with(
            tmp_path, f"workdir: {tmp_path / 'w'}\nhra: {{source: file, file: {hra}, videos: {first}}}\n"
        )
        assert make(human, first).key() != make(human, second).key()
        # hra.videos is keyed by its path: the folder may hold the prompts, the real clips and more (the
        # GPU recipe's data/), and editing those must not retrain the critic
        before = make(human, first).key()
        (first / "heldout_prompts.txt").write_text(f"{make}")
        assert make(human, first).key() == before
        toy = make(cfg, cfg.workdir / "hra_videos")  # the toy panel's: its generation manifest, by its bytes
        assert cfg.workdir / "hra_videos" / "manifest.jsonl" in toy.inputs


def test_alignment_is_keyed_on_a_local_base_models_files(tmp_path):
    """Found with the toy loop: a t2v rebuilt in place whose videos scored the same (a critic that rates
    everything alike) kept the model aligned from the old base; the align stage keyed the model's name."""
    from videolift.pipeline.stages import align_stage

    cfg = _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\n")
    t2v = tmp_path / "t2v"
    t2v.mkdir()
    (t2v / "model.safetensors").write_text("old")
    stage = align_stage(cfg, str(t2v), "rwl", None, False)
    before = stage.key()
    (t2v / "model.safetensors").write_text("rebuilt, and bigger")
    assert align_stage(cfg, str(t2v), "rwl", None, False).key() != before
    assert (
        align_stage(cfg, "THUDM/CogVideoX-2b", "rwl", None, False).settings["model"] == "THUDM/CogVideoX-2b"
    )


def test_the_evaluation_maps_rewards_as_alignment_did(tmp_path, monkeypatch):
    """`align.settings.reward_config` re-weights alignment, but the evaluate stage (summary.json's mean
    rewards, the reward-hacking guard) mapped labels by the paper's all the same. Now it maps them as
    alignment did: that file's mapping (a setting of the stage: a run evaluated by another reruns), with
    `align.rewards: oracle` the paper's (as the oracle's labels were mapped), else the critic's own."""
    from videolift.core.reward import RewardConfig
    from videolift.evaluate import compare
    from videolift.pipeline.stages import evaluate_stage, generation_settings

    seen: dict = {}
    monkeypatch.setattr(compare, "compare_models", lambda *a, **kw: seen.update(kw) or {})

    def stage(text: str = "", *sets: str):
        cfg = _load_with(tmp_path, f"workdir: {tmp_path / 'w'}\n" + text, sets)
        made = evaluate_stage(cfg, str(tmp_path), {}, generation_settings(cfg.sampler), False)
        seen.clear()
        made.run()
        return made

    default = stage()
    assert (
        seen["reward"] is None and "reward" not in default.settings
    )  # the critic's own: compare_models reads it
    (tmp_path / "min.yaml").write_text("aggregation: min\n")
    custom = stage(f"align: {{settings: {{reward_config: {tmp_path / 'min.yaml'}}}}}\n")
    assert seen["reward"] == RewardConfig(aggregation="min")
    assert seen["reward_source"].startswith("align.settings.reward_config (")
    assert custom.settings["reward"] == RewardConfig(aggregation="min").model_dump(mode="json")
    assert custom.key() != default.key()  # evaluated by the paper's mapping before: evaluated again
    (tmp_path / "paper.yaml").write_text("aggregation: mean\n")
    same = stage(f"align: {{settings: {{reward_config: {tmp_path / 'paper.yaml'}}}}}\n")
    assert same.key() == default.key() and seen["reward"].is_paper()  # the same figures: not redone
    oracle = stage("align: {rewards: oracle}\n")
    assert seen["reward"].is_paper() and "oracle" in seen["reward_source"] and oracle.key() == default.key()


def test_a_hub_model_not_in_the_hub_cache_offline_is_refused_before_the_first_stage(
    hub, tmp_path, monkeypatch
):
    """Offline, `run` found the VLM missing from the Hub cache only at its critic stage, after generating and
    rating the videos (and with rated data given, the T2V model only after training the critics)."""
    import videolift.pipeline.run as run
    from hub_cache import publish
    from videolift.pipeline.run import run_pipeline

    class Reached(Exception):
        pass

    def first_stage(*a, **k):
        raise Reached

    monkeypatch.setattr(run, "generate_stage", first_stage)
    assets = Path(run.__file__).parents[1] / "toy/assets"
    path = tmp_path / "p.yaml"
    for models, missing, field in (
        ("vlm: owner/vlm\n", "owner/vlm", "vlm"),
        ("t2v: owner/t2v\n", "owner/t2v", "t2v"),
    ):
        path.write_text(f"workdir: {tmp_path / 'w'}\n{models}")
        with pytest.raises(VideoliftError) as refused:
            run_pipeline(PipelineConfig.load(path), progress=False)
        message = str(refused.value)
        assert message.startswith(f"{field}: cannot read the ") and f"'{missing}'" in message
        assert f"HF_HUB_OFFLINE is set and {missing} is not in the Hub cache" in message
        assert not (tmp_path / "w").exists()  # refused before any stage: no empty workdir left behind
    (tmp_path / "w").mkdir()  # one that was there before is left as it was
    (tmp_path / "w" / "notes.txt").write_text("mine\n")
    with pytest.raises(VideoliftError, match="owner/t2v"):
        run_pipeline(PipelineConfig.load(path), progress=False)
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["notes.txt"]
    publish(hub, "owner/t2v", assets / "t2v", "a" * 40)
    publish(hub, "owner/vlm", assets / "vlm", "b" * 40)
    path.write_text(f"workdir: {tmp_path / 'w'}\nt2v: owner/t2v\nvlm: owner/vlm\n")
    with pytest.raises(Reached):  # both in the Hub cache: the run begins
        run_pipeline(PipelineConfig.load(path), progress=False)


def test_a_generation_stage_says_how_many_videos_it_continues_from(tmp_path, capsys):
    """Inside `run` the generation stages said nothing of the videos an earlier attempt had made (only
    "runs: interrupted: resumes its work"), where `generate` says "N already done"."""
    from videolift.pipeline.config import toy_asset
    from videolift.pipeline.stages import generate_stage, generation_settings

    path = tmp_path / "p.yaml"
    path.write_text(f"workdir: {tmp_path / 'w'}\nsampler: {{steps: 2, batch_size: 2}}\n")

    def stage(per_prompt: int) -> None:
        cfg = PipelineConfig.load(path, sets=["hra.prompts.n=1", f"hra.prompts.per_prompt={per_prompt}"])
        gen = generation_settings(cfg.sampler)
        generate_stage(cfg, toy_asset("t2v"), gen, cfg.hra.prompts, "train", "hra_videos", False).run()

    stage(1)
    assert "continued" not in capsys.readouterr().out  # nothing made before: nothing to say
    stage(2)  # the first video is kept, as after an interruption
    said = " ".join(capsys.readouterr().out.split())
    assert "generate:hra_videos: continued: 1 of its 2 videos were already made (kept)" in said, said
