"""The fine-tuned baselines of paper section 4 as comparison methods (registered here, beside
MAVIS, pi_ref, best-of-N and beam search of `mavis.evaluation.methods`):

    morlhf   one MORLHF policy per weight vector (it may take a coarser grid of its own)
    rsoup    Rewarded Soups of the single-objective policies (MORLHF's corners: weight 1 on one
             objective), their LoRA deltas interpolated by the weights
    mod      MOD: the single-objective policies' next-token log-probabilities combined by the
             weights at every step, plain top-k sampling of the combination

(two objectives: lambda and 1 - lambda; three or more: a simplex grid, as the paper's Table 1).
Rewarded Soups and MOD at a corner are the single-objective policy itself: those points are
twins of MORLHF's (`SweepPoint.same_as`), whose evaluation they reuse. Every policy
is sampled through the run's decoder with the policy as its proposal model
(`Baselines.sample`), so its answers carry log pi_policy and log pi_ref like MAVIS's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mavis.baselines.soups import soup
from mavis.errors import MavisError
from mavis.evaluation.methods import Method, SweepPlan, SweepRun, register_method
from mavis.evaluation.points import SweepPoint, weight_grid
from mavis.evaluation.policy import PolicyEvaluation

MORLHF, RSOUP, MOD = "MORLHF", "RSoup", "MOD"


class FineTuned(Method):
    """A method whose points sample fine-tuned policies, trained first (`Baselines`)."""

    needs_training = True

    def baselines(self, run: SweepRun):  # -> Baselines
        if run.baselines is None:
            raise MavisError(f"{self.family} points need the fine-tuned baselines; give "
                             "run_sweep(..., baselines=Baselines(...))")
        return run.baselines


@register_method("morlhf", "one MORLHF policy per weight vector (TRL RLOO), trained if missing")
class Morlhf(FineTuned):
    family = MORLHF

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        lambdas = plan.morlhf_lambdas if plan.morlhf_lambdas is not None else plan.lambdas
        return [SweepPoint(MORLHF, weights) for weights in weight_grid(plan.objectives,
                                                                       lambdas)]

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        baselines = self.baselines(run)
        policy = baselines.pool(run.decoder.reference).policy(baselines.folder_for(point.weights))
        return baselines.sample(run, point, [(policy, 1.0)], on_rows)


class Combined(FineTuned):
    """Rewarded Soups and MOD: the single-objective policies (one per objective, MORLHF's
    corners) combined by the point's weights."""

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(self.family, weights, same_as=single_policy(weights))
                for weights in plan.grid]

    @staticmethod
    def parts(point: SweepPoint, run: SweepRun) -> list[tuple[Any, float]]:
        """(single-objective policy folder, its weight) for every objective weighted > 0."""
        baselines = run.baselines
        return [(baselines.folder_for({name: 1.0}), float(point.weights.get(name, 0.0)))
                for name in baselines.objectives if point.weights.get(name, 0.0) > 0]


@register_method("rsoup", "Rewarded Soups: the single-objective policies' LoRA deltas "
                          "interpolated by the weights")
class RewardedSoup(Combined):
    family = RSOUP

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        baselines = self.baselines(run)
        folders, weights = zip(*self.parts(point, run), strict=True)
        reference = run.decoder.reference
        model = baselines.pool(reference).get(
            ("soup", weights), lambda: soup(list(folders), list(weights), base=reference)[0])
        return baselines.sample(run, point, [(model, 1.0)], on_rows)


@register_method("mod", "MOD: the single-objective policies' log-probs combined by the weights")
class Mod(Combined):
    family = MOD

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        baselines = self.baselines(run)
        pool = baselines.pool(run.decoder.reference)
        pairs = [(pool.policy(folder), weight) for folder, weight in self.parts(point, run)]
        return baselines.sample(run, point, pairs, on_rows)


def single_policy(weights: Mapping[str, float]) -> SweepPoint | None:
    """For a Rewarded-Soup or MOD point at an end of lambda: MORLHF's point of the same
    single-objective policy (the soup of weight 1 is that policy's delta; MOD with weight 1
    samples that policy alone), whose evaluation it reuses."""
    if sum(w > 0 for w in weights.values()) != 1:
        return None
    return SweepPoint(MORLHF, dict(weights))
