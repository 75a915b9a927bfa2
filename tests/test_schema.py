import json

import pytest
from pydantic import ValidationError

from videolift.core.errors import DataError
from videolift.core.reward import RewardConfig
from videolift.core.schema import Dimension, HRARecord, Label, format_answer, parse_answer


@pytest.mark.parametrize(
    ("text", "label", "reason"),
    [
        ("Bad. The panda is not wearing a spacesuit.", Label.Bad, "The panda is not wearing a spacesuit."),
        # A reason that mentions other labels must not flip the label (the reference script's bug).
        (
            "Good. Nothing Bad here, not even Normal flaws.",
            Label.Good,
            "Nothing Bad here, not even Normal flaws.",
        ),
        (
            "Normal. The motion is mostly good but bad at the end.",
            Label.Normal,
            "The motion is mostly good but bad at the end.",
        ),
        ("good", Label.Good, ""),
        ("bad. lower-case label", Label.Bad, "lower-case label"),
        ("Good.", Label.Good, ""),
        ("   Normal.    extra   whitespace  ", Label.Normal, "extra   whitespace"),
        ("**Bad**: markup", Label.Bad, "markup"),
        ("Label: Normal - prefixed", Label.Normal, "prefixed"),
        ('Bad. "Quoted" reason keeps its quotes', Label.Bad, '"Quoted" reason keeps its quotes'),
    ],
)
def test_parse_answer_reads_the_leading_label(text, label, reason):
    assert parse_answer(text) == (label, reason)


@pytest.mark.parametrize("text", ["", "The video is Good.", "Goodness, what a video", "N/A", "Fine."])
def test_parse_answer_without_leading_label_is_unparsed(text):
    label, _ = parse_answer(text)
    assert label is None


def test_format_then_parse_round_trips():
    for label in Label:
        for reason in ["", "The circle is green, but the prompt asks for red.", "Bad things. Normal too."]:
            assert parse_answer(format_answer(label, reason)) == (label, reason)


def test_record_validation_and_defaults():
    rec = HRARecord.model_validate(
        {
            "video": "v/1.mp4",
            "prompt": "p",
            "ratings": {"motion_smoothness": {"label": "normal", "reason": " r "}},
            "truth": {"x": 1},
            "lora": None,  # a generate manifest's field, carried along as it is
        }
    )
    assert rec.video_id == "v/1.mp4"
    assert rec.to_json()["lora"] is None and "annotator" not in rec.to_json()  # anonymous: no field
    assert rec.ratings[Dimension.motion_smoothness].label is Label.Normal
    assert rec.ratings[Dimension.motion_smoothness].reason == "r"
    assert rec.to_json()["truth"] == {"x": 1}  # extra fields ride along
    with pytest.raises(ValidationError, match="unknown dimension"):
        HRARecord.model_validate({"video": "a", "prompt": "p", "ratings": {"smoothness": {"label": "Good"}}})
    with pytest.raises(ValidationError, match="unknown label"):
        HRARecord.model_validate(
            {"video": "a", "prompt": "p", "ratings": {"video_fidelity": {"label": "Great"}}}
        )
    with pytest.raises(ValidationError):
        HRARecord.model_validate({"video": "a", "ratings": {}})
    with pytest.raises(ValidationError, match="annotator is blank"):
        HRARecord.model_validate(
            {"video": "a", "prompt": "p", "annotator": " ", "ratings": {"video_fidelity": {"label": "Good"}}}
        )
    with pytest.raises(ValidationError, match="prompt is empty"):
        HRARecord.model_validate(
            {"video": "a", "prompt": " ", "ratings": {"video_fidelity": {"label": "Good"}}}
        )
    with pytest.raises(ValidationError, match="video_id is blank"):  # as a manifest refuses it
        HRARecord.model_validate({"video": "a", "video_id": "  ", "prompt": "p", "ratings": {}})
    assert (
        HRARecord.model_validate({"video": "a", "video_id": "", "prompt": "p", "ratings": {}}).video_id == "a"
    )
    # A path of blanks names no file, and one with a NUL byte none either (os calls raise ValueError on it)
    with pytest.raises(ValidationError, match="video is blank"):
        HRARecord.model_validate({"video": " ", "prompt": "p", "ratings": {}})
    with pytest.raises(ValidationError, match="the path holds a NUL byte"):
        HRARecord.model_validate({"video": "a\x00.mp4", "prompt": "p", "ratings": {}})
    # JSON's "\ud800" reads as a lone surrogate: stored, it broke every later write of the record.
    lone = json.loads('{"label": "Bad", "reason": "blurry \\ud800"}')
    with pytest.raises(ValidationError, match="lone surrogate"):
        HRARecord.model_validate({"video": "a", "prompt": "p", "ratings": {"video_fidelity": lone}})


