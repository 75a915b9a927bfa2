"""Test-only, on PYTHONPATH of launched processes: lets accelerate run FSDP on CPU processes (gloo).

accelerate 1.16 turns a launch's FSDP config on only for accelerator process groups (``AcceleratorState``:
MULTI_GPU / NPU / XPU, ...); CPU processes become MULTI_CPU and silently run DDP. torch's FSDP2 itself
shards, gathers and reduce-scatters on CPU with gloo, so this turns MULTI_CPU + an FSDP plugin into
FSDP exactly as accelerate does for GPUs, and the FSDP code paths run here for real."""

import os

if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
    import accelerate.state as _state

    _init = _state.AcceleratorState.__init__

    def _fsdp_on_cpu(self, mixed_precision=None, cpu=False, dynamo_plugin=None, deepspeed_plugin=None,
                     fsdp_plugin=None, *args, **kwargs):  # fmt: skip
        _init(self, mixed_precision, cpu, dynamo_plugin, deepspeed_plugin, fsdp_plugin, *args, **kwargs)
        if self.distributed_type == _state.DistributedType.MULTI_CPU and fsdp_plugin is not None:
            self.distributed_type = _state.DistributedType.FSDP  # as state.py does for MULTI_GPU
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            _state.PartialState._shared_state["distributed_type"] = self.distributed_type

    _state.AcceleratorState.__init__ = _fsdp_on_cpu
