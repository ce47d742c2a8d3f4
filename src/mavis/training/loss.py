"""The regression loss of equation 6 (pure tensor functions).

Training uses `masked_mse` on node targets (`targets.node_targets`: the collector already
averaged rewards and log-ratios over each node's continuations). `equation6_loss` is the
literal form over explicit continuations, kept for reference and tests: both agree.
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


def equation6_loss(predicted: torch.Tensor, rewards: torch.Tensor, log_ratio: torch.Tensor,
                   zeta: float, continuation_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Equation 6 averaged over samples and objectives.

    predicted: [K, M] values V(s); rewards: [K, Y, M] rewards R_m(y|x) of up to Y continuations
    of each s; log_ratio: [K, Y] log pi^i(y|x) - log pi_ref(y|x); continuation_mask: [K, Y]
    (True = a real continuation; default all). Rewards may be NaN for unscored objectives.
    """
    if continuation_mask is None:
        continuation_mask = torch.ones(log_ratio.shape, dtype=torch.bool,
                                       device=log_ratio.device)
    penalised = rewards - zeta * log_ratio.unsqueeze(-1)
    weights = continuation_mask.unsqueeze(-1) & ~torch.isnan(rewards)
    counts = weights.sum(1)
    total = torch.where(weights, penalised, torch.zeros_like(penalised)).sum(1)
    target = torch.where(counts > 0, total / counts.clamp(min=1),
                         torch.full_like(total, float("nan")))
    return masked_mse(predicted, target)