def test_reward_labels_given_twice_are_refused():
    with pytest.raises(ValidationError, match="Good is given twice"):
        RewardConfig(scores={"Good": 1, "good": 0.5, "Normal": 0.2, "Bad": 0})


@pytest.mark.parametrize("scores", [None, [1, 2], "abc"])
def test_reward_scores_that_are_not_a_mapping_are_named(scores):
    # e.g. a `scores:` key whose lines are commented out reads as null
    with pytest.raises(ValidationError, match="must map each label to its score"):
        RewardConfig(scores=scores)


def test_reward_defaults_are_the_papers():
    cfg = RewardConfig()
    dims = list(Dimension)
    assert cfg.aggregate({d: "Good" for d in dims}) == pytest.approx(0.9)
    assert cfg.aggregate({d: "Bad" for d in dims}) == pytest.approx(0.05)
    assert cfg.aggregate(dict(zip(dims, ["Good", "Normal", "Bad"], strict=True))) == pytest.approx(
        (0.9 + 0.2 + 0.05) / 3
    )
    assert cfg.aggregate({dims[0]: "Normal"}) == pytest.approx(0.2)
    # reward(): parsed labels only; None when nothing the mapping counts was parsed
    assert cfg.reward({dims[0]: "Normal", dims[1]: None}) == pytest.approx(0.2)
    assert cfg.reward({dims[0]: None}) is None
    weighted = RewardConfig(aggregation="weighted", weights={dims[0]: 1, dims[1]: 0, dims[2]: 0})
    assert weighted.reward({dims[0]: "Good", dims[1]: "Bad"}) == pytest.approx(0.9)
    assert weighted.reward({dims[0]: None, dims[1]: "Good"}) is None


def test_reward_config_from_file(tmp_path):
    path = tmp_path / "reward.yaml"
    path.write_text("scores: {good: 1.0, normal: 0.5, bad: 0.0}\naggregation: min\n")
    cfg = RewardConfig.load(path)
    assert cfg.aggregate({"semantic_consistency": "Good", "video_fidelity": "Normal"}) == 0.5
    path.write_text("scores: {good: 1.0}\n")
    with pytest.raises(Exception, match=r"reward\.yaml.*scores.*missing score for Normal, Bad"):
        RewardConfig.load(path)


