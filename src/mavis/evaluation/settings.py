"""`EvaluationSettings`: how a policy is sampled when it is evaluated (`mavis evaluate`,
`mavis pareto`, and the `evaluation:` section of a recipe)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mavis import checks
from mavis.decoding.sampling import (
    SamplingSettings,
    reproducible,
    sampling_fields,
    unnamed_defaults,
)
from mavis.errors import MavisError

# What a sweep point sets itself (the policy being evaluated), not the evaluation.
POLICY_FIELDS = ("weights", "beta", "kl_budget")
# The sampling fields every results file names in its identity (files made before any other
# sampling field existed name these only; the others are named when they differ from their
# defaults, so those files keep their identity).
IDENTITY_FIELDS = ("max_new_tokens", "top_k", "temperature", "seed", "candidate_epsilon")


@dataclass(frozen=True)
class EvaluationSettings:
    r"""Settings of a policy evaluation.

    sampling (`SamplingSettings`, default: 48 new tokens, seed 0, the other defaults of
        `SamplingSettings`): how each answer is decoded; the seed makes a rerun give the same
        answers. The policy's own weights, beta and KL budget are the sweep point's.
    num_samples (`int`, default `1`): answers sampled per prompt.
    batch_size (`int`, default `16`): rows decoded together.

    A recipe's `evaluation:` section is flat: the sampling fields beside num_samples and
    batch_size (`from_dict`).
    """

    sampling: SamplingSettings = field(default_factory=reproducible)
    num_samples: int = 1
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.sampling, SamplingSettings):
            raise MavisError("evaluation setting sampling must be a SamplingSettings")
        checks.whole("num_samples", self.num_samples, low=1)
        checks.whole("batch_size", self.batch_size, low=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationSettings:
        """From flat keys: sampling fields (but the policy's own) and num_samples, batch_size."""
        own = {f.name for f in fields(cls)} - {"sampling"}
        known = (set(sampling_fields()) - set(POLICY_FIELDS)) | own
        unknown = sorted(set(data) - known)
        if unknown:
            raise MavisError(f"unknown evaluation setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        sampling = reproducible(**{k: v for k, v in data.items() if k not in own})
        return cls(sampling, **{k: v for k, v in data.items() if k in own})

    def to_dict(self) -> dict[str, Any]:
        """The flat identity of an evaluation (results files keep it; the policy's own fields
        are left out)."""
        sampling = self.sampling.to_dict()
        default = unnamed_defaults()
        data = {name: sampling[name] for name in IDENTITY_FIELDS}
        data.update({name: value for name, value in sampling.items()
                     if name not in (*IDENTITY_FIELDS, *POLICY_FIELDS)
                     and value != default[name]})
        return {**data, "num_samples": self.num_samples, "batch_size": self.batch_size}

    def policy(self, weights: Mapping[str, float] | None, beta: float,
               kl_budget: float | None) -> EvaluationSettings:
        """These settings for one policy: its weights, beta and KL budget (nats per answer)."""
        return replace(self, sampling=replace(self.sampling, weights=weights, beta=beta,
                                              kl_budget=kl_budget))

    @property
    def max_new_tokens(self) -> int:
        return self.sampling.max_new_tokens
