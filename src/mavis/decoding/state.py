"""The decoding state machine shared by sampling, beam search, tree data collection and the
server.

A `DecodingState` holds a batch of rows (left-padded prompts plus what was generated so far),
the KV cache of the reference model and of every value model some row uses, and the
reference's next-token logits. Every row carries its own settings (a `SamplingSettings`,
resolved by the decoder: beta, top-k, temperature, greedy, KL budget), its own objective
weights (a row of `weights`, over the guide's columns) and optionally its own random
generator, so one batch can serve requests with different trade-offs. `choose()` adds one
token to every row; `select(rows)` keeps, reorders or duplicates rows (finished rows leave,
beams branch); `advance()` runs the reference model on the chosen tokens; `merge(other)` lets
the rows of another state join (continuous batching).

Proposal models (optional) are causal LMs whose combined next-token log-probabilities

    log pi_prop(a | s)  =  sum_j w_j log softmax(logits_j(s))[a]        (renormalised)

replace pi_ref as the distribution that the candidates (and so plain top-k sampling) come
from: one fine-tuned policy with weight 1 (MORLHF, a Rewarded Soup), or two single-objective
policies with weights lambda and 1 - lambda (MOD, Shi et al. 2024). Each has its own KV cache,
kept in step by `select`, `merge` and `advance`; the weights are per row. `reference` stays
pi_ref: `ref_logprobs` are always read from its full softmax, so every policy's KL (equation 7)
is against the same pi_ref. Without proposal models the candidates come from pi_ref itself.

One step of `choose`, each part its own method:
    candidates   the top-k tokens of pi_ref, or of the proposal models' combination (after
                 temperature), and their log-probabilities
    skip         drop the candidates that cannot matter (optional, with a bound on the error)
    score        every value model in use reads all candidates in one forward over its cache
                 (rows whose nuclei differ in width: a few forwards, one per group of rows of
                 similar width, `mavis.decoding.ragged`); with `value_min_p` only the
                 candidates at least that times as likely as the most likely one are read,
                 and the others keep their mass at the read ones' mean value
                 (`fill_unscored`; a row with one read candidate is plain); a step where a
                 row draws an unread candidate keeps no candidate's keys and values, and the
                 chosen tokens are fed with the next step's candidates;
                 on a forced step (every row has one candidate left: the values cannot change
                 the choice) or a certain one (every guided row's most likely candidate has
                 at least its `certain_p`: sampled from plain top-k) no value model runs, and
                 the token waits, unread, until the next step that scores (fed before its
                 candidates) or `catch_up`; when only some rows are certain (or have no
                 weights), those draw their token from plain top-k first and the value
                 models read just that token for them (`plain_rows`)
    tilt         pi_ref (or pi_prop) * exp(beta * sum_m lambda_m V_m), renormalised
                 (`mavis.decoding.tilt`)
    sample       one candidate per row (or the most likely one)
    keep         the chosen candidate's keys and values stay in the value caches; the rest go

Cost per token: one reference forward of one token (and one per proposal model), plus, per
value model in use, one forward of the scored candidates over the cached prefix (each candidate
at the same position, seeing the prefix and itself only), none on forced steps. A value model
no row weights is not run; one that some rows use runs for the whole batch, weighted by zero
for the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mavis.decoding.guide import ValueGuide
from mavis.decoding.ragged import width_groups
from mavis.decoding.sampling import SamplingSettings
from mavis.decoding.tilt import (
    beta_for_kl,
    candidates_to_score,
    fill_unscored,
    mavis_logprobs,
    nucleus,
    top_k_candidates,
    weighted_values,
)
from mavis.errors import MavisError
from mavis.models.cache import (
    append,
    crop_last,
    keep_rows,
    left_padded,
    model_forward,
    rows_copy,
    stacked,
    tail,
)
from mavis.models.layout import DynamicLayout, StaticLayout
from mavis.models.masks import positions_from_mask

# Per-row tensors, kept in step by `select` and `merge` (history: one column per step).
_ROW_TENSORS = ("attention_mask", "sequence", "next_position", "next_logits", "value",
                "weights", "beta", "top_k", "top_p", "min_p", "certain_p", "value_min_p",
                "temperature",
                "greedy",
                "kl_budget", "lengths")
# ... and with proposal models: each row's proposal weights [B, P] and next-token logits [B, P, V]
_PROPOSAL_TENSORS = ("proposal_weights", "proposal_logits")
# value_tokens: the tokens the value models read for the row at the step (candidates x value
# models run, padding included): the step's value cost
_HISTORY = {"tokens": -1, "logprobs": 0.0, "ref_logprobs": 0.0, "topk_logprobs": 0.0,
            "value_tokens": 0.0, "tv": 0.0, "betas": 0.0}


@dataclass
class Candidates:
    """The candidate tokens of one step: log pi_ref, or log pi_prop with proposal models
    (temperature applied), and ids, [B, k]."""

    logprobs: torch.Tensor
    ids: torch.Tensor
    scored: torch.Tensor | None = None  # bool [B, k]: False = skipped
    # bool [B, k]: the candidates the value models read (`value_min_p`); the others keep
    # their mass at the read ones' mean value (`fill_unscored`). None: every scored one.
    valued: torch.Tensor | None = None


def _drawn_first(ids: torch.Tensor, scored: torch.Tensor | None, rows: torch.Tensor,
                 drawn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidates a value pass reads when `rows` (bool [B]) have drawn their token
    already (`drawn`, candidate indices [B]): those rows read only it, as their first and
    only scored candidate; the other rows read theirs. ids, scored: [B, k]."""
    first = ids.gather(1, drawn[:, None])
    ids = torch.cat([torch.where(rows[:, None], first, ids[:, :1]), ids[:, 1:]], dim=1)
    if scored is None:
        scored = torch.ones_like(ids, dtype=torch.bool)
    only_first = torch.arange(ids.shape[1], device=ids.device)[None, :] == 0
    return ids, torch.where(rows[:, None], only_first, scored)


