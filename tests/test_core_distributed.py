"""Settings handed to the DeepSpeed engine, and which modules the align trainer moves to the GPU."""

from __future__ import annotations

from types import SimpleNamespace

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
