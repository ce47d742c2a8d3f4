"""The MAVIS tilt and the candidate-skipping bound as pure tensor functions (no model)."""

import math

import torch

from mavis.decoding.tilt import (
    beta_for_kl,
    candidates_to_score,
    fill_unscored,
    mavis_logprobs,
    nucleus,
    step_kl,
    top_k_candidates,
    tv_bound,
    weighted_values,
)
from mavis.models.masks import candidate_mask, positions_from_mask


def test_tilt_matches_formula():
    ref = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    values = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])  # [B, k, M]
    lam = torch.tensor([0.25, 0.75])
    beta = 3.0
    got = mavis_logprobs(ref, values, lam, beta).exp()
    torch.testing.assert_close(weighted_values(values, lam),
                               torch.tensor([[0.25, 0.75, 0.5]]))
    w = torch.tensor([0.5 * math.exp(beta * 0.25), 0.3 * math.exp(beta * 0.75),
                      0.2 * math.exp(beta * 0.5)])
    torch.testing.assert_close(got[0], w / w.sum())


def test_beta_zero_is_top_k_renormalised():
    logits = torch.randn(4, 50)
    lp, ids = top_k_candidates(logits, 7)
    tilted = mavis_logprobs(lp, torch.randn(4, 7, 1) * 10, torch.ones(1), beta=0.0).exp()
    expected = torch.softmax(logits, -1).gather(-1, ids)
    torch.testing.assert_close(tilted, expected / expected.sum(-1, keepdim=True))
    assert torch.equal(ids, torch.topk(logits, 7).indices)


def test_temperature_applies_before_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    lp, _ = top_k_candidates(logits, 4, temperature=2.0)
    torch.testing.assert_close(lp.exp().sum(), torch.tensor(1.0))
    torch.testing.assert_close(lp, torch.log_softmax(logits / 2.0, -1).sort(descending=True).values)


def test_lambda_picks_objectives():
    ref = torch.log(torch.full((1, 2), 0.5))
    values = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    first = mavis_logprobs(ref, values, torch.tensor([1.0, 0.0]), 5.0).exp()
    second = mavis_logprobs(ref, values, torch.tensor([0.0, 1.0]), 5.0).exp()
    assert first[0, 0] > 0.99 and second[0, 1] > 0.99


def test_skipped_candidates_get_no_mass():
    ref = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    scored = torch.tensor([[True, True, False]])
    out = mavis_logprobs(ref, torch.zeros(1, 3, 1), torch.ones(1), 1.0, scored).exp()
    torch.testing.assert_close(out, torch.tensor([[2 / 3, 1 / 3, 0.0]]))


def test_candidate_skipping_respects_bound_against_worst_case_values():
    torch.manual_seed(0)
    logits = torch.randn(64, 1000) * 4
    lp, _ = top_k_candidates(logits, 40)
    beta, spread, eps = 4.0, 1.0, 1e-3
    scored = candidates_to_score(lp, beta, spread, eps)
    assert scored[:, 0].all()
    assert (scored.sum(-1) < 40).any(), "peaked rows should let some candidates go"
    assert (tv_bound(lp, scored, beta, spread) <= eps + 1e-12).all()
    # Adversarial values within the spread: dropped candidates at the top of the range, kept
    # ones at the bottom. The true TV between exact and skipped MAVIS stays within epsilon.
    values = torch.where(scored, torch.zeros_like(lp), torch.full_like(lp, spread))
    one = torch.ones(1)
    exact = mavis_logprobs(lp, values[..., None], one, beta).exp()
    skipped = mavis_logprobs(lp, values[..., None], one, beta, scored).exp()
    tv = 0.5 * (exact - skipped).abs().sum(-1)
    assert (tv <= eps + 1e-6).all()
    assert tv.max() > eps / 10  # the bound is not vacuous in the worst case


def test_no_skipping_when_value_range_unknown_or_epsilon_zero():
    lp, _ = top_k_candidates(torch.randn(3, 100) * 5, 10)
    assert candidates_to_score(lp, 2.0, math.inf, 1e-2).all()
    assert candidates_to_score(lp, 2.0, 1.0, 0.0).all()


def test_per_row_weights_and_beta():
    """Rows of one batch may carry different weights and strengths (one request per row)."""
    torch.manual_seed(1)
    ref = torch.log_softmax(torch.randn(3, 5), -1)
    values = torch.randn(3, 5, 2)
    weights = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.0, 1.0]])
    beta = torch.tensor([2.0, 0.0, 5.0])
    batched = mavis_logprobs(ref, values, weights, beta)
    for row in range(3):
        alone = mavis_logprobs(ref[row:row + 1], values[row:row + 1], weights[row],
                               float(beta[row]))
        torch.testing.assert_close(batched[row:row + 1], alone)
    torch.testing.assert_close(batched[1], torch.log_softmax(ref[1], -1))


def test_candidate_mask_and_positions():
    prefix = torch.tensor([[0, 1, 1], [1, 1, 1]])
    mask = candidate_mask(prefix, 2)
    assert mask.shape == (2, 1, 2, 5)
    allowed = mask == 0
    assert allowed[0, 0].tolist() == [[False, True, True, True, False],
                                      [False, True, True, False, True]]
    assert allowed[1, 0, 1].tolist() == [True, True, True, False, True]
    assert positions_from_mask(prefix).tolist() == [[0, 0, 1], [0, 1, 2]]



