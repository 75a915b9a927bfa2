"""The first passes' cache: a text per training item (a description, a check), computed once.

The first passes of describe- and check-then-rate critics run the base (or check) model over every
training video before training: hours at the scale of LiFT-HRA on one GPU. So they are split between
the launch's processes (rank r computes ``missing[r::world]``) and logged as they go, a chunk at a time,
to ``CACHE.parts/rank{r}.jsonl``; a run interrupted there (a crash, kill -9, Ctrl-C) keeps every chunk
logged, and the same command continues from them. Once every rank is done, the main one merges the logs
into the cache file (``{"key": key, field: {name: text}}``) and removes them. Cached texts are reused
only for the same ``key`` (everything that decides them: model and its weights, instruction, view).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from videolift.core.distributed import process_state
from videolift.core.jsonl import append_jsonl, atomic_write, iter_json_lines, read_json, repair_log

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


def _cached(path: Path, key: dict[str, Any], field: str) -> dict[str, str]:
    """Texts of the cache file and of any interrupted run's logs, for this ``key``."""
    known: dict[str, str] = {}
    if path.exists() and (saved := read_json(path)).get("key") == key:
        known = saved[field]
    digest = key_digest(key)
    for log in sorted(parts_dir(path).glob("rank*.jsonl")):
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
    state = process_state()
    known = _cached(path, key, field)
    missing = [item for item, name in names.items() if name not in known]
    state.wait_for_everyone()  # everyone has read the logs before anyone appends to them
    if not missing:
        return {item: known[name] for item, name in names.items()}
    if state.is_main_process:
        announce(len(missing), len(names) - len(missing), state.num_processes)
    mine = missing[state.process_index :: state.num_processes]
    log = parts_dir(path) / f"rank{state.process_index}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    repair_log(log)
    digest = key_digest(key)
    with tqdm(
        total=len(missing), desc=desc, unit="video", disable=not (progress and state.is_main_process)
    ) as bar:
        for start in range(0, len(mine), CHUNK):
            chunk = mine[start : start + CHUNK]
            for item, text in zip(chunk, compute(chunk), strict=True):
                append_jsonl(log, {"key": digest, "name": names[item], "text": text})
            bar.update(min(len(chunk) * state.num_processes, bar.total - bar.n))  # the others' too, roughly
    state.wait_for_everyone()
    if state.is_main_process:
        known = _cached(path, key, field)
        with atomic_write(path) as handle:
            handle.write(json.dumps({"key": key, field: known}, indent=0) + "\n")
        shutil.rmtree(parts_dir(path))
    state.wait_for_everyone()
    known = known if state.is_main_process else _cached(path, key, field)
    return {item: known[name] for item, name in names.items()}
