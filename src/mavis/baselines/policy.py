"""Fine-tuned baseline policies on disk: a LoRA adapter on the reference model plus a small
`policy.json` that says what it is.

A policy folder holds
    adapter_config.json, adapter_model.safetensors   the LoRA adapter (peft `save_pretrained`)
    policy.json   {"kind": "morlhf" | "rewarded-soup", "reference": <model name or path>,
                   "weights": {objective: lambda}, ...what made it (settings, steps, parents)}

The reference is stored as the user gave it (a packaged name, a folder or a hub id), so that
`load_policy` loads the same base model the adapter was trained on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm, quiet_libraries
from mavis.paths import write_text_atomic

POLICY_FILE = "policy.json"
FORMAT_VERSION = 1


def write_policy_info(folder: str | Path, info: dict[str, Any]) -> Path:
    """Write `policy.json` atomically (written last, it marks a complete policy folder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(folder / POLICY_FILE, json.dumps(
        {"format_version": FORMAT_VERSION, **info}, indent=2) + "\n")


def read_policy_info(folder: str | Path) -> dict[str, Any]:
    """The `policy.json` of a policy folder; a clear error when the folder is not one."""
    path = Path(folder).expanduser() / POLICY_FILE
    if not path.exists():
        raise MavisError(f"{str(folder)!r} is not a finished baseline policy (no {POLICY_FILE}); "
                         "train one with train_morlhf or build one with soup(..., out_dir=...)")
    info = json.loads(path.read_text())
    if "reference" not in info:
        raise MavisError(f"{path} names no reference model")
    return info


def save_policy(model: Any, folder: str | Path, info: dict[str, Any]) -> Path:
    """Save a peft model's active adapter to `folder`, then its `policy.json`."""
    folder = Path(folder)
    model.save_pretrained(str(folder))
    write_policy_info(folder, info)
    return folder


def load_policy(folder: str | Path, *, dtype: torch.dtype | str | None = None,
                device: str | None = None
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a policy folder as one plain causal LM: its reference model with the adapter merged
    into the weights (no adapter overhead at inference), in eval mode, and the tokenizer."""
    info = read_policy_info(folder)
    model, tokenizer = load_causal_lm(info["reference"], dtype=dtype, device=device)
    return merged_policy(folder, model), tokenizer


def policy_on(folder: str | Path, base: PreTrainedModel) -> PreTrainedModel:
    """The policy of `folder` built on `base`, its reference model already loaded (for one:
    the reference of a `MavisDecoder`): a copy of `base` with the adapter merged, in eval mode;
    `base` itself is left as it is. Saves loading the reference again for every policy."""
    read_policy_info(folder)
    return merged_policy(folder, copy.deepcopy(base))


def merged_policy(folder: str | Path, model: PreTrainedModel) -> PreTrainedModel:
    """`model` (a fresh copy of the reference) with the adapter of `folder` merged in."""
    with quiet_libraries():
        model = PeftModel.from_pretrained(model, str(Path(folder).expanduser()))
        model = model.merge_and_unload()
    model.eval()
    return model
