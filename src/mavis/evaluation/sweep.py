"""Weight sweeps (Pareto fronts), resumable: every point is saved the moment it is finished,
and a rerun with the same settings evaluates only the points not saved yet.

    points = sweep_points(("relevant", "harmless"), [0, 0.5, 1], betas={0: 8, 0.5: 12, 1: 8},
                          best_of=[4])
    store = SweepStore("runs/pareto.json", identity)
    results = run_sweep(decoder, prompts, ["relevant", "harmless"], points, settings, store)

A point is a method at one weight setting: MAVIS (weights and beta), pi_ref, or best-of-N
(which samples its N answers per prompt once for all weights, see `best_of_n`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.evaluation.best_of_n import BestOfNSamples, pick_best, sample_best_of_n
from mavis.evaluation.policy import PolicyEvaluation, evaluate_policy
from mavis.evaluation.settings import EvaluationSettings
from mavis.prompts.base import Prompt

REFERENCE = "pi_ref"


@dataclass
class SweepPoint:
    """One policy to evaluate: `method` is "MAVIS", "pi_ref" or "best-of-N"."""

    method: str
    weights: dict[str, float] = field(default_factory=dict)
    beta: float = 0.0
    n: int = 0  # best-of-N's N
    kl_budget: float | None = None  # nats per token; beta is then the largest allowed

    @property
    def label(self) -> str:
        """The weights, e.g. "relevant=0.25,harmless=0.75" (empty for pi_ref)."""
        return ",".join(f"{name}={w:g}" for name, w in self.weights.items())

    @property
    def key(self) -> str:
        """What identifies the point in the store."""
        beta = f" beta={self.beta:g}" if self.method == "MAVIS" else ""
        if self.method == "MAVIS" and self.kl_budget is not None:
            beta += f" kl_budget={self.kl_budget:g}"
        return f"{self.method} {self.label}{beta}".strip()


def sweep_points(pair: Sequence[str], lambdas: Sequence[float], *,
                 betas: float | Mapping[float, float] = 8.0,
                 best_of: Sequence[int] = (), reference: bool = True,
                 kl_budget: float | None = None) -> list[SweepPoint]:
    """MAVIS at weights (lambda, 1 - lambda) over `pair` for every lambda (beta per lambda when
    `betas` maps lambdas to betas, the paper's table 9), pi_ref, and best-of-N for every N."""
    first, second = pair
    points = []
    for lam in lambdas:
        beta = betas[lam] if isinstance(betas, Mapping) else betas
        points.append(SweepPoint("MAVIS", {first: lam, second: 1.0 - lam}, float(beta),
                                 kl_budget=kl_budget))
    if reference:
        points.append(SweepPoint(REFERENCE))
    for n in best_of:
        points += [SweepPoint(f"best-of-{n}", {first: lam, second: 1.0 - lam}, n=n)
                   for lam in lambdas]
    return points


class SweepStore:
    """The JSON file of a sweep: what it evaluated (`identity`: prompts, objectives, models,
    settings) and every finished point, rewritten whole after each point."""

    def __init__(self, path: str | Path, identity: Mapping[str, Any]) -> None:
        self.path = Path(path).expanduser()
        self.identity = json.loads(json.dumps(dict(identity), sort_keys=True))
        self.points: dict[str, dict[str, Any]] = {}
        if self.path.is_dir():
            raise MavisError(f"{str(self.path)!r} is a folder; give a file name for the results")
        if self.path.exists():
            saved = self._read()
            if saved.get("identity") != self.identity:
                raise MavisError(f"{self.path} holds a sweep with other settings; choose another "
                                 "--out, or delete it to start again")
            self.points = saved.get("points", {})

    def _read(self) -> dict[str, Any]:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MavisError(f"{self.path} is not a sweep results file ({exc}); choose another "
                             "--out") from None
        if not isinstance(saved, dict):
            raise MavisError(f"{self.path} is not a sweep results file; choose another --out")
        return saved

    def done(self, point: SweepPoint) -> PolicyEvaluation | None:
        saved = self.points.get(point.key)
        return PolicyEvaluation.from_dict(saved) if saved is not None else None

    def save(self, point: SweepPoint, result: PolicyEvaluation) -> None:
        self.points[point.key] = {**result.to_dict(), "method": point.method}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps({"identity": self.identity, "points": self.points},
                                   indent=2))
        os.replace(temp, self.path)


def run_sweep(decoder: MavisDecoder, prompts: Sequence[str | Prompt], objectives: Sequence[str],
              points: Sequence[SweepPoint], settings: EvaluationSettings,
              store: SweepStore | None = None, progress: bool = True
              ) -> list[tuple[SweepPoint, PolicyEvaluation]]:
    """Evaluate every point not already in `store` (saving each as it finishes); return all,
    in the order of `points`."""
    results = {p.key: store.done(p) if store else None for p in points}
    pending = [p for p in points if results[p.key] is None]
    rows = len(prompts) * settings.num_samples
    total = sum(rows for p in pending if p.n == 0)
    total += sum(rows * n for n in {p.n for p in pending if p.n})
    bar = tqdm(total=total, desc="sweep", unit="answer", disable=not progress or not total,
               dynamic_ncols=True)
    drawn: dict[int, BestOfNSamples] = {}
    try:
        for point in pending:
            bar.set_postfix_str(point.key, refresh=True)
            if point.n and point.n not in drawn:
                drawn[point.n] = sample_best_of_n(decoder, prompts, objectives, point.n,
                                                  settings, on_rows=bar.update)
            result = (pick_best(drawn[point.n], point.weights, label=point.label) if point.n
                      else evaluate_point(decoder, prompts, objectives, point, settings,
                                          bar.update))
            results[point.key] = result
            if store is not None:
                store.save(point, result)
    finally:
        bar.close()
    return [(p, results[p.key]) for p in points]  # type: ignore[misc]


def evaluate_point(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                   objectives: Sequence[str], point: SweepPoint, settings: EvaluationSettings,
                   on_rows: Any = None) -> PolicyEvaluation:
    """pi_ref or MAVIS at the point's weights and beta."""
    guided = point.method != REFERENCE
    return evaluate_policy(decoder, prompts, objectives,
                           weights=point.weights if guided else None,
                           beta=point.beta if guided else 0.0,
                           kl_budget=point.kl_budget if guided else None, settings=settings,
                           label=point.label or REFERENCE, on_rows=on_rows)


def by_method(results: Sequence[tuple[SweepPoint, PolicyEvaluation]]
              ) -> dict[str, list[PolicyEvaluation]]:
    """The evaluations grouped by method, in the order of the points (for `plot_pareto`)."""
    series: dict[str, list[PolicyEvaluation]] = {}
    for point, result in results:
        series.setdefault(point.method, []).append(result)
    return series
