"""`DecoderSpec`: the models of a collection by name, loaded only where and when needed.

Collection checks its output and resume state before loading anything, and Ray workers load
their own copy; both need the models as names and paths, not as objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.models.value_folder import read_value_config


@dataclass(frozen=True)
class DecoderSpec:
    """A reference model and optional value models, by name or path."""

    reference: str
    value_models: dict[str, str] | list[str] = field(default_factory=list)
    device: str | None = None
    dtype: str | None = None

    def load(self) -> Any:
        """The `MavisDecoder` this spec names."""
        dtype = getattr(torch, self.dtype) if self.dtype else None
        return MavisDecoder.load(self.reference, self.value_models, device=self.device,
                                 dtype=dtype)

    def value_model_info(self) -> tuple[list[str], list[dict[str, Any]]]:
        """(objectives covered, one description per value model), from their configs only."""
        return value_model_info(self.value_models)


def value_model_info(value_models: Mapping[str, str | Path] | list[str | Path] | tuple
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """(objectives covered, one description per value model) of value-model folders."""
    items = value_models.items() if isinstance(value_models, Mapping) else [
        (None, p) for p in value_models]
    objectives: list[str] = []
    described = []
    for name, path in items:
        config = read_value_config(path)
        if name is not None and name not in config.objectives:
            raise MavisError(f"value model {str(path)!r} was trained for "
                             f"{', '.join(config.objectives)}, not {name!r}")
        objectives.extend(config.objectives)
        described.append({"objectives": list(config.objectives), "base": config.base})
    return objectives, described


def decoder_info(decoder: Any) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(reference name, objectives covered, value model descriptions) of a loaded decoder."""
    model = decoder.reference
    name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
    described = [{"objectives": list(vm.objectives), "base": vm.config.base}
                 for vm in decoder.guide.value_models]
    return name, list(decoder.guide.objectives), described
