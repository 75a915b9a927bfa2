"""Settings handed to the DeepSpeed engine and the process group, and which modules the align trainer
moves to the GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from videolift.core.distributed import deepspeed_clipping


def _accelerator(kind: DistributedType, ds_config: dict) -> SimpleNamespace:
    plugin = SimpleNamespace(deepspeed_config=ds_config)
    return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=plugin))


def test_deepspeed_clips_at_max_grad_norm_unless_its_config_says_otherwise():
    for unset in ({}, {"gradient_clipping": "auto"}):
        acc = _accelerator(DistributedType.DEEPSPEED, dict(unset))
        deepspeed_clipping(acc, 0.5)
        assert acc.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] == 0.5
    acc = _accelerator(DistributedType.DEEPSPEED, {"gradient_clipping": 2.0})
    deepspeed_clipping(acc, 0.5)
    assert acc.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] == 2.0
    acc = _accelerator(DistributedType.MULTI_GPU, {})
    deepspeed_clipping(acc, 0.5)  # DDP: accelerate's clip_grad_norm_ does it
    assert acc.state.deepspeed_plugin.deepspeed_config == {}


def test_encoding_moves_the_frozen_encoders_but_not_the_transformer():
    from videolift.align.inputs import encoders_ready

    moved: list[str] = []

    class Spy(torch.nn.Linear):
        def to(self, *args, **kwargs):
            moved.append(self.name)
            return self

    parts = {}
    for name in ("transformer", "vae", "text_encoder"):
        parts[name] = Spy(1, 1)
        parts[name].name = name
    pipe = SimpleNamespace(components={**parts, "scheduler": object()}, **parts)
    encoders_ready(pipe, "meta", vae_tiling=False)
    assert sorted(moved) == ["text_encoder", "vae"]  # a 14B transformer would not fit beside them


# Rank 0 stays away from the barrier for longer than the job's timeout: rank 1 must stop waiting (with
# torch's default, 30 minutes on gloo, it would wait and pass); a sharded job's ranks wait (12 hours).
# "after": the group was made by an earlier job of the process (as in `videolift run`) with another timeout.
_LATE_RANK = """
import sys, time
from datetime import timedelta
which, earlier, out = sys.argv[1], sys.argv[2], sys.argv[3]
from videolift.core.distributed import sharded_state, fresh_accelerator
if earlier == "sharded":
    sharded_state(cpu=True)
elif earlier == "training":
    fresh_accelerator(cpu=True, ddp_timeout=1)
if which == "align":
    from videolift.align.config import AlignConfig
    from videolift.align.trainer import _accelerator
    acc = _accelerator(AlignConfig(model="m", scores="s.jsonl", videos=".", out="o", ddp_timeout=1))
elif which == "critic":
    from videolift.critic.sft import _accelerator
    from videolift.critic.sft_config import SFTConfig
    acc = _accelerator(SFTConfig(ddp_timeout=1))
elif which == "first_pass":  # critic train's first passes (critic.text_cache): split, then gathered
    from pathlib import Path
    from videolift.core.distributed import process_state
    from videolift.critic.text_cache import cached_texts
    acc = process_state()
else:
    acc = sharded_state(cpu=True)
def late(items=()):
    if acc.process_index == 0:
        time.sleep(4)
    return [str(i) for i in items]
try:
    if which == "first_pass":
        names = {i: str(i) for i in range(4)}
        cached_texts(Path("cache.json"), {"k": 1}, "texts", names, late, lambda *a: None)
    else:
        late()
        acc.wait_for_everyone()
    result = "passed"
except Exception as exc:
    result = "failed: " + str(exc).splitlines()[0]
with open(out + "." + str(acc.process_index), "w") as handle:
    handle.write(result)
"""


def _late_rank(tmp_path: Path, job: str, earlier: str) -> str:
    """What rank 1 met at a barrier rank 0 came to 4 s late."""
    script = tmp_path / "late_rank.py"
    script.write_text(_LATE_RANK)
    env = dict(os.environ, HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", script, job, earlier, tmp_path / "rank"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (tmp_path / "rank.1").exists(), proc.stderr[-3000:]
    return (tmp_path / "rank.1").read_text()


@pytest.mark.parametrize("trainer", ["align", "critic"])
@pytest.mark.parametrize("earlier", ["none", "sharded"])
def test_ddp_timeout_is_how_long_a_rank_waits_at_a_barrier(trainer, earlier, tmp_path):
    waited = _late_rank(tmp_path, trainer, earlier)
    assert waited.startswith("failed:") and "Timed out" in waited, waited


@pytest.mark.parametrize("job", ["sharded", "first_pass"])
def test_a_sharded_job_after_a_training_run_waits_its_own_timeout(job, tmp_path):
    """Not the training run's 1 s that made the group: a finished rank waits for the others (a critic's
    first passes too: a pipeline's label-only baseline describes its videos after the first critic trained)."""
    assert _late_rank(tmp_path, job, "training") == "passed"


def test_a_ddp_timeout_past_thirty_days_is_refused_by_the_settings():
    """Not an OverflowError when the process group is made (a timedelta ends at 999,999,999 days)."""
    from pydantic import ValidationError

    from videolift.align.config import AlignConfig
    from videolift.core.distributed import MAX_TIMEOUT_SECONDS
    from videolift.core.errors import UsageError
    from videolift.critic.sft_config import SFTConfig

    paths = dict(model="m", scores="s.jsonl", videos=".", out="o")
    assert AlignConfig(**paths, ddp_timeout=MAX_TIMEOUT_SECONDS).ddp_timeout == MAX_TIMEOUT_SECONDS
    assert SFTConfig(ddp_timeout=MAX_TIMEOUT_SECONDS).ddp_timeout == MAX_TIMEOUT_SECONDS
    for huge in (MAX_TIMEOUT_SECONDS + 1, 10**14):
        with pytest.raises(ValidationError, match="less than or equal"):
            AlignConfig(**paths, ddp_timeout=huge)
        with pytest.raises(UsageError, match="--ddp-timeout .*less than or equal"):
            SFTConfig(ddp_timeout=huge)


def test_a_second_accelerator_of_an_fsdp_launch_is_made_as_the_first():
    """An FSDP accelerator writes FSDP over the process group's type (accelerate's state.py), and the next
    one found no FSDP plugin: "AcceleratorState object has no attribute fsdp_plugin" (found under the FSDP
    CPU launch: a resume's layout check made an accelerator before the trainer's). Here, one process's
    group marked as an FSDP accelerator leaves it (DDP's FSDP twin: tests/test_critic_multiprocess.py)."""
    from accelerate import PartialState

    from videolift.core.distributed import fresh_accelerator

    assert fresh_accelerator(cpu=True).distributed_type == DistributedType.NO
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as an FSDP accelerator leaves it
    assert fresh_accelerator(cpu=True).distributed_type == DistributedType.NO
