"""Two CPU processes under a CPU variant of a shipped FSDP config (tests/fsdp_cpu_site: why)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def fsdp_launch(config: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The command prefix (``... -m videolift.cli``) and environment running configs/accelerate/``config``
    on two CPU processes: the same FSDP settings, in fp32 (CPU autocast is not what the GPUs run)."""
    settings = yaml.safe_load((ROOT / "configs/accelerate" / config).read_text())
    assert settings["distributed_type"] == "FSDP"
    settings |= {"mixed_precision": "no", "use_cpu": True, "num_processes": 2}
    path = tmp_path / f"cpu_{config}"
    path.write_text(yaml.safe_dump(settings))
    site = str(Path(__file__).parent / "fsdp_cpu_site")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(path), "--main_process_port", "0",
           "-m", "videolift.cli"]  # fmt: skip
    return cmd, env
