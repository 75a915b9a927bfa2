"""A local Hub cache built offline, laid out as huggingface_hub downloads into it: a model named by its Hub
id loads from it with ``HF_HUB_OFFLINE=1`` (the ``hub`` fixture of conftest.py is an empty one)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def publish(
    hub: Path, repo_id: str, source: Path, commit: str, replace: dict[str, bytes] | None = None
) -> Path:
    """``source``'s files as the snapshot ``commit`` of ``repo_id`` in the Hub cache ``hub``, and ``main``
    pointing at it: each file a relative symlink to its blob (shared by snapshots), as huggingface_hub
    downloads them. ``replace``: other contents for some files."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        name = file.relative_to(source).as_posix()
        data = (replace or {}).get(name, file.read_bytes())
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs/main").write_text(commit)
    return snapshot


def offline_hub(path: Path, monkeypatch) -> Path:
    """An empty Hub cache at ``path``, offline. diffusers (0.42) and transformers keep no copy of the cache's
    place: they pass ``cache_dir=None`` to huggingface_hub, which reads ``constants.HF_HUB_CACHE`` at each
    call."""
    from huggingface_hub import constants

    path.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path
