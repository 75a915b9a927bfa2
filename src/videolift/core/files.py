"""Cheap identities of files and directory trees, for deciding whether earlier outputs are still valid."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

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


LOCK_FILE = ".lock"


def lock_run(out: Path, command: str) -> IO[str] | None:
    """Hold ``out/.lock`` until the returned file is closed or this process ends, however it ends: a
    second run into the same OUT is refused rather than writing beside the first (a launcher killed -9,
    such as torchrun, leaves its ranks training, unseen, where a ``--resume`` would write too).
    Creates OUT. None where there is no ``flock`` (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    out.mkdir(parents=True, exist_ok=True)
    handle = (out / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise VideoliftError(
            f"{out} is in use by another `{command}` run (process {holder}): let it finish or stop it, "
            "then run again"
        ) from None
    except OSError as exc:  # a file system without locks (some network mounts): run unguarded, as before
        handle.close()
        if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
            return None
        raise
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
