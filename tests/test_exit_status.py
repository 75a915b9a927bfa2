"""Exit status (docs/formats.md#exit-status): 2 when the command line itself is wrong, whichever code finds
it (typer, a command, a settings validator); 1 for every other user error: bad data or config files,
missing inputs, an OUT that holds something else. The messages are those of before: only the status is
pinned here."""

import json

import pytest
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.errors import DataError, OptionError, UsageError, VideoliftError

ALIGN = ["align", "--model", "m", "--scores", "s.jsonl", "--videos", "v", "--out", "o"]
CRITIC = ["critic", "train", "--base", "base", "--data", "hra.jsonl", "--videos", ".", "--out", "c"]
SCORE = [
    "critic",
    "score",
    "--critic",
    "critic",
    "--manifest",
    "m.jsonl",
    "--videos",
    ".",
    "--out",
    "x.jsonl",
]
GENERATE = ["generate", "--model", "owner/name", "--prompts", "p.txt", "--out", "g"]
EVAL = ["eval", "--model", "m", "--prompts", "p.txt", "--out", "e"]
TOY_RATE = ["toy", "rate", "--manifest", "m.jsonl", "--videos", ".", "--out", "r.jsonl"]
PAIRS = [
    "annotate",
    "create-pairs",
    "--manifest-a",
    "a.jsonl",
    "--manifest-b",
    "b.jsonl",
    "--project",
    "proj",
]

