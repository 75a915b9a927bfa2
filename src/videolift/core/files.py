"""Cheap identities of files and directory trees, for deciding whether earlier outputs are still valid."""

from __future__ import annotations

import hashlib
from pathlib import Path


def fingerprint(path: str | Path) -> str:
    """Cheap identity of a file or directory tree: names, sizes and modification times."""
    path = Path(path)
    if not path.exists():
        return "missing"
    items = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in items:
        st = p.stat()
        h.update(f"{p.relative_to(path) if p != path else p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: identity that survives copies and touches."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
