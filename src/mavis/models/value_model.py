"""Value models: a causal-LM backbone (optionally cut to its first N layers, no LM head) with a
linear regression head, one output per objective, read at the last real token.

MAVIS needs V_m(s) for every objective m; `Q_m(s, a) = V_m(s + a)`. A value model trained for
one objective has one head output; a distilled (or jointly trained) model has one per objective
on a shared backbone, which halves decoding cost at M = 2.

A saved value model is a small folder:
    value_config.json     the backbone recipe (base model, layers kept, LoRA settings),
                          the objective names, the tokenizer fingerprint, the value range seen
                          in training
    adapter.safetensors   LoRA weights (or the whole backbone when trained without LoRA)
    head.safetensors      the regression head
so a value model for the default backbone is a few MB.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mavis.errors import MavisError
from mavis.models.cache import model_forward

CONFIG_NAME = "value_config.json"
ADAPTER_NAME = "adapter.safetensors"
BACKBONE_NAME = "backbone.safetensors"
HEAD_NAME = "head.safetensors"
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
    base: str
    objectives: list[str]
    num_layers: int | None = None
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    tokenizer_fingerprint: str = ""
    value_range: dict[str, list[float]] = field(default_factory=dict)
    format_version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueModelConfig:
        data = dict(data)
        if data.get("lora") is not None:
            data["lora"] = LoraSettings(**data["lora"])
        return cls(**data)


def load_backbone(base: str, num_layers: int | None, attn_implementation: str = "sdpa",
                  dtype: torch.dtype = torch.float32) -> nn.Module:
    """The decoder stack of `base` (no LM head), keeping only its first `num_layers` layers."""
    from transformers import AutoConfig, AutoModel

    from mavis.models.loading import _hub_error, quiet_transformers, resolve_model_path

    path = resolve_model_path(base)
    try:
        config = AutoConfig.from_pretrained(path)
        total = config.num_hidden_layers
        if num_layers is not None:
            if not 1 <= num_layers <= total:
                raise MavisError(
                    f"num_layers={num_layers} is out of range: {base!r} has {total} layers"
                )
            config.num_hidden_layers = num_layers
            if getattr(config, "layer_types", None):
                config.layer_types = config.layer_types[:num_layers]
        with quiet_transformers():  # the report would list every layer left out on purpose
            backbone = AutoModel.from_pretrained(
                path, config=config, dtype=dtype, attn_implementation=attn_implementation
            )
    except (OSError, ValueError) as exc:
        raise _hub_error(base, exc) from exc
    return backbone


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
        from mavis.models.loading import load_tokenizer, tokenizer_fingerprint

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
        """Load a saved value model. `merge=True` folds LoRA into the weights (fast inference);
        pass `merge=False` to keep training the adapter."""
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        if not (path / CONFIG_NAME).exists():
            raise MavisError(
                f"{str(path)!r} is not a mavis value model folder (no {CONFIG_NAME}); "
                "train one with `mavis train` or build one with ValueModel.build(...).save(path)"
            )
        config = ValueModelConfig.from_dict(json.loads((path / CONFIG_NAME).read_text()))
        backbone = load_backbone(config.base, config.num_layers, attn_implementation, dtype)
        if config.lora is not None:
            from peft import set_peft_model_state_dict

            backbone = _with_lora(backbone, config.lora)
            set_peft_model_state_dict(backbone, load_file(path / ADAPTER_NAME))
            if merge:
                backbone = backbone.merge_and_unload()
        else:
            backbone.load_state_dict(load_file(path / BACKBONE_NAME))
        model = cls(backbone, config)
        model.head.load_state_dict(load_file(path / HEAD_NAME))
        model.head.to(dtype)
        model.eval()
        return model

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        if self.config.lora is not None:
            from peft import get_peft_model_state_dict

            if not hasattr(self.backbone, "peft_config"):
                raise MavisError("this value model's LoRA was merged at load; load it with "
                                 "merge=False to save it again")
            weights = get_peft_model_state_dict(self.backbone)
            save_file({k: v.contiguous() for k, v in weights.items()}, path / ADAPTER_NAME)
        else:
            save_file({k: v.contiguous() for k, v in self.backbone.state_dict().items()},
                      path / BACKBONE_NAME)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, path / HEAD_NAME)
        (path / CONFIG_NAME).write_text(self.config.to_json())
        return path

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
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out, _ = self.forward(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        last = last_token_index(attention_mask)
        return out[torch.arange(out.shape[0], device=out.device), last]


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position whose mask is 1, per row."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


def _with_lora(backbone: nn.Module, lora: LoraSettings | None) -> nn.Module:
    if lora is None:
        return backbone
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in backbone.named_modules()}
    targets = [t for t in lora.target_modules if t in names]
    if not targets:
        raise MavisError(f"none of the LoRA target modules {lora.target_modules} exist in the "
                         "backbone; set lora.target_modules to its linear layer names")
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets, bias="none")
    return get_peft_model(backbone, config)
