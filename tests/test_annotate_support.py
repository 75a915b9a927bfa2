"""Helpers shared by the annotation-app tests (no tests here): tiny videos, a project, an API client."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.jsonl import write_jsonl
from videolift.core.schema import DIMENSIONS
from videolift.core.video import write_video

runner = CliRunner()
DIMS = [d.value for d in DIMENSIONS]


def write_clip(path: Path, shade: int = 0) -> None:
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    for t in range(9):
        frames[t, 10:22, 2 + 2 * t : 14 + 2 * t] = [220, shade % 256, 40]
    write_video(path, frames, fps=8)


def write_manifest(
    path: Path,
    root: Path,
    n: int,
    *,
    prefix: str = "v",
    prompt: str = "a red square moving right #{i}",
    seeds: bool = True,
) -> Path:
    """n clips under root/prefix/ (copies of one encoded clip: fast) and their manifest."""
    (root / prefix).mkdir(parents=True, exist_ok=True)
    first = root / prefix / "0000.mp4"
    write_clip(first, shade=sum(map(ord, prefix)) * 7)
    records = []
    for i in range(n):
        rel = f"{prefix}/{i:04d}.mp4"
        if i:
            shutil.copyfile(first, root / rel)
        records.append(
            {"video": rel, "prompt": prompt.format(i=i), "truth": {"color": "red"}}
            | ({"seed": i} if seeds else {})
        )
    write_jsonl(path, records)
    return path


class CliFailed(Exception):
    pass


def cli(*args: str) -> str:
    """Run ``videolift ...``; returns stdout (the token for token-printing commands), CliFailed with the
    printed error otherwise."""
    result = runner.invoke(app, list(args))
    if result.exit_code != 0:
        raise CliFailed(result.output) from result.exception
    return result.stdout.strip()


def create(project: Path, root: Path, manifest: Path | None = None, *extra: str) -> str:
    """``videolift annotate create``; returns the admin token."""
    args = ["annotate", "create", "--videos", str(root), "--project", str(project)]
    return cli(*args, *(["--manifest", str(manifest)] if manifest else []), *extra)


def make_project(tmp: Path, n: int = 5, r: int = 2) -> tuple[Path, str]:
    """A rating study of n clips, r ratings each; returns (project dir, admin token)."""
    manifest = write_manifest(tmp / "manifest.jsonl", tmp / "videos", n)
    return tmp / "project", create(tmp / "project", tmp / "videos", manifest, "--ratings-per-video", str(r))


def make_pair_project(
    tmp: Path, n_a: int, n_b: int, *args: str, reverse_b: bool = False, **kw
) -> tuple[Path, str]:
    """A pairwise-only study: manifests a.jsonl (clips under base/) and b.jsonl (under lift/), paired by
    ``create-pairs *args``; ``reverse_b`` writes B in reverse order. Returns (project dir, admin token)."""
    root, project = tmp / "videos", tmp / "project"
    write_manifest(tmp / "a.jsonl", root, n_a, prefix="base", **kw)
    write_manifest(tmp / "b.jsonl", root, n_b, prefix="lift", **kw)
    if reverse_b:
        lines = (tmp / "b.jsonl").read_text().splitlines()
        (tmp / "b.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    admin = create(project, root)
    pair_args = [
        "--manifest-a",
        str(tmp / "a.jsonl"),
        "--manifest-b",
        str(tmp / "b.jsonl"),
        "--project",
        str(project),
    ]
    cli("annotate", "create-pairs", *pair_args, *args)
    return project, admin


def add_annotator(project: Path, name: str) -> str:
    return cli("annotate", "add-annotator", name, "--project", str(project))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ratings(label: str = "Bad", reason: str = "the square is blue") -> dict:
    return {d: {"label": label, "reason": reason} for d in DIMS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``videolift annotate serve`` in a subprocess on a free loopback port; stops on exit."""

    def __init__(self, project: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "videolift.cli",
                "annotate",
                "serve",
                "--project",
                str(project),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()}")
            try:
                httpx.get(self.url + "/api/guideline", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("server did not start within 30 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_serve_refuses_a_log_level_or_port_uvicorn_cannot_take_in_one_line(tmp_path):
    from videolift.cli import app

    for option, value, said in (
        ("--log-level", "nonsense", "use one of critical"),
        ("--port", "99999", "65535"),
    ):
        result = CliRunner().invoke(app, ["annotate", "serve", "--project", str(tmp_path), option, value])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output
