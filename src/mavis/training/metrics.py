"""How well a value model ranks what the tilt compares (pure functions, no model).

The tilt only ever compares continuations of the same prefix, so a value model is judged here
by how it orders those: children of one node (siblings), and nodes of one prompt's tree. The
all-node correlation mostly measures differences between prompts, which steering never uses.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def spearman(predicted: np.ndarray, target: np.ndarray) -> float | None:
    """Spearman correlation, None with fewer than 3 points or a constant side."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if len(target) < 3 or np.ptp(target) == 0 or np.ptp(predicted) == 0:
        return None
    rho = spearmanr(predicted, target).statistic
    return None if np.isnan(rho) else float(rho)


def sibling_accuracy(predicted: np.ndarray, target: np.ndarray, parent: np.ndarray
                     ) -> float | None:
    """Within-sibling ranking accuracy: over pairs of nodes with the same parent whose targets
    differ, the share that the predictions order as the targets do (a tie counts half).

    predicted, target: [K] for K nodes; parent: [K] the parent of each (-1: a root, which has
    no siblings). None when there is no such pair. This is what the tilt relies on: it only
    ever compares continuations of the same prefix.
    """
    predicted, target, parent = map(np.asarray, (predicted, target, parent))
    valid = np.isfinite(target) & (parent >= 0)
    order = np.argsort(parent[valid], kind="stable")
    p, t, g = predicted[valid][order], target[valid][order], parent[valid][order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], len(g)]
    agree, pairs = 0.0, 0
    for start, end in zip(starts, ends, strict=True):
        if end - start < 2:
            continue
        dt = np.sign(t[start:end, None] - t[None, start:end])
        dp = np.sign(p[start:end, None] - p[None, start:end])
        upper = np.triu(np.ones((end - start, end - start), dtype=bool), k=1) & (dt != 0)
        pairs += int(upper.sum())
        agree += float((dp[upper] == dt[upper]).sum() + 0.5 * (dp[upper] == 0).sum())
    return agree / pairs if pairs else None


def within_group_spearman(predicted: np.ndarray, target: np.ndarray, group: np.ndarray
                          ) -> float | None:
    """The mean over groups (e.g. the nodes of one prompt's tree) of the Spearman correlation
    of predictions and targets inside the group; groups with fewer than 3 nodes or constant
    targets are left out. None when no group counts."""
    predicted, target, group = map(np.asarray, (predicted, target, group))
    valid = np.isfinite(target)
    rhos = []
    for value in np.unique(group[valid]):
        members = valid & (group == value)
        rho = spearman(predicted[members], target[members])
        if rho is not None:
            rhos.append(rho)
        elif len(target[members]) >= 3 and np.ptp(target[members]) > 0:
            rhos.append(0.0)  # constant predictions order nothing
    return float(np.mean(rhos)) if rhos else None


def sibling_difference_scale(target: np.ndarray, parent: np.ndarray) -> float | None:
    """The typical difference between the targets of two siblings: the root mean square of
    t_i - t_j over all pairs of children of one node (finite targets only). A value model's
    values divided by it put every objective on one scale for the tilt."""
    target, parent = np.asarray(target, dtype=np.float64), np.asarray(parent)
    valid = np.isfinite(target) & (parent >= 0)
    order = np.argsort(parent[valid], kind="stable")
    t, g = target[valid][order], parent[valid][order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], len(g)]
    total, pairs = 0.0, 0
    for start, end in zip(starts, ends, strict=True):
        n = end - start
        if n < 2:
            continue
        values = t[start:end]
        # sum over i < j of (t_i - t_j)^2 = n * sum(t^2) - (sum t)^2
        total += n * float((values ** 2).sum()) - float(values.sum()) ** 2
        pairs += n * (n - 1) // 2
    if not pairs or total <= 0:
        return None
    return float(np.sqrt(total / pairs))


def ranking_ceiling(first: np.ndarray, second: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """How well noisy targets can be ranked at all, from two independent halves of each
    pair's target difference (first, second: [pairs, objectives]; the target is their mean).

    Returns (how often the two halves order a pair alike, the estimated accuracy of a ranker that
    knew each node's true value), per objective. The second treats the differences as normal:
    the halves' correlation r gives the full target's reliability 2r / (1 + r) (Spearman-Brown),
    and a perfect ranker agrees in sign with a target of reliability R with probability
    1/2 + arcsin(sqrt(R)) / pi."""
    agree = (np.sign(first) == np.sign(second)).mean(axis=0)
    r = (first * second).sum(0) / np.sqrt((first ** 2).sum(0) * (second ** 2).sum(0))
    reliability = np.clip(2 * r / (1 + r), 0.0, 1.0)
    return agree, 0.5 + np.arcsin(np.sqrt(reliability)) / np.pi
