"""Baselines evaluated the same way as MAVIS: best-of-N from pi_ref at each weight setting.

(MORLHF, Rewarded Soups and MOD need per-objective fine-tuned models; they are tracked in
their own issue.)
"""

from __future__ import annotations

from collections.abc import Sequence

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.search import best_of_n
from mavis.evaluation.policy import PolicyEvaluation, mean_and_se


def best_of_n_sweep(decoder: MavisDecoder, prompts: Sequence[str], pair: tuple[str, str],
                    lambdas: Sequence[float], n: int, *, top_k: int = 40,
                    max_new_tokens: int = 48, seed: int = 0) -> list[PolicyEvaluation]:
    """For each lambda, best-of-n by the weighted reward; reports the chosen answers' rewards.
    The KL of best-of-n has the closed-form bound log n - (n - 1)/n (Beirami et al.)."""
    import math

    first, second = pair
    points = []
    for lam in lambdas:
        weights = {first: lam, second: 1.0 - lam}
        chosen: dict[str, list[float]] = {first: [], second: []}
        for i, prompt in enumerate(prompts):
            result = best_of_n(decoder, prompt, weights=weights, n=n, top_k=top_k,
                               max_new_tokens=max_new_tokens, seed=seed + i)
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
