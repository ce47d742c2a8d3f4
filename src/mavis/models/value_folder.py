"""A value model is a folder; this module is the one place that knows what is in it.

    value_config.json     the backbone recipe (base model, layers kept, LoRA settings), the
                          objective names, the tokenizer fingerprint, and per objective the
                          value range and scale seen in training
    adapter.safetensors   LoRA weights (a model trained with LoRA), or
    backbone.safetensors  the whole backbone (a model trained without LoRA)
    head.safetensors      the regression head
    README.md             the model card (`mavis.models.model_card`): what the model is, how
                          to use it, how it was trained; for people, not read by mavis

A training run keeps its best model in `RUN_DIR/best` (one value model for all its
objectives) or `RUN_DIR/<objective>/best` (one run per objective); `find_value_model` finds
the model for some objectives given either a model folder or a run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mavis.errors import MavisError

CONFIG_NAME = "value_config.json"
ADAPTER_NAME = "adapter.safetensors"
BACKBONE_NAME = "backbone.safetensors"
HEAD_NAME = "head.safetensors"
CARD_NAME = "README.md"
BEST_DIR = "best"
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA adapter settings (the paper: r=128, alpha=256, dropout=0.2 on TinyLlama)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclass
class ValueModelConfig:
    """The content of `value_config.json`.

    value_range: per objective, [min, max] of the training targets (the decoder clamps to it).
    value_scale: per objective, the typical difference between the values of sibling nodes in
        the training data (the standard deviation of sibling target differences); the decoder
        divides values by it so that one beta means the same for every objective. Models saved
        without it are tilted by raw values.
    """

    base: str
    objectives: list[str]
    num_layers: int | None = None
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    tokenizer_fingerprint: str = ""
    value_range: dict[str, list[float]] = field(default_factory=dict)
    value_scale: dict[str, float] = field(default_factory=dict)
    format_version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueModelConfig:
        """Build from parsed JSON; a TypeError or ValueError says what does not fit."""
        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        if data.get("lora") is not None:
            if not isinstance(data["lora"], dict):
                raise ValueError("'lora' must be an object or null")
            data["lora"] = LoraSettings(**data["lora"])
        config = cls(**data)
        if not isinstance(config.objectives, list) or not config.objectives or not all(
                isinstance(name, str) for name in config.objectives):
            raise ValueError("'objectives' must be a non-empty list of names")
        if not isinstance(config.base, str) or not config.base:
            raise ValueError("'base' must name the backbone model")
        return config


def read_value_config(folder: str | Path) -> ValueModelConfig:
    """The config of the value model in `folder`; a MavisError names what is wrong."""
    folder = Path(folder).expanduser()
    hint = "train one with `mavis train`, or point to a folder holding value_config.json"
    if not folder.exists():
        raise MavisError(f"value model folder {str(folder)!r} does not exist; {hint}")
    if not folder.is_dir():
        raise MavisError(f"{str(folder)!r} is a file, not a value model folder; {hint}")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise MavisError(f"{str(folder)!r} is not a mavis value model folder (no "
                         f"{CONFIG_NAME}); {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MavisError(f"{str(path)!r} is not valid JSON ({exc}); the value model is "
                         "damaged: copy or train it again") from None
    if not isinstance(data, dict):
        raise MavisError(f"{str(path)!r} holds a JSON {type(data).__name__}, not an object; "
                         "the value model is damaged: copy or train it again")
    try:
        return ValueModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise MavisError(f"{str(path)!r} is not a value model config ({exc}); copy or train "
                         "the value model again") from None


# every file a value model may be made of; `value_model_file_names` says which three it is
VALUE_MODEL_FILE_NAMES = (CONFIG_NAME, ADAPTER_NAME, BACKBONE_NAME, HEAD_NAME)


def value_model_file_names(config: ValueModelConfig) -> list[str]:
    """The names of the files a value model with `config` is made of (its config, weights and
    head; not its model card)."""
    weights = ADAPTER_NAME if config.lora is not None else BACKBONE_NAME
    return [CONFIG_NAME, weights, HEAD_NAME]


def value_model_files(folder: str | Path, config: ValueModelConfig | None = None) -> list[Path]:
    """The files that make up the value model in `folder` (each checked to exist)."""
    folder = Path(folder).expanduser()
    config = config or read_value_config(folder)
    files = [folder / name for name in value_model_file_names(config)]
    for path in files:
        if not path.is_file():
            raise MavisError(f"value model folder {str(folder)!r} lacks {path.name}; it was "
                             "not saved completely: copy or train it again")
    return files


def value_model_fingerprint(folder: str | Path) -> str:
    """A digest of the contents of the value model's files: the same for a copy of the folder,
    different once the model is trained again or its config changes (results computed with
    it are then stale). Only `value_model_files` count: the model card (README.md) and a
    bundle's PROVENANCE.md can be rewritten without making any result stale."""
    digest = hashlib.sha256()
    for path in sorted(value_model_files(folder)):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def run_folder_name(objective: str) -> str:
    """A folder name for an objective's training run: its name with anything but letters,
    digits, '.', '-' and '_' replaced (names like "python:/path/f.py:fn" hold '/' and ':')."""
    return re.sub(r"[^\w.-]+", "_", objective).strip("._") or "objective"


def find_value_model(path: str | Path, objectives: list[str]) -> Path:
    """The value-model folder for `objectives`: `path` itself, `path/best`, or (one objective)
    `path/<objective>/best` or `path/<objective>`, the first that holds a model with a head for
    every name in `objectives`."""
    path = Path(path).expanduser()
    candidates = [path, path / BEST_DIR]
    if len(objectives) == 1:
        folder = run_folder_name(objectives[0])
        candidates += [path / folder / BEST_DIR, path / folder]
    for candidate in candidates:
        if (candidate / CONFIG_NAME).exists():
            config = read_value_config(candidate)
            missing = [name for name in objectives if name not in config.objectives]
            if missing:
                raise MavisError(f"the value model {str(candidate)!r} has no head for "
                                 f"{', '.join(missing)}; it has {', '.join(config.objectives)}")
            return candidate
    raise MavisError(f"{str(path)!r} holds no value model (looked for {CONFIG_NAME} in "
                     + ", ".join(str(c) for c in candidates) + ")")


def copy_value_model(source: str | Path, target: str | Path,
                     extra_files: dict[str, str] | None = None) -> Path:
    """Copy the files of the value model in `source` and its model card (plus `extra_files`:
    name -> text, which replace files of the same name) into the folder `target`, replacing it
    whole: written beside it, then renamed, so a crash never leaves half a model."""
    target = Path(target).expanduser()
    files = value_model_files(source)
    card = Path(source).expanduser() / CARD_NAME
    files += [card] if card.is_file() and CARD_NAME not in (extra_files or {}) else []
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, staging / path.name)
    for name, text in (extra_files or {}).items():
        (staging / name).write_text(text)
    replace_folder(staging, target)
    return target


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder `staging` onto `target` (the old one removed after)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
