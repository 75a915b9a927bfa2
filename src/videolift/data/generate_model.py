"""The model a generation run samples with: where each of its processes runs it and in which dtype (as
the run records it), and its pipeline loaded, with its LoRA, on the device or offloaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from videolift.models.base import DiffusersT2VSpec

if TYPE_CHECKING:
    import torch


def cpu_only(device: str) -> bool:
    """Whether this launch's processes run on the CPU: --device cpu, or auto on a machine without a GPU."""
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def device_and_dtype(
    state: Any, device: str, dtype: str, gpu_dtype: Callable[[], str | None] | None = None
) -> tuple[torch.device, str]:
    """Where this process generates (auto and cuda: the GPU accelerate gave it), and the dtype as the run
    records it. auto: on a GPU the model's own recommendation where it has one (``gpu_dtype()``, the spec's:
    float16 for CogVideoX-2B), else bfloat16 where torch supports it; float32 elsewhere (the critic's
    ``auto_dtype``)."""
    import torch

    from videolift.models.base import auto_dtype, resolve_dtype

    run_device = state.device if device in ("auto", "cuda") else torch.device(device)
    if dtype == "auto":
        own = gpu_dtype() if gpu_dtype is not None and run_device.type == "cuda" else None
        dtype = own or auto_dtype(run_device)
    return run_device, str(resolve_dtype(dtype)).removeprefix("torch.")


def load_pipeline(
    model: str,
    family: str | None,
    lora: str | None,
    dtype: str,
    device: torch.device,
    *,
    offload: str,
    vae_tiling: bool,
) -> tuple[DiffusersT2VSpec, Any]:
    """The model's family (``family``, or detected) and its pipeline, loaded in ``dtype`` with the LoRA
    applied, on ``device`` or offloaded (``offload``: model, sequential); its VAE tiled and sliced with
    ``vae_tiling``."""
    from videolift.models.families import spec_for

    spec = spec_for(model, family)
    # Offloaded, the pipeline stays in CPU memory and diffusers' hooks move each component (or layer) to
    # the device while it runs: the same computation, in less accelerator memory.
    pipe = spec.load(model, dtype=dtype, device=None if offload != "none" else device, lora=lora)
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    if vae_tiling:
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
    return spec, pipe
