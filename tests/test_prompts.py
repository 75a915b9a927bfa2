"""Prompt sets: LiFT-HRA-style sampling from category files, and expansion with a tiny chat LM."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.errors import DataError, VideoliftError
from videolift.data.prompts import (
    EXPAND_SYSTEM_PROMPT,
    clean_expansion,
    compose,
    expand_prompts,
    expansion_messages,
    load_categories,
    sample_prompts,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_chat_lm(out_dir, *, zero_head: bool, chat_template: str | None = CHATML):
    """A ~30K-param Qwen2 causal LM with a byte-level BPE tokenizer and a ChatML template.

    ``zero_head`` zeroes the output layer: greedy decoding then always picks token 0, a known output.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(
        ["a golden retriever running on a sandy beach", "a chef juggling oranges"], trainer
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = chat_template
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.2,  # large enough that the output depends on the prompt
    )
    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(config)
    if zero_head:
        with torch.no_grad():
            lm.lm_head.weight.zero_()
    tokenizer.save_pretrained(out_dir)
    lm.save_pretrained(out_dir)
    return tokenizer


@pytest.fixture(scope="module")
def chat_lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_lms")
    tokenizer = build_tiny_chat_lm(root / "zero", zero_head=True)
    build_tiny_chat_lm(root / "random", zero_head=False)
    build_tiny_chat_lm(root / "nochat", zero_head=False, chat_template=None)
    return root, tokenizer


def test_compose_joins_subjects_action_and_place():
    assert (
        compose(["a chef", "a red fox"], "juggling", "in a field")
        == "A chef and a red fox juggling in a field."
    )
    assert compose(["an owl"], "sleeping", "inside a snow globe") == "An owl sleeping inside a snow globe."


def test_shipped_categories_cover_lift_hra_slots():
    phrases = load_categories().phrases
    assert set(phrases["subjects"]) == {"people", "animals"}
    assert set(phrases["places"]) == {"real", "imagined"}
    assert set(phrases["actions"]) == {"easy", "difficult"}
    assert "inside a piano floating in a soap bubble" in phrases["places"]["imagined"]
    assert not any(p.startswith("#") for cats in phrases.values() for ps in cats.values() for p in ps)


def test_sample_records_phrases_and_their_categories():
    records = sample_prompts(200, seed=3)
    phrases = load_categories().phrases
    assert len({r["prompt"] for r in records}) == 200
    for r in records:
        cats = r["categories"]
        assert r["prompt"] == compose(r["subjects"], r["action"], r["place"])
        assert len(r["subjects"]) == len(cats["subjects"]) in (1, 2)
        for subject, category in zip(r["subjects"], cats["subjects"], strict=True):
            assert subject in phrases["subjects"][category]
        assert r["action"] in phrases["actions"][cats["action"]]
        assert r["place"] in phrases["places"][cats["place"]]
    # every category and both subject counts actually occur
    assert {len(r["subjects"]) for r in records} == {1, 2}
    assert {c for r in records for c in r["categories"]["subjects"]} == {"people", "animals"}
    assert {r["categories"]["place"] for r in records} == {"real", "imagined"}
    assert {r["categories"]["action"] for r in records} == {"easy", "difficult"}


def test_sample_is_deterministic_by_seed():
    assert sample_prompts(20, seed=1) == sample_prompts(20, seed=1)
    assert sample_prompts(20, seed=1) != sample_prompts(20, seed=2)


def test_custom_categories_and_exhaustion(tmp_path):
    (tmp_path / "subjects_robots.txt").write_text("# robots\na robot\n")
    (tmp_path / "actions_any.txt").write_text("waving\n")
    (tmp_path / "places_moon.txt").write_text("on the moon\nin a crater\n")
    (tmp_path / "README.txt").write_text("not a category file\n")
    records = sample_prompts(2, seed=0, categories=load_categories(tmp_path))
    assert {r["prompt"] for r in records} == {"A robot waving on the moon.", "A robot waving in a crater."}
    with pytest.raises(VideoliftError, match="hold at most 2 distinct prompts"):  # said before drawing
        sample_prompts(3, seed=0, categories=load_categories(tmp_path))
    # As some editors save: a byte-order mark before the comment line (it used to become a phrase).
    (tmp_path / "subjects_robots.txt").write_bytes(b"\xef\xbb\xbf# robots\r\na robot\r\n")
    assert load_categories(tmp_path).phrases["subjects"]["robots"] == ["a robot"]
    (tmp_path / "actions_any.txt").write_bytes(b"wav\xefing\n")
    with pytest.raises(DataError, match=r"actions_any\.txt, line 1: not UTF-8"):
        load_categories(tmp_path)
    (tmp_path / "actions_any.txt").write_text("waving\n")
    (tmp_path / "places_moon.txt").unlink()
    with pytest.raises(DataError, match="no places_<category>.txt file"):
        load_categories(tmp_path)
    # A category file given for the directory was said to be "not found".
    with pytest.raises(DataError, match=r"actions_any\.txt: not a directory \(categories are a directory of"):
        load_categories(tmp_path / "actions_any.txt")
    with pytest.raises(DataError, match=r"nowhere: category directory not found$"):
        load_categories(tmp_path / "nowhere")