def next_logits(model: Any, **inputs: Any) -> torch.Tensor:
    """A causal LM's logits for the token after the last input, [B, V]."""
    logits, _ = model_forward(model, use_cache=True, return_logits=True, logits_to_keep=1,
                              **inputs)
    return logits[:, -1]


def value_heads(model: Any, **inputs: Any) -> torch.Tensor:
    """A value model's raw values at every input position, [B, T, M]."""
    values, _ = model(use_cache=True, **inputs)
    return values


def _dtype(model: Any) -> torch.dtype:
    return next(model.parameters()).dtype


class DecodingState:
    def __init__(self, reference: torch.nn.Module, guide: ValueGuide, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, settings: Sequence[SamplingSettings],
                 weights: torch.Tensor,
                 generators: Sequence[torch.Generator | None] | None = None,
                 proposals: Sequence[torch.nn.Module] = (),
                 proposal_weights: torch.Tensor | None = None,
                 layout: DynamicLayout | StaticLayout | None = None,
                 lazy_values: bool = True) -> None:
        """`settings`: one per row; `weights`: [B, guide.width], each row's lambda (ignored
        for rows with beta 0); `generators`: one per row (a request with a seed gets the same
        answer alone or beside others), or None to sample with the generator `choose` gets;
        `proposals`: causal LMs whose combination the candidates come from (none: pi_ref),
        with `proposal_weights` [B, len(proposals)], each row's weight of each; `layout`:
        where the keys and values live (`mavis.models.layout`; default: growing caches; a
        `StaticLayout` must have been `start`ed for this batch); `lazy_values`: skip the value
        pass on steps that do not need it (growing caches only): forced steps, with one
        candidate per row (the choices are the same either way), and certain steps
        (`plain_rows`: plain top-k sampling there by design, with any layout); their tokens
        are read later."""
        self.reference, self.guide = reference, guide
        self.layout = layout or DynamicLayout()
        self.lazy_values = lazy_values and not self.layout.static
        self.unread = 0  # the newest tokens of every row that the value caches have not read
        self._grouped: tuple | None = None  # a grouped value pass's keys and values (`score`)
        self._fed = 0  # the candidates an ungrouped value pass fed (`score`)
        if self.layout.static and proposals:
            raise MavisError("proposal models need the dynamic cache layout; decode them "
                             "without compile/static caches")
        self.proposals = list(proposals)
        self.proposal_caches: list[Any] = []
        device = input_ids.device
        self.settings = list(settings)
        self._row_settings(device)
        self.weights = torch.where(self.beta[:, None] > 0, weights.to(device).float(),
                                   torch.zeros((), device=device))
        self.generators = list(generators) if generators is not None else None
        self.epsilon = max(s.candidate_epsilon for s in self.settings)
        self.attention_mask = attention_mask.long()
        self.sequence = input_ids
        positions = positions_from_mask(self.attention_mask)
        self.next_position = positions[:, -1] + 1
        batch = input_ids.shape[0]
        for name, fill in _HISTORY.items():
            dtype = torch.long if name == "tokens" else torch.float32
            setattr(self, name, torch.full((batch, 0), fill, dtype=dtype, device=device))
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.value = torch.full((batch,), float("nan"), device=device)
        self.ref_cache = self.layout.new_cache(reference)
        self.next_logits = next_logits(
            reference, input_ids=input_ids, position_ids=positions, cache=self.ref_cache,
            attention_mask=self.layout.prefill_mask(self.attention_mask, _dtype(reference)),
        ).float()
        self.value_caches = {i: self.prefill(i) for i in guide.used(self.weights)}
        if self.proposals:
            self._prefill_proposals(positions, proposal_weights)

    def _row_settings(self, device: torch.device) -> None:
        """The per-row settings as tensors."""
        def column(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        self.beta = column([float(s.beta) for s in self.settings], torch.float32)
        self.top_k = column([s.top_k for s in self.settings], torch.long)
        self.top_p = column([s.top_p for s in self.settings], torch.float32)
        self.min_p = column([s.min_p for s in self.settings], torch.float32)
        self.certain_p = column([s.certain_p for s in self.settings], torch.float32)
        self.value_min_p = column([s.value_min_p for s in self.settings], torch.float32)
        self.temperature = column([s.step_temperature for s in self.settings], torch.float32)
        self.greedy = column([s.greedy for s in self.settings], torch.bool)
        self.kl_budget = column([math.nan if s.step_kl_budget is None else s.step_kl_budget
                                 for s in self.settings], torch.float32)

    def _prefill_proposals(self, positions: torch.Tensor,
                           proposal_weights: torch.Tensor | None) -> None:
        """Every proposal model's KV cache over the prompts, and its next-token logits."""
        batch, count = self.sequence.shape[0], len(self.proposals)
        if proposal_weights is None or tuple(proposal_weights.shape) != (batch, count):
            raise ValueError(f"proposal_weights must be [{batch}, {count}] (rows x proposals)")
        self.proposal_weights = proposal_weights.to(self.sequence.device).float()
        self.proposal_caches = [self.layout.new_cache(model) for model in self.proposals]
        self._run_proposals(self.sequence, positions)

    def _run_proposals(self, input_ids: torch.Tensor, positions: torch.Tensor) -> None:
        """Feed `input_ids` to every proposal model over its cache; keep the next-token
        logits ([B, P, V])."""
        self.proposal_logits = torch.stack([
            next_logits(model, input_ids=input_ids, attention_mask=self.attention_mask,
                        position_ids=positions, cache=cache).float()
            for model, cache in zip(self.proposals, self.proposal_caches, strict=True)], dim=1)

    @property
    def _row_tensors(self) -> tuple[str, ...]:
        """The per-row tensors `select` and `merge` keep in step."""
        return (*_ROW_TENSORS, *_PROPOSAL_TENSORS) if self.proposals else _ROW_TENSORS

    def prefill(self, model_index: int) -> Any:
        """Value model `model_index`'s KV cache over every row's sequence so far."""
        model = self.guide.entries[model_index].model
        cache = self.layout.new_cache(model.backbone)
        mask = self.layout.prefill_mask(self.attention_mask, model.head.weight.dtype)
        model(self.sequence, attention_mask=mask,
              position_ids=positions_from_mask(self.attention_mask), cache=cache,
              use_cache=True)
        return cache

    @property
    def batch_size(self) -> int:
        return self.sequence.shape[0]

    @property
    def active(self) -> list[int]:
        """The value models being run (indices into `guide.entries`)."""
        return sorted(self.value_caches)

    def generated(self, row: int, name: str = "tokens") -> list:
        """Row `row`'s part of a history tensor (its tokens, log-probs, ...), oldest first."""
        length = int(self.lengths[row])
        history = getattr(self, name)[row]
        return history[history.shape[0] - length:].tolist()

    # -- one step ---------------------------------------------------------------------------
    def choose(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pick the next token of every row; returns them ([B])."""
        candidates = self.candidates()
        top_k = torch.log_softmax(candidates.logprobs, dim=-1)  # plain top-k sampling
        values, forced, read = None, False, torch.zeros(self.batch_size,
                                                       device=self.value_tokens.device)
        plain = torch.zeros(self.batch_size, dtype=torch.bool, device=read.device)
        drawn: torch.Tensor | None = None
        if self.value_caches:
            candidates = self.skip(candidates)
            forced = candidates.ids.shape[1] == 1
            if not forced:
                plain = self.plain_rows(top_k, candidates.valued)
            if not (self.lazy_values and (forced or bool(plain.all()))):
                ids, scored = candidates.ids, candidates.valued
                if scored is None:
                    scored = candidates.scored
                if bool(plain.any()):  # their tokens first: only those are read
                    drawn = self.sample(mavis_logprobs(candidates.logprobs, None,
                                                       scored=candidates.scored),
                                        generator, plain)
                    ids, scored = _drawn_first(ids, scored, plain, drawn)
                if candidates.valued is not None:  # read the valued ones, fill the rest
                    width = int(scored.sum(-1).max())
                    values, read = self.score(ids[:, :width], scored[:, :width])
                    values = fill_unscored(candidates.logprobs, values, scored[:, :width])
                else:
                    values, read = self.score(ids, scored)
        self.value_tokens = torch.cat([self.value_tokens, read[:, None]], dim=1)
        beta = self.step_beta(candidates, values, guided=values is not None or forced,
                              plain=plain)
        policy = mavis_logprobs(candidates.logprobs, values, self.weights, beta,
                                candidates.scored)
        if drawn is None:
            choice = value_choice = self.sample(policy, generator)
        else:  # a plain row's drawn token is its first scored candidate
            choice = drawn if bool(plain.all()) else torch.where(
                plain, drawn, self.sample(policy, generator, ~plain))
            value_choice = torch.where(plain, torch.zeros_like(choice), choice)
        self.record_divergence(policy, top_k, choice)
        read_choice = candidates.valued is None or values is None or bool(
            (plain | candidates.valued.gather(1, choice[:, None]).squeeze(1)).all())
        return self.keep(candidates, policy, values, choice, value_choice, read_choice)

    def candidates(self) -> Candidates:
        """Each row's top-k tokens after its temperature (of pi_ref, or of the proposal
        models' combination), cut to its nucleus (top_p, min_p); a row gets no mass on the
        columns beyond its own k or outside its nucleus (and they are not scored)."""
        width = int(self.top_k.max())
        logprobs, ids = top_k_candidates(self.proposal_scores(), width,
                                         self.temperature[:, None])
        if bool((self.top_k < width).any()):
            beyond = torch.arange(width, device=ids.device)[None, :] >= self.top_k[:, None]
            logprobs = logprobs.masked_fill(beyond, float("-inf"))
        if bool((self.top_p < 1).any() or (self.min_p > 0).any()):
            logprobs = logprobs.masked_fill(~nucleus(logprobs, self.top_p, self.min_p),
                                            float("-inf"))
        return Candidates(logprobs, ids)

    def proposal_scores(self) -> torch.Tensor:
        """The next-token scores the candidates come from, [B, V]: pi_ref's logits, or with
        proposal models sum_j w_j log softmax(logits_j) (normalised by `top_k_candidates`)."""
        if not self.proposals:
            return self.next_logits
        logprobs = torch.log_softmax(self.proposal_logits, dim=-1)
        weights = self.proposal_weights[:, :, None]
        weighted = torch.where(weights != 0, weights * logprobs,
                               torch.zeros((), device=weights.device))
        return weighted.sum(dim=1)

    def plain_rows(self, top_k: torch.Tensor, valued: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """The rows sampled from plain top-k at this step, bool [B]: those without weights,
        and the certain ones, whose most likely candidate has at least their `certain_p`
        under plain top-k sampling (`top_k`, log-probabilities [B, k], most likely first).
        With `valued` (bool [B, k], `value_min_p`), also the rows that would read one
        candidate: the others get its value, so the tilt cannot move their choice either.
        The values cannot move their choice, so the value models read only their chosen
        token (none at all when every row is plain)."""
        guided = self.weights.abs().sum(-1) > 0
        sure = (self.certain_p < 1) & (top_k[:, 0].exp() >= self.certain_p)
        if valued is not None:
            sure = sure | (valued.sum(-1) <= 1)
        return ~guided | sure

    def skip(self, candidates: Candidates) -> Candidates:
        """Drop the least likely candidates while the total-variation bound allows it
        (`candidates_to_score`); the batch keeps the widest row's number of columns (all of
        them with a static layout, whose shapes never change)."""
        scored = candidates_to_score(candidates.logprobs, self.beta,
                                     self.guide.spread(self.weights), self.epsilon)
        scored &= torch.isfinite(candidates.logprobs) | (torch.arange(
            scored.shape[1], device=scored.device) == 0)
        width = scored.shape[1] if self.layout.static else int(scored.sum(-1).max())
        logprobs, ids, scored = (candidates.logprobs[:, :width], candidates.ids[:, :width],
                                 scored[:, :width])
        valued = None
        if self.lazy_values and bool((self.value_min_p > 0).any()):
            valued = scored & nucleus(logprobs, 1.0, self.value_min_p)
        return Candidates(logprobs, ids, scored, valued)

    def score(self, ids: torch.Tensor, scored: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every objective's normalised value of every candidate: [B, k, guide.width], one
        forward per value model in use over its cached prefix (zeros for the others); the
        tokens left unread by forced steps are fed first, in the same forward. With `scored`
        (bool [B, k], each row's scored candidates first) and rows of different widths, the
        rows are scored in groups of similar width (`ragged.width_groups`), each padded only
        to its own widest row. Also returns the tokens each row's passes read ([B])."""
        batch, width = ids.shape
        unread = self.unread
        positions = self.next_position[:, None].expand(batch, width)
        if unread:
            ids = torch.cat([self.sequence[:, -unread:], ids], dim=1)
            positions = torch.cat([self._unread_positions(), positions], dim=1)
        groups = [(list(range(batch)), width)]
        if scored is not None and not self.layout.static:
            groups = width_groups(scored.sum(-1).tolist())  # one row: one group
        self._fed = groups[0][1]  # the candidates one pass fed (`keep`, ungrouped)
        self._grouped = None if len(groups) == 1 else (unread, {})
        values = torch.zeros(batch, width, self.guide.width, device=ids.device)
        for index, cache in self.value_caches.items():
            entry = self.guide.entries[index]
            dtype = entry.model.head.weight.dtype
            for rows, size in groups:
                if self._grouped is None:
                    part, mask = cache, self.layout.candidate_mask(self.attention_mask, size,
                                                                   dtype, unread)
                else:
                    rows_tensor = torch.tensor(rows, device=ids.device)
                    part = rows_copy(cache, rows_tensor)
                    mask = self.layout.candidate_mask(self.attention_mask[rows_tensor], size,
                                                      dtype, unread)
                raw = self.layout.forward(
                    entry.model, value_heads, input_ids=ids[rows, :unread + size],
                    attention_mask=mask, position_ids=positions[rows, :unread + size],
                    cache=part)
                values[rows, :size, entry.columns] = entry.normalise(raw[:, unread:].float())
                if self._grouped is not None:
                    self._grouped[1].setdefault(index, []).append(
                        (rows_tensor, tail(part, unread + size)))
        read = torch.zeros(batch, device=ids.device)
        for rows, size in groups:
            read[rows] = float((unread + size) * len(self.value_caches))
        self.unread = 0
        return values, read

    def _unread_positions(self) -> torch.Tensor:
        """The position ids of the unread tokens, [B, unread] (read from the mask, so right
        between `choose` and `advance` as well as after)."""
        return positions_from_mask(self.attention_mask)[:, -self.unread:]

    def catch_up(self) -> None:
        """Feed the tokens that forced steps left unread to every value model in use, so that
        the caches hold every token and `value` is each row's value of its whole sequence
        (the weighted, normalised value of its newest token). Nothing to do when none is."""
        if not self.unread or not self.value_caches:
            self.unread = 0
            return
        ids = self.sequence[:, -self.unread:]
        positions = self._unread_positions()
        values = torch.zeros(self.batch_size, self.guide.width, device=ids.device)
        for index, cache in self.value_caches.items():
            entry = self.guide.entries[index]
            mask = self.layout.candidate_mask(self.attention_mask, 0,
                                              entry.model.head.weight.dtype, self.unread)
            raw = self.layout.forward(entry.model, value_heads, input_ids=ids,
                                      attention_mask=mask, position_ids=positions, cache=cache)
            values[:, entry.columns] = entry.normalise(raw[:, -1].float())
        self.value = (values * self.weights).sum(-1)
        self.value_tokens[:, -1] += self.unread * len(self.value_caches)
        self.unread = 0

    def step_beta(self, candidates: Candidates, values: torch.Tensor | None,
                  guided: bool = True, plain: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's beta for this step: its setting, or with a KL budget the largest beta
        up to it that keeps the step within the budget (`beta_for_kl`; on a forced step, with
        one candidate, any beta keeps it: the setting); recorded in `betas`. Rows without
        weights, `plain` rows (bool [B]: sampled from plain top-k, `plain_rows`), and every
        row when no value model guides (`guided` False), get 0."""
        steered = self.weights.abs().sum(-1) > 0
        if plain is not None:
            steered = steered & ~plain
        beta = torch.where(steered, self.beta, torch.zeros_like(self.beta)) if guided else (
            torch.zeros_like(self.beta))
        budgeted = ~torch.isnan(self.kl_budget)
        if values is not None and bool(budgeted.any()):
            logprobs = candidates.logprobs
            if candidates.scored is not None:
                logprobs = logprobs.masked_fill(~candidates.scored, float("-inf"))
            chosen = beta_for_kl(logprobs, weighted_values(values, self.weights),
                                 torch.nan_to_num(self.kl_budget), beta)
            beta = torch.where(budgeted, chosen, beta)
        self.betas = torch.cat([self.betas, beta[:, None]], dim=1)
        return beta

    def sample(self, policy: torch.Tensor, generator: torch.Generator | None,
               rows: torch.Tensor | None = None) -> torch.Tensor:
        """One candidate index per row from `policy` (log-probabilities [B, k]): the most
        likely for greedy rows; with per-row generators, each row draws one uniform number
        of its own (so its tokens do not depend on the other rows). With `rows` (bool [B])
        only those rows draw (the others get 0)."""
        greedy, generators = self.greedy, self.generators
        if rows is not None:
            picked = rows.nonzero().squeeze(-1)
            policy, greedy = policy[picked], greedy[picked]
            if generators is not None:
                generators = [generators[i] for i in picked.tolist()]
        best = policy.argmax(-1)
        if bool(greedy.all()):
            drawn = best
        else:
            probs = policy.exp()
            if generators is None:
                drawn = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            else:
                cdf = probs.cumsum(-1)
                uniforms = torch.stack([torch.rand((), generator=g, device=probs.device)
                                        for g in generators])
                drawn = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None]).squeeze(-1)
                drawn = torch.minimum(drawn, (probs > 0).long().cumsum(-1).argmax(-1))
            drawn = torch.where(greedy, best, drawn)
        if rows is None:
            return drawn
        return torch.zeros_like(rows, dtype=torch.long).masked_scatter(rows, drawn)

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
             choice: torch.Tensor, value_choice: torch.Tensor | None = None,
             read_choice: bool = True) -> torch.Tensor:
        """Record the chosen candidate of every row (tokens, both log-probs, value) and keep
        its keys and values in the value caches; returns the chosen tokens. `value_choice`:
        where each row's chosen candidate is among the scored ones (default: `choice`; a
        plain row's drawn token was scored first). `read_choice` False: some row chose a
        candidate the value models did not read (`value_min_p`), so no row keeps its
        candidate's keys and values: the chosen tokens wait, unread, for the next pass."""
        rows = torch.arange(self.batch_size, device=choice.device)
        token = candidates.ids[rows, choice]
        if values is not None:
            scored = choice if value_choice is None else value_choice
            if self._grouped is not None:
                self._keep_grouped(scored if read_choice else None)
            else:
                for cache in self.value_caches.values():
                    if read_choice:
                        self.layout.keep_choice(cache, self._fed, scored)
                    else:
                        crop_last(cache, self._fed)
            if not read_choice:
                self.unread = 1
            self.value = (values[rows, scored] * self.weights).sum(-1)
        elif self.value_caches:
            self.unread += 1  # a forced or certain step: the value caches read it later
        ref_full = torch.log_softmax(self.next_logits, dim=-1)
        # greedy decoding is a point mass: the chosen token has probability 1
        chosen = torch.where(self.greedy, torch.zeros_like(policy[:, 0]), policy[rows, choice])
        self.tokens = torch.cat([self.tokens, token[:, None]], dim=1)
        self.logprobs = torch.cat([self.logprobs, chosen[:, None]], dim=1)
        self.ref_logprobs = torch.cat([self.ref_logprobs, ref_full[rows, token][:, None]], dim=1)
        self.sequence = torch.cat([self.sequence, token[:, None]], dim=1)
        self.attention_mask = torch.cat(
            [self.attention_mask, torch.ones_like(self.attention_mask[:, :1])], dim=1)
        self.lengths = self.lengths + 1
        return token

    def _keep_grouped(self, choice: torch.Tensor | None) -> None:
        """After a grouped value pass (`score`): append to every value cache each row's unread
        tokens and its chosen candidate (none when `choice` is None), from the keys and values
        its group computed."""
        unread, tails = self._grouped
        self._grouped = None
        length = unread + (choice is not None)
        if not length:
            return
        for index, groups in tails.items():
            layers = []
            for layer in range(len(groups[0][1])):
                keys, values = groups[0][1][layer]
                shape = (self.batch_size, keys.shape[1], length, keys.shape[3])
                out = [keys.new_empty(shape), values.new_empty(shape)]
                for rows, parts in groups:
                    for kind, tensor in enumerate(parts[layer]):
                        kept = tensor[:, :, :unread]
                        if choice is not None:
                            picked = unread + choice[rows]
                            chosen = tensor[torch.arange(len(rows)), :, picked][:, :, None]
                            kept = torch.cat([kept, chosen], dim=2)
                        out[kind][rows] = kept
                layers.append((out[0], out[1]))
            append(self.value_caches[index], layers)

    # -- between steps ----------------------------------------------------------------------
    def advance(self) -> None:
        """Feed the last chosen tokens to the reference model and every proposal model
        (next-token logits)."""
        mask = self.layout.step_mask(self.attention_mask, _dtype(self.reference))
        self.next_logits = self.layout.forward(
            self.reference, next_logits, input_ids=self.sequence[:, -1:], attention_mask=mask,
            position_ids=self.next_position[:, None], cache=self.ref_cache).float()
        if self.proposals:
            self._run_proposals(self.sequence[:, -1:], self.next_position[:, None])
        self.next_position = self.next_position + 1

    def select(self, rows: torch.Tensor) -> None:
        """Keep `rows` (indices, repeats allowed) in that order; caches follow. A value model
        that no remaining row weights stops being run."""
        self._refuse_static("select rows")
        rows = rows.to(self.sequence.device)
        keep_rows(self.ref_cache, rows)
        for cache in (*self.value_caches.values(), *self.proposal_caches):
            keep_rows(cache, rows)
        for name in (*self._row_tensors, *_HISTORY):
            setattr(self, name, getattr(self, name)[rows])
        order = rows.tolist()
        self.settings = [self.settings[r] for r in order]
        if self.generators is not None:
            self.generators = [self.generators[r] for r in order]
        used = set(self.guide.used(self.weights)) if len(order) else set()
        self.value_caches = {i: c for i, c in self.value_caches.items() if i in used}

    def merge(self, other: DecodingState) -> None:
        """Let the rows of `other` (a state of the same decoder, between steps) join this one,
        after its rows: the shorter side is left-padded (caches, masks, histories), and a value
        model that only one side ran is first run over the other side's rows. Both states
        must have the same proposal models (the rows' weights of them may differ)."""
        self._refuse_static("merge states")
        other._refuse_static("merge states")
        self.catch_up()
        other.catch_up()
        if [id(m) for m in self.proposals] != [id(m) for m in other.proposals]:
            raise MavisError("cannot merge decoding states with different proposal models; "
                             "start both from the same decoder")
        for index in set(other.value_caches) - set(self.value_caches):
            self.value_caches[index] = self.prefill(index)
        for index in set(self.value_caches) - set(other.value_caches):
            other.value_caches[index] = other.prefill(index)
        own = self.batch_size
        width = max(self.attention_mask.shape[1], other.attention_mask.shape[1])
        steps = max(self.tokens.shape[1], other.tokens.shape[1])
        for state in (self, other):
            state._pad(width, steps)
        self.ref_cache = stacked(self.ref_cache, other.ref_cache)
        self.proposal_caches = [stacked(a, b) for a, b in zip(
            self.proposal_caches, other.proposal_caches, strict=True)]
        for index in self.value_caches:
            self.value_caches[index] = stacked(self.value_caches[index],
                                               other.value_caches[index])
        for name in (*self._row_tensors, *_HISTORY):
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        self.settings += other.settings
        self.epsilon = max(self.epsilon, other.epsilon)
        if self.generators is not None or other.generators is not None:
            self.generators = ((self.generators or [None] * own)
                               + (other.generators or [None] * other.batch_size))

    def _pad(self, width: int, steps: int) -> None:
        """Left-pad to `width` sequence positions and `steps` history columns."""
        extra = width - self.attention_mask.shape[1]
        if extra:
            left = torch.zeros(self.batch_size, extra, dtype=torch.long,
                               device=self.sequence.device)
            self.attention_mask = torch.cat([left, self.attention_mask], dim=1)
            self.sequence = torch.cat([left, self.sequence], dim=1)
            self.ref_cache = left_padded(self.ref_cache, extra)
            self.value_caches = {i: left_padded(c, extra) for i, c in self.value_caches.items()}
            self.proposal_caches = [left_padded(c, extra) for c in self.proposal_caches]
        more = steps - self.tokens.shape[1]
        if more:
            for name, fill in _HISTORY.items():
                history = getattr(self, name)
                pad = torch.full((self.batch_size, more), fill, dtype=history.dtype,
                                 device=history.device)
                setattr(self, name, torch.cat([pad, history], dim=1))

    def _refuse_static(self, what: str) -> None:
        if self.layout.static:
            raise MavisError(f"cannot {what} of a decoding state with static caches (their "
                             "batch is fixed); use the dynamic layout for beam search and "
                             "serving")
