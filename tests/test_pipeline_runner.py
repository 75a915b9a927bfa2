import json
import os
import shutil
from pathlib import Path

import pytest

from videolift.core.errors import DataError
from videolift.pipeline.runner import Runner, Stage, content_print


def test_stages_skip_when_inputs_settings_and_outputs_are_unchanged(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a")
    out = tmp_path / "out.txt"
    calls = []

    def work():
        calls.append(1)
        out.write_text(src.read_text().upper())
        return {"n": len(calls)}

    def stage(**settings):
        return Stage("upper", work, inputs=[src], outputs=[out], settings=settings)

    assert Runner(tmp_path / "w").run(stage(k=1)) == {"n": 1}
    assert Runner(tmp_path / "w").run(stage(k=1)) == {"n": 1} and len(calls) == 1  # skipped, result kept
    Runner(tmp_path / "w").run(stage(k=2))  # new settings
    assert len(calls) == 2
    src.write_text("bb")  # new input
    Runner(tmp_path / "w").run(stage(k=2))
    assert len(calls) == 3 and out.read_text() == "BB"
    out.unlink()  # missing output
    Runner(tmp_path / "w").run(stage(k=2))
    assert len(calls) == 4
    manifest = json.loads((tmp_path / "w" / "run_manifest.json").read_text())
    assert manifest["stages"]["upper"]["settings"] == {"k": 2}


def test_a_failing_stage_is_not_recorded_as_done(tmp_path):
    def boom():
        (tmp_path / "x").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        Runner(tmp_path).run(Stage("s", boom, outputs=[tmp_path / "x"]))
    entry = json.loads((tmp_path / "run_manifest.json").read_text())["stages"]["s"]
    assert "started" in entry and "outputs" not in entry  # its start only
    assert not Runner(tmp_path).is_done(Stage("s", boom, outputs=[tmp_path / "x"]))
    # Rerun, it said "interrupted", as if stopped by Ctrl-C or kill -9 (which it still says for those).
    assert Runner(tmp_path).why_to_run(Stage("s", boom, outputs=[tmp_path / "x"])) == (
        "its last attempt failed: resumes its work"
    )
    changed = Stage("s", boom, outputs=[tmp_path / "x"], settings={"k": 1})
    assert (
        Runner(tmp_path).why_to_run(changed)
        == "its last attempt failed, since changed: k (unset) -> 1: starts over"
    )

    def stopped():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Runner(tmp_path).run(Stage("s", stopped, outputs=[tmp_path / "x"]))
    assert (
        Runner(tmp_path).why_to_run(Stage("s", boom, outputs=[tmp_path / "x"]))
        == "interrupted: resumes its work"
    )
    # A stage that writes its outputs whole (ratings, a split) said it too, and starts over
    whole = Stage("s", boom, outputs=[tmp_path / "x"], resumes=False)
    assert Runner(tmp_path).why_to_run(whole) == "interrupted: runs again"


def test_an_interrupted_stage_resumes_only_with_the_same_inputs_and_settings(tmp_path):
    """``fresh`` (clear what an attempt left) runs unless the last attempt had this stage's key."""
    data = tmp_path / "data.txt"
    data.write_text("v1")
    cleared, attempts = [], []

    def stage(lr: float, fail: bool = False) -> Stage:
        def run():
            attempts.append(lr)
            if fail:
                raise KeyboardInterrupt  # killed mid-training
            (tmp_path / "model").write_text(str(lr))

        return Stage("train", run, inputs=[data], outputs=[tmp_path / "model"], settings={"lr": lr},
                     fresh=lambda: cleared.append(lr))  # fmt: skip

    w = tmp_path / "w"
    with pytest.raises(KeyboardInterrupt):
        Runner(w).run(stage(1.0, fail=True))
    assert cleared == [1.0]  # nothing recorded before: start clean
    Runner(w).run(stage(1.0))  # the same attempt again: resume, keep its checkpoints
    assert cleared == [1.0] and attempts == [1.0, 1.0]
    with pytest.raises(KeyboardInterrupt):
        Runner(w).run(stage(2.0, fail=True))  # other settings
    assert cleared == [1.0, 2.0]
    data.write_text("v2")  # other data, same settings: a checkpoint of v1 must not be continued
    Runner(w).run(stage(2.0))
    assert cleared == [1.0, 2.0, 2.0]
    Runner(w).run(stage(2.0))  # done: skipped, nothing cleared
    assert cleared == [1.0, 2.0, 2.0] and attempts == [1.0, 1.0, 2.0, 2.0]


def write_after(path: str, seconds: float) -> dict:
    """A stage's work in a child process: when it ran, where, with how many torch threads."""
    import os
    import time

    import torch

    start = time.time()
    time.sleep(seconds)
    from pathlib import Path

    Path(path).write_text("done")
    return {"pid": os.getpid(), "start": start, "end": time.time(), "threads": torch.get_num_threads()}


def test_concurrent_stages_run_in_their_own_processes_at_once(tmp_path):
    import os

    from videolift.pipeline.runner import in_subprocess

    def stage(name: str) -> Stage:
        out = tmp_path / name

        def run():
            result, peak_mb = in_subprocess(write_after, {"path": str(out), "seconds": 1.5}, threads=1)
            return {**result, "peak_rss_mb": peak_mb}

        return Stage(name, run, outputs=[out], settings={"n": 1})

    runner = Runner(tmp_path / "w")
    a, b = runner.run_concurrently([stage("a"), stage("b")])
    assert len({a["pid"], b["pid"], os.getpid()}) == 3 and a["threads"] == b["threads"] == 1
    assert a["start"] < b["end"] and b["start"] < a["end"]  # they overlapped
    assert a["peak_rss_mb"] > 10  # the child's own peak (torch imported)
    manifest = json.loads((tmp_path / "w/run_manifest.json").read_text())["stages"]
    assert set(manifest) == {"a", "b"}  # both recorded, neither lost to the other's write
    again = Runner(tmp_path / "w")
    assert again.run_concurrently([stage("a"), stage("b")]) == [a, b] and not again.ran  # rerun: skipped
    assert runner.ran == {"a", "b"}


def test_a_failing_concurrent_stage_fails_the_run_after_the_others_finish(tmp_path):
    def boom():
        raise RuntimeError("stage b broke")

    out = tmp_path / "a"
    stages = [Stage("a", lambda: out.write_text("x") and {}, outputs=[out]), Stage("b", boom)]
    runner = Runner(tmp_path / "w")
    with pytest.raises(RuntimeError, match="stage b broke"):
        runner.run_concurrently(stages)
    recorded = json.loads((tmp_path / "w/run_manifest.json").read_text())["stages"]
    assert "outputs" in recorded["a"] and "outputs" not in recorded["b"]  # b started, never finished
    assert runner.is_done(stages[0]) and not runner.is_done(stages[1])


def test_a_spawned_child_reports_its_own_peak_not_its_parents(tmp_path):
    """getrusage's peak of a fork + exec child starts at the parent's memory; the child's own must not."""
    import numpy as np

    from videolift.core.memory import current_rss_mb
    from videolift.pipeline.runner import in_subprocess

    block = np.ones(400 << 20, np.uint8)  # the parent grows by 400 MB
    _, child_peak = in_subprocess(write_after, {"path": str(tmp_path / "x"), "seconds": 0.0})
    assert child_peak < current_rss_mb() - 300, (child_peak, current_rss_mb())
    del block


def die_killed() -> None:
    """A stage's child process killed -9 mid-work (the out-of-memory killer picks the largest process)."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_child_process_killed_is_one_line_naming_the_stage_and_the_signal(tmp_path):
    # Found killing one parallel critic's process with `kill -9` (as the OOM killer would): `videolift run`
    # ended in concurrent.futures' BrokenProcessPool traceback, saying neither which stage nor why.
    from videolift.core.errors import VideoliftError
    from videolift.pipeline.runner import in_subprocess

    stage = Stage("s", lambda: in_subprocess(die_killed, {}), outputs=[tmp_path / "x"])
    with pytest.raises(
        VideoliftError, match=r"^die_killed: its process .* signal 9"
    ):  # unnamed: the function
        Runner(tmp_path / "w").run_concurrently([stage])
    assert not Runner(tmp_path / "w").is_done(stage)
    with pytest.raises(VideoliftError) as caught:
        in_subprocess(die_killed, {}, what="critic:critic_label_only")
    message = str(caught.value)
    assert message.startswith("critic:critic_label_only: its process (pid ")
    assert "killed by signal 9 (SIGKILL, e.g. by the system's out-of-memory killer" in message
    assert "run the same command again to resume" in message


def _copy_stage(w, calls: list, lr: float = 1.0) -> Stage:
    """A stage whose input, output and settings all name paths inside the workdir ``w``."""

    def run():
        calls.append(lr)
        (w / "out.txt").write_text((w / "in.txt").read_text() + str(lr))

    settings = {"lr": lr, "cache_dir": str(w / "cache"), "files": [w / "in.txt"]}
    return Stage("s", run, inputs=[w / "in.txt"], outputs=[w / "out.txt"], settings=settings)


def test_a_workdir_named_otherwise_or_copied_keeps_its_finished_stages(tmp_path, monkeypatch):
    import shutil

    w = tmp_path / "w"
    w.mkdir()
    (w / "in.txt").write_text("a")
    calls = []
    Runner(w).run(_copy_stage(w, calls))
    monkeypatch.chdir(tmp_path)
    Runner("w").run(_copy_stage(Path("w"), calls))  # the same workdir, named from its parent
    copy = tmp_path / "copy"
    shutil.copytree(w, copy)  # keeps modification times, as `cp -a`
    Runner(copy).run(_copy_stage(copy, calls))
    assert calls == [1.0]  # neither reran
    Runner(copy).run(_copy_stage(copy, calls, lr=2.0))  # only what changes reruns, in the copy only
    assert calls == [1.0, 2.0] and (copy / "out.txt").read_text() == "a2.0"
    assert (w / "out.txt").read_text() == "a1.0"
    recorded = json.loads((copy / "run_manifest.json").read_text())["stages"]["s"]
    assert set(recorded["outputs"]) == {"<workdir>/out.txt"}


@pytest.mark.parametrize("paths_in_settings", [True, False])
def test_a_manifest_of_an_earlier_version_is_read_and_rewritten_relocatable(tmp_path, paths_in_settings):
    """Earlier versions keyed paths as the pipeline named them. A stage whose settings and inputs name
    no path in the workdir has the same key both ways, but its outputs are still recorded as given."""
    w = tmp_path / "w"
    w.mkdir()
    (w / "in.txt").write_text("a")
    calls = []
    stage = _copy_stage(w, calls)
    if not paths_in_settings:
        stage.settings, stage.inputs = {"lr": 1.0}, []
    Runner(w).run(stage)
    manifest = json.loads((w / "run_manifest.json").read_text())
    manifest["stages"]["s"] |= {"key": stage.key(), "outputs": stage.output_prints()}
    (w / "run_manifest.json").write_text(json.dumps(manifest))
    runner = Runner(w)
    assert runner.run(stage) is None and calls == [1.0]  # skipped, not redone
    entry = json.loads((w / "run_manifest.json").read_text())["stages"]["s"]
    assert (entry["key"] == stage.key()) is not paths_in_settings
    assert entry["key"] == stage.key(runner.relative, content_print)
    assert entry["outputs"] == stage.output_prints(runner.relative, content_print)
    assert set(entry["outputs"]) == {"<workdir>/out.txt"} and entry["outputs"][
        "<workdir>/out.txt"
    ].startswith("sha256:")


def test_a_file_rewritten_identically_does_not_redo_the_stages_after_it(tmp_path):
    """Files are identified by content: a stage that reruns (its settings changed) and writes the same
    bytes again leaves the stages that read them up to date; other bytes redo them."""
    w = tmp_path / "w"
    w.mkdir()
    (w / "in.txt").write_text("a")
    ran = []

    def first(batch: int) -> Stage:
        def run():
            ran.append("first")
            (w / "mid.txt").write_text((w / "in.txt").read_text() * 2)

        # `batch` changes how, not what, it computes
        return Stage("first", run, inputs=[w / "in.txt"], outputs=[w / "mid.txt"], settings={"batch": batch})

    def second() -> Stage:
        def run():
            ran.append("second")
            (w / "out.txt").write_text((w / "mid.txt").read_text().upper())

        return Stage("second", run, inputs=[w / "mid.txt"], outputs=[w / "out.txt"])

    for stage in (first(1), second()):
        Runner(w).run(stage)
    os.utime(w / "mid.txt", ns=(0, 0))  # so that the rewrite surely changes its time
    for stage in (first(2), second()):
        Runner(w).run(stage)
    assert ran == ["first", "second", "first"] and (w / "mid.txt").stat().st_mtime_ns != 0
    (w / "in.txt").write_text("b")
    for stage in (first(2), second()):
        Runner(w).run(stage)
    assert ran[3:] == ["first", "second"] and (w / "out.txt").read_text() == "BB"


def test_a_plan_says_why_the_first_stage_to_run_would_and_writes_nothing(tmp_path, capsys):
    from videolift.pipeline.runner import PlanReached

    w = tmp_path / "w"
    w.mkdir()
    (w / "in.txt").write_text("a")
    calls = []

    def plan(stage: Stage) -> str:
        before = (w / "run_manifest.json").read_bytes() if (w / "run_manifest.json").exists() else None
        with pytest.raises(PlanReached) as reached:
            Runner(w, plan=True).run(stage)
        after = (w / "run_manifest.json").read_bytes() if (w / "run_manifest.json").exists() else None
        assert before == after and not calls[1:]  # nothing written, nothing run
        return reached.value.why

    assert plan(_copy_stage(w, calls)) == "not run yet"
    Runner(w).run(_copy_stage(w, calls))
    assert Runner(w, plan=True).run(_copy_stage(w, calls)) is None  # up to date: the recorded result
    # It names what changed: the settings (dotted, as in the file) and input files, or the outputs.
    assert plan(_copy_stage(w, calls, lr=2.0)) == "its settings or inputs changed: lr 1.0 -> 2.0"
    stat = os.stat(w / "in.txt")
    (w / "in.txt").write_text("b")  # the same size and time: its bytes say so
    os.utime(w / "in.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert plan(_copy_stage(w, calls)) == "its settings or inputs changed: <workdir>/in.txt changed"
    (w / "in.txt").write_text("a")
    (w / "out.txt").write_text("edited")
    assert plan(_copy_stage(w, calls)) == "its outputs are missing or changed: <workdir>/out.txt changed"
    assert calls == [1.0]
    Runner(w).run(_copy_stage(w, calls, lr=2.0))  # a run says why too
    assert "runs: its settings or inputs changed: lr 1.0 -> 2.0" in capsys.readouterr().out
    assert not Runner(tmp_path / "none", plan=True).workdir.exists()  # a plan creates no workdir


def test_what_an_earlier_version_keyed_otherwise_stays_done_only_where_that_is_sound(tmp_path):
    """A version that stops keying a stage on a setting that never changed its result (``dropped``),
    or that tracks one more input file, keeps an earlier version's finished stage done at any value of
    that setting, and records it its own way — but with a new input only where the stage says the
    recorded run used it (``earlier_inputs``); otherwise the stage reruns once."""
    w = tmp_path / "w"
    w.mkdir()
    for name in ("in.txt", "extra.txt"):
        (w / name).write_text(name)
    calls = []

    def run():
        calls.append(1)
        (w / "out.txt").write_text("done")

    def old(lr: float, batch: int) -> Stage:  # as the earlier version built it
        return Stage(
            "s", run, inputs=[w / "in.txt"], outputs=[w / "out.txt"], settings={"lr": lr, "batch": batch}
        )

    def new(lr: float, sound: bool = True) -> Stage:
        return Stage(
            "s", run, inputs=[w / "in.txt", w / "extra.txt"], outputs=[w / "out.txt"], settings={"lr": lr},
            dropped=frozenset({"batch"}), earlier_inputs=[w / "in.txt"] if sound else None,
        )  # fmt: skip

    Runner(w).run(old(1.0, batch=8))
    Runner(w).run(new(1.0))  # `batch` taken from the record: the earlier key matches
    assert calls == [1]
    entry = json.loads((w / "run_manifest.json").read_text())["stages"]["s"]
    assert entry["key"] == new(1.0).key(Runner(w).relative, content_print)  # recorded the new way
    (w / "extra.txt").write_text("edited")  # now tracked
    Runner(w).run(new(1.0))
    assert calls == [1, 1]

    for stage, reruns in ((new(2.0), True), (new(1.0, sound=False), True), (new(1.0), False)):
        calls.clear()
        shutil.rmtree(w)  # a fresh workdir, recorded by the earlier version
        w.mkdir()
        for name in ("in.txt", "extra.txt"):
            (w / name).write_text(name)
        Runner(w).run(old(1.0, batch=16))
        Runner(w).run(stage)
        assert calls == [1, 1] if reruns else calls == [1], (stage.settings, stage.earlier_inputs)


def test_a_damaged_run_manifest_is_named_not_a_traceback(tmp_path):
    (tmp_path / "run_manifest.json").write_text('{"stages": {')  # a disk full or a hand edit
    with pytest.raises(DataError, match=r"run_manifest\.json: malformed JSON"):
        Runner(tmp_path)


HOLD = """
import os, sys, time
from pathlib import Path

from videolift.core.signals import sigterm_as_interrupt
from videolift.pipeline.runner import in_subprocess


def hold(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


if __name__ == "__main__":
    with sigterm_as_interrupt():  # as every videolift command runs
        in_subprocess(hold, {"path": sys.argv[1]})
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_child_process_ends_with_its_parent_killed(tmp_path, how):
    # `videolift run` killed -9 while its parallel critics train: they must not train on unseen, into
    # the directories a rerun resumes. SIGTERM (a scheduler's stop) is handled as Ctrl-C, and the pool's
    # exit then waited for the child's whole stage (its Ctrl-C reached the child too; SIGTERM does not).
    import signal
    import subprocess
    import sys
    import time

    def alive(pid: int) -> bool:  # a zombie (exited, not yet reaped by PID 1) is gone
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    (tmp_path / "hold.py").write_text(HOLD)
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, str(tmp_path / "hold.py"), str(pid_file)])
    deadline = time.time() + 120
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    child = int(pid_file.read_text())
    try:
        assert alive(child)
        parent.send_signal(getattr(signal, how))
        parent.wait(timeout=30)
        deadline = time.time() + 15
        while alive(child) and time.time() < deadline:
            time.sleep(0.2)
        assert not alive(child)
    finally:
        if alive(child):  # not left behind when the test fails
            os.kill(child, signal.SIGKILL)


