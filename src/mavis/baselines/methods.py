"""The fine-tuned baselines of paper section 4 as comparison methods (registered here, beside
MAVIS, pi_ref, best-of-N and beam search of `mavis.evaluation.methods`):

    morlhf   one MORLHF policy per weight vector (it may take a coarser grid of its own)
    rsoup    Rewarded Soups of the two single-objective policies (the lambda = 1 and 0 ends
             of MORLHF), their LoRA deltas interpolated by lambda
    mod      MOD: the two single-objective policies' next-token log-probabilities combined by
             lambda and 1 - lambda at every step, plain top-k sampling of the combination

Rewarded Soups and MOD at lambda = 1 and 0 are the single-objective policies themselves: those
points are twins of MORLHF's (`SweepPoint.same_as`), whose evaluation they reuse. Every policy
is sampled through the run's decoder with the policy as its proposal model
(`Baselines.sample`), so its answers carry log pi_policy and log pi_ref like MAVIS's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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


class TwoPolicies(FineTuned):
    """Rewarded Soups and MOD: the two single-objective policies combined by lambda."""

    def check(self, objectives: Sequence[str]) -> None:
        if len(objectives) != 2:
            raise MavisError("rsoup and mod combine two single-objective policies: give "
                             f"exactly two objectives, not {len(objectives)}")

    def points(self, plan: SweepPlan) -> list[SweepPoint]:
        return [SweepPoint(self.family, weights, same_as=single_policy(weights))
                for weights in plan.grid]


@register_method("rsoup", "Rewarded Soups: the two single-objective policies' LoRA deltas "
                          "interpolated by lambda")
class RewardedSoup(TwoPolicies):
    family = RSOUP

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        baselines = self.baselines(run)
        lam = point.weights[baselines.objectives[0]]
        first, second = (baselines.folder_for(w) for w in baselines.ends())
        reference = run.decoder.reference
        model = baselines.pool(reference).get(
            ("soup", lam), lambda: soup(first, second, lam, base=reference)[0])
        return baselines.sample(run, point, [(model, 1.0)], on_rows)


@register_method("mod", "MOD: the two single-objective policies' log-probs combined by lambda")
class Mod(TwoPolicies):
    family = MOD

    def evaluate(self, point: SweepPoint, run: SweepRun,
                 on_rows: Callable[[int], None]) -> PolicyEvaluation:
        baselines = self.baselines(run)
        lam = point.weights[baselines.objectives[0]]
        pool = baselines.pool(run.decoder.reference)
        pairs = [(pool.policy(baselines.folder_for(w)), weight) for w, weight
                 in zip(baselines.ends(), (lam, 1.0 - lam), strict=True) if weight > 0]
        return baselines.sample(run, point, pairs, on_rows)


def single_policy(weights: Mapping[str, float]) -> SweepPoint | None:
    """For a Rewarded-Soup or MOD point at an end of lambda: MORLHF's point of the same
    single-objective policy (the soup of weight 1 is that policy's delta; MOD with weight 1
    samples that policy alone), whose evaluation it reuses."""
    if sum(w > 0 for w in weights.values()) != 1:
        return None
    return SweepPoint(MORLHF, dict(weights))
