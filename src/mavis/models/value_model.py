"""Value models: a causal-LM backbone (optionally cut to its first N layers, no LM head) with a
linear regression head, one output per objective, read at the last real token.

MAVIS needs V_m(s) for every objective m; `Q_m(s, a) = V_m(s + a)`. A value model trained for
one objective has one head output; a distilled (or jointly trained) model has one per objective
on a shared backbone, which halves decoding cost at M = 2. A saved value model is a small
folder (see `mavis.models.value_folder`); for the default backbone it is a few MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mavis.errors import MavisError
from mavis.models.cache import model_forward
from mavis.models.loading import load_backbone, load_tokenizer, tokenizer_fingerprint
from mavis.models.masks import positions_from_mask
from mavis.models.model_card import write_model_card
from mavis.models.value_folder import (
    ADAPTER_NAME,
    BACKBONE_NAME,
    CONFIG_NAME,
    HEAD_NAME,
    LoraSettings,
    ValueModelConfig,
    read_value_config,
    replace_folder,
    value_model_files,
)
from mavis.models.value_hub import value_model_folder


class ValueModel(nn.Module):
    """Backbone + regression head. `forward` returns values at every position: [B, T, M]."""

    def __init__(self, backbone: nn.Module, config: ValueModelConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, len(config.objectives))
        nn.init.normal_(self.head.weight, std=1.0 / hidden)
        nn.init.zeros_(self.head.bias)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def build(cls, base: str, objectives: list[str] | str, *, num_layers: int | None = None,
              lora: LoraSettings | None = None, attn_implementation: str = "sdpa",
              dtype: torch.dtype = torch.float32) -> ValueModel:
        """A fresh value model on `base` (packaged name, local folder or hub id)."""
        if isinstance(objectives, str):
            objectives = [objectives]
        if not objectives:
            raise MavisError("a value model needs at least one objective name")
        backbone = load_backbone(base, num_layers, attn_implementation, dtype)
        config = ValueModelConfig(
            base=base, objectives=list(objectives), num_layers=num_layers, lora=lora,
            tokenizer_fingerprint=tokenizer_fingerprint(load_tokenizer(base)),
        )
        model = cls(_with_lora(backbone, lora), config)
        model.head.to(dtype)
        return model

    @classmethod
    def load(cls, path: str | Path, *, merge: bool = True, attn_implementation: str = "sdpa",
             dtype: torch.dtype = torch.float32) -> ValueModel:
        """Load a saved value model: a folder, or a hub id `org/name[@revision]` (fetched into
        the Hugging Face cache, see `value_model_folder`). `merge=True` folds LoRA into the
        weights (fast inference); pass `merge=False` to keep training the adapter."""
        path = Path(value_model_folder(path)).expanduser()
        config = read_value_config(path)
        value_model_files(path, config)
        backbone = load_backbone(config.base, config.num_layers, attn_implementation, dtype)
        try:
            if config.lora is not None:
                backbone = _with_lora(backbone, config.lora)
                set_peft_model_state_dict(backbone, _weights(path, ADAPTER_NAME))
                if merge:
                    backbone = backbone.merge_and_unload()
            else:
                backbone.load_state_dict(_weights(path, BACKBONE_NAME))
            model = cls(backbone, config)
            model.head.load_state_dict(_weights(path, HEAD_NAME))
        except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
            raise MavisError(f"the weights in {str(path)!r} do not load ({exc}); the value "
                             "model is damaged or was trained on another backbone") from None
        model.head.to(dtype)
        model.eval()
        return model

    def save(self, path: str | Path, training: Mapping[str, Any] | None = None) -> Path:
        """Save as a value-model folder, replacing `path` whole (written beside, renamed);
        `training` as for `write_files`."""
        path = Path(path).expanduser()
        staging = path.with_name(f".{path.name}.saving")
        staging.mkdir(parents=True, exist_ok=True)
        self.write_files(staging, training)
        replace_folder(staging, path)
        return path

    def write_files(self, folder: Path, training: Mapping[str, Any] | None = None) -> None:
        """Write the model's files into the existing folder `folder`, with its model card
        (README.md; `training`: what is known of how it was trained, see `model_card`)."""
        if self.config.lora is not None:
            if not hasattr(self.backbone, "peft_config"):
                raise MavisError("this value model's LoRA was merged at load; load it with "
                                 "merge=False to save it again")
            weights = get_peft_model_state_dict(self.backbone)
            save_file({k: v.contiguous() for k, v in weights.items()}, folder / ADAPTER_NAME)
        else:
            save_file({k: v.contiguous() for k, v in self.backbone.state_dict().items()},
                      folder / BACKBONE_NAME)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()},
                  folder / HEAD_NAME)
        (folder / CONFIG_NAME).write_text(self.config.to_json())
        write_model_card(folder, self.config, training)

    def check_tokenizer(self, fingerprint: str, other: str, why: str) -> None:
        """Refuse to work beside a model whose tokenizer (by `tokenizer_fingerprint`) differs
        from the one this value model was built on: token ids would mean different things.
        A model saved without a fingerprint is not checked."""
        own = self.config.tokenizer_fingerprint
        if own and own != fingerprint:
            raise MavisError(
                f"the value model for {', '.join(self.objectives)} was built on "
                f"{self.config.base!r}, whose tokenizer differs from {other}: {why}")

    # -- inference ------------------------------------------------------------------------
    @property
    def objectives(self) -> list[str]:
        return self.config.objectives

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: Any = None,
                use_cache: bool = False) -> tuple[torch.Tensor, Any]:
        """Values at every position ([B, T, M]) and the (updated) KV cache."""
        hidden, cache = model_forward(self.backbone, input_ids=input_ids,
                                      attention_mask=attention_mask, position_ids=position_ids,
                                      cache=cache, use_cache=use_cache)
        return self.head(hidden.to(self.head.weight.dtype)), cache

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """V(s) for each row, read at its last real token (left or right padding): [B, M]."""
        position_ids = positions_from_mask(attention_mask)
        out, _ = self.forward(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        last = last_token_index(attention_mask)
        return out[torch.arange(out.shape[0], device=out.device), last]


def _weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of one weights file of a value-model folder, each checked to be finite:
    a model saved from a diverged run (NaN weights) is refused at load, naming the folder,
    instead of turning every answer's probabilities into NaN."""
    weights = load_file(folder / name)
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise MavisError(f"the value model {str(folder)!r} holds NaN or infinite weights "
                             f"({name}: {key}); it was saved from a diverged training run: "
                             "train it again (a lower learning rate helps)")
    return weights


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position whose mask is 1, per row."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


def _with_lora(backbone: nn.Module, lora: LoraSettings | None) -> nn.Module:
    if lora is None:
        return backbone
    names = {name.rsplit(".", 1)[-1] for name, _ in backbone.named_modules()}
    targets = [t for t in lora.target_modules if t in names]
    if not targets:
        raise MavisError(f"none of the LoRA target modules {lora.target_modules} exist in the "
                         "backbone; set lora.target_modules to its linear layer names")
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets, bias="none")
    return get_peft_model(backbone, config)
