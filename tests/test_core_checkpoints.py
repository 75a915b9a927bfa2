"""The checkpoints both trainers share (``videolift.core.checkpoints``): atomic saves, rotation, clearing,
loading, and the checkpoints each trainer wrote before the code was shared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from videolift.core import checkpoints as ckpt
from videolift.core.checkpoints import (
    STATE_FILE,
    clear_partial,
    complete_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


class Killed(BaseException):
    """A kill -9 at that point: nothing after it runs."""


class FakeAccelerator:
    """What the checkpoint code uses of ``accelerate.Accelerator``, on one process."""

    is_main_process = True
    num_processes = 1

    def __init__(self) -> None:
        self.loaded: list[tuple[str, dict[str, Any]]] = []

    def wait_for_everyone(self) -> None:
        pass

    def save_state(self, directory: str) -> None:
        Path(directory).mkdir(parents=True)
        (Path(directory) / "model.safetensors").write_bytes(b"weights")

    def load_state(self, directory: str, **kwargs: Any) -> None:
        self.loaded.append((directory, kwargs))


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_a_save_killed_before_its_state_file_is_not_complete_and_is_cleared(tmp_path):
    acc, root = FakeAccelerator(), tmp_path / "checkpoints"
    first = save_checkpoint(acc, root, 1, {"step": 1}, keep=2, digits=7)

    class DiesMidSave(FakeAccelerator):
        def save_state(self, directory: str) -> None:
            super().save_state(directory)  # the weights are there, the state file is not
            raise Killed

    with pytest.raises(Killed):
        save_checkpoint(DiesMidSave(), root, 2, {"step": 2}, keep=2, digits=7)
    assert names(root) == [".partial-step-0000002", "step-0000001"]
    assert complete_checkpoints(root) == {1: first} and latest_checkpoint(root) == first
    clear_partial(root)
    assert names(root) == ["step-0000001"]
    assert json.loads((first / STATE_FILE).read_text()) == {"step": 1}


def test_a_save_killed_between_its_state_file_and_the_rename_is_not_complete(tmp_path, monkeypatch):
    acc, root = FakeAccelerator(), tmp_path / "checkpoints"
    save_checkpoint(acc, root, 1, {"step": 1}, keep=2, digits=6)
    with monkeypatch.context() as patch:
        patch.setattr(Path, "rename", lambda *_: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            save_checkpoint(acc, root, 2, {"step": 2}, keep=2, digits=6)
    assert (root / ".partial-step-000002" / STATE_FILE).is_file()  # its state is in, but not its name
    assert sorted(complete_checkpoints(root)) == [1]
    # The resumed run saves that step again over what the killed one left.
    again = save_checkpoint(acc, root, 2, {"step": 2, "again": True}, keep=2, digits=6)
    assert names(root) == ["step-000001", "step-000002"]
    assert json.loads((again / STATE_FILE).read_text()) == {"step": 2, "again": True}


def test_rotation_keeps_the_newest_and_never_the_one_just_saved(tmp_path):
    acc, root = FakeAccelerator(), tmp_path / "checkpoints"
    for step in range(1, 6):
        save_checkpoint(acc, root, step, {"step": step}, keep=3, digits=7)
    assert names(root) == ["step-0000003", "step-0000004", "step-0000005"]
    save_checkpoint(acc, root, 6, {"step": 6}, keep=1, digits=7)
    assert names(root) == ["step-0000006"]
    # A checkpoint of a later step (a run restarted from an earlier one) does not push the new one out.
    shutil.copytree(root / "step-0000006", root / "step-0000009")
    kept = save_checkpoint(acc, root, 7, {"step": 7}, keep=1, digits=7)
    assert names(root) == ["step-0000007"] and latest_checkpoint(root) == kept


def test_a_rotation_killed_halfway_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    acc, root = FakeAccelerator(), tmp_path / "checkpoints"
    save_checkpoint(acc, root, 1, {"step": 1}, keep=1, digits=7)
    with monkeypatch.context() as patch:  # every removal dies after the first file it deletes
        patch.setattr(ckpt.shutil, "rmtree", lambda path, **_: (Path(path) / "model.safetensors").unlink())
        save_checkpoint(acc, root, 2, {"step": 2}, keep=1, digits=7)
    assert (root / "step-0000001").is_dir() and sorted(complete_checkpoints(root)) == [2]
    clear_partial(root)
    assert names(root) == ["step-0000002"]


def test_load_returns_the_saved_state_and_passes_options_to_accelerate(tmp_path):
    acc, root = FakeAccelerator(), tmp_path / "checkpoints"
    path = save_checkpoint(acc, root, 3, {"step": 3, "world_size": 1}, keep=1, digits=7)
    assert load_checkpoint(acc, path, strict=False) == {"step": 3, "world_size": 1}
    assert acc.loaded == [(str(path), {"strict": False})]


def test_the_real_accelerator_saves_and_restores_a_model(tmp_path):
    import torch
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(torch.nn.Linear(3, 2), torch.optim.SGD([torch.zeros(1)], lr=0.1))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    root = tmp_path / "checkpoints"
    path = save_checkpoint(accelerator, root, 4, {"step": 4}, keep=1, digits=7)
    assert names(root) == ["step-0000004"] and (path / "model.safetensors").is_file()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert load_checkpoint(accelerator, latest_checkpoint(root)) == {"step": 4}
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


# ---- checkpoints written before the code was shared: found, resumed, rotated ----------------------


def test_an_align_checkpoint_of_the_old_layout_is_resumed(tmp_path):
    from videolift.align.checkpoints import clear_after, resume_point
    from videolift.align.checkpoints import save_checkpoint as align_save
    from videolift.align.config import AlignConfig

    scores = tmp_path / "s.jsonl"
    scores.write_text('{"video": "a.mp4"}\n')
    cfg = AlignConfig(model="m", scores=scores, videos="v", out=tmp_path / "run", max_steps=300, resume=True)
    root = cfg.out / "checkpoints"
    old = root / "step-0000100"  # as align wrote it: accelerate's files, then trainer_state.json
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"weights")
    state = {"step": 100, "fingerprint": cfg.training_fingerprint(), "config": cfg.model_dump(mode="json")}
    (old / STATE_FILE).write_text(
        json.dumps({**state, "inputs": cfg.input_hashes(), "world_size": 1}, indent=1)
    )
    (root / ".partial-step-0000200").mkdir()  # its save of step 200, killed
    acc = FakeAccelerator()
    assert resume_point(cfg, root) == old
    assert load_checkpoint(acc, old)["step"] == 100 and acc.loaded == [(str(old), {})]
    clear_after(root, cfg.out / "logs/train.jsonl", 100)
    assert names(root) == ["step-0000100"]
    new = align_save(acc, root, 200, {**state, "step": 200}, keep=2)
    assert names(root) == ["step-0000100", "step-0000200"] and resume_point(cfg, root) == new
    align_save(acc, root, 300, {**state, "step": 300}, keep=2)
    assert names(root) == ["step-0000200", "step-0000300"]  # the old one rotates out as any other


def test_a_critic_checkpoint_of_the_old_layout_is_resumed(tmp_path):
    from videolift.critic import sft_outputs as sft

    out = tmp_path / "critic"
    old = out / "checkpoints/step-000100"  # as critic train wrote it, in place, its state file last
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"weights")
    (old / "trainer_state.json").write_text(json.dumps({"step": 100}) + "\n")
    (out / "checkpoints/step-000200").mkdir()  # its in-place save of update 200, killed: no state file
    (out / sft.TRAIN_LOG).write_text("".join(json.dumps({"step": s}) + "\n" for s in (99, 100, 150)))
    assert sft.find_checkpoint(out) == (old, 100) and sft.find_checkpoint(out, 100) == (old, 100)
    with pytest.raises(sft.VideoliftError, match=r"no checkpoint of update 200 \(there are: 100\)"):
        sft.find_checkpoint(out, 200)

    acc, said = FakeAccelerator(), []
    assert sft.resume_from(acc, out, True, 300, said.append) == 100
    assert acc.loaded == [(str(old), {"strict": False})]  # trainable weights only
    assert said == ["resumed from step-000100 (update 100 of 300)"]
    assert [json.loads(line)["step"] for line in (out / sft.TRAIN_LOG).read_text().splitlines()] == [99, 100]
    assert names(out / "checkpoints") == ["step-000100"]  # the killed save cleared
    sft.save_step_checkpoint(acc, out, 200, keep=2)
    assert sorted(sft.checkpoints(out)) == [100, 200] and names(out / "checkpoints")[1] == "step-000200"


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator

from videolift.core.checkpoints import complete_checkpoints, save_checkpoint
from videolift.core.errors import VideoliftError

accelerator = Accelerator(cpu=True)
model, optimizer = accelerator.prepare(torch.nn.Linear(256, 256), torch.optim.SGD([torch.zeros(1)], lr=0.1))
root = Path(sys.argv[1])
save_checkpoint(accelerator, root, 1, {"step": 1}, keep=2, digits=7)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # the weights are 263 kB
try:
    save_checkpoint(accelerator, root, 2, {"step": 2}, keep=2, digits=7)
except VideoliftError as exc:
    print("ERROR", exc)
print("COMPLETE", sorted(complete_checkpoints(root)))
"""


