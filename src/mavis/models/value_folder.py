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

from mavis import checks
from mavis.errors import MavisError

CONFIG_NAME = "value_config.json"
ADAPTER_NAME = "adapter.safetensors"
BACKBONE_NAME = "backbone.safetensors"
HEAD_NAME = "head.safetensors"
CARD_NAME = "README.md"
# A bundled model's copy of its training run's report.json (validation figures, settings):
# named apart from report.json, which marks a run folder.
TRAINING_REPORT_NAME = "training.json"
BEST_DIR = "best"
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA adapter settings (the paper: r=128, alpha=256, dropout=0.2 on TinyLlama)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))

    def __post_init__(self) -> None:
        checks.whole("lora.r", self.r, low=1)
        checks.number("lora.alpha", self.alpha, low=0.0, low_open=True)
        checks.fraction("lora.dropout", self.dropout, high_open=True)
        checks.names("lora.target_modules", self.target_modules)


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

    def __post_init__(self) -> None:
        """Every field checked for its type and range (`SettingsError` names it): a config
        that reads as JSON but holds a string where a number belongs is refused here, not
        met as a TypeError later."""
        checks.text("base", self.base)
        checks.names("objectives", self.objectives)
        checks.optional_whole("num_layers", self.num_layers, low=1, none="all layers")
        if self.lora is not None and not isinstance(self.lora, LoraSettings):
            raise checks.SettingsError("lora", f"is {self.lora!r}; give LoRA settings or null")
        if not isinstance(self.tokenizer_fingerprint, str):
            raise checks.SettingsError("tokenizer_fingerprint", "must be text")
        for name, span in _mapping("value_range", self.value_range).items():
            if not isinstance(span, list | tuple) or len(span) != 2:
                raise checks.SettingsError(f"value_range.{name}", f"is {span!r}; give [low, high]")
            low = checks.number(f"value_range.{name}", span[0])
            checks.number(f"value_range.{name}", span[1], low=low)
        for name, scale in _mapping("value_scale", self.value_scale).items():
            checks.number(f"value_scale.{name}", scale, low=0.0)
        checks.whole("format_version", self.format_version, low=1)

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
        return cls(**data)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise checks.SettingsError(name, f"is {value!r}; give an object keyed by objective")
    return value


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
    except (TypeError, ValueError, MavisError) as exc:
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
    for path in files[1:]:
        problem = safetensors_problem(path)
        if problem:
            raise MavisError(f"{str(path)!r} is not a whole safetensors file ({problem}); the "
                             "value model is damaged: copy or train it again")
    return files


# A safetensors file: 8 bytes (little-endian header length N), N bytes of JSON naming each
# tensor's dtype, shape and byte span, then the tensors' bytes, exactly as many as the spans
# cover. Checked from the header alone, before any model loads.
_MAX_HEADER = 100_000_000


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with the safetensors file at `path` (truncated, garbage, a header that
    does not add up), or None when its header and size agree."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than its header"
        length = int.from_bytes(head, "little")
        if length > min(size - 8, _MAX_HEADER):
            return f"its header claims {length} bytes, the file has {size}"
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        span = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(span, list) and len(span) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
                and 0 <= span[0] <= span[1]):
            return f"tensor {name!r} has no valid byte span"
        end = max(end, span[1])
    if 8 + length + end != size:
        return f"its tensors need {8 + length + end} bytes, the file has {size}: truncated"
    return None


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
    if path.exists() and not path.is_dir():
        raise MavisError(f"{str(path)!r} is a file, not a value model folder or run folder")
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
