"""``videolift env``: what this machine gives videolift, for a setup check or a bug report.

Library versions (as every run's summary records them), the accelerators torch sees, the video codecs
PyAV's FFmpeg has (videolift writes H.264 with libx264), and the Hugging Face Hub settings.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any

import typer

# Beyond core.environment's LIBRARIES (what decides the numbers): what the commands need to run.
MORE_LIBRARIES = ("av", "numpy", "safetensors", "huggingface_hub", "fastapi", "sqlalchemy", "vbench")
# The codecs videolift writes (libx264) and those it reads from users' videos and checks for browsers.
CODECS = {"libx264": "w", "h264": "r", "hevc": "r", "vp9": "r", "av1": "r"}


def accelerators() -> list[dict[str, Any]]:
    """The CUDA devices torch sees (name, memory, bf16), or Apple's MPS."""
    import torch

    found = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            found.append(
                {
                    "device": f"cuda:{i}",
                    "name": props.name,
                    "memory_gb": round(props.total_memory / 2**30, 1),
                    "bf16": (props.major, props.minor) >= (8, 0),  # Ampere or newer
                }
            )
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append({"device": "mps", "name": "Apple MPS"})
    return found


def codecs() -> dict[str, bool]:
    """Whether PyAV's FFmpeg has each codec (an encoder for "w", a decoder for "r")."""
    import av

    available = {}
    for name, mode in CODECS.items():
        try:
            av.codec.Codec(name, mode)
            available[name] = True
        except (ValueError, av.error.FFmpegError):  # an unknown codec: UnknownCodecError (a ValueError)
            available[name] = False
    return available


def _ram_gb() -> float | None:
    """The machine's memory (None where the OS does not say: Windows)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def report() -> dict[str, Any]:
    """Everything ``videolift env`` shows."""
    import av
    import torch
    from huggingface_hub import constants as hub

    from videolift.core.environment import environment, installed_version

    return {
        **environment(),
        **{name: installed_version(name) for name in MORE_LIBRARIES},
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,  # the CUDA torch was built with (None: a CPU build)
        "accelerators": accelerators(),
        "ram_gb": _ram_gb(),
        "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))) or None,  # PyAV's FFmpeg
        "codecs": codecs(),
        # As huggingface_hub reads them (HF_HUB_OFFLINE=1: nothing is downloaded; models come from HF_HOME).
        "hf_hub_offline": hub.HF_HUB_OFFLINE,
        "hf_home": hub.HF_HOME,
    }


def env(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """What this machine gives videolift: library versions, accelerators, video codecs, Hub settings.
    Paste it into a bug report."""
    from videolift.core.environment import LIBRARIES  # imports torch: not at `videolift --help`

    info = report()
    libraries = {*LIBRARIES, *MORE_LIBRARIES}
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    for key, value in info.items():
        if key == "accelerators":
            shown = "; ".join(", ".join(f"{k} {v}" for k, v in a.items()) for a in value) or "none (CPU only)"
        elif key == "codecs":
            shown = ", ".join(f"{name} {'yes' if ok else 'MISSING'}" for name, ok in value.items())
        elif value is None:
            shown = "not installed" if key in libraries else "-"
        else:
            shown = value
        typer.echo(f"{key:>16}: {shown}")
    if not info["codecs"]["libx264"]:
        typer.echo("warning: PyAV's FFmpeg has no libx264 encoder: videolift cannot write videos", err=True)
