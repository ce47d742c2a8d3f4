"""Trained value models shipped inside the package (LoRA + head, a few MB each), so that
`mavis generate` and `mavis demo` work on a fresh machine.

They live in `mavis/assets/value_models/<objective>/` (or one shared folder whose
value_config.json lists several objectives), each with a PROVENANCE.md saying how it was made.
"""

from __future__ import annotations

import json
from pathlib import Path

from mavis.errors import MavisError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "value_models"


def bundled_value_models(reference: str = "smollm2-135m-instruct") -> dict[str, Path]:
    """Objective name -> folder of a bundled value model for `reference` (may be empty)."""
    found: dict[str, Path] = {}
    if not BUNDLED_DIR.exists():
        return found
    for config_path in sorted(BUNDLED_DIR.glob("*/value_config.json")):
        config = json.loads(config_path.read_text())
        if config.get("base") != reference:
            continue
        for name in config.get("objectives", []):
            found.setdefault(name, config_path.parent)
    return found


def parse_value_model_args(items: list[str]) -> dict[str, str]:
    """Parse repeated `--value-model NAME=PATH` options."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MavisError(f"cannot read --value-model {item!r}; write NAME=PATH, "
                             "e.g. --value-model harmless=runs/default/harmless")
        out[name.strip()] = path.strip()
    return out


def choose_value_models(reference: str, explicit: dict[str, str],
                        wanted: list[str]) -> list[str]:
    """Folders of the value models needed for the objectives in `wanted`: explicit paths first,
    then bundled ones; a clear error for an objective that has neither."""
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
