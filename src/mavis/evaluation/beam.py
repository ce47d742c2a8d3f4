"""Beam search (MAVIS) evaluated against best-of-N at the same N (paper section 4.4, Fig. 4).

For every prompt (and every sample of it), `beam_search` keeps N beams guided by the value
models and returns the N best by weighted value; like best-of-N, the answer kept is the one of
those N with the highest weighted reward (the paper: "we keep only the top N according to the
value models and evaluate them with the reward models"). Both methods thus choose among N
answers by the same reward; they differ in how the N answers were found.

KL: beam search is no sampling policy (which answer comes out depends on the pruning of the
others), so it has no KL in the sense of equation 7. What is reported is the log-ratio
sum_t log pi_MAVIS(a_t|s_t) - log pi_ref(a_t|s_t) along the chosen answers' paths, averaged,
labelled `KL_PATH`: how far from pi_ref the tilted steps that built those answers were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.decoding.guide import resolve_weights
from mavis.decoding.search import beam_search
from mavis.errors import MavisError
from mavis.evaluation.policy import KL_PATH, PolicyEvaluation, mean_and_se
from mavis.evaluation.settings import EvaluationSettings
from mavis.objectives import score_all
from mavis.prompts.base import Prompt
from mavis.prompts.formatting import prompt_text


@dataclass(frozen=True)
class BeamSettings:
    """How the `beam-N` points of a sweep search (see `mavis.decoding.search.beam_search`).

    expand (`int`, default `2`): copies each live beam continues as, by sampling, before the
        live set is pruned back to N by weighted value.
    prune_every (`int`, default `8`): tokens between two prunings.
    """

    expand: int = 2
    prune_every: int = 8

    def __post_init__(self) -> None:
        for name in ("expand", "prune_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MavisError(f"beam setting {name}={value!r} must be a whole number >= 1")


def evaluate_beam(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                  objectives: Sequence[str], weights: Mapping[str, float], beta: float,
                  beams: int, settings: EvaluationSettings = EvaluationSettings(),
                  beam: BeamSettings = BeamSettings(), label: str = "",
                  on_rows: Callable[[int], None] | None = None) -> PolicyEvaluation:
    """Beam search with `beams` beams for every prompt and sample (seed `settings.seed` plus
    the sample's index); of each search's N answers the one with the highest weighted reward
    counts. Rewards of every objective; KL as the path log-ratio (`KL_PATH`)."""
    resolved = resolve_weights(weights, list(objectives))
    groups: list[list[GeneratedSequence]] = []
    texts: list[str] = []
    started = time.perf_counter()
    for prompt in prompts:
        for sample in range(settings.num_samples):
            groups.append(beam_search(
                decoder, prompt, weights=weights, beta=beta, top_k=settings.top_k,
                num_beams=beams, expand=beam.expand, prune_every=beam.prune_every,
                max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                seed=settings.seed + sample, candidate_epsilon=settings.candidate_epsilon))
            texts.append(prompt_text(prompt))
            if on_rows is not None:
                on_rows(1)
    seconds = time.perf_counter() - started
    chosen, rewards = _best_by_reward(groups, texts, objectives, resolved)
    result = PolicyEvaluation(
        label=label or ",".join(f"{k}={v:g}" for k, v in resolved.items()),
        weights=dict(resolved), beta=beta, prompts=len(prompts), samples=len(chosen),
        kl_kind=KL_PATH, mean_tokens=float(np.mean([len(a.token_ids) for a in chosen])),
        seconds=seconds)
    for name in objectives:
        result.reward[name], result.reward_se[name] = mean_and_se(rewards[name])
    result.kl, result.kl_se = mean_and_se([a.kl for a in chosen])
    result.kl_topk, result.kl_topk_se = mean_and_se([a.kl_topk for a in chosen])
    result.tv = mean_and_se([a.mean_tv for a in chosen])[0]
    result.mean_beta = beta
    return result


def _best_by_reward(groups: list[list[GeneratedSequence]], prompts: list[str],
                    objectives: Sequence[str], weights: Mapping[str, float]
                    ) -> tuple[list[GeneratedSequence], dict[str, list[float]]]:
    """Score every answer of every group; keep each group's answer of highest weighted
    reward, and every objective's reward of the kept answers."""
    flat = [(g, a) for g, group in enumerate(groups) for a in group]
    scores = score_all(list(objectives), [prompts[g] for g, _ in flat],
                       [a.text for _, a in flat])
    weighted = sum(w * np.asarray(scores[name], dtype=np.float64) for name, w in weights.items())
    kept = []
    for g in range(len(groups)):
        members = [i for i, (owner, _) in enumerate(flat) if owner == g]
        kept.append(members[int(np.argmax(weighted[members]))])
    return ([flat[i][1] for i in kept],
            {name: [float(scores[name][i]) for i in kept] for name in objectives})
