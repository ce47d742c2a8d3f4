"""The model card of a value-model folder: a README.md with YAML front matter, so that a folder
uploaded with `hf upload ORG/NAME runs/vm/best` (or `HfApi().upload_folder`) shows a reader what
it is, what it was trained for, how to use it and, when known, how it was trained.

The card is for people: mavis never reads it, and `value_model_fingerprint` does not hash it,
so writing it again (with the training figures once a run ends) makes no result stale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mavis.models.names import DEFAULT_MODEL, HUB_IDS
from mavis.models.value_folder import (
    ADAPTER_NAME,
    BACKBONE_NAME,
    CARD_NAME,
    CONFIG_NAME,
    HEAD_NAME,
    ValueModelConfig,
)
from mavis.paths import write_text_atomic

TAGS = ["mavis", "value-model", "reward-model", "multi-objective-alignment"]
REPO_PLACEHOLDER = "ORG/NAME"
_HUB_ID_SHAPE = r"[\w.-]+/[\w.-]+"


def base_model_id(base: str) -> str | None:
    """The hub id of a value model's backbone, for the card's `base_model`: a packaged model's
    source repo, a hub id as it is, None for a local folder (no id to point to)."""
    if base in HUB_IDS:
        return HUB_IDS[base]
    if re.fullmatch(_HUB_ID_SHAPE, base) and not base.startswith("."):
        return base
    return None


def front_matter(config: ValueModelConfig) -> dict[str, Any]:
    """The card's YAML metadata: library, tags, backbone and objectives."""
    meta: dict[str, Any] = {"library_name": "mavis", "tags": list(TAGS)}
    hub_base = base_model_id(config.base)
    if hub_base is not None:
        meta["base_model"] = hub_base
    meta["objectives"] = list(config.objectives)
    return meta


def model_card(config: ValueModelConfig, training: Mapping[str, Any] | None = None) -> str:
    """The README.md of a value model with `config`. `training`: what is known of how it was
    trained, optional and in the shape of a `mavis train`/`mavis distill` report.json (any of
    `config`, `data_file`, `data`, `best`, `steps`, `complete`, `seconds`, `teachers`)."""
    meta = yaml.safe_dump(front_matter(config), sort_keys=False, allow_unicode=True)
    names = ", ".join(config.objectives)
    lines = ["---", meta.rstrip("\n"), "---", "", f"# MAVIS value model: {names}", "",
             "A value model for MAVIS (multi-objective alignment via value-guided "
             "inference-time search), made with the `mavis` package. For a prompt and a partial "
             "answer it predicts, per objective, the reward the finished answer will get; at "
             "each decoding step MAVIS re-weights the reference model's top-k tokens by these "
             "values, with weights per objective chosen per request.", ""]
    lines += _architecture(config) + _objectives(config) + _usage(config)
    if training:
        lines += _training(training)
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, config: ValueModelConfig,
                     training: Mapping[str, Any] | None = None) -> Path:
    """Write (or replace, atomically) the model card of the value model in `folder`."""
    return write_text_atomic(Path(folder) / CARD_NAME, model_card(config, training))


def _architecture(config: ValueModelConfig) -> list[str]:
    hub_base = base_model_id(config.base)
    source = f" (from the hub: `{hub_base}`)" if hub_base not in (None, config.base) else ""
    layers = {None: "all its layers", 1: "its first layer"}.get(
        config.num_layers, f"its first {config.num_layers} layers")
    lines = ["## Model", "", f"- backbone: `{config.base}`{source}, cut to {layers}, without "
             "its language-model head"]
    if config.lora is not None:
        lora = config.lora
        lines.append(f"- a LoRA adapter on it (r={lora.r}, alpha={lora.alpha}, on "
                     f"{', '.join(lora.target_modules)}): `{ADAPTER_NAME}`")
    else:
        lines.append(f"- the whole backbone trained (no LoRA): `{BACKBONE_NAME}`")
    lines.append(f"- a linear head with one output per objective, read at the last token of "
                 f"prompt and answer: `{HEAD_NAME}`")
    lines.append(f"- `{CONFIG_NAME}`: the backbone recipe, the objectives, the value ranges and "
                 "scales" + (f", and the tokenizer's fingerprint "
                             f"(`{config.tokenizer_fingerprint}`): a reference model must have "
                             "the same vocabulary" if config.tokenizer_fingerprint else ""))
    if base_model_id(config.base) is None:
        lines.append(f"- the backbone is a local folder: the model loads only where "
                     f"`{config.base}` exists")
    return lines + [""]


