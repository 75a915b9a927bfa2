"""Shared fixtures. Everything runs offline on tiny models built from configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread everywhere, subprocesses included, so in-process and subprocess runs compute alike
# (the resume-after-kill tests compare weights across them) and tiny models do not contend.
os.environ["OMP_NUM_THREADS"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cogvideox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny CogVideoX pipeline saved with save_pretrained (9x64x64 samples, ~100K params)."""
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox

    out = tmp_path_factory.mktemp("tiny_cogvideox")
    build_tiny_cogvideox(out)
    return out


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty local Hub cache, offline (HF_HUB_OFFLINE); ``hub_cache.publish`` puts models in it."""
    from hub_cache import offline_hub

    return offline_hub(tmp_path / "hub", monkeypatch)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine they only contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