def test_trim_step_log_keeps_steps_up_to_the_checkpoint(tmp_path):
    from videolift.core.jsonl import trim_step_log

    log = tmp_path / "train.jsonl"
    trim_step_log(log, 3)  # no log yet: nothing to do
    assert not log.exists()
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4}\n{"step": 5, "lo')  # killed mid-line
    trim_step_log(log, 3)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n{"step": 3}\n'


def test_reward_config_refuses_negative_scores_and_weights_that_count_nothing(tmp_path):
    path = tmp_path / "reward.yaml"
    path.write_text("scores: {Good: -3, Normal: 0.2, Bad: 0.05}\n")
    with pytest.raises(Exception, match=r"reward\.yaml, field 'scores': must be finite and at least 0"):
        RewardConfig.load(path)
    path.write_text(
        "aggregation: weighted\nweights: {semantic_consistency: 0, motion_smoothness: 0, video_fidelity: 0}\n"
    )
    with pytest.raises(Exception, match=r"reward\.yaml: aggregation 'weighted' needs a weight above 0"):
        RewardConfig.load(path)
    # A mapping that names one dimension would weigh the others 0 unseen (each defaults to 1); a
    # critic's stored config loads as it was, and weights that are not used are not checked.
    assert RewardConfig.model_validate({"aggregation": "weighted", "weights": {"semantic_consistency": 2}})
    path.write_text("aggregation: mean\nweights: {semantic_consistency: 2}\n")
    assert RewardConfig.load(path).aggregation == "mean"
    path.write_text("aggregation: weighted\nweights: {semantic_consistency: 2}\n")
    with pytest.raises(
        Exception,
        match=r"reward\.yaml, field 'weights': give every dimension a weight \(0 leaves one out\); missing: "
        "motion_smoothness, video_fidelity",
    ):
        RewardConfig.load(path)
    path.write_text("scores: [1\n")
    with pytest.raises(Exception, match=r"reward\.yaml, line 2: malformed YAML \(expected ',' or '\]'"):
        RewardConfig.load(path)
    # An empty file (a cut-short copy), [] or 0 was read as every default; yes / off as a score of 1 / 0.
    for content, said in [
        ("", "got nothing (write {} for every default)"),
        ("[]\n", "got a list"),
        ("0\n", "got an int"),
        ("scores: {Good: yes, Normal: 0.2, Bad: 0.05}\n", "field 'scores': Good: true is not a number"),
        (
            "aggregation: weighted\nweights: {semantic_consistency: off, motion_smoothness: 1, video_fidelity: 1}\n",
            "field 'weights': semantic_consistency: false is not a number",
        ),
    ]:
        path.write_text(content)
        with pytest.raises(DataError) as caught:
            RewardConfig.load(path)
        assert str(caught.value).startswith(str(path)) and said in str(caught.value)
    path.write_text("{}\n")
    assert RewardConfig.load(path) == RewardConfig()


def test_text_readers_name_the_file_and_line(tmp_path):
    from videolift.core.errors import DataError
    from videolift.core.jsonl import atomic_write, read_json, read_jsonl_dicts

    with pytest.raises(DataError, match=r": is a directory, expected a file"):
        read_jsonl_dicts(tmp_path)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"prompt": "a"}\n{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.jsonl, line 2: not UTF-8 text \(byte 0xe9 at column 16\)"):
        read_jsonl_dicts(latin)
    sep = tmp_path / "sep.jsonl"  # U+2028 unescaped in a string is valid JSON, not a line break
    sep.write_text(json.dumps({"prompt": "a\u2028b"}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    assert read_jsonl_dicts(sep) == [{"prompt": "a\u2028b"}]
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"prompt": "a"}\n')  # as some editors save
    assert read_jsonl_dicts(bom) == [{"prompt": "a"}]
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"prompt": "a"}\n{"prompt": "a", "video": "v.mp4"\n')
    with pytest.raises(DataError, match=r"cut\.jsonl, line 2: malformed JSON \(Expecting .* at column 33\)"):
        read_jsonl_dicts(cut)  # the column where the line stops, not 1 on the next line
    cut.write_text('{"prompt": "a", "video": "v.mp\n')
    with pytest.raises(DataError, match=r"\(Unterminated string starting at column 26\)"):
        read_jsonl_dicts(cut)
    cut.write_text('{"prompt": "a"}\n{"seed": ' + "9" * 5000 + "}\n")  # over Python's integer digit limit
    with pytest.raises(
        DataError, match=r"cut\.jsonl, line 2: malformed JSON \(Exceeds the limit \(4300 digits\)"
    ):
        read_jsonl_dicts(cut)
    whole = tmp_path / "whole.json"
    whole.write_text('{"seed": ' + "9" * 5000 + "}")
    with pytest.raises(DataError, match=r"whole\.json: malformed JSON \(Exceeds the limit"):
        read_json(whole)
    with pytest.raises(DataError, match=r": is a directory, expected a file"):
        read_json(tmp_path)
    with (
        pytest.raises(DataError, match=r": is a directory; name a file to write"),
        atomic_write(tmp_path) as f,
    ):
        f.write("x")
    assert list(tmp_path.glob(".*.tmp")) == []


def test_jsonl_records_that_are_no_object_or_repeat_a_key_are_named_in_json_s_words(tmp_path):
    from videolift.core.errors import DataError
    from videolift.core.jsonl import read_jsonl_dicts

    path = tmp_path / "r.jsonl"
    for record, said in [
        ("null", "got null"),  # was "got NoneType"
        ('"a prompt"', "got a string"),
        ("[1, 2]", "got an array"),
        ("7", "got a number"),
        ("true", "got true"),
    ]:
        path.write_text('{"prompt": "a"}\n' + record + "\n")
        with pytest.raises(DataError, match=rf"r\.jsonl, line 2: expected a JSON object, {said}$"):
            read_jsonl_dicts(path)
    # json.loads keeps the last of a key given twice, silently (a hand-merged line): refused, as in YAML
    path.write_text('{"prompt": "a"}\n\n{"prompt": "a", "video": "v.mp4", "prompt": "b"}\n')
    with pytest.raises(
        DataError, match=r"r\.jsonl, line 3, field 'prompt': 'prompt' is given twice in one object$"
    ):
        read_jsonl_dicts(path)
    path.write_text('{"ratings": {"motion_smoothness": {"label": "Good", "label": "Bad"}}}\n')
    with pytest.raises(DataError, match=r"line 1, field 'label': 'label' is given twice"):
        read_jsonl_dicts(path)


def test_read_json_refuses_a_key_given_twice_but_reads_model_configs_as_their_libraries_do(tmp_path):
    """read_json kept the last of a repeated key without a word, in user files (a LiFT release JSON,
    critic_spec.json, an annotation project's settings) where JSON Lines and YAML refuse one."""
    from videolift.core.jsonl import read_json
    from videolift.critic.spec import SPEC_FILE, CriticSpec
    from videolift.models.families import pipeline_class_of

    path = tmp_path / "r.json"
    path.write_text('[{"video": "a.mp4",\n  "conversations": [], "video": "b.mp4"}]')
    with pytest.raises(DataError, match=r"r\.json, field 'video': 'video' is given twice in one object$"):
        read_json(path)
    assert read_json(path, last_of_repeated_keys=True) == [{"video": "b.mp4", "conversations": []}]
    (tmp_path / "critic").mkdir()
    (tmp_path / "critic" / SPEC_FILE).write_text('{"base_model": "a", "base_model": "b"}')
    with pytest.raises(DataError, match=rf"{SPEC_FILE}, field 'base_model': 'base_model' is given twice"):
        CriticSpec.load(tmp_path / "critic")
    # diffusers and transformers read their own files with json.loads: a model they load is read here too
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text(
        '{"_class_name": "WanPipeline", "_class_name": "CogVideoXPipeline"}'
    )
    assert pipeline_class_of(str(tmp_path / "pipe")) == "CogVideoXPipeline"


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_given_for_json_lines_is_named_as_such(tmp_path, indent):
    from videolift.core.errors import DataError
    from videolift.core.jsonl import iter_json_lines, read_jsonl_dicts

    path = tmp_path / "hra.jsonl"
    path.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}], indent=indent) + "\n")
    said = r"hra\.jsonl: one JSON array, not JSON Lines: write one object per line"
    with pytest.raises(DataError, match=said):  # was "line 1: malformed JSON (Expecting value at column 2)"
        read_jsonl_dicts(path)
    errors: list[DataError] = []  # `hra validate` listed each of its lines as an error of its own
    assert list(iter_json_lines(path, errors=errors)) == []
    assert [e.detail for e in errors] == [
        "one JSON array, not JSON Lines: write one object per line (jq -c '.[]' converts it)"
    ]
    path.write_text('[1, 2]\n{"prompt": "a"}\n')  # a first record that is an array, in JSON Lines
    with pytest.raises(DataError, match=r"hra\.jsonl, line 1: expected a JSON object, got an array$"):
        read_jsonl_dicts(path)


