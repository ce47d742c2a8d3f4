"""The methods a sweep compares, looked up by name as objectives are (`mavis pareto --methods`).

    pi_ref   the reference policy: plain top-k sampling (every comparison has it)
    mavis    MAVIS at every weight vector (value models tilt pi_ref)
    bon      best-of-N from pi_ref by the weighted reward (N from the plan's best_of)
    beam     MAVIS beam search with N beams (N from the plan's beams), beside best-of-N at the
             same N (the paper's Fig. 4 pairs them)
    mavis-bon     N answers from MAVIS, the best by the weighted reward (N from best_of)
    mavis-rerank  N answers from MAVIS, the best by the value models' own weighted value of
                  the finished answer: no reward model at inference (N from best_of)

and, registered by `mavis.baselines.methods`, the fine-tuned baselines `morlhf`, `rsoup` and
`mod`. A method turns a `SweepPlan` (objectives, weight grid, guidance, Ns) into the
`SweepPoint`s it contributes, and evaluates the points of its `family` in a `SweepRun`. A new
method is one module with a `Method` subclass, registered with `@register_method(NAME)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.search import BeamSettings
from mavis.errors import MavisError
from mavis.evaluation.beam import evaluate_beam
from mavis.evaluation.best_of_n import pick_best, sample_best_of_n
from mavis.evaluation.points import MAVIS, REFERENCE, SweepPoint, weight_grid
from mavis.evaluation.policy import PolicyEvaluation, evaluate_policy
from mavis.evaluation.settings import EvaluationSettings
from mavis.prompts.base import Prompt
from mavis.registry import Registry


@dataclass(frozen=True)
class SweepPlan:
    """What a comparison asks for: the objectives and weights (`lambdas` of the first
    objective; a simplex grid for three or more), the guidance of MAVIS (a beta, or one per
    lambda; a KL budget in nats per answer), the Ns of best-of-N and beam search, and MORLHF's
    own coarser grid (None: `lambdas`)."""

    objectives: Sequence[str]
    lambdas: Sequence[float]
    betas: float | Mapping[float, float] = 8.0
    kl_budget: float | None = None
    best_of: Sequence[int] = ()
    beams: Sequence[int] = ()
    morlhf_lambdas: Sequence[float] | None = None
    vectors: Sequence[Mapping[str, float]] | None = None  # the weight vectors themselves

    @property
    def grid(self) -> list[dict[str, float]]:
        """The weight vectors: `vectors` when given, else `weight_grid` of `lambdas`."""
        if self.vectors is not None:
            return [dict(v) for v in self.vectors]
        return weight_grid(self.objectives, self.lambdas)

    def beta_of(self, weights: Mapping[str, float]) -> float:
        """The beta of a weight vector (per lambda of the first objective, the paper's table
        9, when `betas` maps lambdas to betas)."""
        if not isinstance(self.betas, Mapping):
            return float(self.betas)
        first = self.objectives[0]
        match = [b for lam, b in self.betas.items() if abs(lam - weights.get(first, 0.0)) < 1e-9]
        if not match:
            raise MavisError(f"no beta for {first}={weights[first]:g}; give LAMBDA:BETA for "
                             "every weight the first objective takes")
        return float(match[0])


@dataclass
class SweepRun:
    """What evaluating a sweep's points needs: the decoder, prompts, scored objectives, the
    evaluation settings, beam search's settings, the fine-tuned baselines (when the sweep has
    them) and a cache the methods share within the run (best-of-N's answers)."""

    decoder: MavisDecoder
    prompts: Sequence[str | Prompt]
    objectives: Sequence[str]
    settings: EvaluationSettings
    beam: BeamSettings = field(default_factory=BeamSettings)
    baselines: Any = None
    cache: dict[Any, Any] = field(default_factory=dict)


class Method:
    """A way of answering at a weight vector. `family`: the `SweepPoint.family` of its points
    (the key of its settings in a results file)."""

    family = ""
    needs_training = False  # its points need fine-tuned policies (`SweepRun.baselines`)

    def check(self, objectives: Sequence[str]) -> None:
        """Refuse objectives this method cannot compare (a `MavisError`)."""

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        """The points this method contributes to a comparison of `plan`."""
        return []

    def answers(self, point: SweepPoint, rows: int, counted: set[Any]) -> int:
        """Answers the progress bar counts for `point` (`rows` per point; a method that
        shares answers between points adds its key to `counted` once)."""
        return rows

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        raise NotImplementedError


METHODS: Registry[Method] = Registry("comparison method")


def register_method(name: str, description: str = "") -> Callable[[type], type]:
    """Register a `Method` subclass under the name `--methods` takes."""
    def decorate(cls: type) -> type:
        METHODS.register(name, description or (cls.__doc__ or "").strip())(cls())
        return cls
    return decorate


def method_for(point: SweepPoint, methods: Mapping[str, Method] | None = None) -> Method:
    """The method that evaluates `point` (by its family), among `methods` (family -> method;
    default: every registered method)."""
    families = methods if methods is not None else {
        METHODS.get(name).family: METHODS.get(name) for name in METHODS.in_order()}
    if point.family not in families:
        raise MavisError(f"no way to evaluate method {point.method!r}; known: "
                         f"{', '.join(sorted(families))}")
    return families[point.family]


@register_method("mavis", "MAVIS at every weight vector (value models tilt pi_ref)")
class Mavis(Method):
    family = MAVIS

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(MAVIS, w, plan.beta_of(w), kl_budget=plan.kl_budget)
                for w in plan.grid]

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        return evaluate_policy(run.decoder, run.prompts, run.objectives,
                               point.settings(run.settings), label=point.label,
                               on_rows=on_rows)


