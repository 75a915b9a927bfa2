"""The shipped `accelerate launch` configs (configs/accelerate/) read by the installed accelerate as their
comments say: each is validated by accelerate's own launch code and turned into the environment its
processes would get (nothing is launched), and the plugins built from that environment are the ones
the docs name. A key accelerate renames or drops fails here, not on a user's 8 GPUs."""

from pathlib import Path

import pytest

CONFIGS = Path(__file__).parents[1] / "configs" / "accelerate"


def launch_env(name: str) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file configs/accelerate/NAME.yaml -m videolift.cli align` resolves:
    its arguments and the environment its processes start with."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(CONFIGS / f"{name}.yaml"), "-m", "videolift.cli", "align"]
    args, defaults, mixed_from_config = _validate_launch_command(launch_command_parser().parse_args(argv))
    if args.use_deepspeed:  # as accelerate's launch_command fills it in before its DeepSpeed launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_every_shipped_config_is_checked_here():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == ["ddp", "deepspeed_zero2", "fsdp", "fsdp_vlm"]


def test_ddp_is_eight_processes_of_bf16_data_parallel():
    args, env = launch_env("ddp")
    assert (args.multi_gpu, args.use_deepspeed, args.use_fsdp, args.num_processes) == (True, False, False, 8)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_deepspeed_is_zero_2_without_offload_and_leaves_accumulation_to_the_training_config():
    args, env = launch_env("deepspeed_zero2")
    assert args.use_deepspeed and args.num_processes == 8
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "none"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] == "none"
    # `grad_accum` and `--max-grad-norm` reach DeepSpeed from the training config (docs/align.md)
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env and "ACCELERATE_GRADIENT_CLIPPING" not in env
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


@pytest.mark.parametrize(
    ("name", "state_dict"), [("fsdp", "SHARDED_STATE_DICT"), ("fsdp_vlm", "FULL_STATE_DICT")]
)
def test_fsdp_is_version_2_wrapping_the_models_own_blocks(name, state_dict, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    args, env = launch_env(name)
    assert args.use_fsdp and args.num_processes == 8 and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # read from the environment, as in each launched process
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == state_dict
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    # no class named: accelerate wraps the model's own `_no_split_modules` (the configs' comments)
    assert plugin.transformer_cls_names_to_wrap is None
    assert plugin.reshard_after_forward is True and not plugin.cpu_ram_efficient_loading
    assert not plugin.activation_checkpointing  # the training config's gradient checkpointing instead
