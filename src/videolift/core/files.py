"""Cheap identities of files and directory trees, for deciding whether earlier outputs are still valid; the
checks of a command's output paths, and the replacing of several output files together."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from videolift.core.errors import UsageError, VideoliftError
from videolift.core.jsonl import atomic_write, read_json

# What model directories keep weights in (diffusers' and transformers' formats, and torch's own).
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt"})


def holds_weights(folder: Path) -> bool:
    """Whether a model component's folder holds its weights: a weight file, and every shard its index
    files (``*.index.json``) name. A Hub snapshot may hold a component's config alone, or part of its shards
    (a download cut short, or one that left the component out)."""
    if not folder.is_dir():
        return False
    names = {f.name for f in folder.iterdir() if f.is_file()}
    for index in (folder / n for n in names if n.endswith(".index.json")):
        try:
            # a transformers/diffusers index, read as they read it (a repeated key's last value)
            shards = set(read_json(index, last_of_repeated_keys=True).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        if not shards <= names:
            return False
    return any(Path(n).suffix in WEIGHT_SUFFIXES for n in names)


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


class HashMemo:
    """``content_hash`` remembered by (path, size, mtime) in a JSON file between runs, so multi-GB
    weights are read for hashing once. ``path`` None: remembered for this object's life only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.table: dict[str, Any] = {}
        if path is not None and path.exists():
            # A damaged memo only costs re-hashing.
            with contextlib.suppress(OSError, ValueError, VideoliftError):
                self.table = read_json(path)
        self._known = len(self.table)

    def hash(self, file: Path) -> str:
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self.table:
            self.table[key] = content_hash(file)
        return self.table[key]

    def save(self) -> None:
        """Write the memo if it gained entries."""
        if self.path is None or len(self.table) <= self._known:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as handle:  # ranks may race here: each writes a complete table
            json.dump(self.table, handle)
        self._known = len(self.table)


def weights_digest(model: str | Path, memo: HashMemo | None = None) -> str | None:
    """Identity of a local model directory by the content of its weight files (every component's; not
    its configs, which record where they were saved from): a model rebuilt at the same path is another
    model. None for a Hub id or a path that is not a directory (what we cannot see). ``memo``: hashes
    known from earlier runs; saving what it gains is the caller's (once its run may write)."""
    root = Path(model).expanduser()
    if not root.is_dir():
        return None
    memo = memo or HashMemo(None)
    files = sorted(  # component folders may be links to shared ones: followed (rglob would not)
        Path(folder) / name
        for folder, _, names in os.walk(root, followlinks=True)
        for name in names
        if Path(name).suffix in WEIGHT_SUFFIXES and (Path(folder) / name).is_file()
    )
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}:{memo.hash(f)}\n".encode())
    return h.hexdigest()[:32]


def _free_space(path: Path) -> str:
    """Space left on the disk that holds ``path`` (or its nearest existing parent), for messages."""
    for place in (path, *path.parents):
        if place.exists():
            free = shutil.disk_usage(place).free
            return f"{free / 2**20:,.0f} MB free there"
    return "free space unknown"


# How torch's and safetensors' writers report a failed write (a full disk, a file-size limit): messages
# that name no file, in exceptions that are not OSErrors.
WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed", "file write failed", "I/O error")
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


@contextlib.contextmanager
def writing(path: str | Path, what: str) -> Iterator[None]:
    """Turn a failed write into ``path`` (``what``: e.g. "the checkpoint") into one line naming the place and
    the space left there. Only write failures: an OSError of a full disk (or a file-size limit, an I/O
    error) that names no file, and torch's and safetensors' own reports of one; anything else (out of
    memory, a collective that failed) passes through as it is."""
    from safetensors import SafetensorError

    path = Path(path)
    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as exc:
        failed = (
            exc.errno in WRITE_ERRNOS and exc.filename is None
            if isinstance(exc, OSError)
            else any(sign in str(exc) for sign in WRITE_FAILURES)
        )
        if not failed:
            raise
        why = exc.strerror if isinstance(exc, OSError) else str(exc).strip().splitlines()[0]
        raise VideoliftError(f"{path}: cannot write {what} ({why}; {_free_space(path)})") from exc


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)  # also through symlinks and hard links
    return a.resolve() == b.resolve()


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing folder above ``path`` when it is a file (``--out notes.txt/x``): nothing can
    be made under it, and the mkdir or write that finds out would name a temporary file, after the work."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_outputs(
    outputs: Iterable[tuple[str, str | Path | None]],
    inputs: Iterable[tuple[str, str | Path | None]] = (),
    *,
    overwrite: bool,
) -> None:
    """Refuse, before any work, an output file that is a directory, or that is also an input or another
    output (writing it would replace that file); then, without ``overwrite`` (the command's --overwrite),
    one that exists. Pairs are (what the user calls it, path); None: not given."""
    seen = [(name, Path(p)) for name, p in inputs if p is not None]
    given = []
    for name, path in outputs:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise VideoliftError(f"{name} {path} is a directory; name a file to write")
        if (blocker := file_in_the_way(path)) is not None:
            raise VideoliftError(f"{name} {path}: {blocker} is a file, not a directory")
        for other, earlier in seen:
            if _same(path, earlier):
                raise UsageError(f"{name} {path} is also {other}: give each its own file")
        seen.append((name, path))
        given.append((name, path))
    if overwrite:
        return
    for name, path in given:  # after the checks above: an output that is also an input is refused as that
        if os.path.lexists(path):  # a link too, even one to nothing: writing would replace it
            raise VideoliftError(f"{name} {path} already exists; pass --overwrite to replace it")


