"""The shape rules of GET_DATA (Algorithm 3, appendix C), as pure functions: no model, no I/O.

Layers are numbered from 0 at the root (the prompt): a node at depth l is expanded into
`children_count(l)` children, each adding `segment_length(...)` new tokens (EOS may end one
earlier). With N = T - t tokens still allowed:

- l < L - 1: a length drawn from Unif{1, 2 * Round(N / (L - l)) - 1}, whose mean is about
  N / (L - l), so the remaining layers share what is left evenly on average and a layer can end
  at any completion length between 1 and T;
- l = L - 1 (the last layer): N, so every leaf that did not stop at EOS has exactly T tokens.

Round is round-half-up (the usual arithmetic rounding, not Python's round-half-to-even). The
degenerate cases are guarded: the upper bound is at least 1 and at most N. A node whose path
has used all T tokens is a leaf even above the last layer (with an odd N the penultimate layer
can draw N, leaving the last layer nothing to add).

Values and log-probability ratios (LPR) travel up the tree as plain means: a leaf carries its
reward and the LPR of its whole response, an inner node the mean of its children's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    """The tree-shape parameters of Algorithm 3."""

    T: int
    L: int
    K_root: int
    K: int


def round_half_up(x: float) -> int:
    """Arithmetic rounding: 0.5 -> 1, 1.5 -> 2, 2.5 -> 3."""
    return math.floor(x + 0.5)


def segment_bounds(depth: int, remaining: int, layers: int) -> tuple[int, int]:
    """(low, high) of the uniform segment-length draw for children of a node at `depth`.

    `remaining` is N = T - t, the tokens the path may still add; `layers` is L. At the last
    layer (depth == L - 1) the range is the single value N.
    """
    if remaining < 1:
        raise ValueError(f"a node with {remaining} tokens left cannot be expanded")
    if not 0 <= depth < layers:
        raise ValueError(f"depth {depth} is outside 0..{layers - 1} (L = {layers})")
    if depth == layers - 1:
        return remaining, remaining
    high = 2 * round_half_up(remaining / (layers - depth)) - 1
    return 1, min(max(high, 1), remaining)


def sample_segment_length(depth: int, remaining: int, layers: int,
                          rng: np.random.Generator) -> int:
    """Draw the number of tokens the children of a node at `depth` add (Algorithm 3)."""
    low, high = segment_bounds(depth, remaining, layers)
    return low if low == high else int(rng.integers(low, high + 1))


def children_count(depth: int, k_root: int, k: int) -> int:
    """K_root children at the root, K elsewhere."""
    return k_root if depth == 0 else k


def is_terminal(depth: int, used: int, total: int, layers: int, ended_eos: bool) -> bool:
    """Whether a node is a leaf: it ended with EOS, used all T tokens, or sits at depth L."""
    return ended_eos or used >= total or depth >= layers


def node_depths(parent: Sequence[int] | np.ndarray) -> np.ndarray:
    """Depth of every node from a parent array (-1 marks roots; parents precede children)."""
    parent = np.asarray(parent, dtype=np.int64)
    depth = np.zeros(len(parent), dtype=np.int64)
    for i, p in enumerate(parent):
        if p >= 0:
            if p >= i:
                raise ValueError(f"node {i} has parent {p}: parents must come before children")
            depth[i] = depth[p] + 1
    return depth


def propagate_means(parent: Sequence[int] | np.ndarray, is_leaf: Sequence[bool] | np.ndarray,
                    leaf_values: np.ndarray) -> np.ndarray:
    """Leaves keep `leaf_values`; every inner node gets the mean of its children's values.

    `parent`: [N] parent index per node, -1 for roots, parents before children. `leaf_values`:
    [N] or [N, M]; rows of inner nodes are ignored. Works on many trees at once. Raises
    ValueError for an inner node without children (its value would be undefined).
    """
    parent = np.asarray(parent, dtype=np.int64)
    is_leaf = np.asarray(is_leaf, dtype=bool)
    values = np.asarray(leaf_values, dtype=np.float64)
    squeeze = values.ndim == 1
    if squeeze:
        values = values[:, None]
    values = values.copy()
    values[~is_leaf] = 0.0
    counts = np.zeros(len(parent), dtype=np.int64)
    depth = node_depths(parent)
    has_parent = parent >= 0
    if is_leaf[parent[has_parent]].any():
        raise ValueError("a leaf has children; a leaf must end its branch")
    for level in range(int(depth.max(initial=0)), 0, -1):
        nodes = np.nonzero(depth == level)[0]
        # children at this level are final (leaves, or inner nodes finished one level down)
        np.add.at(values, parent[nodes], values[nodes])
        np.add.at(counts, parent[nodes], 1)
        above = np.unique(parent[nodes])
        above = above[~is_leaf[above]]
        values[above] /= counts[above][:, None]
    childless = ~is_leaf & (counts == 0)
    if childless.any():
        raise ValueError(f"inner node(s) {np.nonzero(childless)[0][:5].tolist()} have no children")
    return values[:, 0] if squeeze else values


def path_sums(parent: Sequence[int] | np.ndarray, own: Sequence[float] | np.ndarray) -> np.ndarray:
    """For every node, the sum of `own` over the nodes on its path from the root (inclusive)."""
    parent = np.asarray(parent, dtype=np.int64)
    own = np.asarray(own, dtype=np.float64)
    total = own.copy()
    for i, p in enumerate(parent):
        if p >= 0:
            total[i] += total[p]
    return total
