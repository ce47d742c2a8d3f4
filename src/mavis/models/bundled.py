"""Trained value models shipped inside the package (LoRA + head, a few MB each), so that
`mavis generate` and `mavis demo` work on a fresh machine.

They live in `mavis/assets/value_models/<name>/` (one folder per value model; a folder's
value_config.json lists the objectives it has heads for), each with a PROVENANCE.md written by
`mavis bundle` saying how it was made.
"""

from __future__ import annotations

from pathlib import Path

from mavis.errors import MavisError
from mavis.models.names import DEFAULT_MODEL
from mavis.models.value_folder import CONFIG_NAME, read_value_config, value_model_files
from mavis.models.value_hub import value_model_folder

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "value_models"


def bundled_value_models(reference: str = DEFAULT_MODEL) -> dict[str, Path]:
    """Objective name -> folder of a bundled value model for `reference` (may be empty)."""
    found: dict[str, Path] = {}
    for config_path in sorted(BUNDLED_DIR.glob(f"*/{CONFIG_NAME}")):
        config = read_value_config(config_path.parent)
        if config.base != reference:
            continue
        for name in config.objectives:
            found.setdefault(name, config_path.parent)
    return found


def choose_value_models(reference: str, explicit: dict[str, str], wanted: list[str],
                        known: list[str] | None = None) -> list[str]:
    """Folders of the value models needed for the objectives in `wanted`: explicit ones first
    (each a folder or a hub id `org/name[@revision]`, fetched into the Hugging Face cache: see
    `value_model_folder`), then bundled ones; a clear error for an objective that has neither.
    Every explicit value model is checked, used or not: its name must be one of `known`
    (default: `wanted`), the objectives the command was given, and its folder must hold a model
    for that objective, so that a typo never goes unnoticed."""
    known = list(wanted if known is None else known)
    explicit = checked_value_models(explicit, known)
    bundled = bundled_value_models(reference)
    folders: list[str] = []
    for name in wanted:
        folder = explicit.get(name) or (str(bundled[name]) if name in bundled else None)
        if folder is None:
            have = sorted(set(explicit) | set(bundled))
            raise MavisError(
                f"no value model for objective {name!r}: pass --value-model {name}=PATH "
                f"(train one with `mavis iterate recipes/default.yaml`); available: "
                f"{', '.join(have) or 'none'}")
        if folder not in folders:
            folders.append(folder)
    return folders


def checked_value_models(explicit: dict[str, str], known: list[str]) -> dict[str, str]:
    """`--value-model NAME=FOLDER_OR_HUB_ID` pairs as local folders, each checked: its name is
    one of `known` (checked for all before anything is fetched), its folder holds a complete
    value model with a head for that name."""
    for name in explicit:
        if name not in known:
            raise MavisError(f"--value-model {name}=... names an objective this command does "
                             f"not use (it uses: {', '.join(known) or 'none'}); check the name")
    folders = {}
    for name, given in explicit.items():
        folder = value_model_folder(given)
        config = read_value_config(folder)
        value_model_files(folder, config)
        if name not in config.objectives:
            raise MavisError(f"--value-model {name}={given}: that value model has heads for "
                             f"{', '.join(config.objectives)}, not {name!r}")
        folders[name] = folder
    return folders
