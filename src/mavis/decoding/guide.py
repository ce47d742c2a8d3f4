"""Which value models guide a decoding run, and with what weights.

Users name objectives and weights (`{"relevant": 0.6, "harmless": 0.4}`); value models each
carry one or more objective heads. `ValueGuide` maps the one onto the other, skips value models
whose objectives all have weight zero, and knows the span of the weighted value (for the
candidate-skipping bound).

Values are normalised before they are weighted: clamped to the range each head saw in
training and divided by the head's scale (the typical difference between sibling values in its
training data, saved with the model), so that beta means the same for every objective. Value
models saved without a scale are used as they are.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from mavis.errors import MavisError
from mavis.models.value_model import ValueModel


def resolve_weights(weights: Mapping[str, float], available: Sequence[str]) -> dict[str, float]:
    """Check user weights against the available objectives and normalise them to sum to 1.

    Unknown names, weights that are not finite numbers >= 0 and all-zero weights are errors;
    weights that do not sum to 1 are normalised with a warning (never silently)."""
    if not weights:
        raise MavisError("no objective weights given; pass e.g. --weights "
                         + ",".join(f"{name}={1 / len(available):.2g}" for name in available))
    unknown = [name for name in weights if name not in available]
    if unknown:
        raise MavisError(
            f"no value model for objective(s) {', '.join(map(repr, unknown))}; "
            f"the loaded value models cover: {', '.join(available) or '(none)'}"
        )
    for name, value in weights.items():
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise MavisError(f"weight for {name!r} is {value!r}; weights must be finite "
                             "numbers >= 0")
        if value < 0:
            raise MavisError(f"weight for {name!r} is {value}; weights must be >= 0")
    total = sum(weights.values())
    if total <= 0:
        raise MavisError("all objective weights are zero; give at least one positive weight")
    if abs(total - 1.0) > 1e-6:
        normalised = {name: value / total for name, value in weights.items()}
        warnings.warn(
            f"objective weights sum to {total:g}, not 1; normalised to "
            + ", ".join(f"{n}={v:.3g}" for n, v in normalised.items()),
            stacklevel=2,
        )
        return normalised
    return dict(weights)


@dataclass
class ActiveValueModel:
    """A value model that guides a decoding run: its heads' weights and clamp ranges."""

    model: ValueModel
    weights: torch.Tensor  # [M_model], lambda for each head
    low: torch.Tensor  # [M_model] clamp range of each head (-inf/inf when unknown)
    high: torch.Tensor
    scale: torch.Tensor  # [M_model] each head's typical sibling difference (1 when unknown)

    def to(self, device: torch.device) -> None:
        self.weights = self.weights.to(device)
        self.low, self.high = self.low.to(device), self.high.to(device)
        self.scale = self.scale.to(device)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        """Values [..., M_model] clamped to the range each head saw in training, then divided
        by the head's scale, so that one beta means the same for every objective."""
        return torch.maximum(torch.minimum(values, self.high), self.low) / self.scale


class ValueGuide:
    """A set of value models that together cover the objectives to be weighted."""

    def __init__(self, value_models: Sequence[ValueModel]) -> None:
        self.value_models = list(value_models)
        self.owner: dict[str, tuple[int, int]] = {}
        for i, model in enumerate(self.value_models):
            for j, name in enumerate(model.objectives):
                if name in self.owner:
                    raise MavisError(f"two value models both provide objective {name!r}; "
                                     "load only one per objective")
                self.owner[name] = (i, j)

    @property
    def objectives(self) -> list[str]:
        return list(self.owner)

    def activate(self, weights: Mapping[str, float]) -> list[ActiveValueModel]:
        """The value models that have a nonzero weight, with their weight vectors."""
        active = []
        for model in self.value_models:
            lam = torch.tensor([float(weights.get(name, 0.0)) for name in model.objectives])
            if not torch.any(lam > 0):
                continue
            ranges = [model.config.value_range.get(name) for name in model.objectives]
            low = torch.tensor([r[0] if r else -math.inf for r in ranges])
            high = torch.tensor([r[1] if r else math.inf for r in ranges])
            scale = torch.tensor([float(model.config.value_scale.get(name) or 1.0)
                                  for name in model.objectives])
            active.append(ActiveValueModel(model, lam, low, high, scale))
        return active

    def scaled(self) -> bool:
        """Whether every value model carries a scale for each of its objectives (then beta is
        in units of a typical sibling difference, the same for every objective)."""
        return all(all(name in vm.config.value_scale for name in vm.objectives)
                   for vm in self.value_models)

    @staticmethod
    def value_spread(active: Sequence[ActiveValueModel]) -> float:
        """Width of the interval the weighted, normalised value can take (inf when a range is
        unknown)."""
        spread = 0.0
        for entry in active:
            used = entry.weights > 0
            width = ((entry.high - entry.low) / entry.scale)[used]
            spread += float((entry.weights[used] * width).sum())
        return spread
