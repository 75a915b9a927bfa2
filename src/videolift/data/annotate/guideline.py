"""The rating guideline shown next to every button: what each label means on each dimension.

``create`` writes the default to ``DIR/guideline.yaml``; a lab edits that file to adapt the wording
(the server reads it at start). Dimensions and labels themselves are fixed by the HRA format.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from videolift.core.errors import DataError
from videolift.core.jsonl import atomic_write, read_yaml, validation_field
from videolift.core.schema import Dimension, Label
from videolift.data.lift_format import QUESTIONS

GUIDELINE_FILE = "guideline.yaml"


class DimensionGuide(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    question: str
    labels: dict[Label, str]


class Guideline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intro: str
    dimensions: dict[Dimension, DimensionGuide]
    skip_reasons: list[str]


DEFAULT = Guideline(
    intro=(
        "Watch the whole clip (it loops; step frame by frame with the arrow keys). Judge each dimension on its "
        "own. Good = no clear problem; Normal = minor problems, overall fine; Bad = major problems. For Normal "
        "and Bad, say in one or two sentences what is wrong, e.g. 'The panda is not wearing the spacesuit the "
        "caption asks for.'"
    ),
    dimensions={
        Dimension.semantic_consistency: DimensionGuide(
            title="Semantic consistency",
            question=QUESTIONS[Dimension.semantic_consistency],
            labels={
                Label.Good: "Shows what the text says: subject, count, colour, scene, style and action all match.",
                Label.Normal: "Mostly matches; a minor detail is missing or slightly off.",
                Label.Bad: "A main element is missing or wrong (subject, count, colour, scene or action).",
            },
        ),
        Dimension.motion_smoothness: DimensionGuide(
            title="Motion smoothness",
            question=QUESTIONS[Dimension.motion_smoothness],
            labels={
                Label.Good: "Movements are continuous, natural and physically plausible.",
                Label.Normal: "Small stutters or slightly unnatural motion that do not spoil the clip.",
                Label.Bad: "Jumps, dropped frames, objects teleporting or motion that breaks physics.",
            },
        ),
        Dimension.video_fidelity: DimensionGuide(
            title="Video fidelity",
            question=QUESTIONS[Dimension.video_fidelity],
            labels={
                Label.Good: "Realistic and clear: no blur, distortion or deformed parts.",
                Label.Normal: "Minor blur or artefacts; the content stays recognisable.",
                Label.Bad: "Heavy blur, distortion, missing limbs, deformed faces or hands.",
            },
        ),
    },
    skip_reasons=["Obscure or ambiguous prompt", "Video does not play", "Offensive content"],
)


def write_default(directory: Path) -> Path:
    path = directory / GUIDELINE_FILE
    with atomic_write(path) as handle:
        yaml.safe_dump(
            DEFAULT.model_dump(mode="json"), handle, sort_keys=False, allow_unicode=True, width=100
        )
    return path


def load(directory: Path) -> Guideline:
    path = directory / GUIDELINE_FILE
    if not path.exists():
        return DEFAULT
    try:
        guide = Guideline.model_validate(read_yaml(path) or {})
    except ValidationError as exc:
        field, msg = validation_field(exc)
        raise DataError(msg, file=path, field=field) from None
    missing = [d.value for d in Dimension if d not in guide.dimensions] + [
        f"{d.value}.{label.value}"
        for d, g in guide.dimensions.items()
        for label in Label
        if label not in g.labels
    ]
    if missing:
        raise DataError(f"missing guideline text for {', '.join(missing)}", file=path)
    return guide