USAGE = {  # name: (arguments, what the error says)
    "align, a validator: an option needing another": (
        [*ALIGN, "--validation-real-videos", "v"],
        "command line: validation_real_videos (--validation-real-videos) needs validation_real (--validation-real)",
    ),
    "align, a validator: out of range": ([*ALIGN, "--lr", "-1"], "--lr -1.0: Input should be greater than 0"),
    "align, a validator: options excluding each other": (
        [*ALIGN, "--resume", "--overwrite"],
        "command line: resume and overwrite exclude each other",
    ),
    "align, one of two settings refused together is an option": (
        [*ALIGN, "--config", "resume.yaml", "--overwrite"],
        "resume.yaml with the command-line options: resume and overwrite exclude each other",
    ),
    "align, a required option": (["align", *ALIGN[3:]], "--model is required: give it here or in --config"),
    "align, an unknown family": (
        [*ALIGN, "--family", "foo"],
        "unknown T2V family 'foo'; known: cogvideox, wan",
    ),
    "critic train, a validator: unknown dimension": (
        [*CRITIC, "--check", "--check-dimensions", "motion"],
        "--check-dimensions: unknown dimension 'motion'",
    ),
    "critic train, a validator: out of range": (
        [*CRITIC, "--lr", "-1"],
        "--lr -1.0: Input should be greater than 0",
    ),
    "critic train, a validator: options that conflict": (
        [*CRITIC, "--frame-sampling", "pairs", "--num-frames", "7"],
        "critic settings: --frame-sampling pairs needs an even --num-frames, got 7",
    ),
    "critic score, not a device": ([*SCORE, "--device", "gpu"], "--device gpu: "),
    "critic score, an output that is an input": (
        [*SCORE[:-1], "m.jsonl"],
        "--out m.jsonl is also --manifest: give each its own file",
    ),
    "generate, not an offload": (
        [*GENERATE, "--offload", "gpu"],
        "--offload 'gpu': use none, model, sequential",
    ),
    "generate, a count of 0": ([*GENERATE, "--per-prompt", "0"], "--per-prompt 0: must be at least 1"),
    "generate, not a dtype": ([*GENERATE, "--dtype", "float8"], "unknown dtype 'float8'"),
    "generate, not a family": ([*GENERATE, "--family", "foo"], "unknown T2V family 'foo'"),
    "generate, an OUT that is the model": (
        ["generate", "--model", "base", *GENERATE[3:-1], "base/"],
        "--out base is also --model: give the videos their own directory",
    ),
    "eval, an OUT that is a model": (
        ["eval", "--model", "base", *EVAL[3:-1], "base", "--oracle"],
        "--out base is also --model: give the comparison its own directory",
    ),
    "eval, a model's folder in OUT that is a model": (
        ["eval", "--model", "base", *EVAL[3:-1], ".", "--oracle"],
        "--out .'s folder for base, base, is also --model: give the comparison another --out",
    ),
    "align, an OUT that is the model": (
        ["align", "--model", "base", *ALIGN[3:-1], "./base"],
        "command line: out (--out) base is also model (--model): give the run its own directory",
    ),
    "align, an OUT inside the model": (
        ["align", "--model", "base", *ALIGN[3:-1], "base/run"],
        "command line: out (--out) base/run is inside model (--model) base: give the run its own directory",
    ),
    "align, the model in a folder of OUT the run replaces": (
        ["align", "--model", "run/pipeline", *ALIGN[3:-1], "run", "--overwrite"],
        "command line: model (--model) run/pipeline is in run/pipeline, which this run deletes (--overwrite) or "
        "replaces (its export): give the run its own directory",
    ),
    "eval, no rater": (EVAL, "nothing to rate with: give --critic DIR, --oracle and/or --clip MODEL"),
    "eval, not a VBench dimension": (
        [*EVAL, "--oracle", "--vbench", "human_action"],
        "VBench custom-input mode supports subject_consistency",
    ),
    "eval, a VBench interpreter without --vbench": (
        [*EVAL, "--oracle", "--vbench-python", "python3"],
        "--vbench-python needs --vbench DIMENSION",
    ),
    "eval, a size the oracle cannot rate": (
        [*EVAL, "--oracle", "--height", "64"],
        "--oracle rates toy-world clips (9 x 48 x 48: frames x height x width): --height 64 makes others",
    ),
    "eval, not a dtype": (
        [*EVAL, "--oracle", "--critic-dtype", "half"],
        "--critic-dtype: unknown dtype 'half'",
    ),
    "hra split, a fraction out of range": (
        ["hra", "split", "hra.jsonl", "--test-fraction", "1.5", "--out", "split"],
        "--test-fraction must be strictly between 0 and 1, got 1.5",
    ),
    "annotate serve, not a log level": (
        ["annotate", "serve", "--project", "proj", "--log-level", "loud"],
        "--log-level loud: use one of critical",
    ),
    "annotate create, a validator: out of range": (
        ["annotate", "create", "--project", "proj", "--videos", ".", "--lease-minutes", "0"],
        "--lease-minutes: Input should be greater than 0",
    ),
    "annotate create-pairs, not a match": (
        [*PAIRS, "--match", "x"],
        "--match must be auto, prompt or prompt+seed",
    ),
    "toy prompts, not a split": (
        ["toy", "prompts", "--split", "dev", "--out", "t.txt"],
        "--split must be one of train, heldout, got 'dev'",
    ),
    "toy corpus, a rate out of range": (
        ["toy", "corpus", "--n", "2", "--out", "tc", "--defect-rate", "2"],
        "--defect-rate must be within [0, 1], got 2.0",
    ),
    "toy rate, an option needing another": (
        [*TOY_RATE, "--scores-out", "s2.jsonl"],
        "--scores-out needs --oracle",
    ),
    "prompts sample, not a prompt file type": (
        ["prompts", "sample", "--n", "3", "--out", "x.csv"],
        "--out x.csv: use a .jsonl file (prompts with categories) or .txt (prompts only)",
    ),
    "run, not KEY=VALUE": (
        ["run", "pipe.yaml", "--set", "nokey", "--plan"],
        "pipe.yaml: --set 'nokey': expected KEY=VALUE",
    ),
    "run, a validator: a value --set gives": (
        ["run", "pipe.yaml", "--set", "sampler.steps=0", "--plan"],
        "pipe.yaml, field 'sampler.steps': Input should be greater than or equal to 1 (set by --set",
    ),
    "demo, an empty --out": (["demo", "--out", " "], "--out is empty: give the demo's working directory"),
}