def test_a_full_disk_during_a_save_is_one_line_naming_the_place_and_nothing_counts_as_saved(tmp_path):
    # The real writers (safetensors, torch) under a file-size limit: they report it in exceptions that name
    # no file (SafetensorError, RuntimeError), which were 70-line tracebacks.
    import subprocess
    import sys

    (tmp_path / "full.py").write_text(FULL_DISK)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "full.py"), str(tmp_path / "ckpt")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    error = next(line for line in done.stdout.splitlines() if line.startswith("ERROR"))
    assert error.startswith(
        f"ERROR {tmp_path / 'ckpt' / '.partial-step-0000002'}: cannot write the checkpoint ("
    )
    assert "MB free there" in error
    assert "COMPLETE [1]" in done.stdout  # the earlier one stands; the half-written one is not one


def test_errors_that_are_not_failed_writes_pass_through_unrelabelled(tmp_path):
    from videolift.core.files import writing

    for error in (
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ConnectionResetError(104, "reset"),
    ):
        with pytest.raises(type(error)), writing(tmp_path, "the checkpoint"):
            raise error


def test_checkpoints_keep_the_trained_weights_and_leave_deepspeeds_and_fsdps_alone():
    import torch

    from videolift.core.checkpoints import save_trainable_only

    hooks = []
    acc = SimpleNamespace(register_save_state_pre_hook=hooks.append, unwrap_model=lambda m: m)
    save_trainable_only(acc)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)  # frozen, as a LoRA run's base
    state = model.state_dict()
    hooks[0]([model], [state], "dir")
    assert sorted(state) == ["1.bias", "1.weight"]
    hooks[0]([model], [], "dir")  # DeepSpeed and FSDP save the model themselves: no weights to filter


