"""Which tree nodes become training samples, and what each one regresses on (pure functions).

Equation 6 of the paper: for a node s with continuations Y (the complete responses below it),

    target(s) = 1/|Y| sum_{y in Y} [ R(y|x) - zeta * log(pi^i(y|x) / pi_ref(y|x)) ].

The collector stores, for every node, `value` (mean reward over its continuations, propagated as
the mean of the children) and `lpr` (the mean log-ratio, propagated the same way), so the target
is `value - zeta * lpr`: a mean of differences is the difference of the means.

Node selection (appendix F.5):
- Bottom-level nodes (the leaves: completed responses, whose value is the reward itself) vastly
  outnumber the others, so only a fraction of them is kept (the paper keeps half), chosen with a
  seeded random generator.
- Validation holds out whole prompts (trees), never single nodes of a training tree: nodes of
  one tree share their prefixes and would leak. Optionally it drops the leaves, so that the
  checkpoint is chosen on the values of incomplete sequences.
- The root (depth 0, the bare prompt) is kept by default. Its target is the mean over every
  leaf of the tree, the lowest-variance estimate in the tree; it teaches the prompt-level
  baseline that every other value of the tree moves around; it is one sample per tree; and in
  a packed tree it costs no extra tokens (the prompt is there anyway). `include_root=False`
  trains on response prefixes only.
"""

from __future__ import annotations

import numpy as np

from mavis.training.metrics import sibling_difference_scale

# Separate random streams for the separate decisions, so that changing one fraction does not
# reshuffle the other choice.
_SPLIT_STREAM = 1
_LEAF_STREAM = 2


def node_targets(value: np.ndarray, lpr: np.ndarray, zeta: float) -> np.ndarray:
    """Equation-6 targets, [N, M]: `value[n, m] - zeta * lpr[n]` (NaN values stay NaN)."""
    value = np.asarray(value, dtype=np.float64)
    lpr = np.asarray(lpr, dtype=np.float64)
    if value.ndim == 1:
        value = value[:, None]
    if zeta == 0.0:
        return value.copy()
    return value - zeta * lpr[:, None]


def split_prompts(num_prompts: int, validation_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split prompt indices into (train, validation), both sorted, by a seeded permutation.

    The validation part has `round(fraction * num_prompts)` prompts, at least one when the
    fraction is positive and there are two prompts or more, and never all of them.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    count = int(round(validation_fraction * num_prompts))
    if validation_fraction > 0 and num_prompts >= 2:
        count = min(max(count, 1), num_prompts - 1)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(num_prompts)
    return np.sort(order[count:]), np.sort(order[:count])


def select_nodes(node_prompt: np.ndarray, depth: np.ndarray, is_leaf: np.ndarray,
                 prompts: np.ndarray, *, leaf_fraction: float, seed: int,
                 include_root: bool = True, include_leaves: bool = True) -> np.ndarray:
    """Sorted indices of the training samples among the nodes of `prompts`' trees.

    Inner nodes are all kept (the root only with `include_root`); of the leaves, a seeded
    random `round(leaf_fraction * count)` are kept (none without `include_leaves`). A root that
    is also a leaf (an empty tree) counts as a root.
    """
    if not 0.0 <= leaf_fraction <= 1.0:
        raise ValueError(f"leaf_fraction must be in [0, 1], got {leaf_fraction}")
    depth = np.asarray(depth)
    in_split = np.isin(np.asarray(node_prompt), np.asarray(prompts))
    root = depth == 0
    leaf = np.asarray(is_leaf, dtype=bool) & ~root
    keep = in_split & ~leaf & (~root | include_root)
    if include_leaves and leaf_fraction > 0:
        leaves = np.flatnonzero(in_split & leaf)
        count = int(round(leaf_fraction * len(leaves)))
        rng = np.random.default_rng([seed, _LEAF_STREAM])
        keep[rng.choice(leaves, size=count, replace=False)] = True
    return np.flatnonzero(keep)


def value_range(targets: np.ndarray, nodes: np.ndarray,
                objectives: list[str]) -> dict[str, list[float]]:
    """Per objective, [min, max] of the finite targets of `nodes` (what the decoder clamps to)."""
    out: dict[str, list[float]] = {}
    for column, name in enumerate(objectives):
        column_values = targets[nodes, column]
        finite = column_values[np.isfinite(column_values)]
        if len(finite):
            out[name] = [float(finite.min()), float(finite.max())]
    return out


def value_scale(targets: np.ndarray, parent: np.ndarray, nodes: np.ndarray,
                objectives: list[str]) -> dict[str, float]:
    """Per objective, the typical difference between sibling targets among `nodes` (see
    `metrics.sibling_difference_scale`); the decoder divides values by it."""
    out: dict[str, float] = {}
    for column, name in enumerate(objectives):
        scale = sibling_difference_scale(targets[nodes, column], parent[nodes])
        if scale is not None:
            out[name] = scale
    return out
