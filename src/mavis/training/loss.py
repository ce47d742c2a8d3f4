"""The regression loss of equation 6 (pure tensor functions).

Training uses `masked_mse` on node targets (`targets.node_targets`: the collector already
averaged rewards and log-ratios over each node's continuations, so the mean of equation 6's
bracket over a node's continuations is its target).
"""

from __future__ import annotations

import torch


def masked_mse(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of (predicted - target)^2 over the entries whose target is not NaN.

    predicted, targets: [K, M] (K samples, M objectives). A NaN target means "this objective
    was not scored for this sample" and contributes nothing. With no valid entry the loss is 0
    (still connected to the graph, so `backward` works).
    """
    valid = ~torch.isnan(targets)
    diff = torch.where(valid, predicted - torch.nan_to_num(targets), torch.zeros_like(predicted))
    return diff.pow(2).sum() / valid.sum().clamp(min=1)
