"""The decoding state machine shared by sampling, beam search and tree data collection.

A `DecodingState` holds a batch of rows (left-padded prompts plus what was generated so far),
the KV cache of the reference model and of every active value model, and the reference's
next-token logits. `choose()` adds one token to every row; `select(rows)` keeps, reorders or
duplicates rows (finished rows leave, beams branch); `advance()` runs the reference model on
the chosen tokens.

One step of `choose`, each part its own method:
    candidates   the top-k tokens of pi_ref (after temperature) and their log-probabilities
    skip         drop the candidates that cannot matter (optional, with a bound on the error)
    score        every active value model reads all candidates in one forward over its cache
    tilt         pi_ref * exp(beta * sum_m lambda_m V_m), renormalised (`mavis.decoding.tilt`)
    sample       one candidate per row (or the most likely one)
    keep         the chosen candidate's keys and values stay in the value caches; the rest go

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
from mavis.decoding.settings import StepSettings
from mavis.decoding.tilt import (
    beta_for_kl,
    candidates_to_score,
    mavis_logprobs,
    top_k_candidates,
    weighted_values,
)
from mavis.models.cache import keep_rows, model_forward, new_cache, replace_tail_with_choice
from mavis.models.masks import candidate_mask, positions_from_mask


@dataclass
class Candidates:
    """The candidate tokens of one step: log pi_ref (temperature applied) and ids, [B, k]."""

    logprobs: torch.Tensor
    ids: torch.Tensor
    scored: torch.Tensor | None = None  # bool [B, k]: False = skipped


class DecodingState:
    def __init__(self, reference: torch.nn.Module, active: Sequence[ActiveValueModel],
                 input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 settings: StepSettings) -> None:
        self.reference = reference
        self.settings = settings
        self.active = list(active) if settings.beta != 0.0 else []
        device = input_ids.device
        for entry in self.active:
            entry.to(device)
        self.spread = ValueGuide.value_spread(self.active) if self.active else 0.0
        self.weights = (torch.cat([entry.weights for entry in self.active]) if self.active
                        else None)
        self.attention_mask = attention_mask.long()
        positions = positions_from_mask(self.attention_mask)
        self.next_position = positions[:, -1] + 1
        batch = input_ids.shape[0]
        self.tokens = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(batch, 0, device=device)
        self.ref_logprobs = torch.zeros(batch, 0, device=device)
        self.topk_logprobs = torch.zeros(batch, 0, device=device)
        self.tv = torch.zeros(batch, 0, device=device)
        self.betas = torch.zeros(batch, 0, device=device)
        self.value = torch.full((batch,), float("nan"), device=device)
        self.ref_cache = new_cache(reference)
        logits, self.ref_cache = model_forward(
            reference, input_ids=input_ids, attention_mask=self.attention_mask,
            position_ids=positions, cache=self.ref_cache, use_cache=True,
            return_logits=True, logits_to_keep=1)
        self.next_logits = logits[:, -1].float()
        self.value_caches = [self._prefill(entry, input_ids, positions)
                             for entry in self.active]

    def _prefill(self, entry: ActiveValueModel, input_ids: torch.Tensor,
                 positions: torch.Tensor) -> object:
        """A value model's KV cache over the prompts."""
        cache = new_cache(entry.model.backbone)
        _, cache = entry.model(input_ids, attention_mask=self.attention_mask,
                               position_ids=positions, cache=cache, use_cache=True)
        return cache

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    # -- one step ---------------------------------------------------------------------------
    def choose(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pick the next token of every row; returns them ([B])."""
        candidates = self.candidates()
        top_k = torch.log_softmax(candidates.logprobs, dim=-1)  # plain top-k sampling
        values = None
        if self.active:
            candidates = self.skip(candidates)
            values = self.score(candidates.ids)
        beta = self.step_beta(candidates, values)
        policy = mavis_logprobs(candidates.logprobs, values, self.weights, beta,
                                candidates.scored)
        choice = self.sample(policy, generator)
        self.record_divergence(policy, top_k, choice)
        return self.keep(candidates, policy, values, choice)

    def step_beta(self, candidates: Candidates, values: torch.Tensor | None) -> torch.Tensor:
        """Each row's beta for this step: the setting, or with a KL budget the largest beta up
        to it that keeps the step within the budget (`beta_for_kl`); recorded in `betas`."""
        beta = torch.full((self.batch_size,), float(self.settings.beta),
                          device=candidates.logprobs.device)
        if values is None:
            beta.zero_()
        elif self.settings.kl_budget is not None:
            logprobs = candidates.logprobs
            if candidates.scored is not None:
                logprobs = logprobs.masked_fill(~candidates.scored, float("-inf"))
            beta = beta_for_kl(logprobs, weighted_values(values, self.weights),
                               self.settings.kl_budget, self.settings.beta)
        self.betas = torch.cat([self.betas, beta[:, None]], dim=1)
        return beta

    def candidates(self) -> Candidates:
        logprobs, ids = top_k_candidates(self.next_logits, self.settings.top_k,
                                         self.settings.temperature)
        return Candidates(logprobs, ids)

    def skip(self, candidates: Candidates) -> Candidates:
        """Drop the least likely candidates while the total-variation bound allows it
        (`candidates_to_score`); the batch keeps the widest row's number of columns."""
        scored = candidates_to_score(candidates.logprobs, self.settings.beta, self.spread,
                                     self.settings.candidate_epsilon)
        width = int(scored.sum(-1).max())
        return Candidates(candidates.logprobs[:, :width], candidates.ids[:, :width],
                          scored[:, :width])

    def score(self, ids: torch.Tensor) -> torch.Tensor:
        """Every active objective's value of every candidate: [B, k, M_active], one forward
        per value model over its cached prefix, normalised (`ActiveValueModel.normalise`)."""
        batch, width = ids.shape
        positions = self.next_position[:, None].expand(batch, width)
        columns = []
        for entry, cache in zip(self.active, self.value_caches, strict=True):
            mask = candidate_mask(self.attention_mask, width, entry.model.head.weight.dtype)
            values, _ = entry.model(ids, attention_mask=mask, position_ids=positions,
                                    cache=cache, use_cache=True)
            columns.append(entry.normalise(values.float()))
        return torch.cat(columns, dim=-1)

    def sample(self, policy: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One candidate index per row from `policy` (log-probabilities [B, k])."""
        if self.settings.greedy:
            return policy.argmax(-1)
        return torch.multinomial(policy.exp(), 1, generator=generator).squeeze(-1)

    def record_divergence(self, policy: torch.Tensor, top_k: torch.Tensor,
                          choice: torch.Tensor) -> None:
        """Per row, the chosen token's log-probability under plain top-k sampling, and the
        total-variation distance between plain top-k sampling and the policy at this step (what
        steering moved)."""
        rows = torch.arange(self.batch_size, device=choice.device)
        width = policy.shape[1]
        reference = top_k.exp()
        moved = (policy.exp() - reference[:, :width]).abs().sum(-1) + reference[:, width:].sum(-1)
        self.topk_logprobs = torch.cat([self.topk_logprobs, top_k[rows, choice][:, None]], dim=1)
        self.tv = torch.cat([self.tv, 0.5 * moved[:, None]], dim=1)

    def keep(self, candidates: Candidates, policy: torch.Tensor, values: torch.Tensor | None,
             choice: torch.Tensor) -> torch.Tensor:
        """Record the chosen candidate of every row (tokens, both log-probs, value) and keep
        its keys and values in the value caches; returns the chosen tokens."""
        rows = torch.arange(self.batch_size, device=choice.device)
        token = candidates.ids[rows, choice]
        if values is not None:
            for cache in self.value_caches:
                replace_tail_with_choice(cache, candidates.ids.shape[1], choice)
            self.value = values[rows, choice] @ self.weights
        ref_full = torch.log_softmax(self.next_logits, dim=-1)
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)
        # greedy decoding is a point mass: the chosen token has probability 1
        chosen = (torch.zeros_like(policy[:, 0]) if self.settings.greedy
                  else policy[rows, choice])
        self.logprobs = torch.cat([self.logprobs, chosen[:, None]], dim=1)
        self.ref_logprobs = torch.cat([self.ref_logprobs, ref_full[rows, token][:, None]], dim=1)
        self.attention_mask = torch.cat(
            [self.attention_mask, torch.ones_like(self.attention_mask[:, :1])], dim=1)
        return token

    # -- between steps ----------------------------------------------------------------------
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
                     "topk_logprobs", "tv", "betas", "value", "next_logits"):
            setattr(self, name, getattr(self, name)[rows])
