"""What the critic is asked and how its answers read, for both prompt layouts.

- ``per_dimension`` (LiFT's): one question per dimension; user text = caption, a space, the question;
  answer ``"<Label>. <reason>"``.
- ``one_pass``: one question for all dimensions; the answer has one line per dimension,
  ``"<Dimension title>: <Label>. <reason>"``. One generation per video instead of three.

Describe-then-rate (an extension, either layout): the critic first answers ``DESCRIBE_INSTRUCTION``
and every question's text carries that description between caption and question, so judging semantic
consistency becomes comparing two texts instead of binding what is seen to the caption in one step.
Check-then-rate (an extension, ``critic.checks``): the question's text carries the caption words a
check model would not have written for the video, after ``CHECK_PREFIX``.
"""

from __future__ import annotations

import re

from videolift.core.schema import Dimension, Label, format_answer, parse_answer
from videolift.data.lift_format import QUESTIONS

DEFAULT_QUESTIONS: dict[Dimension, str] = dict(QUESTIONS)

TITLES: dict[Dimension, str] = {
    Dimension.semantic_consistency: "Semantic consistency",
    Dimension.motion_smoothness: "Motion smoothness",
    Dimension.video_fidelity: "Video fidelity",
}

ONE_PASS_QUESTION = (
    "Rate this video on semantic consistency (does it show what the text says), motion smoothness (are "
    "movements continuous and physically plausible) and video fidelity (is the content realistic and "
    "clear). Answer one line per aspect as '<Aspect>: <Good, Normal or Bad>. <reason>'."
)

DESCRIBE_INSTRUCTION = "Describe the video."
CHECK_PREFIX = "Unexpected words:"


def user_text(caption: str, question: str, description: str | None = None, check: str | None = None) -> str:
    """Caption then question, as in the LiFT release's human turn; a description and a caption check
    (extensions) go between them, in that order."""
    parts = [caption.strip()]
    if description is not None:
        parts.append(f"The video shows: {description.strip()}")
    if check is not None:
        parts.append(f"{CHECK_PREFIX} {check.strip()}")
    return " ".join([*parts, question.strip()])


def one_pass_answer(ratings: dict[Dimension, tuple[Label | str, str]], dimensions: list[Dimension]) -> str:
    """One line per dimension: a reason typed over several lines (the rater's text box) is joined into
    one, or its later lines would read as another dimension's."""
    lines = []
    for d in dimensions:
        label, reason = ratings[d]
        one_line = " ".join(part.strip() for part in str(reason or "").splitlines() if part.strip())
        lines.append(f"{TITLES[d]}: {format_answer(label, one_line)}")
    return "\n".join(lines)


def _title_re(dim: Dimension) -> re.Pattern[str]:
    words = r"[\s_]+".join(re.escape(w) for w in TITLES[dim].split())
    return re.compile(rf"^[\s*_#>\-\"'`]*{words}[*_\"'`]*\s*[:\-\u2013\u2014]\s*", re.IGNORECASE)


_TITLE_RES = {d: _title_re(d) for d in Dimension}


def parse_one_pass(text: str, dimensions: list[Dimension]) -> dict[Dimension, tuple[Label | None, str]]:
    """Each dimension's (label, reason) from a one-pass answer. A dimension whose line is missing, or
    whose line has no leading label, is ``(None, "")`` / ``(None, line)``: unparsed, never a label. Lines
    that name no dimension continue the reason of the one before."""
    out: dict[Dimension, tuple[Label | None, str]] = {d: (None, "") for d in dimensions}
    last: Dimension | None = None
    for line in (text or "").splitlines():
        titled = [d for d in Dimension if _TITLE_RES[d].match(line)]
        if not titled and last is not None and line.strip():  # a wrapped reason goes on
            label, reason = out[last]
            out[last] = (label, f"{reason} {line.strip()}".strip())
            continue
        last = None  # a blank line, or any dimension's title (asked or not, again or not), ends it
        for dim in titled:
            if dim in out and out[dim] == (None, ""):
                out[dim], last = parse_answer(line[_TITLE_RES[dim].match(line).end() :]), dim
                break
    return out
