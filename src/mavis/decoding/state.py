"""The decoding state machine shared by sampling, beam search and tree data collection.

A `DecodingState` holds a batch of rows (left-padded prompts plus what was generated so far),
the KV cache of the reference model and of every active value model, and the reference's
next-token logits. `choose()` adds one token to every row; `select(rows)` keeps, reorders or
duplicates rows (finished rows leave, beams branch); `advance()` runs the reference model on
the chosen tokens.

Cost per token: one reference forward of one token, plus, per active value model, one forward
of the scored candidates over the cached prefix (each candidate at the same position, seeing
the prefix and itself only). The chosen candidate's keys and values are kept from that pass,
so the chosen token needs no second value forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mavis.decoding.guide import ActiveValueModel, ValueGuide
from mavis.decoding.masks import candidate_mask, positions_from_mask
from mavis.decoding.tilt import candidates_to_score, mavis_logprobs, top_k_candidates
from mavis.models.cache import keep_rows, model_forward, new_cache, replace_tail_with_choice


@dataclass
class StepSettings:
    beta: float = 1.0
    top_k: int = 40
    temperature: float = 1.0
    greedy: bool = False
    candidate_epsilon: float = 0.0


class DecodingState:
    def __init__(self, reference: torch.nn.Module, active: Sequence[ActiveValueModel],
                 input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 settings: StepSettings) -> None:
        self.reference = reference
        self.settings = settings
        self.active = list(active) if settings.beta != 0.0 else []
        self.spread = ValueGuide.value_spread(self.active) if self.active else 0.0
        device = input_ids.device
        self.attention_mask = attention_mask.long()
        positions = positions_from_mask(self.attention_mask)
        self.next_position = positions[:, -1] + 1
        batch = input_ids.shape[0]
        self.tokens = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(batch, 0, device=device)
        self.ref_logprobs = torch.zeros(batch, 0, device=device)
        self.value = torch.full((batch,), float("nan"), device=device)
        self.scored_counts: list[float] = []

        self.ref_cache = new_cache(reference)
        logits, self.ref_cache = model_forward(
            reference, input_ids=input_ids, attention_mask=self.attention_mask,
            position_ids=positions, cache=self.ref_cache, use_cache=True,
            return_logits=True, logits_to_keep=1)
        self.next_logits = logits[:, -1].float()
        self.value_caches = []
        for entry in self.active:
            entry.weights = entry.weights.to(device)
            entry.low, entry.high = entry.low.to(device), entry.high.to(device)
            cache = new_cache(entry.model.backbone)
            _, cache = model_forward(entry.model.backbone, input_ids=input_ids,
                                     attention_mask=self.attention_mask, position_ids=positions,
                                     cache=cache, use_cache=True)
            self.value_caches.append(cache)

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def choose(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pick the next token of every row; returns them ([B])."""
        s = self.settings
        ref_full = torch.log_softmax(self.next_logits, dim=-1)
        cand_logprobs, cand_ids = top_k_candidates(self.next_logits, s.top_k, s.temperature)
        rows = torch.arange(self.batch_size, device=cand_ids.device)
        if self.active:
            scored = candidates_to_score(cand_logprobs, s.beta, self.spread, s.candidate_epsilon)
            width = int(scored.sum(-1).max())
            self.scored_counts.append(float(scored.sum(-1).float().mean()))
            cand_logprobs, cand_ids = cand_logprobs[:, :width], cand_ids[:, :width]
            scored = scored[:, :width]
            values = self._score_candidates(cand_ids)
            self.candidate_ids, self.candidate_values = cand_ids, values
            policy = mavis_logprobs(cand_logprobs, values, s.beta, scored)
        else:
            values = None
            policy = mavis_logprobs(cand_logprobs, None, 0.0)
        if s.greedy:
            choice = policy.argmax(-1)
        else:
            choice = torch.multinomial(policy.exp(), 1, generator=generator).squeeze(-1)
        token = cand_ids[rows, choice]
        if self.active:
            for cache in self.value_caches:
                replace_tail_with_choice(cache, cand_ids.shape[1], choice)
            self.value = values[rows, choice]
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)
        self.logprobs = torch.cat([self.logprobs, policy[rows, choice][:, None]], dim=1)
        self.ref_logprobs = torch.cat([self.ref_logprobs, ref_full[rows, token][:, None]], dim=1)
        self.attention_mask = torch.cat(
            [self.attention_mask, torch.ones_like(self.attention_mask[:, :1])], dim=1)
        return token

    def _score_candidates(self, cand_ids: torch.Tensor) -> torch.Tensor:
        """Weighted values of every candidate ([B, k]), one forward per active value model."""
        batch, width = cand_ids.shape
        positions = self.next_position[:, None].expand(batch, width)
        total = torch.zeros(batch, width, device=cand_ids.device)
        for entry, cache in zip(self.active, self.value_caches, strict=True):
            dtype = entry.model.head.weight.dtype
            mask = candidate_mask(self.attention_mask, width, dtype)
            hidden, _ = model_forward(entry.model.backbone, input_ids=cand_ids,
                                      attention_mask=mask, position_ids=positions,
                                      cache=cache, use_cache=True)
            values = entry.model.head(hidden.to(dtype)).float()
            values = torch.maximum(torch.minimum(values, entry.high), entry.low)
            total += values @ entry.weights
        return total

    def advance(self) -> None:
        """Feed the last chosen tokens to the reference model (next-token logits)."""
        logits, self.ref_cache = model_forward(
            self.reference, input_ids=self.tokens[:, -1:], attention_mask=self.attention_mask,
            position_ids=self.next_position[:, None], cache=self.ref_cache, use_cache=True,
            return_logits=True, logits_to_keep=1)
        self.next_logits = logits[:, -1].float()
        self.next_position = self.next_position + 1

    def select(self, rows: torch.Tensor) -> None:
        """Keep `rows` (indices, repeats allowed) in that order; caches follow."""
        rows = rows.to(self.tokens.device)
        keep_rows(self.ref_cache, rows)
        for cache in self.value_caches:
            keep_rows(cache, rows)
        for name in ("attention_mask", "next_position", "tokens", "logprobs", "ref_logprobs",
                     "value", "next_logits"):
            setattr(self, name, getattr(self, name)[rows])
