"""The README's loop runs as written: its commands, read from README.md, one after another in one
directory, as a user types them. Only the checkpoints change (tiny models of the same classes), the
counts and sizes shrink, and the rater's browser is replaced by the API calls its page makes."""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tiny_clip import build_tiny_clip
from videolift.cli import app

REPO = Path(__file__).resolve().parents[1]
REASON = "The clip is blurry."
DIMENSIONS = ("semantic_consistency", "motion_smoothness", "video_fidelity")
HUB = {
    "THUDM/CogVideoX-2b": "t2v",
    "Qwen/Qwen2-VL-7B-Instruct": "vlm",
    "openai/clip-vit-large-patch14": "clip",
}  # README id -> tiny model dir
COUNTS = {"--n": "4", "--per-prompt": "2"}
TINY_VIDEO = ["--steps", "2", "--frames", "9", "--height", "64", "--width", "64", "--no-progress"]
SMALL = {  # appended to the README's command: sizes and step counts only
    ("generate",): TINY_VIDEO,
    ("eval",): TINY_VIDEO,
    # A tiny random VLM answers parseably only after a few dozen updates at a high rate.
    ("critic", "train"): ["--max-steps", "50", "--batch-size", "8", "--lr", "0.01", "--no-progress"],
    ("critic", "eval"): ["--no-progress"],
    ("critic", "score"): ["--no-progress"],
    ("align",): ["--max-steps", "2", "--warmup-steps", "1", "--no-progress"],
}


def readme_loop() -> list[list[str]]:
    """The `videolift` commands of the README's loop block, comments dropped, `&&` chains split."""
    text = (REPO / "README.md").read_text()
    block = text.split("## The loop", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            for part in line.split(" && "):
                argv = shlex.split(part)
                assert argv[0] == "videolift", part
                commands.append(argv[1:])
    return commands


def rate_everything(project: Path, token: str) -> int:
    """What the rater does in the web app: every task, mostly Good (a tiny critic learns that in a few
    dozen updates), a reason for every other label."""
    from videolift.data.annotate.app import create_app
    from videolift.data.annotate.project import Project

    rng, done, auth = random.Random(0), 0, {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(Project.open(project))) as client:
        while (task := client.get("/api/next", headers=auth)).status_code == 200:
            labels = {d: rng.choice(["Good"] * 6 + ["Normal", "Bad"]) for d in DIMENSIONS}
            body = {d: {"label": x, "reason": "" if x == "Good" else REASON} for d, x in labels.items()}
            sent = client.post(
                "/api/annotations", headers=auth, json={"task_id": task.json()["task_id"], "ratings": body}
            )
            assert sent.status_code == 201, sent.text
            done += 1
    return done


def test_the_readme_loop_runs_as_written(tmp_path, monkeypatch):
    from diffusers import CogVideoXPipeline

    from videolift.models.tiny_cogvideox import build_tiny_cogvideox
    from videolift.models.tiny_vlm import TinyVLMConfig, build_tiny_vlm

    build_tiny_cogvideox(tmp_path / "t2v")
    build_tiny_clip(tmp_path / "clip")
    # A head of a pretrained VLM's scale, so that the LoRA critic learns to answer (with a random 0.02
    # head which guess came out on top depended on the CPU: tests/test_pipeline_gpu_configs.py).
    build_tiny_vlm(tmp_path / "vlm", TinyVLMConfig(family="qwen2_vl", corpus=[REASON], head_scale=10.0))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    commands, token, rated, seen_ids = readme_loop(), None, 0, set()
    stages = [
        " ".join(argv[:2]) if argv[0] in ("annotate", "critic", "hra", "prompts") else argv[0]
        for argv in commands
    ]
    assert stages == [
        "prompts sample", "generate", "annotate create", "annotate add-annotator", "annotate serve",
        "annotate export", "hra split", "critic train", "critic eval",
        "prompts sample", "generate", "critic score", "align", "prompts sample", "eval",
    ]  # fmt: skip
    for argv in commands:
        seen_ids |= set(argv) & set(HUB)
        argv = [str(tmp_path / HUB[a]) if a in HUB else a for a in argv]
        argv = [COUNTS[argv[i - 1]] if i and argv[i - 1] in COUNTS else a for i, a in enumerate(argv)]
        if argv[:2] == ["annotate", "serve"]:  # a server for people; the test rates through its API
            rated = rate_everything(Path(argv[argv.index("--project") + 1]), token)
            continue
        extra = next((v for k, v in SMALL.items() if tuple(argv[: len(k)]) == k), [])
        result = CliRunner().invoke(app, [*argv, *extra])
        assert result.exit_code == 0, f"videolift {' '.join(argv)}\n{result.output}"
        if argv[:2] == ["annotate", "add-annotator"]:
            token = result.stdout.strip().splitlines()[-1]
    assert seen_ids == set(HUB)  # the README's checkpoints are the ones replaced

    # alice rated every generated video once, with reasons, and the split kept videos apart.
    assert rated == 8
    hra = [json.loads(x) for x in Path("hra.jsonl").read_text().splitlines()]
    assert len(hra) == 8 and {r["annotator"] for r in hra} == {"alice"}
    test, train = (
        [json.loads(x) for x in Path(f"splits/{n}.jsonl").read_text().splitlines()] for n in ("test", "train")
    )
    assert test and train and not {r["video"] for r in test} & {r["video"] for r in train}
    # The critic's scores weighted the fine-tune: not every reward is null.
    scores = [json.loads(x) for x in Path("scores.jsonl").read_text().splitlines()]
    assert len(scores) == 8 and all(s["reward"] is not None for s in scores)
    # Held-out prompts are new to every stage, and both models were judged on each of them.
    held = Path("heldout.txt").read_text().splitlines()
    used = {json.loads(x)["prompt"] for x in Path("prompts.jsonl").read_text().splitlines()}
    assert len(held) == 4 and not set(held) & (used | set(Path("align_prompts.txt").read_text().splitlines()))
    report = json.loads(Path("eval-out/eval.json").read_text())
    assert set(report["models"]) == {"t2v", "aligned"}  # align's OUT/pipeline is named OUT
    assert report["clip"]["paired"]["aligned vs t2v"]["clipsim"]["pairs"] == 4  # --clip, the same videos
    CogVideoXPipeline.from_pretrained("aligned/pipeline")  # plain diffusers loads the aligned model


def test_the_readme_gpu_recipe_parses_as_written():
    """The GPU recipe cannot run here, but each of its commands must parse: every option it names exists
    and takes the value it is given (an option renamed in the code would otherwise leave it stale)."""
    import typer.main

    text = (REPO / "README.md").read_text()
    block = text.split("### On GPUs: the paper's recipe", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands = [shlex.split(c) for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    root = typer.main.get_command(app)
    parsed = []
    for argv in commands:
        assert argv[:2] == ["accelerate", "launch"] and "videolift.cli" in argv, argv
        args = argv[argv.index("videolift.cli") + 1 :]
        command, ctx_args = root, list(args)
        while hasattr(command, "commands") and ctx_args and ctx_args[0] in command.commands:
            command = command.commands[ctx_args.pop(0)]
        command.make_context(
            command.name, list(ctx_args)
        )  # click's parse: unknown options and bad values raise
        parsed.append(" ".join(args[: len(args) - len(ctx_args)]))
    assert parsed == ["critic train", "critic score", "align", "eval"]
