"""A sweep's points: one policy at one weight vector each (`SweepPoint`), and the weight
vectors of a sweep (`weight_grid`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from mavis.errors import MavisError
from mavis.evaluation.settings import EvaluationSettings

REFERENCE = "pi_ref"
MAVIS = "MAVIS"


@dataclass
class SweepPoint:
    """One policy to evaluate: `method` is "MAVIS", "pi_ref", "best-of-N", "beam-N" (MAVIS
    beam search with N beams), or another registered method's label ("MORLHF", ...): see
    `mavis.evaluation.methods`."""

    method: str
    weights: dict[str, float] = field(default_factory=dict)
    beta: float = 0.0
    n: int = 0  # best-of-N's N
    kl_budget: float | None = None  # nats per answer; beta is then the largest allowed
    beams: int = 0  # beam search's N
    # another point that is the very same policy (Rewarded Soups and MOD at lambda = 1 or 0
    # are MORLHF's single-objective ends): its evaluation is reused, not sampled again
    same_as: SweepPoint | None = field(default=None, compare=False)

    @property
    def family(self) -> str:
        """The method without its N ("best-of-4" -> "best-of", "beam-2" -> "beam",
        "MAVIS+rerank-8" -> "MAVIS+rerank"): the registered method that evaluates it, and the
        key of its settings."""
        if self.n or self.beams:
            return self.method.rsplit("-", 1)[0]
        return self.method

    @property
    def label(self) -> str:
        """The weights, e.g. "relevant=0.25,harmless=0.75" (empty for pi_ref)."""
        return ",".join(f"{name}={w:g}" for name, w in self.weights.items())

    def settings(self, base: EvaluationSettings) -> EvaluationSettings:
        """`base` for this point's policy: a point with a beta (MAVIS, beam search, MAVIS +
        best-of-N) is guided by its weights, beta and budget; the others sample plainly (top-k
        of pi_ref, of best-of-N's sampler, or of a fine-tuned policy)."""
        if self.beta > 0:
            return base.policy(self.weights, self.beta, self.kl_budget)
        return base.policy(None, 0.0, None)

    @property
    def key(self) -> str:
        """What identifies the point in the store."""
        beta = f" beta={self.beta:g}" if self.method == MAVIS or self.beta > 0 else ""
        if beta and self.kl_budget is not None:
            beta += f" kl_budget={self.kl_budget:g}"
        return f"{self.method} {self.label}{beta}".strip()


def weight_grid(objectives: Sequence[str], lambdas: Sequence[float]) -> list[dict[str, float]]:
    """The weight vectors of a sweep: for two objectives (lambda, 1 - lambda) for every lambda;
    for more, every vector whose coordinates are all among `lambdas` and sum to 1 (a simplex
    grid: lambdas 0,0.5,1 over three objectives give the 3 corners and 3 edge midpoints)."""
    names = list(objectives)
    if len(names) < 2:
        raise MavisError(f"a weight sweep needs at least two objectives, got {len(names)}")
    if len(names) == 2:
        return [{names[0]: lam, names[1]: 1.0 - lam} for lam in lambdas]
    levels = sorted({round(float(x), 12) for x in lambdas}, reverse=True)
    grid = []
    for head in itertools.product(levels, repeat=len(names) - 1):
        last = round(1.0 - sum(head), 12)
        if any(abs(last - level) < 1e-9 for level in levels):
            grid.append(dict(zip(names, [*head, max(last, 0.0)], strict=True)))
    if not grid:
        raise MavisError(f"no weight vector over {len(names)} objectives has coordinates "
                         f"among {', '.join(f'{x:g}' for x in levels)} summing to 1; use "
                         "e.g. --lambdas 0,0.25,0.5,0.75,1")
    return grid
