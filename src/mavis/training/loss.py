"""The regression loss of equation 6 (pure tensor functions).

Training uses `masked_mse` on node targets (`targets.node_targets`: the collector already
averaged rewards and log-ratios over each node's continuations, so the mean of equation 6's
bracket over a node's continuations is its target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def masked_mse(predicted: torch.Tensor, targets: torch.Tensor,
               count: int | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of (predicted - target)^2 over the entries whose target is not NaN.

    predicted, targets: [K, M] (K samples, M objectives). A NaN target means "this objective
    was not scored for this sample" and contributes nothing. With no valid entry the loss is 0
    (still connected to the graph, so `backward` works). `count`: divide the sum by this many
    entries instead (those of a whole batch of which these samples are one process's share).
    `weights`: [M], each objective's squared errors times its weight (None: all 1).
    """
    valid = ~torch.isnan(targets)
    diff = torch.where(valid, predicted - torch.nan_to_num(targets), torch.zeros_like(predicted))
    divisor = valid.sum().clamp(min=1) if count is None else max(count, 1)
    squared = diff.pow(2) if weights is None else diff.pow(2) * weights.to(diff)
    return squared.sum() / divisor


def target_count(targets: torch.Tensor) -> int:
    """The entries `masked_mse` averages over: the targets that are not NaN."""
    return int((~torch.isnan(targets)).sum())


def sibling_difference_mse(predicted: torch.Tensor, targets: torch.Tensor,
                           parent: torch.Tensor, count: int | None = None,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over pairs of siblings (reads with the same parent >= 0) and objectives of
    ((p_i - p_j) - (t_i - t_j))^2: how far the predicted difference between two continuations
    of one prefix is from the observed one. The tilt only uses such differences, and a model
    can fit equation 6 well on average by learning which prompts score high while ordering
    the continuations of one prompt no better than chance; this term asks for the differences.

    predicted, targets: [K, M] (NaN targets count nothing); parent: [K]. 0 without pairs.
    `count`: divide by this many pair entries instead; `weights`: per objective (see
    `masked_mse`).
    """
    i, j = _sibling_pairs(parent)
    if not len(i):
        return predicted.sum() * 0.0
    dt = targets[i] - targets[j]
    valid = ~torch.isnan(dt)
    error = torch.where(valid, (predicted[i] - predicted[j]) - torch.nan_to_num(dt),
                        torch.zeros_like(dt))
    divisor = valid.sum().clamp(min=1) if count is None else max(count, 1)
    squared = error.pow(2) if weights is None else error.pow(2) * weights.to(error)
    return squared.sum() / divisor


def balance_weights(variances: Sequence[float]) -> list[float]:
    """Per objective, the mean of the variances over its own: weights under which every
    objective's squared errors count alike (one objective, or equal variances: all 1)."""
    finite = [v for v in variances if v > 0 and math.isfinite(v)]
    if not finite:
        return [1.0] * len(variances)
    mean = sum(finite) / len(finite)
    return [mean / v if v > 0 and math.isfinite(v) else 1.0 for v in variances]


def sibling_pair_count(targets: torch.Tensor, parent: torch.Tensor) -> int:
    """The pair entries `sibling_difference_mse` averages over."""
    i, j = _sibling_pairs(parent)
    return int((~torch.isnan(targets[i] - targets[j])).sum()) if len(i) else 0


def _sibling_pairs(parent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = (parent[:, None] == parent[None, :]) & (parent[:, None] >= 0)
    return torch.triu(same, diagonal=1).nonzero(as_tuple=True)