CONCURRENT = """
import os, sys, time
from pathlib import Path

from videolift.pipeline.runner import Runner, Stage, in_subprocess


def hold(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def stage(name: str, here: bool = False) -> Stage:
    path = str(Path(sys.argv[1]) / name)
    return Stage(name, (lambda: hold(path)) if here else lambda: in_subprocess(hold, {"path": path}))


if __name__ == "__main__":
    here = sys.argv[2] == "here"  # the first stage's work in this process (align.parallel's way)
    stages = [stage("a.pid", here), stage("b.pid")]
    Runner(Path(sys.argv[1]) / "w").run_concurrently(stages, first_here=here)
"""


@pytest.mark.parametrize("first", ["process", "here"])
def test_sigint_to_the_runner_alone_ends_its_concurrent_stages_processes(tmp_path, first):
    # `kill -INT` (a scheduler's, `timeout -s INT`) reaches only `videolift run`, not the critics it trains
    # side by side: it waited for both to finish, hours on a real run. "here": the first stage works in the
    # runner's own process (align.parallel's first alignment), where Ctrl-C must stop it too (in a worker
    # thread nothing would, and the process would wait for it at exit).
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "two_stages.py").write_text(CONCURRENT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "two_stages.py"), str(tmp_path), first])
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    deadline = time.time() + 120
    while not all(p.exists() and p.read_text() for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    children = [int(p.read_text()) for p in pids]
    if first == "here":
        assert children[0] == parent.pid
        children = children[1:]
    try:
        parent.send_signal(signal.SIGINT)
        assert parent.wait(timeout=20) != 0
        deadline = time.time() + 15
        while any(Path(f"/proc/{c}").exists() and _running(c) for c in children) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{c}").exists() and _running(c) for c in children)
    finally:
        parent.kill()
        for child in children:
            if Path(f"/proc/{child}").exists():
                os.kill(child, signal.SIGKILL)


def test_sigterm_says_where_each_concurrent_stage_stopped_once_all_have(tmp_path):
    # Seen stopping `videolift run` (align.parallel) with SIGTERM to its process group: both alignments
    # checkpointed, but the run said "Terminated (SIGTERM) after update 612 of 3000, checkpointed", the first
    # alignment's update only, unnamed, and said it before the other's checkpoint was written.
    import time

    from videolift.core.signals import Terminated

    def stop(at: int, after: float = 0.0):
        def run():
            time.sleep(after)
            (tmp_path / f"checkpoint-{at}").write_text("")
            raise Terminated(f"after update {at} of 10, checkpointed")  # as align's trainer raises it

        return run

    stages = [Stage("align:rwl", stop(7)), Stage("align:rs", stop(5, after=1.0))]
    with pytest.raises(Terminated) as caught:
        Runner(tmp_path / "w").run_concurrently(stages, first_here=True)
    assert caught.value.args == (
        "in align:rwl after update 7 of 10, checkpointed; in align:rs after update 5 of 10, checkpointed",
    )
    assert (tmp_path / "checkpoint-5").exists()  # said once the other stage had stopped
    with pytest.raises(Terminated, match="^in align:rs after update 5 of 10, checkpointed$"):
        Runner(tmp_path / "w2").run(stages[1])  # one stage alone is named too


def _running(pid: int) -> bool:
    """Alive and not a zombie (exited, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_peak_memory_reads_macos_bytes_and_runs_without_getrusage_on_windows(monkeypatch):
    """getrusage's ru_maxrss is in bytes on macOS (kilobytes on Linux), and Windows has no `resource`
    module: the figures must not read 1024x too high there, nor the CLI fail to import here."""
    import importlib
    import sys
    from types import SimpleNamespace

    import videolift.core.memory as memory

    peaks = {0: 3 << 30, 1: 1 << 30}  # bytes: 3 GiB this process, 1 GiB its largest child
    fake = SimpleNamespace(
        RUSAGE_SELF=0, RUSAGE_CHILDREN=1, getrusage=lambda who: SimpleNamespace(ru_maxrss=peaks[who])
    )
    try:
        monkeypatch.setattr(sys, "platform", "darwin")
        monkeypatch.setitem(sys.modules, "resource", fake)
        assert importlib.reload(memory).peak_rss_mb() == 3072.0
        monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` fails, as on Windows
        windows = importlib.reload(memory)
        assert windows.peak_rss_mb() == 0.0 and windows.current_rss_mb() > 0  # /proc here
    finally:
        monkeypatch.undo()
        importlib.reload(memory)


def test_the_align_stage_resumes_a_finished_checkpoint_of_its_own_settings(tmp_path, monkeypatch):
    """A run killed after its last checkpoint (step == max_steps) resumes it rather than training again."""
    from types import SimpleNamespace

    from videolift.align import trainer
    from videolift.align.checkpoints import STATE_FILE
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import align_stage

    resumed = []

    def train(cfg, progress):  # writes the checkpoint of the last step, as the real run does
        resumed.append(cfg.resume)
        ckpt = cfg.out / "checkpoints" / f"step-{cfg.max_steps:07d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        state = {"step": cfg.max_steps, "config": cfg.model_dump(mode="json"), "inputs": cfg.input_hashes()}
        (ckpt / STATE_FILE).write_text(json.dumps(state))
        return SimpleNamespace(steps=cfg.max_steps, export_dir=cfg.out / "export")

    monkeypatch.setattr(trainer, "train", train)
    cfg = PipelineConfig(workdir=tmp_path / "w", align={"settings": {"max_steps": 3}})
    (tmp_path / "t2v").mkdir()  # the model, beside the workdir: align refuses an OUT inside it
    for _ in range(2):
        align_stage(cfg, str(tmp_path / "t2v"), "rwl", None, False).run()
    assert resumed == [False, True]


def test_alignments_beside_each_other_export_what_one_run_alone_exports(tmp_path, tiny_cogvideox_dir, capfd):
    """align.parallel's two ways, in this process and in a child process (one thread each, no bars),
    export exactly what the stage run alone with one thread does; the child reports its peak memory; the
    setting changes when, not what, is trained; their lines are known by the stage's name."""
    import torch
    from safetensors.torch import load_file

    from align_world import make_world
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import align_stage

    # The same stage either way: switching align.parallel redoes nothing.
    keys = [
        align_stage(
            PipelineConfig(workdir=tmp_path / "w", align={"parallel": on}), "m", "rwl", None, False, mode
        )
        for on, mode in ((False, "alone"), (True, "here"), (True, "process"))
    ]
    assert all(k.settings == keys[0].settings and k.inputs == keys[0].inputs for k in keys)
    world = make_world(tmp_path / "world")
    settings = {"max_steps": 3, "batch_size": 2, "warmup_steps": 0, "lr": 1e-3, "num_workers": 0}
    results, weights = [], []
    threads = torch.get_num_threads()
    for mode in ("alone", "here", "process"):
        w = tmp_path / mode
        (w / "align_videos").mkdir(parents=True)
        shutil.copytree(world / "videos", w / "align_videos" / "videos")
        shutil.copy(world / "scores.jsonl", w / "align_scores.jsonl")
        cfg = PipelineConfig(workdir=w, align={"settings": settings, "parallel": mode != "alone"})
        stage = align_stage(cfg, str(tiny_cogvideox_dir), "rwl", None, False, mode)
        torch.set_num_threads(1 if mode == "alone" else threads)  # alone: as the others run
        try:
            results.append(stage.run())
        finally:
            torch.set_num_threads(threads)
        assert torch.get_num_threads() == threads  # "here" gives back this process's threads
        said = capfd.readouterr().out
        if mode != "alone":  # the name once: it read "align:rwl: align: rwl, full fine-tune, ..."
            assert "align:rwl: full fine-tune, " in said and "align: rwl" not in said, said
        weights.append(load_file(str(next((w / "aligned_rwl").glob("pipeline/transformer/*.safetensors")))))
    assert [r["steps"] for r in results] == [3, 3, 3]
    assert results[2]["peak_rss_mb"] > 0 and "peak_rss_mb" not in results[0] | results[1]
    a = weights[0]
    assert all(b.keys() == a.keys() and all(torch.equal(a[k], b[k]) for k in a) for b in weights[1:])


def test_why_a_stage_runs_is_printed_as_written_with_square_brackets(tmp_path, capsys):
    """Paths and settings outside the workdir ("data/[v2]/hra.jsonl") were read as rich markup: `run --plan`
    printed "data//hra.jsonl", and a "[/x]" in a path raised rich's MarkupError (a traceback)."""
    from videolift.pipeline.runner import PlanReached

    w = tmp_path / "runs" / "[v2]"
    w.mkdir(parents=True)

    def stage(prompts: str) -> Stage:
        return Stage("s", lambda: None, settings={"prompts": prompts})

    Runner(w).run(stage("data/[v2]/a.txt"))
    changed = "its settings or inputs changed: prompts data/[v2]/a.txt -> data/[/x]/b.txt"
    with pytest.raises(PlanReached):
        Runner(w, plan=True).run(stage("data/[/x]/b.txt"))
    assert f"would run ({changed})" in " ".join(capsys.readouterr().out.split())
    Runner(w).run(stage("data/[/x]/b.txt"))
    assert f"runs: {changed}" in " ".join(capsys.readouterr().out.split())
