"""A model named by a Hub id, in a local Hub cache (a fake one built here, offline, as huggingface_hub lays it
out): the latent cache's key is the content of its snapshot, as for a local copy of the same files; `align
--resume` and `generate`'s resume refuse an id updated upstream (a new commit) since the run started."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

import videolift.core.files
from hub_cache import publish
from videolift.align.cache import model_fingerprint
from videolift.align.inputs import denoisers
from videolift.models.families import get_spec

BASE = Path(__file__).resolve().parents[1] / "src/videolift/toy/assets/t2v"  # a tiny CogVideoX
REPO_ID = "owner/tiny"
VAE_WEIGHTS = "vae/diffusion_pytorch_model.safetensors"


def key(model: str, memo: Path | None = None) -> str:
    """The cache key ``align`` computes for ``model``, loaded by that name."""
    pipe = get_spec("cogvideox").load(model)
    return model_fingerprint(model, pipe, trained=denoisers(pipe), memo=memo)


def test_a_hub_id_is_keyed_by_its_snapshots_files_as_a_local_copy_of_them(hub, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save

    base = BASE
    snapshot = publish(hub, REPO_ID, base, "a" * 40)
    assert (snapshot / VAE_WEIGHTS).is_symlink()
    local = shutil.copytree(base, tmp_path / "local")
    memo = tmp_path / "cache/file_hashes.json"
    original = key(REPO_ID, memo)
    assert original == key(str(local))
    # The memo knows the blobs the snapshot's links lead to, and spares reading them again.
    blobs = str((hub / "models--owner--tiny/blobs").resolve())
    known = json.loads(memo.read_text())
    assert known and all(entry.startswith(blobs) for entry in known)
    read = []
    hash_file = videolift.core.files.content_hash
    monkeypatch.setattr(videolift.core.files, "content_hash", lambda p: read.append(p) or hash_file(p))
    assert key(REPO_ID, memo) == original and not read

    # The repository updated upstream with another VAE: a new snapshot, a new key.
    weights = load_file(base / VAE_WEIGHTS)
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1
    changed = save(weights)
    publish(hub, REPO_ID, base, "b" * 40, replace={VAE_WEIGHTS: changed})
    assert key(REPO_ID, memo) != original
    assert [Path(p).resolve().name for p in read] == [hashlib.sha256(changed).hexdigest()]  # that blob only


def test_a_hub_id_with_no_snapshot_is_keyed_by_its_name(hub, tmp_path, monkeypatch):
    import videolift.align.export
    import videolift.core.hub

    assert videolift.align.export.base_directory is videolift.core.hub.base_directory
    local = str(BASE)
    pipe = get_spec("cogvideox").load(local)
    assert videolift.core.hub.base_directory(REPO_ID) is None  # nothing in this Hub cache
    by_name = {model_fingerprint(m, pipe, trained=denoisers(pipe)) for m in (REPO_ID, "owner/other")}
    assert len(by_name) == 2 and model_fingerprint(local, pipe, trained=denoisers(pipe)) not in by_name


def test_a_snapshot_without_every_file_of_the_repository_is_still_the_hub_ids_files(hub, tmp_path):
    """An online download caches the repository's tree listing (huggingface_hub 2.4: trees/<commit>.json);
    diffusers downloads only the files it loads, so the listing names files the snapshot lacks (a README's
    images, other weight formats). The snapshot is still what the id loads: its files, its key."""
    import videolift.core.hub

    commit = "a" * 40
    snapshot = publish(hub, REPO_ID, BASE, commit)
    files = {p.relative_to(BASE).as_posix(): p.stat().st_size for p in BASE.rglob("*") if p.is_file()}
    files |= {"assets/sample.gif": 1000, "transformer/diffusion_pytorch_model.bin": 2000}
    listing = {name: {"size": size, "blob_id": "0" * 40} for name, size in sorted(files.items())}
    trees = hub / "models--owner--tiny/trees"
    trees.mkdir()
    (trees / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    assert videolift.core.hub.base_directory(REPO_ID) == snapshot
    assert key(REPO_ID) == key(str(BASE))  # diffusers loads the files it asks for; keyed by them


def test_wan_a14b_both_experts_from_a_hub_id_encode_once(hub, tmp_path):
    """docs/align.md's full recipe: `--expert high --model ID --out A`, then `--expert low --model A/pipeline`:
    the export's encoders are the snapshot's files, so the second run finds every latent cached."""
    from align_world import align_config, make_world
    from videolift.align.trainer import train
    from videolift.models.tiny_wan import build_tiny_wan

    build_tiny_wan(tmp_path / "built", experts=True)
    publish(hub, "owner/a14b", tmp_path / "built", "c" * 40)
    world = make_world(tmp_path, size=32)
    kw = dict(max_steps=2, cache_dir=tmp_path / "cache", frames=9, height=32, width=32)
    first = train(
        align_config(world, tmp_path / "A", **kw, expert="high", model="owner/a14b"), progress=False
    )
    assert first.data["cache"]["videos_encoded"] == 4
    model = str(first.export_dir)
    second = train(align_config(world, tmp_path / "B", **kw, expert="low", model=model), progress=False)
    assert second.data["cache"]["videos_encoded"] == 0 and second.data["cache"]["prompts_encoded"] == 0


def test_the_commit_of_a_hub_id_is_the_one_its_main_ref_names(hub, tmp_path):
    from videolift.core.hub import hub_commit

    assert hub_commit(REPO_ID) is None and hub_commit(str(BASE)) is None  # not cached; a local model
    publish(hub, REPO_ID, BASE, "a" * 40)
    assert hub_commit(REPO_ID) == "a" * 40
    (hub / "models--owner--tiny/refs/main").write_text("b" * 40)  # no such snapshot
    assert hub_commit(REPO_ID) is None


def test_align_resume_refuses_a_hub_id_updated_upstream(hub, tmp_path, monkeypatch):
    """Checked before the load when the cache already holds the new commit, and after it when the load
    itself moved ``main`` (an online load fetching the update); a checkpoint recording no commit (older
    code) resumes."""
    from align_world import align_config, make_world
    from videolift.align.trainer import train
    from videolift.core.errors import VideoliftError

    world, out = make_world(tmp_path, size=32), tmp_path / "out"
    kw = dict(model=REPO_ID, frames=9, height=32, width=32, checkpoint_every=1)
    publish(hub, REPO_ID, BASE, "a" * 40)
    first = train(align_config(world, out, max_steps=1, **kw), progress=False)
    state = out / "checkpoints/step-0000001/trainer_state.json"
    assert json.loads(state.read_text())["inputs"]["model_commit"] == "a" * 40
    assert first.data["model_commit"] == "a" * 40  # train_summary.json's data
    publish(hub, REPO_ID, BASE, "b" * 40)  # the same files under a new commit: the refusal reads no weight
    resumed = align_config(world, out, max_steps=2, resume=True, **kw)
    refusal = f"model_commit: {'a' * 40} in the checkpoint, {'b' * 40} now ({REPO_ID} was updated on the Hub"
    with pytest.raises(VideoliftError, match=re.escape(refusal)):
        train(resumed, progress=False)

    ref = hub / "models--owner--tiny/refs/main"
    ref.write_text("a" * 40)
    spec = type(get_spec("cogvideox"))
    load = spec.load

    fetched = []

    def fetching(self, model, **options):  # what an online load does when the Hub has a new commit
        fetched.append(ref.write_text("b" * 40))
        return load(self, model, **options)

    with monkeypatch.context() as patched, pytest.raises(VideoliftError, match=re.escape(refusal)):
        patched.setattr(spec, "load", fetching)
        train(resumed, progress=False)
    assert fetched  # refused after the load, not before it
    assert not (out / "checkpoints/step-0000002").exists()

    data = json.loads(state.read_text())  # as older code wrote it: no commit
    del data["inputs"]["model_commit"]
    state.write_text(json.dumps(data))
    assert train(resumed, progress=False).steps == 2
    latest = json.loads((out / "checkpoints/step-0000002/trainer_state.json").read_text())
    assert latest["inputs"]["model_commit"] == "b" * 40


def test_generate_resume_refuses_a_hub_id_updated_upstream(hub, tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app
    from videolift.core.errors import VideoliftError
    from videolift.data.generate import known_settings
    from videolift.data.generate_resume import earlier_run_conflict

    prompts, out = tmp_path / "prompts.txt", tmp_path / "out"
    prompts.write_text("a red circle moves left\n")
    args = ["generate", "--model", REPO_ID, "--prompts", str(prompts), "--out", str(out), "--steps", "2"]

    def generate() -> object:
        return CliRunner().invoke(app, [*args, "--no-progress"], standalone_mode=False)

    publish(hub, REPO_ID, BASE, "a" * 40)
    assert generate().exception is None
    settings = json.loads((out / "generation.json").read_text())
    assert settings["model_commit"] == "a" * 40
    assert json.loads((out / "manifest.jsonl").read_text())["model_commit"] == "a" * 40
    publish(hub, REPO_ID, BASE, "b" * 40)
    result = generate()
    assert isinstance(result.exception, VideoliftError)
    assert f"model_commit was '{'a' * 40}', now '{'b' * 40}'" in str(result.exception)
    # eval's check before its models load sees it too, from the cache
    assert "model_commit was" in earlier_run_conflict(out, known_settings(REPO_ID, None, 0, {}))
    del settings["model_commit"]  # a run recorded before the commit was: resumed
    (out / "generation.json").write_text(json.dumps(settings))
    assert "0 generated here, 1 already done" in generate().output
    assert json.loads((out / "generation.json").read_text())["model_commit"] == "b" * 40


def test_scores_recorded_before_the_commit_are_kept_once_generate_records_it(hub, tmp_path, monkeypatch):
    """A finished generation of a Hub id recorded before the commit was (no model_commit), scored; the same
    `generate` command again resumes it and rewrites its manifest, now with model_commit on every line:
    `critic score` keeps the scores of those very videos rather than rating every one again (the new scores
    file would also refuse `align --resume` on it)."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import videolift.critic.score as score
    from videolift.cli import app

    prompts, out = tmp_path / "prompts.txt", tmp_path / "gen"
    prompts.write_text("a red circle moves left\na blue square\n")
    args = ["generate", "--model", REPO_ID, "--prompts", str(prompts), "--out", str(out), "--steps", "2",
            "--frames", "5", "--height", "32", "--width", "32", "--no-progress"]  # fmt: skip
    publish(hub, REPO_ID, BASE, "a" * 40)
    assert CliRunner().invoke(app, args, standalone_mode=False).exception is None
    settings = json.loads((out / "generation.json").read_text())
    del settings["model_commit"]  # as older code wrote them
    (out / "generation.json").write_text(json.dumps(settings))
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    (out / "manifest.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in line.items() if k != "model_commit"}) + "\n" for line in lines)
    )

    rated = []

    def rate_chunk(critic, chunk, frames, log_path, **kw):  # a critic's lines, without the critic
        for record in chunk:
            rated.append(record["video"])
            score.append_jsonl(log_path, {**record, "ratings": {}, "reward": 1.0})

    monkeypatch.setattr(score, "_run_signature", lambda *a: {"critic": "fake"})
    monkeypatch.setattr(score, "_rate_chunk", rate_chunk)
    spec = SimpleNamespace(check_view=(2, "uniform"), num_frames=2, frame_sampling="uniform")
    critic = SimpleNamespace(prompts=lambda text: ["question"], spec=spec)
    scores = tmp_path / "scores.jsonl"
    score.score_manifest(critic, out / "manifest.jsonl", out, scores, progress=False, log=lambda *a: None)
    assert len(rated) == 2
    before = scores.read_bytes()
    result = CliRunner().invoke(app, args, standalone_mode=False)
    assert "0 generated here, 2 already done" in result.output
    assert all(json.loads(line)["model_commit"] == "a" * 40 for line in (out / "manifest.jsonl").open())
    rated.clear()
    summary = score.score_manifest(
        critic, out / "manifest.jsonl", out, scores, progress=False, log=lambda *a: None
    )
    assert rated == [] and summary.skipped == 2
    assert scores.read_bytes() == before
