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
from dataclasses import replace

import numpy as np

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.decoding.search import BeamSettings, beam_search
from mavis.evaluation.cost import mean_decoding_flops, prompt_lengths, reward_flops
from mavis.evaluation.policy import KL_PATH, PolicyEvaluation, summarise_answers
from mavis.evaluation.settings import EvaluationSettings
from mavis.objectives import score_all
from mavis.prompts.base import Prompt
from mavis.prompts.formatting import prompt_text


def evaluate_beam(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                  objectives: Sequence[str], settings: EvaluationSettings,
                  beam: BeamSettings = BeamSettings(), label: str = "",
                  on_rows: Callable[[int], None] | None = None) -> PolicyEvaluation:
    """Beam search with `beam.num_beams` beams for every prompt and sample, each token chosen
    as `settings.sampling` says (its seed plus the sample's index); of each search's N answers
    the one with the highest weighted reward counts. Rewards of every objective; KL as the
    path log-ratio (`KL_PATH`)."""
    groups: list[list[GeneratedSequence]] = []
    texts: list[str] = []
    started = time.perf_counter()
    seed = settings.sampling.seed or 0
    for prompt in prompts:
        for sample in range(settings.num_samples):
            sampling = replace(settings.sampling, seed=seed + sample)
            groups.append(beam_search(decoder, prompt, sampling, beam=beam))
            texts.append(prompt_text(prompt))
            if on_rows is not None:
                on_rows(1)
    seconds = time.perf_counter() - started
    weights = {name: w for name, w in groups[0][0].weights.items() if name in objectives}
    chosen, rewards = _best_by_reward(groups, texts, objectives, weights)
    scoring = time.perf_counter() - started - seconds
    result = PolicyEvaluation(
        label=label or ",".join(f"{k}={v:g}" for k, v in weights.items()),
        weights=dict(weights), beta=groups[0][0].beta, prompts=len(prompts),
        samples=len(chosen), kl_kind=KL_PATH, kl_budget=groups[0][0].kl_budget,
        mean_tokens=float(np.mean([len(a.token_ids) for a in chosen])), seconds=seconds,
        scoring_seconds=scoring)
    summarise_answers(result, chosen, objectives, rewards)
    # every step decodes num_beams * expand rows of about the kept answer's cost; the reward
    # calls that choose among the N beams are counted as best-of-N's are
    lengths = prompt_lengths(decoder, prompts)
    result.flops = beam.num_beams * beam.expand * mean_decoding_flops(
        decoder, chosen, lengths, settings.num_samples) + beam.num_beams * reward_flops(
        [n for n, w in weights.items() if w > 0], int(np.mean(lengths)),
        int(result.mean_tokens))
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