def test_cli_reports_file_system_mistakes_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app

    hra = tmp_path / "hra.jsonl"
    hra.write_text(
        "".join(
            f'{{"video": "{v}.mp4", "prompt": "p", "ratings": {{"semantic_consistency": {{"label": "Good"}}}}}}\n'
            for v in "ab"
        )
    )
    (tmp_path / "taken").write_text("a file where a directory is wanted")
    result = CliRunner().invoke(
        app, ["hra", "split", str(hra), "--test-fraction", "0.5", "--out", str(tmp_path / "taken")]
    )
    assert result.exit_code == 1 and "taken: is a file; --out names a directory" in result.output
    assert not isinstance(result.exception, OSError)  # reported, not raised


def test_files_past_the_parsers_limits_and_unwritable_places_are_named(tmp_path):
    from videolift.core.errors import DataError
    from videolift.core.jsonl import atomic_write, read_json, read_jsonl_dicts, read_yaml

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # past the recursion limit
    with pytest.raises(DataError, match=r"deep\.json: malformed JSON \(nested too deeply\)"):
        read_json(deep)
    with pytest.raises(DataError, match=r"deep\.json, line 1: malformed JSON \(nested too deeply\)"):
        read_jsonl_dicts(deep)
    big = tmp_path / "big.yaml"
    big.write_text("seed: " + "9" * 5000 + "\n")
    with pytest.raises(DataError, match=r"big\.yaml: malformed YAML \(Exceeds the limit"):
        read_yaml(big)
    (tmp_path / "taken").write_text("")  # a file where the output's folder should be
    with (
        pytest.raises(DataError, match=r"taken/out\.json: cannot write it \(a file is in the way\)"),
        atomic_write(tmp_path / "taken" / "out.json") as handle,
    ):
        handle.write("{}")


