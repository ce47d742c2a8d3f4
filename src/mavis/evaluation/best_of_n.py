"""The best-of-N baseline: N answers sampled from pi_ref (plain top-k sampling), judged by the
objectives (reward functions) themselves; the highest weighted reward wins.

The answers do not depend on the weights, only the choice does: `sample_best_of_n` draws and
scores the N answers of every prompt once, and `pick_best` chooses for any weights, so a sweep
over lambda costs one sampling pass.

KL: best-of-N's KL against its own sampler is at most log N - (N - 1)/N (Beirami et al.), and
against pi_ref it adds the sampler's own log-ratio over the chosen answers, which is measured.
The figure reported is that measured part plus the bound, marked `kl_is_bound`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.decoding.guide import resolve_weights
from mavis.evaluation.policy import KL_WITH_BOUND, PolicyEvaluation, mean_and_se
from mavis.evaluation.settings import EvaluationSettings
from mavis.objectives import score_all
from mavis.prompts.base import Prompt


@dataclass
class BestOfNSamples:
    """N scored answers for every (prompt, sample): `groups[g]` holds N answers, and
    `rewards[objective][g, i]` is the reward of answer i of group g."""

    n: int
    groups: list[list[GeneratedSequence]]
    rewards: dict[str, np.ndarray]


def sample_best_of_n(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                     objectives: Sequence[str], n: int,
                     settings: EvaluationSettings = EvaluationSettings(),
                     on_rows: Callable[[int], None] | None = None) -> BestOfNSamples:
    """Draw `n * settings.num_samples` answers per prompt from pi_ref and score them all."""
    answers = decoder.generate(list(prompts), beta=0.0, top_k=settings.top_k,
                               temperature=settings.temperature,
                               max_new_tokens=settings.max_new_tokens,
                               num_samples=n * settings.num_samples, seed=settings.seed,
                               batch_size=settings.batch_size, on_rows=on_rows)
    scores = score_all(list(objectives), [a.prompt for a in answers], [a.text for a in answers])
    groups = [answers[i:i + n] for i in range(0, len(answers), n)]
    rewards = {name: np.asarray(values, dtype=np.float64).reshape(len(groups), n)
               for name, values in scores.items()}
    return BestOfNSamples(n, groups, rewards)


def pick_best(samples: BestOfNSamples, weights: Mapping[str, float], label: str = ""
              ) -> PolicyEvaluation:
    """For every group, the answer with the highest weighted reward; their mean rewards and
    KL (measured part plus the bound)."""
    resolved = resolve_weights(weights, list(samples.rewards))
    weighted = sum(w * samples.rewards[name] for name, w in resolved.items())
    chosen = np.argmax(weighted, axis=1)
    rows = np.arange(len(samples.groups))
    answers = [samples.groups[g][int(i)] for g, i in zip(rows, chosen, strict=True)]
    bound = math.log(samples.n) - (samples.n - 1) / samples.n
    result = PolicyEvaluation(
        label=label or ",".join(f"{k}={v:g}" for k, v in resolved.items()),
        weights=dict(resolved), beta=0.0, prompts=len({a.prompt for a in answers}),
        samples=len(answers), kl_is_bound=True, kl_kind=KL_WITH_BOUND,
        mean_tokens=float(np.mean([len(a.token_ids) for a in answers])) if answers else 0.0)
    for name, rewards in samples.rewards.items():
        result.reward[name], result.reward_se[name] = mean_and_se(
            rewards[rows, chosen].tolist())
    kl, result.kl_se = mean_and_se([a.kl for a in answers])
    kl_topk, result.kl_topk_se = mean_and_se([a.kl_topk for a in answers])
    result.kl, result.kl_topk = kl + bound, kl_topk + bound
    return result


@dataclass
class BestOfN:
    best: GeneratedSequence
    candidates: list[GeneratedSequence]
    rewards: dict[str, list[float]]  # per objective, one per candidate
    weighted: list[float]


def best_of_n(decoder: MavisDecoder, prompt: str | Prompt, *, weights: Mapping[str, float],
              n: int = 4, top_k: int = 40, max_new_tokens: int = 64, temperature: float = 1.0,
              seed: int | None = None) -> BestOfN:
    """Sample `n` answers to one prompt from pi_ref; keep the one with the highest weighted
    reward (every objective named in `weights` is scored, zero weights too)."""
    resolved = resolve_weights(weights, list(weights))
    settings = EvaluationSettings(top_k=top_k, max_new_tokens=max_new_tokens,
                                  temperature=temperature, seed=seed or 0)
    samples = sample_best_of_n(decoder, [prompt], list(resolved), n, settings)
    weighted = sum(w * samples.rewards[name][0] for name, w in resolved.items())
    best = int(np.argmax(weighted))
    return BestOfN(samples.groups[0][best], samples.groups[0],
                   {name: r[0].tolist() for name, r in samples.rewards.items()},
                   [float(x) for x in weighted])