def test_a_checkpoint_that_lacks_trained_weights_is_refused_not_silently_skipped(tmp_path):
    # strict=False (checkpoints of the trained weights only) loads the names that match and skips the rest.
    import torch
    from accelerate import Accelerator
    from safetensors.torch import load_file, save_file

    from videolift.core.checkpoints import save_trainable_only
    from videolift.core.errors import VideoliftError

    accelerator = Accelerator(cpu=True)
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net[0].requires_grad_(False)
    model, _ = accelerator.prepare(net, torch.optim.SGD(net[1].parameters(), lr=0.1))
    save_trainable_only(accelerator)
    path = save_checkpoint(accelerator, tmp_path, 1, {"step": 1}, keep=1, digits=7)
    assert sorted(load_file(str(path / "model.safetensors"))) == ["1.bias", "1.weight"]
    assert load_checkpoint(accelerator, path, strict=False) == {"step": 1}
    renamed = {f"other.{k}": v for k, v in load_file(str(path / "model.safetensors")).items()}
    save_file(renamed, str(path / "model.safetensors"))  # another model's names
    with pytest.raises(VideoliftError, match=r"lacks 2 of the model's 2 trained weights \(e\.g\. 1\.bias\)"):
        load_checkpoint(accelerator, path, strict=False)


