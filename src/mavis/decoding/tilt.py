"""The math of MAVIS decoding (Algorithm 2) as small pure tensor functions, testable without
any model.

At each step the top-k tokens a_1..a_k of pi_ref (after temperature) are re-weighted by

    pi_MAVIS(a_i | s)  ∝  pi_ref(a_i | s) * exp(beta * sum_m lambda_m * V_m(s + a_i))

and renormalised over those k; tokens outside the top-k get no mass.
"""

from __future__ import annotations

import math

import torch


def top_k_candidates(logits: torch.Tensor, k: int, temperature: float | torch.Tensor = 1.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely tokens of each row and their log-probabilities under the
    temperature-scaled full-vocabulary distribution, sorted from most to least likely.

    logits: [B, V]; temperature: a float or [B, 1] (one per row). Returns (logprobs [B, k],
    token ids [B, k]).
    """
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    return torch.topk(logprobs, k, dim=-1, sorted=True)


def nucleus(candidate_logprobs: torch.Tensor, top_p: float | torch.Tensor = 1.0,
            min_p: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Which of the top-k candidates stay (bool [B, k]): the most likely ones whose probability,
    renormalised over the k, adds up to `top_p` (the nucleus, Holtzman et al. 2020), and of
    those the ones at least `min_p` times as likely as the most likely candidate. The most
    likely candidate always stays. candidate_logprobs must be sorted descending per row
    ([B, k], as `top_k_candidates` returns; -inf for columns a row does not have); top_p and
    min_p are floats or [B]."""
    probs = torch.softmax(candidate_logprobs.float(), dim=-1)
    top_p = torch.as_tensor(top_p, dtype=probs.dtype, device=probs.device).reshape(-1, 1)
    min_p = torch.as_tensor(min_p, dtype=probs.dtype, device=probs.device).reshape(-1, 1)
    before = probs.cumsum(-1) - probs  # the mass of the more likely candidates
    keep = (before < top_p) & (probs >= min_p * probs[:, :1])
    keep[:, 0] = True
    return keep


def fill_unscored(candidate_logprobs: torch.Tensor, values: torch.Tensor,
                  scored: torch.Tensor) -> torch.Tensor:
    """Every candidate's values when the value models read only some of them: the scored
    ones keep theirs, the others get the mean of the row's scored values weighted by their
    reference probabilities (renormalised over the scored ones), so their reference mass is
    tilted as an average candidate's: kept, and never raised relative to the scored ones as a
    whole.

    candidate_logprobs: [B, k]; values: [B, n, M] for the first n candidates (n <= k; a row's
    scored ones first); scored: bool [B, n], each row's scored candidates (at least one).
    -> [B, k, M].
    """
    batch, width, objectives = values.shape
    logprobs = candidate_logprobs[:, :width].float().masked_fill(~scored, float("-inf"))
    share = torch.softmax(logprobs, dim=-1)
    mean = torch.einsum("bn,bnm->bm", share, values.float())
    filled = mean[:, None, :].expand(batch, candidate_logprobs.shape[1], objectives).clone()
    filled[:, :width] = torch.where(scored[:, :, None], values.float(), filled[:, :width])
    return filled


def weighted_values(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_m lambda_m V_m: values [B, k, M] with weights [M] (one setting for every row) or
    [B, M] (a setting per row) -> [B, k]."""
    weights = weights.to(values.dtype)
    if weights.dim() == 1:
        return values @ weights
    return torch.einsum("bkm,bm->bk", values, weights)


def mavis_logprobs(candidate_logprobs: torch.Tensor, candidate_values: torch.Tensor | None,
                   weights: torch.Tensor | None = None, beta: float | torch.Tensor = 0.0,
                   scored: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probabilities of the MAVIS distribution over the candidates.

    candidate_logprobs: [B, k] log pi_ref of each candidate (any constant offset per row is
        irrelevant: the result is renormalised).
    candidate_values: [B, k, M] the value models' values V_m(s + a) of every candidate, or
        None (then the result is top-k sampling from pi_ref).
    weights: [M] or [B, M] the objective weights lambda (per row when 2-D).
    beta: a float, or [B] one guidance strength per row; 0 is top-k sampling.
    scored: optional bool [B, k]; candidates marked False get no mass (skipped candidates).
    """
    tilted = candidate_logprobs.float()
    if candidate_values is not None and weights is not None:
        bonus = weighted_values(candidate_values.float(), weights.to(tilted.device))
        strength = torch.as_tensor(beta, dtype=torch.float32, device=tilted.device)
        tilted = tilted + (strength[:, None] if strength.dim() else strength) * bonus
    if scored is not None:
        tilted = tilted.masked_fill(~scored, float("-inf"))
    return torch.log_softmax(tilted, dim=-1)


def _boost(beta: float | torch.Tensor, value_spread: float | torch.Tensor,
           like: torch.Tensor) -> torch.Tensor:
    """e^(beta * D) per row ([B, 1]), capped so that it stays finite (inf where D is)."""
    product = (torch.as_tensor(beta, dtype=torch.float64, device=like.device)
               * torch.as_tensor(value_spread, dtype=torch.float64, device=like.device))
    product = torch.where(torch.isnan(product), torch.zeros_like(product), product)
    boost = torch.exp(torch.clamp(product, max=700.0))
    boost = torch.where(torch.isinf(torch.as_tensor(value_spread, dtype=torch.float64,
                                                    device=like.device)),
                        torch.full_like(boost, math.inf), boost)
    return boost.reshape(-1, 1) if boost.dim() else boost


def candidates_to_score(candidate_logprobs: torch.Tensor, beta: float | torch.Tensor,
                        value_spread: float | torch.Tensor, epsilon: float) -> torch.Tensor:
    """Which candidates must be scored so that dropping the rest moves the MAVIS distribution
    by at most `epsilon` in total variation.

    With weighted values confined to an interval of width D = value_spread, dropping a set S of
    candidates (reference mass P_S) from the k changes the MAVIS distribution by exactly its
    tilted mass, which is at most

        P_S * e^(beta*D) / (P_S * e^(beta*D) + P_kept).

    Candidates are dropped from the least likely end while that bound stays <= epsilon. The most
    likely candidate is always kept. candidate_logprobs must be sorted descending per row
    ([B, k], as `top_k_candidates` returns); beta and value_spread are floats or [B] (one per
    row; an infinite spread keeps every candidate). Returns bool [B, k], True = score it.
    """
    batch, k = candidate_logprobs.shape
    keep_all = torch.ones(batch, k, dtype=torch.bool, device=candidate_logprobs.device)
    if epsilon <= 0.0 or k == 1:
        return keep_all
    probs = candidate_logprobs.double().exp()
    # tail[:, j] = mass of candidates j..k-1 (what is dropped when keeping the first j)
    tail = probs.flip(-1).cumsum(-1).flip(-1)
    head = probs.sum(-1, keepdim=True) - tail
    boost = _boost(beta, value_spread, probs)
    bound = tail * boost / (tail * boost + head)
    droppable = (bound <= epsilon) & torch.isfinite(boost).expand_as(bound)
    droppable[:, 0] = False
    return ~droppable


def tv_bound(candidate_logprobs: torch.Tensor, scored: torch.Tensor,
             beta: float | torch.Tensor, value_spread: float | torch.Tensor) -> torch.Tensor:
    """The total-variation bound of `candidates_to_score` for a given choice of scored set."""
    probs = candidate_logprobs.double().exp()
    dropped = (probs * (~scored)).sum(-1)
    kept = (probs * scored).sum(-1)
    boost = _boost(beta, value_spread, probs).reshape(-1)
    return dropped * boost / (dropped * boost + kept)


def step_kl(candidate_logprobs: torch.Tensor, bonus: torch.Tensor,
            beta: torch.Tensor) -> torch.Tensor:
    """KL(pi_beta || pi_k) per row, where pi_k is top-k sampling (softmax of the candidates'
    log-probabilities) and pi_beta its tilt by exp(beta * bonus). [B, k], [B, k], [B] -> [B]."""
    reference = torch.log_softmax(candidate_logprobs.float(), dim=-1)
    tilted = torch.log_softmax(reference + beta[:, None] * bonus.float(), dim=-1)
    return (tilted.exp() * (tilted - reference)).nansum(-1)


def beta_for_kl(candidate_logprobs: torch.Tensor, bonus: torch.Tensor,
                budget: float | torch.Tensor, beta_max: float | torch.Tensor,
                steps: int = 40) -> torch.Tensor:
    """Per row, the largest beta in [0, beta_max] whose tilt moves this step's distribution at
    most `budget` nats away from top-k sampling (KL(pi_beta || pi_k) <= budget).

    The step KL grows with beta (its derivative is beta * Var_pi_beta(bonus) >= 0), so a
    bisection finds it; rows that stay within the budget at beta_max get beta_max. By the chain
    rule, the KL of a whole answer against top-k sampling is then at most `budget` per token.
    candidate_logprobs, bonus: [B, k] (bonus: the weighted values of the candidates); budget
    and beta_max: floats or [B]. -> [B].
    """
    rows, device = candidate_logprobs.shape[0], candidate_logprobs.device
    budget = torch.as_tensor(budget, dtype=torch.float32, device=device).expand(rows)
    high = torch.as_tensor(beta_max, dtype=torch.float32, device=device).expand(rows).clone()
    bonus = torch.nan_to_num(bonus.float())
    fits = (step_kl(candidate_logprobs, bonus, high) <= budget) & (budget > 0)
    top = high.clone()
    low = torch.zeros_like(high)
    for _ in range(steps):
        middle = (low + high) / 2
        over = step_kl(candidate_logprobs, bonus, middle) > budget
        high = torch.where(over, middle, high)
        low = torch.where(over, low, middle)
    return torch.where(fits, top, torch.where(budget > 0, low, torch.zeros_like(low)))
