"""Stage 1 of the toy VLM pretraining: the vision encoder.

The vision encoder (tower + merger) learns what the renderer knows each clip shows (colours, shapes,
count, action, scene, motion and quality defects) through throw-away heads on its pooled tokens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from videolift.toy.pretrain_vlm import PretrainVLMConfig

# ---- stage 1: the vision encoder --------------------------------------------------------------------

# What the vision encoder learns to tell apart, from pooled tower outputs (the tokens the LM will read).
# Colours and shapes are multi-hot (which are present); the rest one class per clip.
MULTI_HOT = ("colours", "shapes")


def attribute_classes() -> dict[str, list[str]]:
    from videolift.core.schema import Dimension
    from videolift.toy import grammar
    from videolift.toy.defects import KINDS

    def defects(dim: Dimension) -> list[str]:
        return ["none"] + [f"{k} {sev}" for k in KINDS[dim] for sev in ("mild", "strong")]

    return {
        "colours": list(grammar.COLOURS),
        "shapes": list(grammar.SHAPES),
        "count": ["1", "2"],
        "action": list(grammar.ACTIONS),
        "weak": ["no", "yes"],
        "scene": list(grammar.SCENES),
        "motion": defects(Dimension.motion_smoothness),
        "fidelity": defects(Dimension.video_fidelity),
    }


def attribute_targets(record: dict[str, Any], classes: dict[str, list[str]]) -> list[np.ndarray]:
    """Per task, the target of one manifest record: what the clip shows (after its defects)."""
    from videolift.toy.grammar import parse_prompt

    shown = parse_prompt(record["shown"], shown=True)
    found = {d["dimension"]: f"{d['kind']} {d['severity']}" for d in record["defects"]}
    values = {
        "colours": {s.colour for s in shown.subjects},
        "shapes": {s.shape for s in shown.subjects},
        "count": str(shown.count),
        "action": shown.action,
        "weak": "yes" if any(d["kind"] == "weak_action" for d in record["defects"]) else "no",
        "scene": shown.scene,
        "motion": found.get("motion_smoothness", "none"),
        "fidelity": found.get("video_fidelity", "none"),
    }
    out = []
    for task, names in classes.items():
        if task in MULTI_HOT:
            out.append(np.array([name in values[task] for name in names], dtype=np.float32))
        else:
            out.append(np.array(names.index(values[task])))
    return out


class VisionProbe:
    """Heads on the vision tower's output tokens, mean- and max-pooled per time slice: a training signal
    for the encoder alone, the analogue of the contrastive/supervised pretraining of real VLM encoders.
    Pooling hides where a token is, so the encoder must put what it sees into the tokens themselves."""

    def __init__(self, model: Any, processor: Any, num_frames: int, seed: int) -> None:
        import torch

        self.model, self.processor = model, processor
        self.visual = model.model.visual
        self.classes = attribute_classes()
        self.sizes = [len(v) for v in self.classes.values()]
        vision = model.config.vision_config
        self.slices = -(-num_frames // vision.temporal_patch_size)
        self.dim = model.config.text_config.hidden_size
        torch.manual_seed(seed)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(2 * self.dim * self.slices, 256),
            torch.nn.GELU(),
            torch.nn.Linear(256, sum(self.sizes)),
        )

    def logits(self, frames: list[np.ndarray]):
        import torch

        inputs = self.processor.video_processor(videos=frames, return_tensors="pt", do_sample_frames=False)
        out = self.visual(inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"])
        tokens = getattr(out, "pooler_output", out)  # merged tokens, as the language model gets them
        tokens = tokens.reshape(len(frames), self.slices, -1, self.dim)
        pooled = torch.cat([tokens.mean(dim=2), tokens.amax(dim=2)], dim=-1).flatten(1)
        return self.head(pooled).split(self.sizes, dim=-1)

    def loss(self, frames: list[np.ndarray], targets: list[list[np.ndarray]]):
        import torch

        total, parts = 0.0, {}
        for task, logits, target in zip(
            self.classes, self.logits(frames), zip(*targets, strict=True), strict=True
        ):
            y = torch.from_numpy(np.stack(target))
            if task in MULTI_HOT:
                part = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            else:
                part = torch.nn.functional.cross_entropy(logits, y)
            parts[task] = float(part.detach())
            total = total + part
        return total, parts

    def accuracy(
        self, frames: list[np.ndarray], targets: list[list[np.ndarray]], batch: int = 50
    ) -> dict[str, float]:
        """Per task, the share of clips read exactly (multi-hot: every colour/shape present and no other)."""
        import torch

        hits = {task: 0 for task in self.classes}
        with torch.inference_mode():
            for start in range(0, len(frames), batch):
                chunk = targets[start : start + batch]
                for task, logits, target in zip(
                    self.classes,
                    self.logits(frames[start : start + batch]),
                    zip(*chunk, strict=True),
                    strict=True,
                ):
                    y = np.stack(target)
                    pred = (logits > 0).numpy() if task in MULTI_HOT else logits.argmax(dim=-1).numpy()
                    hits[task] += int(
                        (pred == y).all(axis=-1).sum() if task in MULTI_HOT else (pred == y).sum()
                    )
        return {task: round(n / max(len(frames), 1), 4) for task, n in hits.items()}


def train_vision(
    probe: VisionProbe,
    frames: list[np.ndarray],
    targets: list[list[np.ndarray]],
    cfg: PretrainVLMConfig,
    steps: int,
    log_path: Path,
    progress: bool,
) -> float | None:
    """AdamW one-cycle on the tower (merger included) and the probe heads; logs every 10 updates."""
    import torch
    from tqdm import tqdm

    params = [*probe.visual.parameters(), *probe.head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.vision_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.vision_lr, total_steps=max(steps, 2), pct_start=0.05
    )
    rng = np.random.default_rng([cfg.seed, 3])
    probe.visual.train()
    started, last = time.time(), None
    log_path.unlink(missing_ok=True)
    bar = tqdm(range(steps), desc="vision encoder", unit="update", disable=not progress)
    for step in bar:
        idx = rng.choice(len(frames), min(cfg.vision_batch_size, len(frames)), replace=False)
        loss, parts = probe.loss([frames[i] for i in idx], [targets[i] for i in idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        last = float(loss.detach())
        bar.set_postfix(loss=f"{last:.3f}", refresh=False)
        if step % 10 == 0 or step == steps - 1:
            record = {"step": step + 1, "loss": round(last, 5), **{k: round(v, 5) for k, v in parts.items()}}
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record | {"seconds": round(time.time() - started, 2)}) + "\n")
    probe.visual.eval()
    return last
