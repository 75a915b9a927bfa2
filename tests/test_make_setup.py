"""The Makefile's set-up step (`make setup`, run first by `make demo` and `make test`) on a fresh machine.

The venv is a fake: its bin/python logs every call, answers `-m pip` with success and runs the rest
with a site directory the test fills (pip, torch, torchvision present or not), so a set-up takes a
second instead of minutes and says which installs it would have run."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (REPO / "Makefile").exists() or not shutil.which("make"), reason="no make"
)


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def fake_venv(tmp_path: Path, *, has: tuple[str, ...]) -> tuple[Path, Path, Path]:
    """(PYTHON, VENV, calls log): a venv whose site holds only the packages in `has`."""
    calls, site, venv = tmp_path / "calls.txt", tmp_path / "site", tmp_path / "venv"
    site.mkdir()
    if "pip" in has:
        (site / "pip").mkdir()
        (site / "pip/__init__.py").touch()
    for dist in {"torch", "torchvision"} & set(has):
        (site / f"{dist}-1.0.dist-info").mkdir()
        (site / f"{dist}-1.0.dist-info/METADATA").write_text(f"Name: {dist}\nVersion: 1.0\n")
    # -S: only the fake site, not the test environment's packages
    script(
        venv / "bin/python",
        f'echo "venv $*" >> {calls}; [ "$1 $2" = "-m pip" ] && exit 0\n'
        f'PYTHONPATH={site} exec {sys.executable} -S "$@"',
    )
    python = script(
        tmp_path / "python",
        f'echo "python $*" >> {calls}; [ "$1 $2" = "-m venv" ] && exit 0; exec {sys.executable} "$@"',
    )
    return python, venv, calls


def setup(python: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "setup", f"VENV={venv}", f"PYTHON={python}", "TORCH=torch==9"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (venv / "bin/.installed").exists()
    return done


def installs(calls: Path) -> list[str]:
    return [c for c in calls.read_text().splitlines() if "-m venv" in c or "-m pip install" in c]


def test_a_venv_left_without_pip_is_made_again(tmp_path):
    """An interrupted `python -m venv`, or one without ensurepip (Debian's python3 without python3-venv),
    leaves bin/python but no pip; the set-up took that for a finished venv and failed at bin/pip forever."""
    python, venv, calls = fake_venv(tmp_path, has=())
    setup(python, venv)
    assert installs(calls)[0] == f"python -m venv --clear {venv}"


def test_a_venv_with_pip_is_kept_and_torch_installed_when_missing(tmp_path):
    python, venv, calls = fake_venv(tmp_path, has=("pip",))
    setup(python, venv)
    assert installs(calls) == [
        "venv -m pip install -q --upgrade pip",
        "venv -m pip install -q torch==9",
        "venv -m pip install -q -e .[dev]",
    ]


def test_a_rerun_keeps_the_torch_of_the_first_set_up(tmp_path):
    """A changed pyproject.toml reruns the set-up: it reinstalled the default TORCH over the CUDA build a
    GPU user had chosen with `make setup TORCH=...` (the README: an existing environment is kept)."""
    python, venv, calls = fake_venv(tmp_path, has=("pip", "torch", "torchvision"))
    setup(python, venv)
    assert installs(calls) == ["venv -m pip install -q --upgrade pip", "venv -m pip install -q -e .[dev]"]


def test_a_missing_python_is_refused_before_anything_is_made(tmp_path):
    done = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO),
            "setup",
            f"VENV={tmp_path / 'venv'}",
            f"PYTHON={tmp_path / 'no-python'}",
        ],
        capture_output=True,
        text=True,
    )
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