def test_under_deepspeed_frozen_weights_are_left_out_by_its_own_keywords(tmp_path):
    """accelerate hands save_state's and load_state's keywords to DeepSpeed's engine, which saves the
    model itself (the pre-save hook sees no weights) and knows no ``strict`` (resume raised TypeError)."""
    from accelerate.utils import DistributedType

    from videolift.core.checkpoints import save_trainable_only

    class DeepSpeedAccelerator(FakeAccelerator):
        distributed_type = DistributedType.DEEPSPEED

        def register_save_state_pre_hook(self, hook: Any) -> None:
            self.hook = hook

        def save_state(self, directory: str, **kwargs: Any) -> None:
            self.saved_with = kwargs
            super().save_state(directory)

    acc = DeepSpeedAccelerator()
    save_checkpoint(acc, tmp_path, 1, {"step": 1}, keep=1, digits=7)
    assert acc.saved_with == {}  # a run that saves every weight
    save_trainable_only(acc)
    path = save_checkpoint(acc, tmp_path, 2, {"step": 2}, keep=1, digits=7)
    assert acc.saved_with == {"exclude_frozen_parameters": True}
    assert load_checkpoint(acc, path, strict=False) == {"step": 2}
    assert acc.loaded[-1][1] == {"load_module_strict": False}


# ---- the layout a checkpoint was written under (DDP / one process, FSDP, DeepSpeed) -----------------

# What accelerate's save_state writes under each layout (the files its load_state looks for).
LAYOUT_FILES = {
    "ddp": ["model.safetensors", "optimizer.bin", "random_states_0.pkl"],
    "fsdp-sharded": ["pytorch_model_fsdp_0/.metadata", "optimizer_0/.metadata", "random_states_0.pkl"],
    "fsdp-full": ["pytorch_model_fsdp.bin", "optimizer.bin", "random_states_0.pkl"],
    "fsdp-local": ["pytorch_model_fsdp_rank0.bin", "pytorch_model_fsdp_rank1.bin"],
    "deepspeed": ["pytorch_model/mp_rank_00_model_states.pt", "latest", "random_states_0.pkl"],
}


def fabricated(root: Path, layout: str, state: dict[str, Any]) -> Path:
    """A complete checkpoint of ``layout``'s files (empty) and ``state`` as its state file."""
    path = root / "checkpoints/step-000002"
    for name in LAYOUT_FILES[layout]:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(b"")
    (path / STATE_FILE).write_text(json.dumps(state))
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_a_checkpoints_layout_is_its_recorded_one_else_that_of_its_files(tmp_path, layout):
    old = fabricated(tmp_path / "old", layout, {"step": 2})  # written before the layout was recorded
    assert ckpt.checkpoint_layout(old) == layout
    assert ckpt.layout_conflict(old, layout) is None
    recorded = fabricated(tmp_path / "new", "ddp", {"step": 2, "layout": layout})
    assert ckpt.checkpoint_layout(recorded) == layout  # the record, whatever the files
    assert ckpt.checkpoint_layout(fabricated(tmp_path / "bare", "ddp", {}).parent / "none") is None


