"""A tiny stage runner: each stage is skipped when its outputs are complete for the same inputs and
settings, as recorded in a run manifest (``DIR/run_manifest.json``). Stages themselves are resumable,
so a killed run restarts at the stage it was in and that stage resumes its own work. A stage's start
is recorded too: an unfinished attempt with other inputs or settings is cleared (``Stage.fresh``)
rather than resumed, since a training checkpoint does not know which data it was trained on.

Input and output files are identified by their bytes (directories by their files' names, sizes and
times), so a stage that reruns and writes the same file again does not redo the stages after it.
Paths inside the workdir are recorded relative to it, so a run is recognised when the workdir is
named from another directory, moved, or copied with its timestamps (``cp -a``: a copy can then rerun
only the stages whose settings change, e.g. alignment with another seed on the same videos).

Under a multi-process launch (``pipeline.ranks``) the main process alone reads and writes the manifest and
decides; the others follow, run the multi-process stages with it and wait while it runs the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from videolift.core.console import plain_console
from videolift.core.errors import VideoliftError
from videolift.core.files import content_hash, fingerprint
from videolift.core.jsonl import atomic_write, read_json
from videolift.core.settings import dotted
from videolift.core.signals import Terminated
from videolift.pipeline import ranks

# Plain: why a stage runs names paths and settings ("data/[v2]/hra.jsonl changed"), not rich markup.
console = plain_console()


def say(line: str) -> None:
    """A stage's own line (e.g. what an interrupted stage continues from) on the Runner's console: the main
    process's only (the other processes of a launch are quiet). A stage in a process of its own prints
    to the same terminal."""
    if ranks.is_main():
        console.print(Text(line))


Print = Callable[[Path], str]


def _as_given(value: Any) -> Any:
    return value


def content_print(path: Path) -> str:
    """A file by its bytes, so a stage that rewrites a file identically does not redo the stages after
    it; a directory by its files' names, sizes and times (weights and checkpoints: too large to hash)."""
    path = Path(path)
    return f"sha256:{content_hash(path)[:16]}" if path.is_file() else fingerprint(path)


@dataclass
class Stage:
    name: str
    run: Callable[[], Any]
    inputs: Sequence[Path] = ()
    outputs: Sequence[Path] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    # Called before the stage runs unless its last attempt had the same inputs and settings (for
    # stages that resume from checkpoints: remove what another attempt left behind).
    fresh: Callable[[], None] | None = None
    # How earlier versions keyed this same work, so what they recorded as done stays done (and is
    # recorded this version's way): settings they keyed on that never changed the result (their
    # values are taken from the record), and their inputs when this version tracks more (only where
    # that is sound: the stage knows whether the new inputs are what the recorded run used).
    dropped: frozenset[str] = frozenset()
    earlier_inputs: Sequence[Path] | None = None
    # Further (settings, inputs) earlier versions keyed this same work on, where the stage knows that is
    # sound (the ``dropped`` settings' recorded values are added to each). Called only when this
    # version's key does not match (it may read the stage's own records).
    older: Callable[[], Sequence[tuple[dict[str, Any], Sequence[Path]]]] | None = None
    # Run by the main process alone under a multi-process launch (work that is not sharded).
    main_only: bool = False
    # Whether an interrupted attempt's work is continued (videos, score lines, checkpoints) or the stage
    # writes its outputs whole, and so runs again from the start (seconds: ratings, a split, renders).
    resumes: bool = True

    def earlier(self, recorded: dict[str, Any]) -> list[tuple[dict[str, Any], Sequence[Path]]]:
        """The (settings, inputs) earlier versions would have keyed this stage on, given the settings
        they recorded; none when no version keyed it differently."""
        back = {k: recorded[k] for k in self.dropped if k in recorded}
        variants = [(settings | back, inputs) for settings, inputs in (self.older() if self.older else ())]
        if not self.dropped and self.earlier_inputs is None:
            return variants
        inputs = self.inputs if self.earlier_inputs is None else self.earlier_inputs
        return [(self.settings | back, inputs), *variants]

    def key(
        self,
        where: Callable[[Any], Any] = _as_given,
        prints: Print = fingerprint,
        variant: tuple[dict[str, Any], Sequence[Path]] | None = None,
    ) -> str:
        """Identity of the settings and the inputs' contents (this version's, or an ``earlier``
        variant's); ``where`` rewrites paths and ``prints`` identifies files (see ``Runner``)."""
        settings, paths = variant or (self.settings, self.inputs)
        inputs = {where(str(p)): prints(p) for p in paths}
        payload = {"settings": where(settings), "inputs": inputs}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def output_prints(
        self, where: Callable[[Any], Any] = _as_given, prints: Print = fingerprint
    ) -> dict[str, str]:
        return {where(str(p)): prints(p) for p in self.outputs}