@register_method("pi_ref", "the reference policy: plain top-k sampling")
class Reference(Method):
    family = REFERENCE

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(REFERENCE)]

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        return evaluate_policy(run.decoder, run.prompts, run.objectives,
                               point.settings(run.settings), label=REFERENCE, on_rows=on_rows)


@register_method("bon", "best-of-N from pi_ref by the weighted reward")
class BestOfN(Method):
    """N answers per prompt from pi_ref, sampled once for every weight vector; the one of
    highest weighted reward counts."""

    family = "best-of"

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(f"best-of-{n}", w, n=n) for n in plan.best_of for w in plan.grid]

    def answers(self, point: SweepPoint, rows: int, counted: set[Any]) -> int:
        if ("best-of", point.n) in counted:
            return 0
        counted.add(("best-of", point.n))
        return rows * point.n

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        key = ("best-of", point.n)
        if key not in run.cache:
            run.cache[key] = sample_best_of_n(run.decoder, run.prompts, run.objectives,
                                              point.n, point.settings(run.settings),
                                              on_rows=on_rows)
        return pick_best(run.cache[key], point.weights, label=point.label)


@register_method("beam", "MAVIS beam search with N beams, beside best-of-N at the same N")
class Beam(Method):
    family = "beam"

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(f"beam-{n}", w, plan.beta_of(w), beams=n)
                for n in plan.beams for w in plan.grid]

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        return evaluate_beam(run.decoder, run.prompts, run.objectives,
                             point.settings(run.settings),
                             replace(run.beam, num_beams=point.beams), point.label, on_rows)


@register_method("mavis-bon", "N answers from MAVIS, the best by the weighted reward")
class MavisBestOfN(Method):
    """MAVIS + best-of-N: N answers per prompt from MAVIS at the point's weights, judged by the
    reward models. Its answers are shared with `mavis-rerank` at the same weights."""

    family = "MAVIS+best-of"
    rank = "reward"

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(f"{self.family}-{n}", w, plan.beta_of(w), n=n,
                           kl_budget=plan.kl_budget) for n in plan.best_of for w in plan.grid]

    def answers(self, point: SweepPoint, rows: int, counted: set[Any]) -> int:
        key = _guided_samples(point)
        if key in counted:
            return 0
        counted.add(key)
        return rows * point.n

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        key = _guided_samples(point)
        if key not in run.cache:
            run.cache[key] = sample_best_of_n(run.decoder, run.prompts, run.objectives,
                                              point.n, point.settings(run.settings),
                                              on_rows=on_rows)
        return pick_best(run.cache[key], point.weights, label=point.label, rank=self.rank)


@register_method("mavis-rerank", "N answers from MAVIS, the best by the value models' own "
                                 "value of the finished answer (no reward model at inference)")
class MavisRerank(MavisBestOfN):
    family = "MAVIS+rerank"
    rank = "value"


def _guided_samples(point: SweepPoint) -> tuple[Any, ...]:
    """What MAVIS + best-of-N's answers depend on: N, the weights, beta and budget."""
    return ("MAVIS-samples", point.n, tuple(sorted(point.weights.items())), point.beta,
            point.kl_budget)

