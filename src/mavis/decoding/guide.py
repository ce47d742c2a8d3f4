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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from mavis.decoding.sampling import SamplingSettings, SettingsError
from mavis.errors import MavisError
from mavis.models.value_model import ValueModel


def resolve_guidance(settings: SamplingSettings, available: Sequence[str]) -> SamplingSettings:
    """`settings` as value models covering `available` objectives carry them out: weights
    checked against them (None: each the same weight); when nothing guides (beta 0, or no
    weights asked for and none available) beta 0, no weights and no budget, so that what is
    reported is what was done."""
    if settings.beta == 0 or (settings.weights is None and not available):
        return replace(settings, weights=None, beta=0.0, kl_budget=None)
    if settings.weights is None:
        return replace(settings, weights={name: 1.0 / len(available) for name in available})
    return replace(settings, weights=check_objectives(settings.weights, available))


def check_objectives(weights: Mapping[str, float], available: Sequence[str]
                     ) -> dict[str, float]:
    """`weights` (already checked and normalised by `SamplingSettings`) when every objective
    with a positive weight has a value model among `available`; a `SettingsError` naming the
    others otherwise. Objectives weighted zero need none."""
    unknown = [name for name, value in weights.items() if value > 0 and name not in available]
    if unknown:
        raise SettingsError(
            "weights", f"name(s) {', '.join(map(repr, unknown))} without a value model; the "
            f"loaded value models cover: {', '.join(available) or '(none)'}")
    return dict(weights)


@dataclass
class GuideModel:
    """A value model among those that can guide a decoding run: its heads' columns in the
    guide's value vector, and each head's clamp range and scale."""

    model: ValueModel
    columns: slice  # this model's heads among the guide's objectives
    low: torch.Tensor  # [M_model] clamp range of each head (-inf/inf when unknown)
    high: torch.Tensor
    scale: torch.Tensor  # [M_model] each head's typical sibling difference (1 when unknown)

    def to(self, device: torch.device) -> None:
        self.low, self.high = self.low.to(device), self.high.to(device)
        self.scale = self.scale.to(device)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        """Values [..., M_model] clamped to the range each head saw in training, then divided
        by the head's scale, so that one beta means the same for every objective."""
        return torch.maximum(torch.minimum(values, self.high), self.low) / self.scale


class ValueGuide:
    """Value models that together cover the objectives to be weighted. Their heads form one
    value vector of `width` columns (in the order of `objectives`); a weight matrix gives each
    row of a batch its own lambda over those columns."""

    def __init__(self, value_models: Sequence[ValueModel]) -> None:
        self.value_models = list(value_models)
        self.owner: dict[str, tuple[int, int]] = {}
        self.entries: list[GuideModel] = []
        for i, model in enumerate(self.value_models):
            for j, name in enumerate(model.objectives):
                if name in self.owner:
                    raise MavisError(f"two value models both provide objective {name!r}; "
                                     "load only one per objective")
                self.owner[name] = (i, j)
            start = len(self.owner) - len(model.objectives)
            self.entries.append(self._entry(model, slice(start, len(self.owner))))

    @staticmethod
    def _entry(model: ValueModel, columns: slice) -> GuideModel:
        ranges = [model.config.value_range.get(name) for name in model.objectives]
        low = torch.tensor([r[0] if r else -math.inf for r in ranges])
        high = torch.tensor([r[1] if r else math.inf for r in ranges])
        scale = torch.tensor([float(model.config.value_scale.get(name) or 1.0)
                              for name in model.objectives])
        return GuideModel(model, columns, low, high, scale)

    @property
    def objectives(self) -> list[str]:
        return list(self.owner)

    @property
    def width(self) -> int:
        return len(self.owner)

    def to(self, device: torch.device) -> None:
        for entry in self.entries:
            entry.model.to(device)
            entry.to(device)

    def weight_row(self, weights: Mapping[str, float] | None) -> torch.Tensor:
        """One row's lambda over the guide's columns ([width]; zeros for None)."""
        row = torch.zeros(self.width)
        columns = list(self.owner)
        for name, value in (weights or {}).items():
            if value:  # objectives weighted zero need no value model
                row[columns.index(name)] = float(value)
        return row

    def used(self, weights: torch.Tensor) -> list[int]:
        """Indices of the value models some row weights (the others are not run)."""
        return [i for i, entry in enumerate(self.entries)
                if bool((weights[:, entry.columns] != 0).any())]

    def spread(self, weights: torch.Tensor) -> torch.Tensor:
        """Per row, the width of the interval the weighted, normalised value can take (inf
        when a weighted head has no known range): [B]."""
        spread = torch.zeros(weights.shape[0], device=weights.device)
        for entry in self.entries:
            width = ((entry.high - entry.low) / entry.scale).to(weights.device)
            lam = weights[:, entry.columns]
            spread = spread + torch.where(lam > 0, lam * width, torch.zeros_like(lam)).sum(-1)
        return spread

    def scaled(self) -> bool:
        """Whether every value model carries a scale for each of its objectives (then beta is
        in units of a typical sibling difference, the same for every objective)."""
        return all(all(name in vm.config.value_scale for name in vm.objectives)
                   for vm in self.value_models)