def test_candidate_mask_with_unread_tokens_feeds_them_causally_first():
    """The last two prefix tokens are not cached yet: they come first, each seeing the cached
    prefix and the unread ones up to itself; the candidates see the whole prefix and
    themselves."""
    prefix = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])  # cached: 2 positions, unread: 2
    allowed = candidate_mask(prefix, 2, unread=2) == 0
    assert allowed.shape == (2, 1, 4, 6)
    assert allowed[0, 0].tolist() == [[False, True, True, False, False, False],
                                      [False, True, True, True, False, False],
                                      [False, True, True, True, True, False],
                                      [False, True, True, True, False, True]]
    assert allowed[1, 0, 0].tolist() == [True, True, True, False, False, False]
    assert (candidate_mask(prefix, 0, unread=2) == 0).shape == (2, 1, 2, 4)
    torch.testing.assert_close(candidate_mask(prefix, 3, unread=0), candidate_mask(prefix, 3))

def test_beta_for_kl_meets_the_budget_per_step():
    torch.manual_seed(3)
    logprobs = torch.log_softmax(torch.randn(64, 40) * 2, -1)
    bonus = torch.randn(64, 40)
    bonus[0] = 0.0  # a row the values cannot move: any beta keeps KL 0
    beta = beta_for_kl(logprobs, bonus, budget=0.05, beta_max=30.0)
    kl = step_kl(logprobs, bonus, beta)
    assert (beta >= 0).all() and (beta <= 30.0).all() and beta[0] == 30.0
    assert (kl <= 0.05 + 1e-4).all()
    binding = beta < 30.0
    assert binding.sum() > 10 and torch.allclose(kl[binding], torch.full_like(kl[binding], 0.05),
                                                 atol=1e-3)
    # KL grows with beta, so a bigger budget never gives a smaller beta
    assert (beta_for_kl(logprobs, bonus, budget=0.2, beta_max=30.0) >= beta - 1e-5).all()
    assert (beta_for_kl(logprobs, bonus, budget=0.0, beta_max=30.0) == 0).all()
    # the KL of the tilt agrees with the direct formula
    p = torch.softmax(logprobs + beta[:, None] * bonus, -1)
    q = torch.softmax(logprobs, -1)
    torch.testing.assert_close(kl, (p * (p.log() - q.log())).sum(-1), atol=1e-4, rtol=1e-4)


def test_nucleus_keeps_the_smallest_prefix_reaching_top_p_and_min_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    logp = probs.log()
    assert nucleus(logp, 1.0, 0.0).all()
    assert nucleus(logp, 0.7, 0.0)[0].tolist() == [True, True, False, False]
    assert nucleus(logp, 0.8, 0.0)[0].tolist() == [True, True, False, False]  # 0.5+0.3 >= 0.8
    assert nucleus(logp, 0.81, 0.0)[0].tolist() == [True, True, True, False]
    assert nucleus(logp, 1.0, 0.5)[0].tolist() == [True, True, False, False]  # >= 0.25
    assert nucleus(logp, 1e-9, 0.0).sum(-1).tolist() == [1, 1]  # the most likely stays
    per_row = nucleus(logp, torch.tensor([0.6, 1.0]), torch.tensor([0.0, 0.9]))
    assert per_row.tolist() == [[True, True, False, False], [True, True, True, True]]
    # columns a row does not have (-inf) are never kept; the probabilities are renormalised
    masked = logp.clone()
    masked[0, 2:] = float("-inf")
    assert nucleus(masked, 0.9, 0.0)[0].tolist() == [True, True, False, False]


def test_unscored_candidates_get_the_scored_ones_mean_value_and_keep_their_mass():
    """value_min_p: the candidates the value models did not read get the reference-weighted
    mean of the read ones' values, so the tilt never moves mass towards them as a whole (by
    Jensen, their share is at most their plain top-k share) and, at beta 0, changes nothing."""
    torch.manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(3, 8), -1).sort(-1, descending=True).values
    values = torch.randn(3, 5, 2)
    scored = torch.tensor([[True] * 5, [True, True, False, False, False],
                           [True, False, False, False, False]])
    filled = fill_unscored(logprobs, values, scored)
    assert filled.shape == (3, 8, 2)
    torch.testing.assert_close(filled[:, :5][scored], values[scored])
    for row in range(3):
        share = torch.softmax(logprobs[row, :5][scored[row]], -1)
        mean = (share[:, None] * values[row, :5][scored[row]]).sum(0)
        for column in range(8):
            if column >= 5 or not scored[row, column]:
                torch.testing.assert_close(filled[row, column], mean)
    weights = torch.tensor([0.7, 0.3])
    plain = mavis_logprobs(logprobs, filled, weights, 0.0).exp()
    torch.testing.assert_close(plain, torch.softmax(logprobs, -1))
    unread = torch.cat([~scored, torch.ones(3, 3, dtype=torch.bool)], dim=1)
    for beta in (0.5, 4.0, 50.0):
        tilted = mavis_logprobs(logprobs, filled, weights, beta).exp()
        assert bool(((tilted * unread).sum(-1) <= (plain * unread).sum(-1) + 1e-6).all())