def test_cli_sample_jsonl_and_txt(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["prompts", "sample", "--n", "5", "--seed", "4", "--out", str(tmp_path / "p.jsonl")]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert lines == sample_prompts(5, seed=4)
    result = runner.invoke(
        app, ["prompts", "sample", "--n", "5", "--seed", "4", "--out", str(tmp_path / "p.txt")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.txt").read_text().splitlines() == [r["prompt"] for r in lines]
    # Upper-case suffixes, as the prompt readers accept them (toy prompts too).
    for cmd in (
        ["prompts", "sample", "--n", "5", "--seed", "4"],
        ["toy", "prompts", "--split", "train", "--n", "5"],
    ):
        result = runner.invoke(app, [*cmd, "--out", str(tmp_path / "P.TXT"), "--overwrite"])
        assert result.exit_code == 0, result.output
        assert not (tmp_path / "P.TXT").read_text().startswith("{")  # prompts, one a line
    args = ["prompts", "sample", "--n", "5", "--out", str(tmp_path / "p.csv")]
    result = runner.invoke(app, args, standalone_mode=False)
    assert isinstance(result.exception, VideoliftError) and "use a .jsonl file" in str(result.exception)


def test_cli_sample_excludes_the_prompts_of_other_files(tmp_path):
    runner = CliRunner()
    train, held = tmp_path / "train.jsonl", tmp_path / "held.txt"
    assert (
        runner.invoke(app, ["prompts", "sample", "--n", "40", "--seed", "0", "--out", str(train)]).exit_code
        == 0
    )
    # Written by hand: lower case, no full stop, doubled spaces; still the same prompt.
    first = sample_prompts(40, seed=5)[0]["prompt"]
    (tmp_path / "more.txt").write_text(first.lower().rstrip(".").replace(" ", "  ", 1) + "\n")
    args = ["prompts", "sample", "--n", "40", "--seed", "5", "--overwrite", "--out", str(held)]
    result = runner.invoke(app, [*args, "--exclude", str(train), "--exclude", str(tmp_path / "more.txt")])
    assert result.exit_code == 0, result.output
    drawn, excluded = held.read_text().splitlines(), {r["prompt"] for r in sample_prompts(40, seed=0)}
    assert len(set(drawn)) == 40 and not excluded & set(drawn)
    assert first not in drawn
    # Without the exclusions the same seed draws some of them: the option is what keeps the sets apart.
    assert set(drawn) != {r["prompt"] for r in sample_prompts(40, seed=5)}
    # An expanded .jsonl excludes the short prompts it was made from (this one seed 5 draws otherwise).
    short = sample_prompts(40, seed=5)[1]["prompt"]
    (tmp_path / "expanded.jsonl").write_text(
        json.dumps({"prompt": "A long text.", "short_prompt": short}) + "\n"
    )
    result = runner.invoke(app, [*args, "--exclude", str(tmp_path / "expanded.jsonl")])
    assert result.exit_code == 0 and short not in held.read_text().splitlines()
    missing = runner.invoke(app, [*args, "--exclude", str(tmp_path / "none.txt")], standalone_mode=False)
    assert "none.txt" in str(missing.exception) and "not found" in str(missing.exception)
    before = train.read_bytes()  # --out over a file it excludes: refused (--overwrite or not), untouched
    same = runner.invoke(app, [*args[:-1], str(train), "--exclude", str(train)], standalone_mode=False)
    assert "is also --exclude" in str(same.exception) and train.read_bytes() == before


def test_exclude_ignores_a_space_before_the_final_full_stop_and_refuses_a_short_prompt_not_text(tmp_path):
    # "... full of plants ." (a space before the stop, as tokenised text has it) was not excluded: the
    # full stop was stripped but the space before it kept. A short_prompt that is not text was a traceback.
    runner = CliRunner()
    drawn = [r["prompt"] for r in sample_prompts(5, seed=3)]
    ex = tmp_path / "ex.txt"
    ex.write_text("".join(p.upper().removesuffix(".") + " .\n" for p in drawn))
    out = tmp_path / "held.txt"
    args = ["prompts", "sample", "--n", "5", "--seed", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, "--exclude", str(ex)])
    assert result.exit_code == 0, result.output
    assert not set(out.read_text().splitlines()) & set(drawn)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n" + json.dumps({"prompt": "y", "short_prompt": 5}) + "\n")
    result = runner.invoke(app, [*args, "--overwrite", "--exclude", str(bad)], standalone_mode=False)
    assert isinstance(result.exception, DataError), result.output
    assert "bad.jsonl, line 2, field 'short_prompt': short_prompt must be a string" in str(result.exception)


def test_sample_says_when_the_exclusions_leave_too_few(tmp_path):
    (tmp_path / "subjects_robots.txt").write_text("a robot\n")
    (tmp_path / "actions_any.txt").write_text("waving\n")
    (tmp_path / "places_moon.txt").write_text("on the moon\nin a crater\n")
    with pytest.raises(VideoliftError, match="gave only 1 distinct prompts not among the 1 excluded"):
        sample_prompts(
            2, seed=0, categories=load_categories(tmp_path), exclude={"A robot waving on the moon."}
        )


def test_expansion_messages_and_cleaning():
    messages = expansion_messages("A dog running.")
    assert messages[0] == {"role": "system", "content": EXPAND_SYSTEM_PROMPT}
    assert messages[1]["role"] == "user" and "A dog running." in messages[1]["content"]
    assert clean_expansion(' Description:  "A golden dog\n runs."  ') == "A golden dog runs."
    # a markdown heading's '#'s would make the prompt a comment line of a .txt prompt file
    assert clean_expansion("## Video description: A golden dog runs.") == "A golden dog runs."
    assert clean_expansion("# A golden dog runs.") == "A golden dog runs."


def test_cli_expand_keeps_short_prompt(tmp_path, chat_lms):
    root, tokenizer = chat_lms
    out = tmp_path / "p.jsonl"
    args = ["prompts", "sample", "--n", "3", "--out", str(out), "--expand-with", str(root / "zero")]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "6", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    short = sample_prompts(3, seed=0)
    # A zero output layer makes greedy decoding emit token 0 six times: the new tokens, decoded.
    expected = tokenizer.decode([0] * 6).strip()
    assert expected
    for record, original in zip(records, short, strict=True):
        assert record["prompt"] == expected
        assert record["short_prompt"] == original["prompt"]
        assert record["categories"] == original["categories"]
        assert record["expanded_with"] == str(root / "zero")


def test_expansion_is_conditioned_on_the_prompt_and_batching_is_exact(chat_lms):
    root, _ = chat_lms
    prompts = ["A dog.", "A chef juggling oranges on a sandy beach at sunset.", "An owl sleeping."]
    kwargs = {"max_new_tokens": 8, "progress": False}
    batched = expand_prompts(prompts, str(root / "random"), batch_size=3, **kwargs)
    single = [expand_prompts([p], str(root / "random"), batch_size=1, **kwargs)[0] for p in prompts]
    assert batched == single  # left padding: a padded row continues exactly as it would alone
    assert len(set(batched)) == 3


def test_expansion_errors(chat_lms, tmp_path):
    root, _ = chat_lms
    with pytest.raises(VideoliftError, match="no chat template"):
        expand_prompts(["a dog"], str(root / "nochat"), progress=False)
    with pytest.raises(VideoliftError, match="cannot load a causal chat LM"):
        expand_prompts(["a dog"], str(tmp_path / "missing"), progress=False)


def test_cli_refuses_a_system_prompt_without_an_expansion_lm(tmp_path):
    # --system-prompt without --expand-with wrote short prompts and said nothing (a forgotten --expand-with).
    (tmp_path / "system.txt").write_text("Describe it.")
    out = tmp_path / "p.txt"
    system = ["--system-prompt", str(tmp_path / "system.txt")]
    args = ["prompts", "sample", "--n", "3", "--out", str(out), *system]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--system-prompt" in result.output and "--expand-with" in result.output
    assert not out.exists()


def test_expand_with_a_hub_id_loads_from_the_hub_cache_offline_and_says_how_to_get_one_not_there(
    chat_lms, hub, tmp_path
):
    """Offline, an id not in the Hub cache was refused with transformers' "We couldn't connect to
    'https://huggingface.co'": neither HF_HUB_OFFLINE nor the download to make was named."""
    from hub_cache import publish

    root, tokenizer = chat_lms
    publish(hub, "owner/chat", root / "zero", "a" * 40)
    out = tmp_path / "p.jsonl"
    args = ["prompts", "sample", "--n", "2", "--max-new-tokens", "6", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--expand-with", "owner/chat"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["expanded_with"] for r in records} == {"owner/chat"}
    assert {r["prompt"] for r in records} == {tokenizer.decode([0] * 6).strip()}

    out.unlink()
    result = CliRunner().invoke(app, [*args, "--expand-with", "owner/other"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert (
        f"--expand-with owner/other: cannot load a causal chat LM (HF_HUB_OFFLINE is set and owner/other is not in the Hub cache {hub}"
        in text
    )
    assert "`hf download owner/other`" in text and not out.exists()
    result = CliRunner().invoke(app, [*args, "--expand-with", "./my-lm"])
    assert "(no such directory ./my-lm, and not a Hub id like owner/name)" in " ".join(result.output.split())
