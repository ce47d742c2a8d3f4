"""`EvaluationSettings`: how a policy is sampled when it is evaluated (`mavis evaluate`,
`mavis pareto`, and the `evaluation:` section of a recipe)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mavis.errors import MavisError


@dataclass(frozen=True)
class EvaluationSettings:
    r"""Settings of a policy evaluation.

    max_new_tokens (`int`, default `48`): the longest answer, in tokens.
    num_samples (`int`, default `1`): answers sampled per prompt.
    top_k (`int`, default `40`): candidates of the reference model per step (the paper: 40).
    temperature (`float`, default `1.0`): of the reference's next-token distribution.
    seed (`int`, default `0`): seeds the sampling, so that a rerun gives the same answers.
    batch_size (`int`, default `16`): rows decoded together.
    candidate_epsilon (`float`, default `0.0`): candidate skipping's total-variation bound
        (0 scores all k).
    """

    max_new_tokens: int = 48
    num_samples: int = 1
    top_k: int = 40
    temperature: float = 1.0
    seed: int = 0
    batch_size: int = 16
    candidate_epsilon: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_samples", "top_k", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MavisError(f"evaluation setting {name}={value!r} must be a whole "
                                 "number >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise MavisError(f"evaluation setting seed={self.seed!r} must be a whole number "
                             ">= 0")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise MavisError(f"evaluation setting temperature={self.temperature} must be > 0")
        if not 0 <= self.candidate_epsilon < 1:
            raise MavisError(f"evaluation setting candidate_epsilon={self.candidate_epsilon} "
                             "must be in [0, 1)")
