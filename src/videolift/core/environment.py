"""What a run ran on, recorded in its summary: a result is read with the library versions behind it."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

LIBRARIES = ("videolift", "torch", "diffusers", "transformers", "accelerate", "peft", "deepspeed")


def installed_version(name: str) -> str | None:
    """A distribution's installed version, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: Any = None) -> dict[str, Any]:
    """Python and the installed versions of the libraries that decide the numbers (None: not installed);
    with ``device``, its name and, on a GPU, the peak memory torch allocated there."""
    versions = {name: installed_version(name) for name in LIBRARIES}
    versions["torch"] = torch.__version__  # with its build: "2.5.1+cu124"
    out: dict[str, Any] = {"python": platform.python_version(), **versions}
    if device is not None:
        device = torch.device(device)
        out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        if device.type == "cuda":
            out["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out
