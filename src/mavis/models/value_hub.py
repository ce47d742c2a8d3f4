"""Value models on the Hugging Face hub: what a user gives for a value model (a folder, or a hub
id `org/name`, optionally `org/name@revision`) becomes a local value-model folder.

A hub id is fetched with `huggingface_hub.snapshot_download` into huggingface_hub's own cache
(`HF_HOME`, `HF_HUB_CACHE`), and only the files a value model is made of (`value_config.json`,
its weights and head: never the repo's other files), in one call: one look-up of the revision,
so that an unreachable hub falls back to the cache at once. Offline (`HF_HUB_OFFLINE=1`) the
cached copy is used. The folder returned is the cached snapshot, so `value_model_fingerprint`
of it is that of the folder that was uploaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from mavis.errors import MavisError
from mavis.models.value_folder import (
    CONFIG_NAME,
    VALUE_MODEL_FILE_NAMES,
    read_value_config,
    value_model_file_names,
)
from mavis.progress import status

_HUB_ID = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<revision>.+))?")


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) of `spec` when it is shaped like a hub model id
    (`org/name` or `org/name@revision`), else None (then it can only be a local path)."""
    match = _HUB_ID.fullmatch(spec)
    if match is None or spec.startswith((".", "~")):
        return None
    try:
        validate_repo_id(match["repo"])
    except HFValidationError:
        return None
    return match["repo"], match["revision"]


def value_model_folder(spec: str | Path) -> str:
    """The local folder of the value model `spec` names.

    A path that exists (and any `Path`) is a folder, returned as given; a string shaped like
    a hub id (`parse_hub_id`) that is no local path is fetched from the hub (or found in its
    cache) and its snapshot folder returned; anything else is returned as given, for
    `read_value_config` to say that it does not exist. A MavisError names the id and the fix."""
    text = str(spec)
    if isinstance(spec, Path) or Path(text).expanduser().exists():
        return text
    parsed = parse_hub_id(text)
    if parsed is None:
        return text
    repo, revision = parsed
    what = f"{text!r} is not a local folder, and the Hugging Face hub model {repo!r}"
    folder = _download(repo, revision, list(VALUE_MODEL_FILE_NAMES), what)
    if not (folder / CONFIG_NAME).is_file():
        raise MavisError(f"the Hugging Face hub model {repo!r} is not a mavis value model (it "
                         f"has no {CONFIG_NAME}); give the id of a repo uploaded from a "
                         "`mavis train` output's best/ folder, or a local value model folder")
    names = value_model_file_names(read_value_config(folder))
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        fix = ("the cache holds only part of it: download it once online, or set "
               "HF_HUB_OFFLINE=0" if constants.HF_HUB_OFFLINE else
               "upload the whole value model folder to it again (or, if the hub could not be "
               "reached, fetch it once where it can)")
        raise MavisError(f"the Hugging Face hub model {repo!r} lacks {', '.join(missing)}; "
                         f"{fix}")
    return str(folder)


def _download(repo: str, revision: str | None, names: list[str], what: str) -> Path:
    """The snapshot folder of `repo` at `revision` holding (at most) the files `names` (a repo
    holds the weights of a LoRA value model or of a whole backbone, not both)."""
    try:
        if constants.HF_HUB_OFFLINE:
            return Path(_snapshot(repo, revision, names))
        with status(f"fetching the value model {repo} from the Hugging Face hub (cached in "
                    f"{constants.HF_HUB_CACHE})"):
            return Path(_snapshot(repo, revision, names))
    except GatedRepoError:
        raise MavisError(f"{what} is gated: accept its conditions on huggingface.co and log "
                         "in with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise MavisError(f"{what} does not exist (or is private: log in with `hf auth "
                         "login`); check the path or the id") from None
    except RevisionNotFoundError:
        raise MavisError(f"{what} has no revision {revision!r}; give a branch, tag or commit "
                         "after '@', or none for main") from None
    except LocalEntryNotFoundError as exc:
        raise MavisError(_not_cached(what, exc)) from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MavisError(f"{what} could not be fetched ({first}); try again") from None


def _snapshot(repo: str, revision: str | None, names: list[str]) -> str:
    return snapshot_download(repo, repo_type="model", revision=revision, allow_patterns=names,
                             library_name="mavis")


def _not_cached(what: str, exc: LocalEntryNotFoundError) -> str:
    where = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        return (f"{what} is not in the Hugging Face cache ({where}) while offline "
                "(HF_HUB_OFFLINE=1): download it once online, or set HF_HUB_OFFLINE=0")
    cause = exc.__cause__ or exc
    first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return (f"{what} could not be reached ({first}) and is not in the Hugging Face cache "
            f"({where}): check the connection, or download it once where the hub is reachable")