def _objectives(config: ValueModelConfig) -> list[str]:
    lines = ["## Objectives", "", "| objective | value range (training targets) | value scale |",
             "| --- | --- | --- |"]
    for name in config.objectives:
        low_high = config.value_range.get(name)
        span = f"{low_high[0]:.4g} to {low_high[1]:.4g}" if low_high else "not recorded"
        scale = config.value_scale.get(name)
        lines.append(f"| `{name}` | {span} | {f'{scale:.4g}' if scale else 'not recorded'} |")
    return lines + ["", "The decoder clamps each value to its range and divides it by its scale "
                    "(the spread of the values of sibling nodes in the training trees), so that "
                    "one beta guides every objective about as strongly.", ""]


def _usage(config: ValueModelConfig) -> list[str]:
    names = config.objectives
    given = " ".join(f"--value-model {name}={REPO_PLACEHOLDER}" for name in names)
    weights = ",".join(f"{name}=1" for name in names)  # relative: normalised to sum 1
    model = "" if config.base == DEFAULT_MODEL else f" --model {config.base}"
    python_weights = ", ".join(f"{json.dumps(name)}: 1.0" for name in names)
    return ["## Use", "", f"With mavis installed, and `{REPO_PLACEHOLDER}` the repo this folder "
            "was uploaded to (the weights are relative: each request chooses its own):", "",
            "```bash",
            f'mavis generate "How do I keep basil alive?"{model} {given} --weights {weights}',
            "```", "", "```python", "from mavis import MavisDecoder",
            "",
            f'decoder = MavisDecoder.load("{config.base}", ["{REPO_PLACEHOLDER}"])',
            'out = decoder.generate(["How do I keep basil alive?"], '
            f"weights={{{python_weights}}}, seed=0)",
            "print(out[0].text)", "```", "",
            "`mavis evaluate`, `mavis pareto` and `mavis serve` take the same `--value-model`; "
            "the files are fetched once into the Hugging Face cache (`HF_HUB_OFFLINE=1` then "
            "uses the cached copy).", ""]


def _training(training: Mapping[str, Any]) -> list[str]:
    lines = ["## Training", ""]
    if training.get("teachers"):
        teachers = ", ".join(f"`{k}`={v}" for k, v in training["teachers"].items())
        lines.append(f"Distilled (`mavis distill`) from the teachers {teachers}.")
    else:
        lines.append("Trained on trees of answers (equation 6 targets) by `mavis train` or "
                     "a step of `mavis iterate`.")
    lines.append("")
    if training.get("data_file"):
        lines.append(f"- data: `{training['data_file']}`")
    if training.get("steps") is not None:
        done = {True: ", complete", False: ", stopped early"}.get(training.get("complete"), "")
        seconds = f", {training['seconds']:.0f} s" if training.get("seconds") else ""
        lines.append(f"- {training['steps']} steps{done}{seconds}")
    for key, title in (("data", "Training data"),
                       ("best", "Validation (held-out prompts' tree nodes, best checkpoint)"),
                       ("config", "Training settings")):
        if training.get(key):
            lines += ["", f"### {title}", "", "```json",
                      json.dumps(training[key], indent=2, default=str), "```"]
    return lines + [""]
