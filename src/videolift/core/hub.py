"""Why a model named by a Hub id did not load: the library's own first line, or, offline, what to do."""

from __future__ import annotations


def hub_failure(model: str, exc: BaseException) -> str:
    """The reason to print when ``model`` (not a local path) failed to load from the Hugging Face Hub.

    With ``HF_HUB_OFFLINE`` set, diffusers' and transformers' own messages name a missing file or a
    revision ("does not appear to have a file named model_index.json"), not the setting that stopped
    the download; the user's next step is a download or a local directory.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return (
            f"HF_HUB_OFFLINE is set and {model} is not in the Hub cache {constants.HF_HUB_CACHE}: download "
            f"it once where the Hub is reachable (`hf download {model}`), or pass a local directory"
        )
    first = str(exc).splitlines()[0] if str(exc).strip() else ""
    return first or type(exc).__name__
