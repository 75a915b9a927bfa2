"""`videolift env`: the machine as videolift sees it, for setup checks and bug reports."""

import json
from importlib import metadata

from typer.testing import CliRunner

from videolift.cli import app


def test_env_reports_versions_accelerators_codecs_and_hub_settings():
    import torch
    from huggingface_hub import constants

    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["torch"] == torch.__version__ and info["diffusers"] == metadata.version("diffusers")
    assert info["av"] == metadata.version("av") and info["vbench"] is None  # not installed here
    assert info["codecs"]["libx264"] is True  # every video videolift writes is H.264 by libx264
    cuda = [a["device"] for a in info["accelerators"] if a["device"].startswith("cuda")]
    assert cuda == [f"cuda:{i}" for i in range(torch.cuda.device_count())]  # none on this CPU machine
    assert info["hf_hub_offline"] is constants.HF_HUB_OFFLINE and info["ram_gb"] > 0
    table = CliRunner().invoke(app, ["env"]).output
    assert "codecs: libx264 yes" in table and f"torch: {torch.__version__}" in table


def test_env_says_what_is_missing(monkeypatch):
    """A codec FFmpeg lacks is MISSING; without libx264 it warns that no video can be written."""
    import av

    from videolift.core import env_cli

    real = av.codec.Codec

    def codec(name, mode="r"):
        if name == "libx264":
            raise av.codec.codec.UnknownCodecError(name)
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", codec)
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0
    assert "libx264 MISSING" in result.output and "cannot write videos" in result.output
    assert env_cli.codecs()["libx264"] is False and env_cli.codecs()["h264"] is True


def test_the_command_line_loads_without_torch():
    """`videolift --help` stays fast: no command module imports torch (or diffusers, transformers) at load."""
    import subprocess
    import sys

    code = (
        "import sys, videolift.cli; print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_dash_m_videolift_is_the_command():
    """`python -m videolift` (no script on PATH, e.g. a notebook's kernel environment) runs the CLI."""
    import subprocess
    import sys

    from videolift import __version__

    done = subprocess.run([sys.executable, "-m", "videolift", "--version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == __version__
