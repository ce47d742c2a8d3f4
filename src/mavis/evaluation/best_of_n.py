"""The best-of-N baseline: N answers sampled from pi_ref (plain top-k sampling), judged by the
objectives (reward functions) themselves; the highest weighted reward wins.

`best_of_n_sweep` evaluates it at every weight of a sweep, the way `sweep_weights` evaluates
MAVIS, so that both land on one Pareto plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.decoding.guide import resolve_weights
from mavis.evaluation.policy import PolicyEvaluation, mean_and_se
from mavis.evaluation.settings import EvaluationSettings
from mavis.objectives import score_all


@dataclass
class BestOfN:
    best: GeneratedSequence
    candidates: list[GeneratedSequence]
    rewards: dict[str, list[float]]  # per objective, one per candidate
    weighted: list[float]


def best_of_n(decoder: MavisDecoder, prompt: str, *, weights: Mapping[str, float], n: int = 4,
              top_k: int = 40, max_new_tokens: int = 64, temperature: float = 1.0,
              seed: int | None = None, chat_template: bool = True) -> BestOfN:
    """Sample `n` answers from pi_ref and keep the one with the highest weighted reward."""
    resolved = resolve_weights(weights, list(weights))
    candidates = decoder.generate([prompt], beta=0.0, top_k=top_k, temperature=temperature,
                                  max_new_tokens=max_new_tokens, num_samples=n, seed=seed,
                                  chat_template=chat_template)
    names = list(resolved)  # zero-weight objectives are scored too, for reporting
    rewards = score_all(names, [prompt] * n, [c.text for c in candidates])
    weighted = [sum(resolved[m] * rewards[m][i] for m in names) for i in range(n)]
    best = max(range(n), key=weighted.__getitem__)
    return BestOfN(candidates[best], candidates, rewards, weighted)


def best_of_n_sweep(decoder: MavisDecoder, prompts: Sequence[str], pair: tuple[str, str],
                    lambdas: Sequence[float], n: int,
                    settings: EvaluationSettings = EvaluationSettings()
                    ) -> list[PolicyEvaluation]:
    """For each lambda, best-of-n by the weighted reward; reports the chosen answers' rewards.
    The KL of best-of-n has the closed-form bound log n - (n - 1)/n (Beirami et al.)."""
    first, second = pair
    points = []
    for lam in lambdas:
        weights = {first: lam, second: 1.0 - lam}
        chosen: dict[str, list[float]] = {first: [], second: []}
        for i, prompt in enumerate(prompts):
            result = best_of_n(decoder, prompt, weights=weights, n=n, top_k=settings.top_k,
                               max_new_tokens=settings.max_new_tokens, seed=settings.seed + i)
            index = result.candidates.index(result.best)
            for name in pair:
                chosen[name].append(result.rewards[name][index])
        point = PolicyEvaluation(label=f"{first}={lam:g}", weights=weights, beta=0.0,
                                 prompts=len(prompts), samples=len(prompts),
                                 kl=math.log(n) - (n - 1) / n)
        for name in pair:
            point.reward[name], point.reward_se[name] = mean_and_se(chosen[name])
        points.append(point)
    return points
