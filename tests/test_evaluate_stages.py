import json

import pytest

from videolift.evaluate.stages import Runner, Stage


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


def test_a_failing_stage_is_not_recorded(tmp_path):
    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        Runner(tmp_path).run(Stage("s", boom, outputs=[tmp_path / "x"]))
    assert not (tmp_path / "run_manifest.json").exists()
