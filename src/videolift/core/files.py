"""Cheap identities of files and directory trees, for deciding whether earlier outputs are still valid."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from videolift.core.errors import VideoliftError


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


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)  # also through symlinks and hard links
    return a.resolve() == b.resolve()


def check_outputs(
    outputs: Iterable[tuple[str, str | Path | None]], inputs: Iterable[tuple[str, str | Path | None]] = ()
) -> None:
    """Refuse, before any work, an output file that is a directory, or that is also an input or another
    output (writing it would replace that file). Pairs are (what the user calls it, path); None: not given."""
    seen = [(name, Path(p)) for name, p in inputs if p is not None]
    for name, path in outputs:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise VideoliftError(f"{name} {path} is a directory; name a file to write")
        for other, earlier in seen:
            if _same(path, earlier):
                raise VideoliftError(f"{name} {path} is also {other}: give each its own file")
        seen.append((name, path))
