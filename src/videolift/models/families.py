"""Which T2V family serves a model: one registry line per family, found from model_index.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolift.core.errors import UsageError, VideoliftError
from videolift.core.jsonl import read_json
from videolift.models.base import DiffusersT2VSpec, not_a_pipeline
from videolift.models.cogvideox import CogVideoXSpec
from videolift.models.ltx import LTXSpec
from videolift.models.wan import WanSpec

SPECS: dict[str, type[DiffusersT2VSpec]] = {"cogvideox": CogVideoXSpec, "wan": WanSpec, "ltx": LTXSpec}


def get_spec(family: str = "cogvideox") -> DiffusersT2VSpec:
    try:
        return SPECS[family]()
    except KeyError:
        raise UsageError(f"unknown T2V family {family!r}; known: {', '.join(SPECS)}") from None


def _hub_config(model: str, component: str | None, local_files_only: bool = False) -> dict:
    """A Hub id's model_index.json (``component`` None) or a component's config.json, through diffusers
    (its cache, the Hub)."""
    from diffusers import DiffusionPipeline, ModelMixin

    if component is None:
        return load_config(DiffusionPipeline, model, local_files_only=local_files_only)
    return load_config(ModelMixin, model, subfolder=component, local_files_only=local_files_only)


def load_config(owner: Any, model: str, **kwargs: Any) -> dict:
    """``owner.load_config(model, **kwargs)``: the config of a diffusers pipeline or model class (a local
    directory's, a Hub id's from its cache or the Hub)."""
    import warnings

    with warnings.catch_warnings():  # diffusers' own call passes an argument huggingface_hub deprecated
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks", category=UserWarning)
        return owner.load_config(model, **kwargs)


def pipeline_class_of(model: str) -> str:
    """``_class_name`` of a pipeline's model_index.json: a local directory, or fetched from the Hub."""
    local = Path(model)
    if local.exists():
        index = local / "model_index.json"
        if not index.exists():
            raise not_a_pipeline(model)
        try:
            # diffusers' own file: read as diffusers reads it (a repeated key's last value)
            return str(read_json(index, last_of_repeated_keys=True)["_class_name"])
        except (ValueError, KeyError, TypeError, VideoliftError):
            raise VideoliftError(f"{index}: not a diffusers model_index.json (no _class_name)") from None
    from videolift.core.hub import hub_failure

    try:
        return str(_hub_config(model, None)["_class_name"])
    except Exception as exc:  # offline, unknown repo, or no model_index.json
        from huggingface_hub import constants

        # Offline, --family would only move the same failure to the pipeline's load.
        hint = "" if constants.HF_HUB_OFFLINE else "; pass --family to name the model family"
        raise VideoliftError(
            f"cannot read the model index of {model!r}: not a local pipeline directory and not "
            f"reachable on the Hub ({hub_failure(model, exc)}){hint}"
        ) from None


def check_guidance_2(
    model: str, family: str | None, guidance_2: float | None, option: str = "--guidance"
) -> None:
    """``--guidance-2`` (``option``-2) refused for a one-transformer model before it loads, where its index
    can be read (loading it checks again); VideoliftError."""
    if guidance_2 is not None and (index := model_index(model)) is not None:
        spec_for(model, family).check_guidance_2(index, guidance_2, option)


def model_index(model: str) -> dict | None:
    """A pipeline's model_index.json: a local directory's, or a Hub id's — from the local cache, else
    fetched (loading the model fetches it first anyway; with ``--family`` nothing has yet); None where
    unreadable (loading the model reports why)."""
    return _pipeline_config(model, None)


def component_config(model: str, name: str) -> dict | None:
    """The config.json of a pipeline's component ``name``, read as ``model_index`` reads the index."""
    return _pipeline_config(model, name)


def _pipeline_config(model: str, component: str | None) -> dict | None:
    """``model``'s model_index.json (``component`` None) or its component's config.json: a local
    directory's, or a Hub id's from its cache, else fetched unless offline; None where unreadable."""
    try:
        if Path(model).exists():
            config = read_json(  # as diffusers reads it, as a Hub id's below is
                Path(model) / (f"{component}/config.json" if component else "model_index.json"),
                last_of_repeated_keys=True,
            )
        else:
            from huggingface_hub import constants

            try:
                config = _hub_config(model, component, local_files_only=True)
            except Exception:
                if constants.HF_HUB_OFFLINE:
                    raise
                config = _hub_config(model, component)
    except Exception:  # a missing or bad file, offline, an unknown repo
        return None
    return dict(config) if isinstance(config, dict) else None


def detect_family(model: str) -> str:
    """The family whose pipeline class ``model`` was saved with."""
    name = pipeline_class_of(model)
    for family, spec in SPECS.items():
        if spec.pipeline_class == name:
            return family
    known = ", ".join(f"{s.pipeline_class} ({f})" for f, s in SPECS.items())
    raise VideoliftError(f"{model}: pipeline class {name} is not supported; videolift knows {known}")


def spec_for(model: str, family: str | None = None) -> DiffusersT2VSpec:
    """The spec of ``family``, or of the family detected from the model when it is None. A local model
    saved with another family's pipeline class is refused (it failed deep inside diffusers); one saved
    with a class no family knows is the family's to load."""
    if family is None:
        return get_spec(detect_family(model))
    spec = get_spec(family)
    known = {s.pipeline_class for s in SPECS.values()}  # another class than these: --family decides
    if Path(model).exists() and (saved := pipeline_class_of(model)) in known - {spec.pipeline_class}:
        raise VideoliftError(
            f"{model} is a {saved}, not a {spec.pipeline_class}: --family {family} does not fit it "
            "(leave --family out: it is read from model_index.json)"
        )
    return spec
