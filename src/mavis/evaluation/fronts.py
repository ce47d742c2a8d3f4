"""Pareto dominance and hypervolume of points in objective space, as pure functions.

Every coordinate is to be maximised (rewards: higher is better). A point p dominates q when
p >= q in every coordinate and p > q in at least one; equal points do not dominate each other,
so duplicates of a front point are all on the front.

The hypervolume of a set of points is the volume of the region they dominate, bounded below by
a reference point r (the nadir the user chooses, e.g. pi_ref's rewards or the worst reward each
objective can take):

    HV(P, r) = volume of the union over p in P of the box [r_1, p_1] x ... x [r_d, p_d]

A point that does not exceed r in every coordinate adds nothing (its box is empty), so a front
is rewarded only for what it achieves beyond r. Points given must be finite.

    >>> hypervolume([(1, 3), (2, 2), (3, 1)], reference=(0, 0))
    6.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mavis.errors import MavisError

Point = Sequence[float]


def _check(points: Sequence[Point], dims: int | None = None) -> list[tuple[float, ...]]:
    """Points as float tuples of one common dimension (and `dims` when given)."""
    checked = [tuple(float(x) for x in p) for p in points]
    sizes = {len(p) for p in checked}
    if dims is not None:
        sizes.add(dims)
    if len(sizes) > 1:
        raise MavisError(f"points (and reference) must all have the same number of objectives; "
                         f"got sizes {sorted(sizes)}")
    if 0 in sizes:
        raise MavisError("points need at least one objective coordinate")
    for p in checked:
        if not all(math.isfinite(x) for x in p):
            raise MavisError(f"point {p} is not finite; drop or fix NaN/inf rewards first")
    return checked


def dominates(p: Point, q: Point) -> bool:
    """True when p is at least as good as q everywhere and better somewhere (maximisation)."""
    return all(a >= b for a, b in zip(p, q, strict=True)) and any(
        a > b for a, b in zip(p, q, strict=True))


def dominated(points: Sequence[Point]) -> list[bool]:
    """For each point, whether some other point of the set dominates it."""
    pts = _check(points)
    return [any(dominates(q, p) for j, q in enumerate(pts) if j != i) for i, p in enumerate(pts)]


def pareto_indices(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, in input order (duplicates all kept)."""
    return [i for i, bad in enumerate(dominated(points)) if not bad]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Exact hypervolume dominated by `points` above `reference` (see the module docstring).

    Exact for any number of objectives: two dimensions by a sweep over the sorted front, more by
    slicing along the last coordinate (each slab between consecutive distinct values is the
    (d-1)-dimensional hypervolume of the points that reach it, times its thickness). The cost
    grows as n^(d-1) log n, fine for the tens of points of a Pareto plot. Empty input gives 0.
    """
    ref = _check([reference])[0]
    if not points:
        return 0.0
    pts = _check(points, len(ref))
    # Only the part beyond the reference counts; points not strictly above it add nothing.
    inside = [p for p in pts if all(a > r for a, r in zip(p, ref, strict=True))]
    front = sorted({inside[i] for i in pareto_indices(inside)})  # duplicates add nothing
    return _hv(front, ref)


def _hv(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return max(p[0] for p in points) - ref[0]
    if len(ref) == 2:
        return _hv2(points, ref)
    levels = sorted({p[-1] for p in points}, reverse=True)
    total = 0.0
    for i, level in enumerate(levels):
        below = levels[i + 1] if i + 1 < len(levels) else ref[-1]
        reached = [p[:-1] for p in points if p[-1] >= level]
        total += (level - below) * _hv(reached, ref[:-1])
    return total


def _hv2(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """Sweep in x from right to left: each point adds the strip above the best y so far."""
    total, best_y = 0.0, ref[1]
    for x, y in sorted(points, key=lambda p: (p[0], p[1]), reverse=True):
        if y > best_y:
            total += (x - ref[0]) * (y - best_y)
            best_y = y
    return total


def mean_inner_product(weights: Sequence[Point], rewards: Sequence[Point]) -> float:
    """MIP: the mean over weight vectors of the inner product of each weight vector with the
    rewards achieved at it (Shi et al. 2024's front metric beside hypervolume):

        MIP = 1/n sum_i <w_i, r_i>

    Over the same grid of weight vectors (an 11-point grid for two objectives, a simplex grid
    for three), a method that does better at what each weight asks for has the higher MIP.

    >>> mean_inner_product([(1, 0), (0.5, 0.5), (0, 1)], [(3, 0), (2, 2), (0, 3)])
    2.6666666666666665
    """
    if len(weights) != len(rewards) or not weights:
        raise MavisError("MIP needs one reward vector per weight vector, and at least one")
    w, r = _check(weights), _check(rewards, len(weights[0]))
    return sum(sum(a * b for a, b in zip(wi, ri, strict=True)) for wi, ri in zip(w, r,
                                                                                    strict=True)
               ) / len(w)