@contextlib.contextmanager
def replacing(*paths: str | Path, remove: Iterable[Path] = ()) -> Iterator[list[Path]]:
    """Replace several output files together: until every new one is written, the old ones stay whole.

    Yields a temporary name beside each path (hidden: ``.NAME.XXXXXXXX.tmp``) for the caller to write that
    file to, by any means (``write_jsonl``, ``atomic_write``, ``write_video``). An error, or a kill, in the
    block leaves every old file as it was, with no new one beside it (the temporaries are removed; a
    kill -9 leaves them, hidden). Once the block ends, the old files of every path but the first go, and
    ``remove`` (old outputs the new set has none of), then each temporary is renamed over its path in
    order: killed within those renames, some new files and the rest missing, never an old file beside new
    ones. Give the file that marks the set complete (a manifest, a summary) last."""
    finals = [Path(p) for p in paths]
    token = secrets.token_hex(4)
    temps = [p.with_name(f".{p.name}.{token}.tmp") for p in finals]
    try:
        yield temps
        if unwritten := [str(p) for p, t in zip(finals, temps, strict=True) if not t.is_file()]:
            raise RuntimeError(f"replacing: nothing written for {', '.join(unwritten)}")  # the caller's bug
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    for old in [*finals[1:], *(p for p in map(Path, remove) if p not in finals)]:
        old.unlink(missing_ok=True)
    for temp, path in zip(temps, finals, strict=True):
        os.replace(temp, path)


def replace_dir(new: Path, final: Path) -> Path:
    """``new``, a finished directory, renamed to ``final``: an earlier ``final`` is moved aside first
    (``.NAME.old``) and removed only once the new one is in place, so a failure leaves the old directory
    whole, and a kill the old one (aside, if between the two renames), the new one, or a leftover
    ``.NAME.old`` beside the new one; never a half-deleted directory."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        if old.exists() and not final.exists():  # the old one back in place
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def out_dir_problem(
    out: str | Path,
    models: Iterable[tuple[str, str | Path | None]],
    advice: str,
    *,
    inside: bool = False,
    label: str | None = None,
) -> str | None:
    """Why an output directory may not be written: it is also a model's local directory (pairs of the
    option and its value; None: not given, a Hub id: no directory), or with ``inside`` one in it; the
    command's files would go beside (or among) the model's own. None when it may. ``advice`` ends the
    message, e.g. "give the videos their own directory"; ``label`` begins it (default: "--out OUT")."""
    out = Path(out).expanduser()
    label = label or f"--out {out}"
    for option, model in models:
        if model is None or not (local := Path(model).expanduser()).is_dir():
            continue
        if _same(out, local):
            return f"{label} is also {option}: {advice}"
        if inside and local.resolve() in out.resolve().parents:
            return f"{label} is inside {option} {model}: {advice}"
    return None


def refuse_file_as_dir(out: str | Path, option: str = "--out") -> None:
    """An output directory that exists as a file, or is to be made under one: refused by name before any
    work, rather than as the "File exists" or "Not a directory" of the first mkdir (once a model has
    loaded, or a corpus been rendered), which names a temporary file of it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VideoliftError(f"{option} {out}: exists and is not a directory")
    if not out.exists() and (blocker := file_in_the_way(out)) is not None:
        raise VideoliftError(f"{option} {out}: {blocker} is a file, not a directory")


def check_out_dir(
    out: str | Path, models: Iterable[tuple[str, str | Path | None]], advice: str, **kw: Any
) -> None:
    """``out_dir_problem``'s answer as a wrong command line (UsageError)."""
    if problem := out_dir_problem(out, models, advice, **kw):
        raise UsageError(problem)


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
