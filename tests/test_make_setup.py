"""The Makefile's set-up step (`make setup`, run first by `make demo` and `make test`) on a fresh machine."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (REPO / "Makefile").exists() or not shutil.which("make"), reason="no make"
)


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True, text=True)


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("has_pip", [False, True])
def test_a_venv_left_without_pip_is_made_again(tmp_path, has_pip):
    """An interrupted `python -m venv`, or one without ensurepip (Debian's python3 without python3-venv),
    leaves bin/python but no pip; the set-up took that for a finished venv and failed at bin/pip forever.
    A venv with pip is kept. (A fake PYTHON records the venv command: a real one takes 5-15 s here.)"""
    calls = tmp_path / "calls.txt"
    python = script(
        tmp_path / "python",
        f'echo "$@" >> {calls}; [ "$1 $2" = "-m venv" ] && exit 0; exec {sys.executable} "$@"',
    )
    venv = tmp_path / "venv"
    # -S: no site-packages, so no pip, as in a venv whose ensurepip never ran
    script(venv / "bin/python", f'exec {sys.executable} {"" if has_pip else "-S"} "$@"')
    done = make("venv", f"VENV={venv}", f"PYTHON={python}")
    assert done.returncode == 0, done.stdout + done.stderr
    made = [c for c in calls.read_text().splitlines() if c.startswith("-m venv")]
    assert made == ([] if has_pip else [f"-m venv --clear {venv}"])


def test_a_missing_python_is_refused_before_anything_is_made(tmp_path):
    done = make("setup", f"VENV={tmp_path / 'venv'}", f"PYTHON={tmp_path / 'no-python'}")
    assert done.returncode != 0
    assert "videolift needs Python 3.11 or newer" in done.stdout and "no-python" in done.stdout
    assert not (tmp_path / "venv").exists()


def test_make_lint_format_check_passes_in_a_clean_clone():
    """`make lint` runs `ruff format --check` on the whole project: ruff also formats the Python blocks of
    Markdown files, and the docs' hand-aligned examples failed it in every clean clone."""
    pytest.importorskip("ruff")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
