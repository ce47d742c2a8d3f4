"""The best-of-N baseline: N answers sampled from pi_ref (plain top-k sampling), judged by the
objectives (reward functions) themselves; the highest weighted reward wins. (The N answers come
from whatever the evaluation's sampling settings say: beta 0 is pi_ref.)

The answers do not depend on the weights, only the choice does: `sample_best_of_n` draws and
scores the N answers of every prompt once, and `pick_best` chooses for any weights, so a sweep
over lambda costs one sampling pass.

KL: best-of-N's KL against its own sampler is at most log N - (N - 1)/N (Beirami et al.), and
against pi_ref it adds the sampler's own log-ratio over the chosen answers, which is measured.
The figure reported is that measured part plus the bound, marked `kl_is_bound`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.evaluation.cost import mean_decoding_flops, prompt_lengths, reward_flops
from mavis.evaluation.policy import KL_WITH_BOUND, PolicyEvaluation, summarise_answers
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
    seconds: float = 0.0  # drawing every answer
    scoring_seconds: float = 0.0  # scoring every answer with every objective
    answer_flops: float = 0.0  # mean decoding FLOPs of one answer
    tokens: float = 0.0  # mean prompt + answer tokens (what a reward call reads)


def sample_best_of_n(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                     objectives: Sequence[str], n: int,
                     settings: EvaluationSettings = EvaluationSettings(),
                     on_rows: Callable[[int], None] | None = None) -> BestOfNSamples:
    """Draw `n * settings.num_samples` answers per prompt as `settings.sampling` says (beta 0:
    from pi_ref) and score them all."""
    started = time.perf_counter()
    answers = decoder.generate(list(prompts), settings.sampling,
                               num_samples=n * settings.num_samples,
                               batch_size=settings.batch_size, on_rows=on_rows)
    drawn = time.perf_counter()
    scores = score_all(list(objectives), [a.prompt for a in answers], [a.text for a in answers])
    scored = time.perf_counter()
    groups = [answers[i:i + n] for i in range(0, len(answers), n)]
    rewards = {name: np.asarray(values, dtype=np.float64).reshape(len(groups), n)
               for name, values in scores.items()}
    lengths = prompt_lengths(decoder, prompts)
    samples = n * settings.num_samples
    tokens = float(np.mean([lengths[i // samples] + len(a.token_ids)
                            for i, a in enumerate(answers)])) if answers else 0.0
    return BestOfNSamples(n, groups, rewards, drawn - started, scored - drawn,
                          mean_decoding_flops(decoder, answers, lengths, samples), tokens)


RANKS = ("reward", "value")


def pick_best(samples: BestOfNSamples, weights: Mapping[str, float], label: str = "",
              rank: str = "reward") -> PolicyEvaluation:
    """For every group, the best answer: by the weighted reward of the reward models
    (`rank="reward"`, best-of-N), or by the value models' own weighted value of the finished
    answer (`rank="value"`: no reward model at inference; the answers must come from a guided
    sampler); the chosen answers' mean rewards and KL (measured part plus the bound
    log N - (N-1)/N, which holds for choosing by any score)."""
    resolved = reward_weights(weights, list(samples.rewards))
    chosen = _chosen(samples, resolved, rank)
    rows = np.arange(len(samples.groups))
    answers = [samples.groups[g][int(i)] for g, i in zip(rows, chosen, strict=True)]
    bound = math.log(samples.n) - (samples.n - 1) / samples.n
    result = PolicyEvaluation(
        label=label or ",".join(f"{k}={v:g}" for k, v in resolved.items()),
        weights=dict(resolved), beta=answers[0].beta if answers else 0.0,
        prompts=len({a.prompt for a in answers}), samples=len(answers), kl_is_bound=True,
        kl_kind=KL_WITH_BOUND, kl_budget=answers[0].kl_budget if answers else None,
        mean_tokens=float(np.mean([len(a.token_ids) for a in answers])) if answers else 0.0)
    summarise_answers(result, answers, list(samples.rewards),
                      {name: r[rows, chosen].tolist() for name, r in samples.rewards.items()})
    result.kl, result.kl_topk = result.kl + bound, result.kl_topk + bound
    _cost(result, samples, resolved, rank)
    return result


def _cost(result: PolicyEvaluation, samples: BestOfNSamples, weights: Mapping[str, float],
          rank: str) -> None:
    """What the chosen answers cost at inference: all N answers of each, and by reward the
    N reward calls of every objective weighted > 0 (the share of the measured scoring time
    that those objectives took is not known: all of it is counted)."""
    result.seconds = samples.seconds
    result.flops = samples.n * samples.answer_flops
    if rank == "reward":
        weighted = [name for name, w in weights.items() if w > 0]
        result.scoring_seconds = samples.scoring_seconds
        result.flops += samples.n * reward_flops(weighted, 0, int(round(samples.tokens)))


def _chosen(samples: BestOfNSamples, weights: Mapping[str, float], rank: str) -> np.ndarray:
    """The index of the best answer of every group, by `rank`."""
    if rank == "reward":
        return np.argmax(sum(w * samples.rewards[name] for name, w in weights.items()), axis=1)
    if rank != "value":
        raise MavisError(f"rank {rank!r}: choose {' or '.join(RANKS)}")
    values = np.array([[np.nan if a.value is None else a.value for a in group]
                       for group in samples.groups], dtype=np.float64)
    if np.isnan(values).any():
        raise MavisError("ranking by value needs answers decoded with value models (beta > 0 "
                         "and weights); rank by reward otherwise")
    return np.argmax(values, axis=1)


@dataclass
class BestOfN:
    best: GeneratedSequence
    candidates: list[GeneratedSequence]
    rewards: dict[str, list[float]]  # per objective, one per candidate
    weighted: list[float]


def best_of_n(decoder: MavisDecoder, prompt: str | Prompt, *, weights: Mapping[str, float],
              n: int = 4, rank: str = "reward", sampling: SamplingSettings | None = None,
              **fields: Any) -> BestOfN:
    """Sample `n` answers to one prompt (from pi_ref unless `sampling` says otherwise; its
    fields may be given as keywords, e.g. max_new_tokens=32, seed=0) and keep the best: by the
    reward weighted by `weights` (`rank="reward"`; every objective named there is scored, zero
    weights too), or by the value models' own weighted value of the finished answer
    (`rank="value"`, for guided sampling: no reward model runs; `rewards` is then empty and
    `weighted` holds the values)."""
    if sampling is None:
        sampling = SamplingSettings(**{"beta": 0.0, "seed": 0, **fields})
    elif fields:
        raise MavisError(f"give a SamplingSettings or its fields ({', '.join(fields)}), not both")
    if rank == "value":
        answers = decoder.generate([prompt], sampling, num_samples=n)
        samples = BestOfNSamples(n, [answers], {})
        best = int(_chosen(samples, {}, rank)[0])
        return BestOfN(answers[best], answers, {}, [float(a.value) for a in answers])
    resolved = reward_weights(weights, list(weights))
    samples = sample_best_of_n(decoder, [prompt], list(resolved), n,
                               EvaluationSettings(sampling))
    best = int(_chosen(samples, resolved, rank)[0])
    weighted = sum(w * samples.rewards[name][0] for name, w in resolved.items())
    return BestOfN(samples.groups[0][best], samples.groups[0],
                   {name: r[0].tolist() for name, r in samples.rewards.items()},
                   [float(x) for x in weighted])


def reward_weights(weights: Mapping[str, float], scored: Sequence[str]) -> dict[str, float]:
    """Weights of the rewards that choose the best answer: normalised as sampling weights are,
    each naming an objective that was scored."""
    resolved = SamplingSettings(weights=dict(weights)).weights or {}
    unknown = [name for name in resolved if name not in scored]
    if unknown:
        raise MavisError(f"weights name {', '.join(map(repr, unknown))}, which were not scored "
                         f"(scored: {', '.join(scored)})")
    return resolved