def test_yaml_keys_given_twice_are_refused_where_they_are(tmp_path):
    from videolift.core.errors import DataError
    from videolift.core.jsonl import read_yaml

    path = tmp_path / "c.yaml"
    path.write_text("lr: 1.0e-4\nalign:\n  max_steps: 10\n  max_steps: 20\n")  # PyYAML would keep 20
    with pytest.raises(
        DataError,
        match=r"c\.yaml, line 4: malformed YAML \('max_steps' is given twice in one mapping, column 3\)",
    ):
        read_yaml(path)
    path.write_text(
        "base: &b {steps: 2, seed: 1}\nrun:\n  <<: *b\n  steps: 4\n"
    )  # a merged key overridden: fine
    assert read_yaml(path)["run"] == {"steps": 4, "seed": 1}


def test_a_failed_write_names_its_file_and_ctrl_c_says_what_was_kept(tmp_path, monkeypatch, capsys):
    import errno

    import typer

    from videolift.cli import INTERRUPTED, INTERRUPTED_WHOLE, RESUMES, _plain_errors, app
    from videolift.core import jsonl
    from videolift.core.errors import VideoliftError
    from videolift.core.jsonl import append_jsonl, atomic_write

    def full(_fd: int) -> None:  # a full disk shows at the flush or fsync, with no file name
        raise OSError(errno.ENOSPC, "No space left on device")

    def atomic() -> None:
        with atomic_write(tmp_path / "out.json") as handle:
            handle.write("{}")

    monkeypatch.setattr(jsonl.os, "fsync", full)
    with pytest.raises(VideoliftError, match=r"log\.jsonl: No space left on device"):
        _plain_errors(lambda: append_jsonl(tmp_path / "log.jsonl", {"step": 1}))()
    with pytest.raises(VideoliftError, match=r"out\.json: No space left on device"):
        _plain_errors(atomic)()
    assert not (tmp_path / "out.json").exists() and list(tmp_path.glob(".*.tmp")) == []

    def nameless() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(VideoliftError, match="a write failed: No space left on device"):
        _plain_errors(nameless)()

    def interrupted() -> None:
        raise KeyboardInterrupt

    for name in ("generate", "critic train", "toy corpus", "prompts sample"):
        with pytest.raises(typer.Exit) as stopped:
            _plain_errors(interrupted, name)()
        said = capsys.readouterr().err
        assert stopped.value.exit_code == 130
        # the commands that keep their finished work say so; the others (all or nothing) that they start over
        if name == "generate":
            assert f"Interrupted: {INTERRUPTED}" in said and "--resume" not in said
        elif name == "critic train":  # continued only with --resume (`run`, `generate`: without)
            assert "Interrupted: what was finished is kept; run the same command with --resume" in said
        else:
            assert f"Interrupted: {INTERRUPTED_WHOLE}" in said and INTERRUPTED not in said
    # SIGTERM (a scheduler's stop) is Ctrl-C's path, said as such; the handler is gone after the command
    import os
    import signal
    import time

    def terminated() -> None:
        # (without a handler SIGTERM would end pytest itself)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "no SIGTERM handler"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here

    try:
        with pytest.raises(typer.Exit) as stopped:
            _plain_errors(terminated, "align")()
        assert stopped.value.exit_code == 143
        assert "Terminated (SIGTERM): what was finished is kept; run the same command with --resume" in (
            capsys.readouterr().err
        )
        # the process is ending: a SIGTERM passed on again must not cut its exit (status -15)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _plain_errors(lambda: None, "align")()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a command that ends as usual leaves none
    # RESUMES names commands as the CLI does ("critic train"): each one is a command
    commands = typer.main.get_command(app).commands
    for name in RESUMES:
        group, _, sub = name.partition(" ")
        assert group in commands and (not sub or sub in commands[group].commands), name


