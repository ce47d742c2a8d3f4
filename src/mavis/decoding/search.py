"""Test-time search on top of MAVIS (paper section 4.4).

`beam_search`: N beams; every `prune_every` tokens each live beam is expanded into `expand`
copies that continue by sampling from the MAVIS distribution, and the live set is pruned back to
N by the weighted value sum_m lambda_m V_m(s) of each partial sequence. Beams that end (the
decoder's finished-row rule: EOS, a stop string, max_new_tokens) join a pool; at the end the
top N of the pool by weighted value are returned, best first. How each token is chosen is the
`SamplingSettings` given (weights, beta, KL budget, top-k, ...), as for sampling.

(Its baseline, best-of-N from pi_ref, lives in `mavis.evaluation.best_of_n`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mavis import checks
from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.decoding.sampling import SamplingSettings, SettingsError, build_sampling
from mavis.prompts.base import Prompt
from mavis.prompts.formatting import prompt_text


@dataclass(frozen=True)
class BeamSettings:
    """How beam search keeps its beams.

    num_beams (`int`, default `4`): beams kept, and answers returned.
    expand (`int`, default `2`): copies each live beam continues as, by sampling, before the
        live set is pruned back to N by weighted value.
    prune_every (`int`, default `8`): tokens between two prunings.
    """

    num_beams: int = 4
    expand: int = 2
    prune_every: int = 8

    def __post_init__(self) -> None:
        for name in ("num_beams", "expand", "prune_every"):
            checks.whole(name, getattr(self, name), low=1)


@torch.inference_mode()
def beam_search(decoder: MavisDecoder, prompt: str | Prompt,
                settings: SamplingSettings | None = None, *,
                beam: BeamSettings = BeamSettings(), chat_template: bool = True,
                **fields: Any) -> list[GeneratedSequence]:
    """Value-guided beam search for one prompt; returns `beam.num_beams` sequences, best first
    (each with `.value`, its weighted value). `settings` (or its fields as keywords) say how
    each token is chosen; with a seed, the search draws from one generator seeded with it."""
    settings = decoder.resolve(build_sampling(settings, fields))
    if settings.beta <= 0:
        raise SettingsError("beta", "is 0 (or no value model guides): beam search ranks beams "
                            "by their values; give beta > 0 and value models")
    if settings.greedy:
        raise SettingsError("greedy", "is on: every copy of a beam would continue alike; beam "
                            "search samples its copies")
    batch = decoder.encode([prompt], chat_template=chat_template,
                           max_new_tokens=settings.max_new_tokens)
    state = decoder.start(batch, settings)
    generator = torch.Generator(device=decoder.device)
    if settings.seed is not None:
        generator.manual_seed(settings.seed)
    pool: list[GeneratedSequence] = []
    text = prompt_text(prompt)
    state.select(torch.zeros(beam.num_beams, dtype=torch.long))
    while state.batch_size:
        state.select(torch.arange(state.batch_size).repeat_interleave(beam.expand))
        for _ in range(beam.prune_every):
            tokens = state.choose(generator).tolist()
            ended = {row: reason for row in range(state.batch_size)
                     if (reason := decoder.finish_reason(state, row, tokens[row]))}
            pool += [decoder.sequence_from(text, state, row, reason)
                     for row, reason in ended.items()]
            if ended:
                state.select(torch.tensor([r for r in range(state.batch_size) if r not in ended],
                                          dtype=torch.long))
            if not state.batch_size:
                break
            state.advance()
        if state.batch_size > beam.num_beams:
            state.catch_up()
            state.select(torch.topk(state.value, beam.num_beams).indices)
    pool.sort(key=lambda s: s.value if s.value is not None else float("-inf"), reverse=True)
    return pool[:beam.num_beams]
