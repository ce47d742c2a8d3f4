"""`StepSettings`: how the decoder chooses each token (no torch here, so that the command line
can take its defaults from it without loading torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mavis.errors import MavisError

# The guidance every command and the server use when told neither a beta nor a KL budget: up to
# DEFAULT_BETA (values are in units of each objective's typical sibling difference), lowered at
# each step so that steering adds at most DEFAULT_KL_BUDGET nats per answer over plain top-k
# sampling. Chosen on validation prompts (reports/steering).
DEFAULT_BETA = 16.0
DEFAULT_KL_BUDGET = 10.0


def guidance(beta: float | None, kl_budget: float | None) -> tuple[float, float | None]:
    """(beta, KL budget per answer) from what a user gave: nothing gives the defaults above;
    a beta alone is a fixed beta; a budget alone caps the default beta."""
    if beta is None and kl_budget is None:
        return DEFAULT_BETA, DEFAULT_KL_BUDGET
    return (DEFAULT_BETA if beta is None else beta), kl_budget


@dataclass(frozen=True)
class StepSettings:
    """How each token is chosen.

    beta: guidance strength (0: plain top-k sampling from the reference model).
    top_k: candidates of the reference model per step.
    temperature: of the reference's next-token distribution, applied before the top-k.
    greedy: take the most likely candidate of the tilted distribution instead of sampling.
    candidate_epsilon: skip candidates whose omission moves a step's distribution by at most
        this total variation (needs value ranges; 0 scores all k).
    kl_budget: nats per token, or None. When set, each step's beta is the largest one up to
        `beta` whose tilt stays within this KL of plain top-k sampling at that step, so an
        answer of T tokens adds at most T * kl_budget nats over plain top-k sampling.
    """

    beta: float = 1.0
    top_k: int = 40
    temperature: float = 1.0
    greedy: bool = False
    candidate_epsilon: float = 0.0
    kl_budget: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise MavisError(f"top_k={self.top_k!r} must be a whole number >= 1")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise MavisError(f"temperature={self.temperature} must be a finite number > 0")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise MavisError(f"beta={self.beta} must be a finite number >= 0")
        if self.kl_budget is not None and not (math.isfinite(self.kl_budget)
                                                and self.kl_budget >= 0):
            raise MavisError(f"kl_budget={self.kl_budget} must be a finite number >= 0")
        if not 0 <= self.candidate_epsilon < 1:
            raise MavisError(f"candidate_epsilon={self.candidate_epsilon} must be in [0, 1)")