def test_running_out_of_accelerator_memory_names_what_the_command_can_do_about_it():
    import torch

    from videolift.cli import MEMORY_HINTS, _plain_errors, app
    from videolift.core.errors import VideoliftError

    def cuda() -> None:
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity"
        )

    def mps() -> None:
        raise RuntimeError("MPS backend out of memory (MPS allocated: 17.5 GB, other allocations: 1 GB)")

    def other() -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(VideoliftError, match=r"out of memory \(CUDA out of memory.*Takes less: --batch-size"):
        _plain_errors(cuda, "critic score")()
    with pytest.raises(VideoliftError, match=r"MPS backend out of memory.*--adapter lora"):
        _plain_errors(mps, "critic train")()
    with pytest.raises(RuntimeError, match="mat1"):  # any other error is left as it is
        _plain_errors(other, "critic train")()
    # Each command is wrapped with its own name (a sub-command's with its group's): one with hints.
    import inspect

    critic = next(g.typer_instance for g in app.registered_groups if g.name == "critic")
    names = {inspect.getclosurevars(c.callback).nonlocals["name"] for c in critic.registered_commands}
    assert {"critic train", "critic score", "critic eval"} <= names
    top = {inspect.getclosurevars(c.callback).nonlocals["name"] for c in app.registered_commands}
    assert {"align", "generate", "eval", "run", "demo"} <= top
    assert names & set(MEMORY_HINTS) == {"critic train", "critic score", "critic eval"}
    assert top - {"env"} <= set(MEMORY_HINTS)  # every top-level command that runs a model (env runs none)


def test_a_set_holding_no_dimension_is_judged_on_all_three_so_nothing_is_all_good():
    """A scores file whose lines rate nothing (every video unreadable) has no all-Good video: RS keeps none and
    the all-Good rate is 0, not 1 (judged over an empty set of dimensions)."""
    from videolift.align.weights import select_synthetic
    from videolift.core.schema import DIMENSIONS, all_good, rated_dimensions
    from videolift.core.scores import ScoredVideo
    from videolift.evaluate.metrics import summarize

    assert rated_dimensions([{}, {}]) == DIMENSIONS
    assert rated_dimensions([{"video_fidelity": "Good"}]) == (Dimension.video_fidelity,)
    assert not all_good({}, rated_dimensions([{}]))
    kept, counts = select_synthetic([ScoredVideo("a", "p", 0.5, {}), ScoredVideo("b", "p", 0.7, {})], "rs")
    assert kept == [] and counts["kept"] == 0
    assert summarize([{}, {}])["all_good_rate"] == 0.0


def test_a_torn_last_line_cut_inside_a_character_is_skipped_like_any_torn_line(tmp_path):
    """A writer killed (or a disk filled) mid-append can cut a line inside a multi-byte character: a
    resumable stage reading its log (skip_partial_last) must skip that line as it skips any torn one, not
    refuse the whole log as not UTF-8. A bad byte anywhere else is still refused, by its line."""
    from videolift.core.jsonl import iter_json_lines, repair_log

    log = tmp_path / "rank0.jsonl"
    whole = json.dumps({"video": "a.mp4", "reason": "the panda\u2019s paw"}, ensure_ascii=False) + "\n"
    torn = whole.encode()[: whole.encode().index("\u2019".encode()) + 1]  # 1 of the 3 bytes of ’
    log.write_bytes(b"\xef\xbb\xbf" + whole.encode() + torn)
    assert [obj["video"] for _, obj in iter_json_lines(log, skip_partial_last=True)] == ["a.mp4"]
    with pytest.raises(DataError, match=r"rank0\.jsonl, line 2: not UTF-8 text \(byte 0xe2 at column 40\)"):
        list(iter_json_lines(log))  # not a resumable log: every line counts
    repair_log(log)
    assert log.read_bytes() == b"\xef\xbb\xbf" + whole.encode()
    log.write_bytes(torn + b"\n" + whole.encode())  # terminated: not a torn last line but a bad one
    with pytest.raises(DataError, match=r"rank0\.jsonl, line 1: not UTF-8 text"):
        list(iter_json_lines(log, skip_partial_last=True))
    log.write_bytes(torn)  # the only line, torn
    assert list(iter_json_lines(log, skip_partial_last=True)) == []
