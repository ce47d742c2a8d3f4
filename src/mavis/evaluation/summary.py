"""The fronts of a sweep, summarised: each method's hypervolume against one stated reference
point, and which points are Pareto-dominated (by a point of the same method, and by any point
of the sweep); written as CSV beside the sweep's JSON.

    summary = summarise_fronts(results, ["relevant", "harmless"])   # reference point: pi_ref
    summary.hypervolume["MAVIS"], summary.dominated_overall["MAVIS relevant=0.5,..."]
    write_points_csv("runs/pareto.csv", results, ["relevant", "harmless"], summary)

Hypervolume (see `mavis.evaluation.fronts`) measures the reward space a front dominates beyond
the reference point, by default pi_ref's rewards: what a method gains over not steering at
all. A method's hypervolume counts its points' rewards only; KL is reported beside it (a front
bought with more KL is not better for it).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.evaluation.fronts import dominated, hypervolume, mean_inner_product
from mavis.evaluation.points import REFERENCE, SweepPoint
from mavis.evaluation.policy import PolicyEvaluation
from mavis.paths import atomic_path

Results = Sequence[tuple[SweepPoint, PolicyEvaluation]]


@dataclass
class FrontSummary:
    """objectives: the coordinates, in order. reference_point: the hypervolume's lower
    corner; reference_from: where it came from ("pi_ref" or "given"). hypervolume: per method.
    dominated_in_method / dominated_overall: per point key, whether another point of the same
    method / of any method dominates it (pi_ref included). mip: per method, the mean over its
    points of <weights, rewards> (`mean_inner_product`); pi_ref's over the weight vectors of
    the sweep, its one answer set at each."""

    objectives: list[str]
    reference_point: dict[str, float]
    reference_from: str
    hypervolume: dict[str, float] = field(default_factory=dict)
    dominated_in_method: dict[str, bool] = field(default_factory=dict)
    dominated_overall: dict[str, bool] = field(default_factory=dict)
    mip: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_fronts(results: Results, objectives: Sequence[str],
                     reference_point: Mapping[str, float] | None = None) -> FrontSummary:
    """Hypervolume of every method's points and dominance of every point. The reference point
    is `reference_point` when given, else pi_ref's rewards (which must be among `results`)."""
    names = list(objectives)
    if reference_point is None:
        found = [r for p, r in results if p.method == REFERENCE]
        if not found:
            raise MavisError("no pi_ref point to take the hypervolume's reference point from; "
                             "give one (e.g. --hv-reference relevant=0,harmless=0)")
        corner, source = {n: float(found[0].reward[n]) for n in names}, REFERENCE
    else:
        missing = [n for n in names if n not in reference_point]
        if missing:
            raise MavisError(f"the hypervolume's reference point gives no value for "
                             f"{', '.join(missing)}; give one per objective")
        corner, source = {n: float(reference_point[n]) for n in names}, "given"
    summary = FrontSummary(names, corner, source)
    coordinates = [[r.reward[n] for n in names] for _, r in results]
    overall = dominated(coordinates)
    by_method: dict[str, list[int]] = {}
    for index, (point, _) in enumerate(results):
        by_method.setdefault(point.method, []).append(index)
        summary.dominated_overall[point.key] = overall[index]
    for method, indices in by_method.items():
        own = [coordinates[i] for i in indices]
        summary.hypervolume[method] = hypervolume(own, [corner[n] for n in names])
        for index, flag in zip(indices, dominated(own), strict=True):
            summary.dominated_in_method[results[index][0].key] = flag
    summary.mip = method_mips([(p.method, p.weights, r.reward) for p, r in results],
                              names)
    return summary


def method_mips(entries: Sequence[tuple[str, Mapping[str, float], Mapping[str, float]]],
                names: Sequence[str]) -> dict[str, float]:
    """MIP of every method over its own points' weights, from (method, weights, rewards) per
    point (a results list, or the points of a saved JSON file); a method whose points carry
    no weights (pi_ref) is taken at every weight vector of the sweep."""
    names = list(names)
    grid = list({tuple(w.get(n, 0.0) for n in names): None for _, w, _ in entries if w})
    by_method: dict[str, list[tuple[Mapping[str, float], Mapping[str, float]]]] = {}
    for method, weights, reward in entries:
        by_method.setdefault(method, []).append((weights, reward))
    mips = {}
    for method, members in by_method.items():
        weights = [tuple(w.get(n, 0.0) for n in names) for w, _ in members]
        rewards = [tuple(r[n] for n in names) for _, r in members]
        if not any(w for w, _ in members):
            weights, rewards = grid, [rewards[0]] * len(grid)
        mips[method] = mean_inner_product(weights, rewards) if weights else math.nan
    return mips


def write_points_csv(path: str | Path, results: Results, objectives: Sequence[str],
                     summary: FrontSummary | None = None) -> Path:
    """One row per point: method, weights, beta, N, rewards with standard errors, KL (and
    what kind of figure it is), KL over plain top-k sampling, TV, answer length, answers,
    decoding seconds, and with a summary the method's hypervolume and the point's dominance."""
    path = Path(path)
    names = list(objectives)
    header = ["method", "weights", *[f"w_{n}" for n in names], "beta", "n",
              *[f"{n}{s}" for n in names for s in ("", "_se")], "kl", "kl_se", "kl_kind",
              "kl_topk", "tv", "mean_tokens", "samples", "seconds", "scoring_seconds",
              "seconds_per_answer", "flops_per_answer"]
    if summary is not None:
        header += ["hypervolume", "mip", "dominated_in_method", "dominated_overall"]
    with atomic_path(path) as temp, temp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for point, p in results:
            row = [point.method, point.label, *[point.weights.get(n, "") for n in names],
                   point.beta, point.n or point.beams or "",
                   *[v for n in names for v in (p.reward[n], p.reward_se.get(n, ""))],
                   p.kl, p.kl_se, p.kl_kind, p.kl_topk, p.tv, p.mean_tokens, p.samples,
                   p.seconds, p.scoring_seconds, p.seconds_per_answer, p.flops]
            if summary is not None:
                row += [summary.hypervolume[point.method], summary.mip[point.method],
                        summary.dominated_in_method[point.key],
                        summary.dominated_overall[point.key]]
            writer.writerow(row)
    return path