DATA = {  # name: (arguments, what the error says)
    "align, a missing config file": ([*ALIGN, "--config", "nope.yaml"], "nope.yaml: config file not found"),
    "align, a bad value in the config file": (
        [*ALIGN, "--config", "lr.yaml", "--max-steps", "3"],
        "lr.yaml, field 'lr': Input should be greater than 0",
    ),
    "align, settings of the config file refused together, beside other options": (
        [*ALIGN, "--config", "held_out.yaml", "--lr", "0.1"],
        "held_out.yaml with the command-line options: validation_real_videos (--validation-real-videos) needs",
    ),
    "align, an unknown family in the config file": (
        [*ALIGN, "--config", "family.yaml"],
        "family.yaml, field 'family': unknown T2V family 'foo'; known: cogvideox, wan",
    ),
    "generate, a missing prompt file": (
        [*GENERATE[:4], "nope.txt", "--out", "g"],
        "nope.txt: prompt file not found",
    ),
    "generate, a missing model": (
        ["generate", "--model", "./nope", *GENERATE[3:]],
        "--model ./nope: no such directory, and not a Hub id",
    ),
    "generate, an OUT holding a diffusers pipeline": (
        [*GENERATE[:-1], "pipe"],
        "--out pipe: holds a diffusers pipeline (model_index.json); give the videos their own directory",
    ),
    "align, an OUT that is the model, both in the config file": (
        ["align", "--config", "in_model.yaml", *ALIGN[3:7]],
        "in_model.yaml with the command-line options: out (--out) base is also model (--model)",
    ),
    "eval, a prompt the oracle cannot rate": (
        [*EVAL[:4], "dog.txt", "--oracle"],
        "dog.txt, line 1: --oracle rates toy-world prompts only",
    ),
    "eval, a VBench interpreter that is not there": (
        [*EVAL, "--oracle", "--vbench", "motion_smoothness", "--vbench-python", "nope/python"],
        "--vbench-python nope/python: no such file",
    ),
    "critic score, not a critic": (SCORE, "critic: not a critic checkpoint"),
    "hra stats, a missing file": (["hra", "stats", "nope.jsonl"], "nope.jsonl: file not found"),
    "hra split, an OUT that is a file": (
        ["hra", "split", "hra.jsonl", "--test-fraction", "0.5", "--out", "p.txt"],
        "p.txt: is a file; --out names a directory",
    ),
    "annotate progress, no project": (
        ["annotate", "progress", "--project", "proj"],
        "no annotation project in proj",
    ),
    "toy prompts, an --out that exists": (
        ["toy", "prompts", "--split", "train", "--out", "p.txt"],
        "--out p.txt already exists; pass --overwrite to replace it",
    ),
    "toy corpus, an OUT that is a file": (
        ["toy", "corpus", "--n", "2", "--out", "p.txt"],
        "--out p.txt: exists and is not a directory",
    ),
    # Each said "File exists" (the first mkdir's), critic train once its model had loaded, toy pretrain-vlm once
    # its corpus was rendered; run --plan said nothing.
    "critic train, an OUT that is a file": (
        [*CRITIC[:-1], "p.txt"],
        "--out p.txt: exists and is not a directory",
    ),
    "annotate create, a project that is a file": (
        ["annotate", "create", "--project", "p.txt", "--videos", "."],
        "--project p.txt: exists and is not a directory",
    ),
    "run, a workdir that is a file": (
        ["run", "pipe.yaml", "--workdir", "p.txt", "--plan"],
        "workdir p.txt: exists and is not a directory",
    ),
    "demo, an OUT that is a file": (["demo", "--out", "p.txt"], "--out p.txt: exists and is not a directory"),
    "toy pretrain-vlm, an OUT that is a file": (
        ["toy", "pretrain-vlm", "--out", "p.txt"],
        "--out p.txt: exists and is not a directory",
    ),
    "toy rate, no videos root": (
        [*TOY_RATE[:5], "novids", *TOY_RATE[6:]],
        "novids: videos root is not a directory",
    ),
    "run, a missing pipeline file": (["run", "nope.yaml", "--plan"], "nope.yaml: pipeline config not found"),
    "run, a bad value in the pipeline file": (
        ["run", "steps.yaml", "--plan"],
        "steps.yaml, field 'sampler.steps': Input should be greater than or equal to 1",
    ),
}


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A folder of small inputs, the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("a red circle moves left in a sand desert\n")
    (tmp_path / "dog.txt").write_text("a dog running on the beach\n")
    rating = {"semantic_consistency": {"label": "Good"}}
    (tmp_path / "hra.jsonl").write_text(
        json.dumps({"video": "a.mp4", "prompt": "p", "ratings": rating}) + "\n"
    )
    (tmp_path / "m.jsonl").write_text(json.dumps({"video": "a.mp4", "prompt": "p"}) + "\n")
    (tmp_path / "base").mkdir()  # what critic train reads of its base before its settings are checked
    (tmp_path / "base" / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (tmp_path / "pipe").mkdir()  # a diffusers pipeline, as far as generate --out looks
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    (tmp_path / "run" / "pipeline").mkdir(parents=True)  # an earlier align run's export
    for name, text in {
        "resume.yaml": "resume: true\n",
        "lr.yaml": "lr: -1\n",
        "held_out.yaml": "validation_real_videos: v\n",
        "family.yaml": "family: foo\n",
        "in_model.yaml": "model: base\nout: base\n",
        "pipe.yaml": "workdir: w\n",
        "steps.yaml": "workdir: w\nsampler: {steps: 0}\n",
    }.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _refused(args: list[str], status: int, said: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == status, result.output
    assert f"Error: {said}" in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize(("args", "said"), USAGE.values(), ids=USAGE.keys())
def test_a_wrong_command_line_exits_with_status_2(here, args, said):
    _refused(args, 2, said)


@pytest.mark.parametrize(("args", "said"), DATA.values(), ids=DATA.keys())
def test_bad_inputs_and_config_files_exit_with_status_1(here, args, said):
    _refused(args, 1, said)


def test_usage_errors_are_videolift_errors_and_located_ones_data_errors():
    """Callers that catch VideoliftError (or DataError, for a located setting) catch them as before."""
    assert issubclass(UsageError, VideoliftError) and UsageError("x").exit_code == 2
    assert issubclass(OptionError, DataError) and issubclass(OptionError, UsageError)
    said = OptionError("is empty", file="command line", field="workdir")
    assert (said.exit_code, said.message) == (2, "command line, field 'workdir': is empty")
    assert VideoliftError("x").exit_code == DataError("x").exit_code == 1


def test_a_device_name_is_the_command_lines_and_a_device_the_machine_lacks_is_not():
    import torch

    from videolift.core.distributed import checked_device

    with pytest.raises(UsageError, match="--device gpu: "):
        checked_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(VideoliftError, match="--device cuda: ") as lacking:
            checked_device("cuda")
        assert not isinstance(lacking.value, UsageError)


def test_a_stage_refusing_a_setting_of_the_pipeline_file_exits_with_status_1(tmp_path, monkeypatch):
    """The stages run the commands' code: an option refused there came from the pipeline's file."""
    from videolift.pipeline import run as pipeline
    from videolift.pipeline.config import PipelineConfig

    def refusing(*args, **kwargs):
        raise UsageError("unknown T2V family 'foo'; known: cogvideox, wan")

    monkeypatch.setattr(pipeline, "_run_stages", refusing)
    (tmp_path / "p.yaml").write_text("workdir: w\n")
    cfg = PipelineConfig.load(tmp_path / "p.yaml")
    for plan in (False, True):
        with pytest.raises(VideoliftError, match="unknown T2V family 'foo'") as refused:
            pipeline.run_pipeline(cfg, progress=False, plan=plan)
        assert not isinstance(refused.value, UsageError)


def _command_paths(group, path=()):
    ctx = group.context_class(group, info_name="videolift")
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*path, name)
        if hasattr(cmd, "list_commands"):
            yield from _command_paths(cmd, (*path, name))


def test_every_command_takes_dash_h_for_its_help():
    import typer

    paths = [(), *_command_paths(typer.main.get_command(app))]
    assert ("annotate", "create") in paths and ("critic", "train") in paths and ("demo",) in paths
    for path in paths:
        short = CliRunner().invoke(app, [*path, "-h"], env={"COLUMNS": "120"})
        assert short.exit_code == 0, (path, short.output)
        assert short.output == CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).output


