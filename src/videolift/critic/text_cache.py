"""The first passes' cache: a text per training item (a description, a check), computed once.

The first passes of describe- and check-then-rate critics run the base (or check) model over every
training video before training: hours at the scale of LiFT-HRA on one GPU. So they are split between
the launch's processes (rank r computes ``missing[r::world]``) and each process logs its texts as it
goes, a chunk at a time, to a file of its own, ``CACHE.parts/<host>-<pid>-<random>.jsonl``: a run interrupted
there (a crash, kill -9, Ctrl-C) keeps every chunk logged, and the same command continues from them.
Once every rank is done they exchange their texts, and the main one writes the cache file
(``{"key": key, field: {name: text}}``) and removes the logs it has merged that no running process holds
(each holds a lock on its own), so runs sharing a ``--cache-dir`` may run at the same time. Cached
texts are reused only for the same ``key`` (everything that decides them: model and its weights,
instruction, view, dtype).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from tqdm import tqdm

from videolift.core.distributed import sharded_state
from videolift.core.jsonl import atomic_write, iter_json_lines, read_json

Item = TypeVar("Item", bound=Hashable)
# Items computed between two log appends: small enough that an interruption loses little, large
# enough for the model's batches (16) to stay full.
CHUNK = 64


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cache_file(cache_dir: Path, name: str, key: dict[str, Any], shared: bool) -> Path:
    """``cache_dir/name`` (a run's own cache), or in a cache ``shared`` by runs one file per settings
    (``checks-<hash of key>.json``) so that runs with other settings do not overwrite each other's."""
    if not shared:
        return cache_dir / name
    stem, dot, ext = name.partition(".")
    return cache_dir / f"{stem}-{key_digest(key)}{dot}{ext}"


def split_note(processes: int) -> str:
    """For the announcement of a first pass: how many processes share it."""
    return f", split between {processes} processes" if processes > 1 else ""


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _cached(
    path: Path, key: dict[str, Any], field: str, logs: list[Path], cache: bool = True
) -> dict[str, str]:
    """Texts of the cache file (unless not ``cache``) and of the ``logs`` of interrupted runs, for this
    ``key``."""
    known: dict[str, str] = {}
    if cache and path.exists() and (saved := read_json(path)).get("key") == key:
        known = saved[field]
    digest = key_digest(key)
    for log in logs:
        for _, line in iter_json_lines(log, skip_partial_last=True):
            if line.get("key") == digest:
                known[line["name"]] = line["text"]
    return known


def cached_texts(
    path: Path,
    key: dict[str, Any],
    field: str,
    names: dict[Item, str],
    compute: Callable[[list[Item]], list[str]],
    announce: Callable[[int, int, int], None],
    *,
    progress: bool = False,
    desc: str = "first pass",
) -> dict[Item, str]:
    """A text per item (``names``: item -> its name in the cache), computing only the items the cache at
    ``path`` lacks, split between the launch's processes (see the module doc). ``compute(items)`` gives
    their texts in order (it may load its model on its first call); ``announce(missing, cached,
    processes)`` is called on the main process before computing. Every process returns every text."""
    import torch
    from accelerate.utils import broadcast_object_list, gather_object

    # A sharded job: its ranks wait for each other 12 hours, also after a critic's training run (a
    # pipeline's label-only baseline) left the group at that run's --ddp-timeout.
    state = sharded_state(cpu=not torch.cuda.is_available())
    # The main process reads the cache and decides what is missing: the others take its word (another
    # run sharing the cache may add to it meanwhile; the ranks must split the same list).
    seen: list[Path] = []
    known: dict[str, str] = {}
    missing: list[str] = []
    if state.is_main_process:
        seen = sorted(parts_dir(path).glob("*.jsonl"))  # interrupted runs' logs: merged, then removed
        known = _cached(path, key, field, seen)
        missing = list(dict.fromkeys(name for name in names.values() if name not in known))
    missing, merge = broadcast_object_list([(missing, bool(missing or seen))])[0]
    # This process's log: removed once the cache holds its texts; kept (closed) if anything fails.
    with contextlib.ExitStack() as own_log:
        if missing:
            if state.is_main_process:
                announce(len(missing), len(set(names.values())) - len(missing), state.num_processes)
            item_of: dict[str, Item] = {}
            for item, name in names.items():
                item_of.setdefault(name, item)  # items named alike share a text: computed once
            mine = [(item_of[name], name) for name in missing[state.process_index :: state.num_processes]]
            log = own_log.enter_context(_own_log(path))
            shown = progress and state.is_main_process
            texts = _compute_logged(log, key, mine, compute, shown, desc, len(missing), state.num_processes)
            known.update(dict(gather_object(list(texts.items()))))
        if state.is_main_process and merge:
            known = _merge(path, key, field, known, seen)
        wanted = {name: known[name] for name in names.values()} if state.is_main_process else None
        wanted = broadcast_object_list([wanted])[0]  # once the cache is written: the logs may go
    if merge:
        state.wait_for_everyone()  # every process's log removed
        if state.is_main_process:
            with contextlib.suppress(OSError):  # gone, or holding another run's log
                parts_dir(path).rmdir()
    return {item: wanted[name] for item, name in names.items()}


@contextlib.contextmanager
def _own_log(path: Path) -> Iterator[IO[str]]:
    """A new log file of this process beside the cache at ``path``, locked while open (a run merging logs
    leaves it alone) and removed when done; kept if the process dies."""
    import socket
    import uuid

    log = parts_dir(path) / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle, _locked(log, wait=False):
        yield handle
    log.unlink()


def _compute_logged(
    log: IO[str],
    key: dict[str, Any],
    items: list[tuple[Any, str]],
    compute: Callable[[list[Any]], list[str]],
    progress: bool,
    desc: str,
    total: int,
    processes: int,
) -> dict[str, str]:
    """This process's texts of ``items`` ((item, name) pairs), written to ``log`` a chunk at a time."""
    digest, texts = key_digest(key), {}
    with tqdm(total=total, desc=desc, unit="video", disable=not progress) as bar:
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            for (_, name), text in zip(chunk, compute([item for item, _ in chunk]), strict=True):
                texts[name] = text
                line = {"key": digest, "name": name, "text": text}
                log.write(json.dumps(line, ensure_ascii=False) + "\n")
            log.flush()
            os.fsync(log.fileno())
            bar.update(min(len(chunk) * processes, bar.total - bar.n))  # the others' too, roughly
    return texts


def _merge(
    path: Path, key: dict[str, Any], field: str, known: dict[str, str], seen: list[Path]
) -> dict[str, str]:
    """Write the cache: ``known`` and what a run sharing it wrote meanwhile, and the ``seen`` logs that no
    running process holds, read again under their lock (a dying run may have added to them) and then
    removed. Runs that finish together merge one after the other (``CACHE.lock``)."""
    with _locked(path.with_name(path.name + ".lock"), wait=True), contextlib.ExitStack() as taken:
        merged, held = dict(known), []
        for old in seen:
            if taken.enter_context(_locked(old, wait=False)):
                merged |= _cached(path, key, field, [old], cache=False)
                held.append(old)
        if path.exists() and (saved := read_json(path)).get("key") == key:
            merged = saved[field] | merged
        with atomic_write(path) as handle:
            handle.write(json.dumps({"key": key, field: merged}, indent=0) + "\n")
        for old in held:  # merged: gone, while still locked
            with contextlib.suppress(OSError):  # open elsewhere where no flock guards it (Windows)
                old.unlink()
    return merged


@contextlib.contextmanager
def _locked(file: Path, *, wait: bool) -> Iterator[bool]:
    """An exclusive ``flock`` on ``file`` while inside (True), or False where another process holds it
    (``wait``: until it lets go) or the file is gone; True unguarded where there is no flock."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield True
        return
    if not wait and not file.exists():
        yield False
        return
    with file.open("a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without locks (some network mounts): unguarded
            pass
        yield True
