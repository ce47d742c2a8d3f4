"""Test-time search on top of MAVIS (paper section 4.4).

`beam_search`: N beams; every `prune_every` tokens each live beam is expanded into `expand`
copies that continue by sampling from the MAVIS distribution, and the live set is pruned back to
N by the weighted value sum_m lambda_m V_m(s) of each partial sequence. Beams that end (EOS) join
a pool; at the end the top N of pool and live beams by weighted value are returned, best first.

(Its baseline, best-of-N from pi_ref, lives in `mavis.evaluation.best_of_n`.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder, eos_ids
from mavis.errors import MavisError
from mavis.prompts.base import Prompt
from mavis.prompts.formatting import prompt_text


@torch.inference_mode()
def beam_search(decoder: MavisDecoder, prompt: str | Prompt, *, weights: Mapping[str, float],
                beta: float = 1.0, top_k: int = 40, num_beams: int = 4, expand: int = 2,
                prune_every: int = 8, max_new_tokens: int = 64, temperature: float = 1.0,
                seed: int | None = None, chat_template: bool = True,
                candidate_epsilon: float = 0.0) -> list[GeneratedSequence]:
    """Value-guided beam search for one prompt; returns `num_beams` sequences, best first
    (each with `.value`, its weighted value)."""
    if num_beams < 1 or expand < 1 or prune_every < 1:
        raise MavisError("num_beams, expand and prune_every must be >= 1")
    if beta <= 0:
        raise MavisError("beam search ranks beams by their values: give beta > 0")
    settings = decoder.settings(beta=beta, top_k=top_k, temperature=temperature,
                                candidate_epsilon=candidate_epsilon)
    batch = decoder.encode([prompt], chat_template=chat_template, max_new_tokens=max_new_tokens)
    state, resolved = decoder.start(batch, weights, settings)
    generator = torch.Generator(device=decoder.device)
    if seed is not None:
        generator.manual_seed(seed)
    eos = eos_ids(decoder.tokenizer, decoder.reference)
    pool: list[GeneratedSequence] = []
    text = prompt_text(prompt)

    def finish(rows: Sequence[int], reason: str) -> None:
        for row in rows:
            pool.append(decoder.sequence_from(text, state, row, reason, resolved, ()))

    step = 0
    state.select(torch.zeros(num_beams, dtype=torch.long))
    while step < max_new_tokens and state.batch_size:
        state.select(torch.arange(state.batch_size).repeat_interleave(expand))
        for _ in range(min(prune_every, max_new_tokens - step)):
            tokens = state.choose(generator)
            step += 1
            ended = [r for r in range(state.batch_size) if int(tokens[r]) in eos]
            finish(ended, "eos")
            if step == max_new_tokens:
                finish([r for r in range(state.batch_size) if r not in ended], "length")
                state.select(torch.zeros(0, dtype=torch.long))
                break
            if ended:
                state.select(torch.tensor([r for r in range(state.batch_size) if r not in ended],
                                          dtype=torch.long))
            if not state.batch_size:
                break
            state.advance()
        if state.batch_size > num_beams:
            best = torch.topk(state.value, num_beams).indices
            state.select(best)
    pool.sort(key=lambda s: s.value if s.value is not None else float("-inf"), reverse=True)
    return pool[:num_beams]
