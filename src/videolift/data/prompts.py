"""Prompt sets of the kind LiFT-HRA rates (subjects, actions, places), and optional LM expansion.

A prompt joins 1-2 subjects (people, animals), one action (easy, difficult) and one place (real,
imagined): "A chef and a red fox juggling three oranges inside a piano floating in a soap bubble."
The phrases live in editable data files ``prompt_categories/<slot>_<category>.txt`` (slots:
subjects, actions, places); a file added there is a new category. Each record keeps the phrases
and categories it was built from.

``expand_prompts`` rewrites short prompts into detailed CogVideoX-style descriptions with any
transformers chat LM (the idea of CogVideoX's prompt upsampling).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videolift.core.errors import DataError, UsageError, VideoliftError
from videolift.core.jsonl import read_text, split_lines

CATEGORY_DIR = Path(__file__).with_name("prompt_categories")
SLOTS = ("subjects", "actions", "places")

EXPAND_SYSTEM_PROMPT = (
    "You turn short video ideas into prompts for a text-to-video model. Given a short prompt, write "
    "one paragraph of 50 to 100 words in English that describes the video as a film director would: "
    "the subjects and their appearance, exactly what they do and how they move, the setting, the "
    "lighting and the camera. Keep every subject, count, colour, action and place of the short prompt; "
    "add detail, never change its meaning. Write only the description, with no preamble, no quotes "
    "and no lists."
)


@dataclass(frozen=True)
class Categories:
    """slot -> category -> phrases, e.g. ``phrases["places"]["imagined"]``."""

    phrases: dict[str, dict[str, list[str]]]
    source: Path


def load_categories(directory: str | Path | None = None) -> Categories:
    """Read ``<slot>_<category>.txt`` files (one phrase per line, ``#`` comments) from ``directory``."""
    directory = Path(directory) if directory is not None else CATEGORY_DIR
    if directory.exists() and not directory.is_dir():  # a file given for it was said to be "not found"
        raise DataError(
            "not a directory (categories are a directory of <slot>_<category>.txt files)", file=directory
        )
    if not directory.is_dir():
        raise DataError("category directory not found", file=directory)
    phrases: dict[str, dict[str, list[str]]] = {slot: {} for slot in SLOTS}
    for path in sorted(directory.glob("*.txt")):
        slot, _, category = path.stem.partition("_")
        if slot not in SLOTS or not category:
            continue
        lines = split_lines(read_text(path))  # a byte-order mark dropped, a bad byte named
        items = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not items:
            raise DataError("category file has no phrases", file=path)
        phrases[slot][category] = items
    for slot in SLOTS:
        if not phrases[slot]:
            raise DataError(
                f"no {slot}_<category>.txt file (need one for each of {', '.join(SLOTS)})", file=directory
            )
    return Categories(phrases, directory)


def compose(subjects: list[str], action: str, place: str) -> str:
    """``["a chef", "a fox"], "juggling", "in a field"`` -> "A chef and a fox juggling in a field." """
    text = f"{' and '.join(subjects)} {action} {place}".strip()
    text = re.sub(r"\s+", " ", text)
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def prompt_key(prompt: str) -> str:
    """What makes two prompts the same one: compared regardless of case, spacing and a final full stop
    ("A cat jumps." is "a cat  jumps" and "A CAT JUMPS ."). `prompts sample --exclude` and `hra split
    --group-by prompt` both tell prompts apart by it."""
    return re.sub(r"[\s.]+$", "", " ".join(prompt.casefold().split()))


def sample_prompts(
    n: int,
    seed: int = 0,
    categories: Categories | None = None,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``n`` distinct prompts: a category uniformly per slot, then a phrase uniformly within it.

    Prompts in ``exclude`` are never drawn (held-out prompts apart from the training ones), compared
    regardless of case, spacing and a final full stop.
    """
    if n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    categories = categories or load_categories()
    distinct = {slot: {x for phrases in categories.phrases[slot].values() for x in phrases} for slot in SLOTS}
    subjects = len(distinct["subjects"])
    capacity = subjects * subjects * len(distinct["actions"]) * len(distinct["places"])  # one or two subjects
    if n > capacity:  # said at once, not after 50 x n draws
        raise VideoliftError(
            f"--n {n}: the categories in {categories.source} hold at most {capacity:,} distinct prompts; "
            "add phrases or ask for fewer"
        )
    rng = random.Random(seed)
    excluded = {prompt_key(p) for p in exclude}

    def draw(slot: str) -> tuple[str, str]:
        category = rng.choice(sorted(categories.phrases[slot]))
        return category, rng.choice(categories.phrases[slot][category])

    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(50 * n):  # bounded: a small category set may not hold n distinct prompts
        if len(records) == n:
            break
        subjects = [draw("subjects") for _ in range(rng.randint(1, 2))]
        if len(subjects) == 2 and subjects[0][1] == subjects[1][1]:
            continue
        action, place = draw("actions"), draw("places")
        prompt = compose([s for _, s in subjects], action[1], place[1])
        if prompt in seen or prompt_key(prompt) in excluded:
            continue
        seen.add(prompt)
        records.append(
            {
                "prompt": prompt,
                "subjects": [s for _, s in subjects],
                "action": action[1],
                "place": place[1],
                "categories": {
                    "subjects": [c for c, _ in subjects],
                    "action": action[0],
                    "place": place[0],
                },
            }
        )
    if len(records) < n:
        apart = f" not among the {len(exclude):,} excluded" if exclude else ""
        raise VideoliftError(
            f"--n {n}: the categories in {categories.source} gave only {len(records)} distinct prompts{apart}; "
            "add phrases or ask for fewer"
        )
    return records


# ---- expansion with a chat LM ----------------------------------------------------------------------


def expansion_messages(short_prompt: str, system_prompt: str = EXPAND_SYSTEM_PROMPT) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": f"Short prompt: {short_prompt}\nDetailed video description:"},
    ]


def clean_expansion(text: str) -> str:
    """One line without wrapping quotes, a markdown heading's '#'s or a leading 'Description:' label."""
    text = re.sub(r"\s+", " ", text).strip()
    # A chat LM may answer "## Description: ..."; written to a .txt prompt file, a line starting with
    # '#' would be read back as a comment (prompt_files.read_prompts) and its prompt lost.
    text = re.sub(r"^#+\s*", "", text)
    text = re.sub(r"^(detailed )?(video )?description\s*:\s*", "", text, flags=re.IGNORECASE)
    return text.strip().strip("\"'").strip()


def load_chat_lm(model: str, *, device: str = "auto", dtype: str = "auto"):
    """(tokenizer, model) of a transformers causal chat LM: a local directory or a Hub id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from videolift.models.base import resolve_dtype

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=resolve_dtype(dtype))
    except (OSError, ValueError) as exc:
        from videolift.core.hub import hub_failure

        # Offline, transformers says only that it "couldn't connect": hub_failure names HF_HUB_OFFLINE and the fix
        raise VideoliftError(
            f"--expand-with {model}: cannot load a causal chat LM ({hub_failure(model, exc)})"
        ) from None
    if not tokenizer.chat_template:
        raise VideoliftError(
            f"--expand-with {model}: the tokenizer has no chat template; use an instruct model"
        )
    tokenizer.padding_side = "left"  # batched generation continues every row from its end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, lm.to(device).eval()


def expand_prompts(
    prompts: list[str],
    model: str,
    *,
    system_prompt: str = EXPAND_SYSTEM_PROMPT,
    batch_size: int = 8,
    max_new_tokens: int = 200,
    temperature: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = True,
) -> list[str | None]:
    """Detailed descriptions of ``prompts``, in order; None where the LM produced nothing usable."""
    import torch
    from tqdm.auto import tqdm

    tokenizer, lm = load_chat_lm(model, device=device, dtype=dtype)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    results: list[str | None] = []
    with tqdm(total=len(prompts), unit="prompt", desc="expand", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            chats = [
                tokenizer.apply_chat_template(
                    expansion_messages(p, system_prompt), tokenize=False, add_generation_prompt=True
                )
                for p in batch
            ]
            inputs = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(
                lm.device
            )
            with torch.no_grad():
                output = lm.generate(
                    **inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
                )
            texts = tokenizer.batch_decode(
                output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
            results.extend(clean_expansion(t) or None for t in texts)
            bar.update(len(batch))
    return results