def test_a_one_process_command_refuses_a_multi_process_launch(tmp_path):
    """Under torchrun / accelerate launch (WORLD_SIZE > 1) a command that runs in one process is refused
    before it writes anything: every process wrote the same outputs (`annotate create`: one project created
    twice, 'database is locked'; `toy corpus`: the corpus rendered twice)."""
    import typer

    from videolift.cli import MULTI_PROCESS

    leaves = {" ".join(p) for p in _command_paths(typer.main.get_command(app))}
    assert leaves >= MULTI_PROCESS  # no misspelt name lets a command through
    launched = {"WORLD_SIZE": "2", "RANK": "1"}
    for args in (
        ["toy", "corpus", "--n", "2", "--out", str(tmp_path / "corpus")],
        ["annotate", "create", "--project", str(tmp_path / "proj"), "--videos", str(tmp_path)],
        ["critic", "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "critic")],
    ):
        result = CliRunner().invoke(app, args, env=launched)
        assert result.exit_code == 2, result.output
        name = " ".join(args[:2])
        assert f"`videolift {name}` runs in one process, and 2 were launched" in " ".join(
            result.output.split()
        )
    assert not list(tmp_path.iterdir())
    # A multi-process command goes on (here to its own check of the command line).
    result = CliRunner().invoke(app, [*GENERATE, "--per-prompt", "0"], env=launched)
    assert result.exit_code == 2 and "--per-prompt 0: must be at least 1" in result.output