class PlanReached(Exception):
    """A planning runner (``Runner(plan=True)``) reached the first stage that would run."""

    def __init__(self, stage: str, why: str) -> None:
        super().__init__(f"{stage}: would run ({why})")
        self.stage, self.why = stage, why


class Runner:
    def __init__(self, workdir: str | Path, *, plan: bool = False) -> None:
        """``plan``: only say which stages are up to date, and stop (``PlanReached``) at the first
        that would run; nothing is run or written."""
        self.workdir = Path(workdir)
        self.plan = plan
        # The workdir is made by the first record (``_record``): a run refused before its first stage (a
        # model that cannot load) leaves no empty directory behind.
        self.manifest_path = self.workdir / "run_manifest.json"
        self.manifest: dict[str, Any] = (
            read_json(self.manifest_path) if self.manifest_path.exists() else {"stages": {}}
        )
        self.results: dict[str, Any] = {}
        self.ran: set[str] = set()  # stages run (not skipped) by this runner
        self.console = console if ranks.is_main() else plain_console(quiet=True)  # one process's lines
        self._lock = threading.Lock()  # stages run concurrently record into one manifest
        self._started: dict[str, dict[str, str]] = {}  # the inputs' prints of the stages running

    def relative(self, value: Any) -> Any:
        """``value`` with every path inside the workdir (a str or Path, also within dicts and lists)
        written relative to it, as ``<workdir>/...``."""
        if isinstance(value, dict):
            return {k: self.relative(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.relative(v) for v in value]
        if isinstance(value, str | Path):
            root, text = str(self.workdir), str(value)
            if text == root or text.startswith(root + os.sep):
                return "<workdir>" + text[len(root) :]
        return value

    def _ways(self) -> list[tuple[Callable[[Any], Any], Print]]:
        """How a manifest names paths and identifies files: this version's way (paths relative to the
        workdir, files by content), then earlier versions' (by size and time; paths as given)."""
        return [(self.relative, content_print), (self.relative, fingerprint), (_as_given, fingerprint)]

    def _recorded_as(self, stage: Stage, entry: dict[str, Any], finished: bool) -> int | None:
        """Which of ``_ways`` (and of the stage's ``earlier`` keys) ``entry`` used, if it records
        ``stage`` with these settings and inputs (and, if ``finished``, these outputs); 0: this
        version's. The ways agree on what a stage does not name."""
        ways = [
            (i, way)
            for i, way in enumerate(self._ways())
            if not finished or entry.get("outputs") == stage.output_prints(*way)
        ]
        for i, way in ways:  # this version's key first: earlier ones may take reading the stage's records
            if entry.get("key") == stage.key(*way):
                return i
        if not ways or "key" not in entry:
            return None
        variants = stage.earlier(entry.get("settings") or {})
        for i, way in ways:
            if any(entry.get("key") == stage.key(*way, variant) for variant in variants):
                return len(self._ways()) + i
        return None

    def _finished_way(self, stage: Stage, entry: dict[str, Any]) -> int | None:
        """Which of ``_ways`` ``entry`` records ``stage`` as finished by, its outputs all present."""
        if not all(Path(p).exists() for p in stage.outputs):
            return None
        return self._recorded_as(stage, entry, True)

    def _why_not_done(self, stage: Stage, entry: dict[str, Any]) -> str:
        if not entry:
            return "not run yet"
        same = self._recorded_as(stage, entry, False) is not None
        changed = "" if same else self._changes(stage, entry)
        if "outputs" not in entry:  # started, not finished: stopped (Ctrl-C, kill -9) or failed
            how = "its last attempt failed" if "failed" in entry else "interrupted"
            if not same:
                return f"{how}, since changed{changed}: starts over"
            return f"{how}: {'resumes its work' if stage.resumes else 'runs again'}"
        if same:
            return f"its outputs are missing or changed{self._damaged(stage, entry)}"
        return f"its settings or inputs changed{changed}"

    def _changes(self, stage: Stage, entry: dict[str, Any]) -> str:
        """ ": what changed" since ``entry``: the settings it recorded that differ, and its input files
        that differ (entries of versions that did not record their inputs' prints: the settings alone)."""
        was, now = dotted(self.relative(entry.get("settings") or {})), dotted(self.relative(stage.settings))
        said = [f"{k} {was.get(k, '(unset)')} -> {now.get(k, '(unset)')}" for k in sorted(was.keys() | now.keys())
                if was.get(k, _UNSET) != now.get(k, _UNSET)]  # fmt: skip
        if (recorded := entry.get("inputs")) is not None:
            prints = self._input_prints(stage)
            said += [
                f"{p} {'changed' if p in recorded else 'now read'}"
                for p in prints
                if recorded.get(p) != prints[p]
            ]
            said += [f"{p} no longer read" for p in recorded if p not in prints]
        return f": {'; '.join(said)}" if said else ""

    def _damaged(self, stage: Stage, entry: dict[str, Any]) -> str:
        """ ": which outputs" are missing or differ from what ``entry`` recorded."""
        recorded, now = entry.get("outputs") or {}, stage.output_prints(*self._ways()[0])
        said = [
            f"{p} {'missing' if now[p] == 'missing' else 'changed'}" for p in now if recorded.get(p) != now[p]
        ]
        return f": {'; '.join(said)}" if said else ""

    def _input_prints(self, stage: Stage) -> dict[str, str]:
        where, prints = self._ways()[0]
        return {where(str(p)): prints(p) for p in stage.inputs}

    def why_to_run(self, stage: Stage) -> str | None:
        """None when ``stage`` is up to date, else why it would run."""
        entry = self.manifest["stages"].get(stage.name) or {}
        return None if self._finished_way(stage, entry) is not None else self._why_not_done(stage, entry)

    def is_done(self, stage: Stage) -> bool:
        return self.why_to_run(stage) is None

    def run(self, stage: Stage) -> Any:
        """Run ``stage`` unless it is up to date; its result (the recorded one when skipped)."""
        skipped, recorded = ranks.from_main(lambda: self._prepare(stage))
        if skipped:
            self.results[stage.name] = recorded
            return recorded
        start = time.time()
        try:
            result = ranks.from_main(stage.run) if stage.main_only else stage.run()
        except Exception:  # (not Ctrl-C: that one was interrupted)
            if ranks.is_main():  # a rerun says the last attempt failed, not that it was interrupted
                with contextlib.suppress(OSError):  # the stage's error is the one to report
                    self._record(stage.name, self.manifest["stages"][stage.name] | {"failed": _now()})
            raise
        except Terminated as exc:  # a run trains several models: say which stopped where
            raise (Terminated(f"in {stage.name} {exc.args[0]}") if exc.args else exc) from None
        ranks.wait()  # every process's files complete before the main process records them
        if ranks.is_main():
            self._record(stage.name, self._finished(stage, recorded, result, time.time() - start))
        with self._lock:
            self.results[stage.name] = result
            self.ran.add(stage.name)
        return result

    def _prepare(self, stage: Stage) -> tuple[bool, Any]:
        """(True, its recorded result) when ``stage`` is up to date; else (False, its key) once an
        attempt with other inputs or settings is cleared and this one's start recorded."""
        last = self.manifest["stages"].get(stage.name) or {}
        way = self._ways()[0]  # how this version records
        finished = self._finished_way(stage, last)
        if finished is not None:
            self.console.print(Text(f"✓ {stage.name}: up to date, skipped", style="dim"))
            if finished != 0 and not self.plan:  # an earlier version's entry: record it this way
                now = {"key": stage.key(*way), "inputs": self._input_prints(stage)}
                self._record(stage.name, last | now | {"outputs": stage.output_prints(*way)})
            return True, last.get("result")
        why = self._why_not_done(stage, last)
        if self.plan:
            self.console.print(Text(f"→ {stage.name}: would run ({why})", style="bold"))
            raise PlanReached(stage.name, why)
        self.console.rule(Text(stage.name, style="bold"))
        self.console.print(Text(f"runs: {why}", style="dim"))
        key, inputs = stage.key(*way), self._input_prints(stage)
        self._started[stage.name] = inputs
        if stage.fresh is not None and self._recorded_as(stage, last, False) is None:
            stage.fresh()
        # No outputs recorded: not done until the entry below replaces this one.
        entry = {"key": key, "settings": stage.settings, "inputs": inputs, "started": _now()}
        self._record(stage.name, entry)
        return False, key

    def _finished(self, stage: Stage, key: str, result: Any, seconds: float) -> dict[str, Any]:
        """The manifest's entry of ``stage`` run to the end (``key``: its inputs' as it started)."""
        way = self._ways()[0]
        return {
            "key": key,
            "settings": stage.settings,
            "inputs": self._started.pop(stage.name, None),  # as it started, as the key
            "outputs": stage.output_prints(*way),
            "seconds": round(seconds, 1),
            "result": result if _jsonable(result) else None,
            "finished": _now(),
        }

    def _record(self, name: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self.manifest["stages"][name] = entry
            self.workdir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.manifest_path) as handle:
                json.dump(self.manifest, handle, indent=1, default=str)

    def run_concurrently(self, stages: Sequence[Stage], *, first_here: bool = False) -> list[Any]:
        """Run independent stages at the same time (each in a thread; stages that compute should
        do so in their own process, see ``in_subprocess``). ``first_here``: the first runs in the calling
        thread instead, so that Ctrl-C reaches it (a thread's work cannot be stopped, and this process
        would wait for it at exit). The first failure is raised once all have stopped; Ctrl-C ends the
        stages' processes at once."""
        from concurrent.futures import ThreadPoolExecutor, wait

        if self.plan:  # nothing runs: in order, stopping at the first that would
            return [self.run(stage) for stage in stages]
        here, others = (stages[:1], stages[1:]) if first_here else ([], stages)
        pool = ThreadPoolExecutor(max_workers=max(1, len(others)))
        futures = [pool.submit(self.run, stage) for stage in others]
        results, failure = [], None
        try:
            for stage in here:
                try:
                    results.append(self.run(stage))
                except Exception as exc:  # raised once the others have stopped, as a thread's would be
                    failure = exc
            wait(futures)
        except BaseException as exc:
            # Ctrl-C (or a scheduler's SIGINT) to this process alone: the stages' processes would train
            # on, and this one would wait for them at exit. End them; each stage resumes when rerun.
            _end_children()
            if isinstance(exc, Terminated) and (stopped := _where_stopped(exc, futures)):
                raise Terminated(stopped) from None
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        if failure is not None:
            raise failure
        return results + [f.result() for f in futures]


def _where_stopped(exc: BaseException, futures: list[Any]) -> str:
    """Where SIGTERM stopped this process's stage (``exc``) and the concurrent ones (``futures``), e.g.
    "in align:rwl after update 612 of 3000, checkpointed; in align:rs after update 576 of 3000, checkpointed".
    Waits for the others: their processes, given the SIGTERM too, checkpoint the update they are at first
    (the exit would wait for them all the same), and the message said one alignment's update only, before the
    other's checkpoint was written."""
    from concurrent.futures import wait

    wait(futures)
    stopped = [exc, *(f.exception() for f in futures if not f.cancelled())]
    return "; ".join(e.args[0] for e in stopped if isinstance(e, Terminated) and e.args)


_CHILDREN: set[Any] = set()  # the process pools of running ``in_subprocess`` calls
_CHILDREN_LOCK = threading.Lock()


def _end_children() -> None:
    """Terminate the processes of every running ``in_subprocess`` call."""
    with _CHILDREN_LOCK:
        processes = [  # no public way before 3.14; None once a pool has shut down
            p for pool in _CHILDREN for p in list((getattr(pool, "_processes", None) or {}).values())
        ]
    for process in processes:
        with contextlib.suppress(Exception):  # one that ended meanwhile
            process.terminate()


def _exit_with(parent: int) -> None:
    """End this process once ``parent`` is gone: a parent killed -9 cannot stop its children, which would
    otherwise train on, unseen, into the directory a rerun resumes in."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _call_with_threads(
    threads: int, fn: Callable[..., Any], kwargs: dict[str, Any], parent: int | None = None
) -> tuple[Any, float]:
    """In the child: limit torch's threads, run, and report the child's own peak RSS (MB)."""
    import torch

    from videolift.core.memory import own_peak_rss_mb
    from videolift.core.signals import sigterm_as_interrupt

    if parent is not None:
        _exit_with(parent)
    torch.set_num_threads(threads)
    with sigterm_as_interrupt():  # the parent's SIGTERM ends it so: a training stage checkpoints first
        result = fn(**kwargs)
    return result, own_peak_rss_mb()


def in_subprocess(
    fn: Callable[..., Any], kwargs: dict[str, Any], *, threads: int = 1, what: str | None = None
) -> tuple[Any, float]:
    """``fn(**kwargs)`` in a fresh (spawned) process with ``threads`` torch threads; returns its result
    and the process's peak RSS in MB. ``fn`` must be importable and ``kwargs`` picklable. The process
    ends within a second of this one's death, however it dies; killed itself (``what``: the stage, named
    in the error), it is a VideoliftError, not the pool's traceback."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(_call_with_threads, threads, fn, kwargs, os.getpid())
        # The process, kept for its exit code: the pool forgets it once broken (no public way before 3.14).
        processes = list((getattr(pool, "_processes", None) or {}).values())
        with _CHILDREN_LOCK:
            _CHILDREN.add(pool)
        try:
            return future.result()
        except BrokenProcessPool:
            raise VideoliftError(_died(what or fn.__name__, processes)) from None
        except KeyboardInterrupt:
            # SIGTERM (or SIGINT) to this process alone: the pool's exit would wait for the child's whole
            # stage. Ctrl-C at a terminal reaches the child too; a scheduler's signal does not. The child
            # takes SIGTERM as its own (a training stage checkpoints its update), and the pool waits for it.
            for process in processes:
                with contextlib.suppress(Exception):  # one that ended meanwhile
                    process.terminate()
            raise
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(pool)


def _died(what: str, processes: list[Any]) -> str:
    """Why ``what``'s child process ended before its result, e.g. killed -9 by the out-of-memory killer
    (the largest process: a critic training), and that a rerun resumes it."""
    deadline = time.monotonic() + 5
    for process in processes:
        process.join(timeout=5)  # its exit code is set once reaped ...
        # ... by whichever thread reaps it: the pool's manager thread may, and then this join's own wait
        # finds no child and returns before the manager has recorded the code (seen once in CI, under load)
        while process.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.05)
    codes = [p.exitcode for p in processes if p.exitcode]
    how = "ended abruptly"
    if codes and codes[0] < 0:
        import signal

        number = -codes[0]
        name = signal.Signals(number).name if number in signal.valid_signals() else "?"
        how = f"was killed by signal {number} ({name}"
        how += ", e.g. by the system's out-of-memory killer: see `dmesg`)" if name == "SIGKILL" else ")"
    elif codes:
        how = f"exited with status {codes[0]}"
    pids = ", ".join(str(p.pid) for p in processes)
    return (
        f"{what}: its process{f' (pid {pids})' if pids else ''} {how} before it finished. What it finished "
        "is kept: run the same command again to resume it"
    )


_UNSET = object()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
