"""Models named by a Hub id: where their files lie in the local Hub cache, and why one did not load (the
library's own first line, or, offline, what to do)."""

from __future__ import annotations

from pathlib import Path


def hub_failure(model: str, exc: BaseException) -> str:
    """The reason to print when ``model`` failed to load: the library's first line, or for a Hub id with
    ``HF_HUB_OFFLINE`` set, that setting. Offline, diffusers' and transformers' own messages name a
    missing file or a revision ("does not appear to have a file named model_index.json"), not the
    setting that stopped the download; the user's next step is a download or a local directory. A local
    directory that fails keeps the library's reason (a missing weight file, a broken config); a path that
    does not exist and cannot be a Hub id (``./x``) is said to be missing, not to be downloaded.
    """
    from huggingface_hub import constants

    if not Path(model).expanduser().exists() and not can_be_hub_id(model):
        # A path that does not exist (./x, /data/x, a/b/c): not a download to make, whatever the setting
        return f"no such directory {model}, and not a Hub id like owner/name"
    if constants.HF_HUB_OFFLINE and not Path(model).expanduser().exists():  # a local model's own reason stays
        return (
            f"HF_HUB_OFFLINE is set and {model} is not in the Hub cache {constants.HF_HUB_CACHE}: download "
            f"it once where the Hub is reachable (`hf download {model}`), or pass a local directory"
        )
    first = str(exc).splitlines()[0] if str(exc).strip() else ""
    return first or type(exc).__name__


def can_be_hub_id(model: str) -> bool:
    """``model`` has the form of a Hub repository id (``owner/name``, or a legacy ``name``), as
    huggingface_hub validates it: ``./x``, ``/data/x``, ``~/x`` or ``a/b/c`` are paths, never ids."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def base_directory(model: str) -> Path | None:
    """The model's files: a local directory, or a Hub id's snapshot in the local Hub cache (the commit its
    ``main`` ref names, which a load without a revision resolved; its files are symlinks to the cache's
    blobs). None if neither (not cached, or not a Hub id). Never goes online."""
    if Path(model).is_dir():
        return Path(model)
    return found[1] if (found := _main_snapshot(model)) else None


def hub_commit(model: str) -> str | None:
    """The commit a Hub id resolves to in the local Hub cache: the one its ``main`` ref names, whose
    snapshot a load without a revision reads offline, or has just downloaded online. None for a local path,
    or an id with no snapshot of that commit in the cache. Never goes online."""
    if Path(model).expanduser().exists():
        return None
    return found[0] if (found := _main_snapshot(model)) else None


def _main_snapshot(model: str) -> tuple[str, Path] | None:
    """(commit, snapshot folder) of the commit a Hub id's ``main`` ref names in the local Hub cache, read from
    the ref alone (nothing hashed). Not huggingface_hub's ``snapshot_download(local_files_only=True)``: once
    an online download has cached the repository's tree listing, it calls a snapshot incomplete that lacks
    any file of the listing, and diffusers downloads only the files it loads."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    try:
        repo = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=model, repo_type="model")
        commit = (repo / "refs" / "main").read_text().strip()
    except (OSError, ValueError):  # not cached, or not a Hub id (HFValidationError, a missing path)
        return None
    snapshot = repo / "snapshots" / commit
    return (commit, snapshot) if commit and snapshot.is_dir() else None
