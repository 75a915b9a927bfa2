"""A tiny stage runner: each stage is skipped when its outputs are complete for the same inputs and
settings, as recorded in a run manifest (``DIR/run_manifest.json``). Stages themselves are resumable,
so a killed run restarts at the stage it was in and that stage resumes its own work.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from videolift.core.files import fingerprint
from videolift.core.jsonl import atomic_write

console = Console()


@dataclass
class Stage:
    name: str
    run: Callable[[], Any]
    inputs: Sequence[Path] = ()
    outputs: Sequence[Path] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        payload = {"settings": self.settings, "inputs": {str(p): fingerprint(p) for p in self.inputs}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Runner:
    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.workdir / "run_manifest.json"
        self.manifest: dict[str, Any] = (
            json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {"stages": {}}
        )
        self.results: dict[str, Any] = {}
        self.console = console

    def is_done(self, stage: Stage) -> bool:
        entry = self.manifest["stages"].get(stage.name)
        return bool(
            entry
            and entry.get("key") == stage.key()
            and all(Path(p).exists() for p in stage.outputs)
            and entry.get("outputs") == {str(p): fingerprint(p) for p in stage.outputs}
        )

    def run(self, stage: Stage) -> Any:
        if self.is_done(stage):
            console.print(f"[dim]✓ {stage.name}: up to date, skipped[/]")
            self.results[stage.name] = self.manifest["stages"][stage.name].get("result")
            return self.results[stage.name]
        console.rule(f"[bold]{stage.name}")
        start = time.time()
        result = stage.run()
        self.manifest["stages"][stage.name] = {
            "key": stage.key(),
            "settings": stage.settings,
            "outputs": {str(p): fingerprint(p) for p in stage.outputs},
            "seconds": round(time.time() - start, 1),
            "result": result if _jsonable(result) else None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        with atomic_write(self.manifest_path) as handle:
            json.dump(self.manifest, handle, indent=1, default=str)
        self.results[stage.name] = result
        return result


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
