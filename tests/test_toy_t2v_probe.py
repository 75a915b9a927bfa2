"""The conditioning probe: which words of a prompt a toy T2V model reads."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from videolift.cli import app
from videolift.toy import grammar
from videolift.toy.t2v_probe import ATTRIBUTES, conditioning_probe, probe_prompts, swapped

COMMITTED = Path(__file__).parents[1] / "src" / "videolift" / "toy" / "assets" / "t2v"


def test_swapped_changes_exactly_one_attribute():
    spec = grammar.parse_prompt("a red circle moves left in a sand desert")
    assert swapped(spec, "colour").text == "a green circle moves left in a sand desert"
    assert swapped(spec, "shape").text == "a red square moves left in a sand desert"
    assert swapped(spec, "direction").text == "a red circle moves right in a sand desert"
    with pytest.raises(ValueError, match="one subject moving in a line"):
        swapped(grammar.parse_prompt("a red circle bounces in a sand desert"), "colour")
    with pytest.raises(ValueError, match="unknown attribute"):
        swapped(spec, "scene")


def test_probe_prompts_are_single_linear_moves_of_the_split():
    prompts = probe_prompts(20, "heldout", seed=3)
    assert len(prompts) == 20
    assert all(p.count == 1 and p.action in grammar.LINEAR_ACTIONS and p.split == "heldout" for p in prompts)
    assert prompts == probe_prompts(20, "heldout", seed=3)


@pytest.fixture(scope="module")
def toy_shaped_pipe():
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox
    from videolift.toy.pretrain_t2v import toy_model_config

    cfg = toy_model_config()
    cfg.layers, cfg.heads, cfg.head_dim = 1, 2, 16
    return build_tiny_cogvideox(None, cfg, seed=0)


def test_probe_reports_zero_gap_when_the_text_cannot_reach_the_video(toy_shaped_pipe):
    from videolift.models.families import get_spec

    spec, pipe = get_spec("cogvideox"), toy_shaped_pipe
    random_text = conditioning_probe(spec, pipe, n_clips=4, batch=2)
    assert set(random_text["gap"]) == set(ATTRIBUTES)
    assert all(abs(gap) > 1e-6 for gap in random_text["gap"].values())
    proj = pipe.transformer.patch_embed.text_proj
    saved = {k: v.clone() for k, v in proj.state_dict().items()}
    try:
        with torch.no_grad():
            proj.weight.zero_()
            proj.bias.zero_()
        deaf = conditioning_probe(spec, pipe, n_clips=4, batch=2)
    finally:
        proj.load_state_dict(saved)
    assert all(gap == 0.0 for gap in deaf["gap"].values())
    assert deaf["loss_true"] > 0


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_probe_command_on_the_committed_base_sees_it_read_colour():
    result = run("toy", "probe-t2v", "--model", str(COMMITTED), "--clips", "8", "--json")
    assert result.exit_code == 0, result.output
    probe = json.loads(result.stdout)
    assert probe["clips"] == 8 and probe["t_range"] == [700, 1000]
    assert probe["gap"]["colour"] > 0.2  # measured +53% on 64 clips; the base paints the asked colour


def test_probe_command_rejects_a_noise_level_beyond_the_schedule():
    result = run("toy", "probe-t2v", "--model", str(COMMITTED), "--t-low", "1000")
    assert result.exit_code == 2
    assert "--t-low" in result.output and "1000 timesteps" in result.output