def test_a_checkpoint_of_another_layout_is_refused_naming_both_and_what_to_do(tmp_path):
    path = fabricated(tmp_path, "fsdp-sharded", {"step": 2, "world_size": 2})
    why = ckpt.layout_conflict(path, "ddp")
    assert why.startswith(f"{path}: written under FSDP with SHARDED_STATE_DICT")
    assert "by 2 process(es)" in why and "this run is under DDP or one process" in why
    assert "Resume with the accelerate config" in why and "--overwrite" in why
    unknown = tmp_path / "unknown/checkpoints/step-000002"  # no state, no files it can tell: not refused
    unknown.mkdir(parents=True)
    assert ckpt.layout_conflict(unknown, "ddp") is None


def test_the_run_layout_follows_the_accelerators_distributed_type():
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    assert ckpt.run_layout(Accelerator(cpu=True)) == "ddp"
    assert ckpt.run_layout(FakeAccelerator()) == "ddp"  # (no distributed_type: one process)

    def fsdp(state_dict_type: str) -> SimpleNamespace:
        plugin = SimpleNamespace(state_dict_type=SimpleNamespace(name=state_dict_type))
        return SimpleNamespace(
            distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin)
        )

    assert ckpt.run_layout(fsdp("SHARDED_STATE_DICT")) == "fsdp-sharded"
    assert ckpt.run_layout(fsdp("FULL_STATE_DICT")) == "fsdp-full"
    assert ckpt.run_layout(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED)) == "deepspeed"
    assert ckpt.run_layout(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU)) == "ddp"


def test_align_refuses_a_resume_under_another_layout_and_resumes_its_own(tmp_path):
    from videolift.align.checkpoints import check_resume_layout
    from videolift.align.config import AlignConfig

    cfg = AlignConfig(model="m", scores="s.jsonl", videos="v", out=tmp_path, max_steps=9, resume=True)
    fabricated(tmp_path, "fsdp-full", {"step": 2, "world_size": 4})
    check_resume_layout(cfg, tmp_path / "checkpoints", "fsdp-full")  # another count, same layout: resumed
    check_resume_layout(cfg.model_copy(update={"resume": False}), tmp_path / "checkpoints", "deepspeed")
    with pytest.raises(ckpt.VideoliftError, match="written under FSDP with FULL_STATE_DICT .* by 4 process"):
        check_resume_layout(cfg, tmp_path / "checkpoints", "deepspeed")


def test_critic_train_refuses_a_resume_under_another_layout_before_another_count(tmp_path):
    from videolift.critic.sft_config import TRAIN_CONFIG, SFTConfig
    from videolift.critic.sft_outputs import RunConflict, check_output_dir

    cfg = SFTConfig(adapter="full", max_steps=4)
    (tmp_path / TRAIN_CONFIG).write_text(json.dumps(cfg.comparable()))
    path = fabricated(tmp_path, "fsdp-full", {"step": 2, "world_size": 2})
    check_output_dir(tmp_path, cfg, resume=True, overwrite=False, world=2, layout="fsdp-full")
    for world in (1, 2):  # the count's advice ("Resume with 2 process(es) (torchrun ...)") would not load it
        with pytest.raises(RunConflict) as refused:
            check_output_dir(tmp_path, cfg, resume=True, overwrite=False, world=world, layout="ddp")
        assert str(refused.value).startswith(
            f"{path}: written under FSDP with FULL_STATE_DICT (pytorch_model_fsdp.bin)"
        )
    check_output_dir(tmp_path, cfg, resume=True, overwrite=True, world=1, layout="ddp")  # starts again
    state = {"step": 2, "world_size": 2}
    with pytest.raises(RunConflict, match="written by 2 process"):  # the same layout: the count is checked
        check_output_dir(tmp_path, cfg, resume=True, overwrite=False, world=1, layout="fsdp-full")
    assert json.loads((path / STATE_FILE).read_text()) == state  # only read
