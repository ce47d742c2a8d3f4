"""What one answer costs at inference, counted in model FLOPs so that a comparison made on this
CPU transfers to a GPU (the measured seconds are kept beside it).

A forward pass of a model with P weights in its linear layers over T tokens costs about 2·P·T
FLOPs (Kaplan et al. 2020; attention over the prefix is left out: small at these lengths, and
the same for every method). So, for a prompt of S tokens and an answer of T:

    sampling (pi_ref, a fine-tuned policy)   2·P_lm·(S + T)       (MOD: one per policy)
    MAVIS                                    + 2·P_value·(S + V)  V = the tokens the value
                                                                  models read: candidates x
                                                                  value models, per step
    a reward call                            2·P_reward·(S + T)   P_reward: the objective's
                                                                  neural model (0: lexical)
    best-of-N                                N sampled answers + N reward calls
    MAVIS + value rerank                     N guided answers (no reward call)
    beam search, N beams, `expand` copies    N·expand rows decoded at every step

Only what inference needs is counted: the reference's forward that an evaluation runs beside a
fine-tuned policy, to measure its KL, is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.objectives import get_objective


def _linear_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


def linear_parameters(model: torch.nn.Module) -> int:
    """The weights of `model`'s linear layers (a tied LM head counts: it is a matmul)."""
    return sum(w.numel() for w in _linear_weights(model))


def linear_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of `model`'s linear weights in their dtype: what one decoding step reads."""
    return sum(w.numel() * w.element_size() for w in _linear_weights(model))


def decoding_flops(decoder: MavisDecoder, answer: GeneratedSequence, prompt_tokens: int
                   ) -> float:
    """FLOPs of decoding `answer` after a prompt of `prompt_tokens` tokens."""
    samplers = len(decoder.proposals) or 1
    lm = linear_parameters(decoder.reference)
    flops = 2.0 * lm * samplers * (prompt_tokens + len(answer.token_ids))
    value_read = sum(answer.value_tokens)
    if value_read:
        values = [linear_parameters(vm) for vm in decoder.guide.value_models]
        per_model = sum(values) / len(values)
        flops += 2.0 * per_model * (prompt_tokens + value_read)
    return flops


def reward_flops(objectives: Sequence[str], prompt_tokens: int, answer_tokens: int) -> float:
    """FLOPs of one call of every objective in `objectives` on one answer."""
    weights = sum(get_objective(name).model_parameters() for name in objectives)
    return 2.0 * weights * (prompt_tokens + answer_tokens)


def prompt_lengths(decoder: MavisDecoder, prompts: Sequence[Any]) -> list[int]:
    """Each prompt's length in the reference's tokens, as the decoder frames it."""
    batch = decoder.encode(list(prompts))
    return [int(n) for n in batch.attention_mask.sum(-1)]


def mean_decoding_flops(decoder: MavisDecoder, answers: Sequence[GeneratedSequence],
                        lengths: Sequence[int], samples: int) -> float:
    """The mean over `answers` (grouped by prompt, `samples` each) of their decoding FLOPs."""
    if not answers:
        return 0.0
    return sum(decoding_flops(decoder, a, lengths[i // samples])
               for i, a in enumerate(answers)) / len(answers)
