"""Proposal models on the decoding state: other policies sampled on MAVIS's footing (MORLHF and
Rewarded-Soup policies: one proposal with weight 1; MOD: two with weights lambda, 1 - lambda),
their log-probabilities recorded beside those of the same pi_ref."""

import math

import pytest
import torch
from conftest import build_tiny_llama
from scipy.stats import chisquare

from mavis.decoding.decoder import MavisDecoder, RowRequest
from mavis.decoding.sampling import SamplingSettings
from mavis.decoding.tilt import mavis_logprobs, top_k_candidates
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel


@pytest.fixture(scope="module")
def models(tiny_lm, tmp_path_factory):
    """pi_ref (the shared tiny LM) and two other LMs of the same vocabulary (policies)."""
    reference, tokenizer = load_causal_lm(str(tiny_lm))
    policies = []
    for seed in (11, 12):
        path = build_tiny_llama(tmp_path_factory.mktemp(f"policy{seed}"), seed=seed)
        policies.append(load_causal_lm(str(path))[0])
    return reference, tokenizer, policies


@pytest.fixture(scope="module")
def decoder(models, tiny_lm):
    reference, tokenizer, _ = models
    torch.manual_seed(0)
    value_model = ValueModel.build(str(tiny_lm), ["a"], num_layers=1, lora=None)
    with torch.no_grad():
        value_model.head.weight.normal_()
    return MavisDecoder(reference, tokenizer, [value_model.eval()])


def fresh_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids[None]).logits[0].float()


def mod_logprobs(policies, weights, ids, top_k):
    """MOD's top-k distribution of the next token after `ids`, from fresh forwards."""
    combined = sum(w * torch.log_softmax(fresh_logits(p, ids)[-1], -1)
                   for p, w in zip(policies, weights, strict=True))
    logprobs, candidates = top_k_candidates(combined[None], top_k)
    return torch.log_softmax(logprobs[0], -1), candidates[0]


def test_policy_logprobs_and_ref_logprobs_match_fresh_forwards(decoder, models):
    reference, _, policies = models
    mod = decoder.with_proposals([(policies[0], 0.3), (policies[1], 0.7)])
    assert mod.reference is decoder.reference and mod.guide.value_models == \
        decoder.guide.value_models
    out = mod.generate(["hello", "a longer prompt"], beta=0.0, top_k=5, max_new_tokens=6,
                       seed=3, num_samples=2)
    for seq in out:
        prompt_ids = mod.encode([seq.prompt]).input_ids[0]
        full = torch.cat([prompt_ids, torch.tensor(seq.token_ids)])
        ref_logits = fresh_logits(reference, full)
        for t, token in enumerate(seq.token_ids):
            position = len(prompt_ids) + t
            # log pi_ref: the reference's full softmax, not the sampling distribution's
            ref_lp = torch.log_softmax(ref_logits[position - 1], -1)[token]
            assert seq.ref_logprobs[t] == pytest.approx(float(ref_lp), abs=1e-4)
            policy, candidates = mod_logprobs(policies, (0.3, 0.7), full[:position], 5)
            index = (candidates == token).nonzero()[0, 0]
            assert seq.logprobs[t] == pytest.approx(float(policy[index]), abs=1e-4)
            assert seq.topk_logprobs[t] == pytest.approx(float(policy[index]), abs=1e-4)
        assert seq.kl == pytest.approx(sum(seq.logprobs) - sum(seq.ref_logprobs))
        assert seq.kl_topk == pytest.approx(0.0, abs=1e-5)  # beta 0: no tilt on top
    assert any(abs(s.kl) > 0.1 for s in out)  # the policies differ from pi_ref


def two_token_distribution(policy, prompt_ids, top_k) -> dict[tuple[int, int], float]:
    """Top-k sampling's exact probability of every two-token answer of one policy."""
    exact = {}
    first, first_ids = mod_logprobs([policy], (1.0,), prompt_ids, top_k)
    for i, a in enumerate(first_ids.tolist()):
        second, second_ids = mod_logprobs([policy], (1.0,),
                                          torch.cat([prompt_ids, torch.tensor([a])]), top_k)
        for j, b in enumerate(second_ids.tolist()):
            exact[(a, b)] = math.exp(float(first[i] + second[j]))
    return exact


def test_mod_at_lambda_one_samples_exactly_the_first_policy(decoder, models):
    """Two proposals weighted (1, 0): every two-token answer's frequency matches the first
    policy's own top-k sampling distribution (chi-square over all k^2 answers)."""
    _, _, policies = models
    mod = decoder.with_proposals([(policies[0], 1.0), (policies[1], 0.0)])
    top_k, n = 3, 4000
    out = mod.generate(["ab"], beta=0.0, top_k=top_k, max_new_tokens=2, num_samples=n,
                       seed=5, batch_size=n, ignore_eos=True)
    prompt_ids = mod.encode(["ab"]).input_ids[0]
    exact = two_token_distribution(policies[0], prompt_ids, top_k)
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-5)
    counts = {answer: 0 for answer in exact}
    for seq in out:
        counts[tuple(seq.token_ids)] += 1  # KeyError: an answer the policy gives no mass
        assert sum(seq.logprobs) == pytest.approx(math.log(exact[tuple(seq.token_ids)]),
                                                  abs=1e-4)
    keys = sorted(exact)
    observed = [counts[k] for k in keys]
    total = sum(exact.values())
    expected = [exact[k] * n / total for k in keys]
    assert chisquare(observed, expected).pvalue > 0.001
    # ... which differs from the second policy's: the test can tell them apart
    second = two_token_distribution(policies[1], prompt_ids, top_k)
    assert set(second) != set(exact) or max(abs(second[k] - exact[k]) for k in exact) > 0.05


def test_proposals_with_value_guidance_tilt_the_proposal(decoder, models):
    _, _, policies = models
    guided = decoder.with_proposals([(policies[0], 1.0)])
    seq = guided.generate(["hi"], weights={"a": 1.0}, beta=2.0, top_k=4, max_new_tokens=1,
                          seed=1, certain_p=1.0)[0]  # the step is guided
    ids = guided.encode(["hi"]).input_ids[0]
    logprobs, candidates = top_k_candidates(fresh_logits(policies[0], ids)[-1][None], 4)
    vm = decoder.guide.value_models[0]
    with torch.no_grad():
        values = torch.stack([vm.values(torch.cat([ids, c[None]])[None],
                                        torch.ones(1, len(ids) + 1, dtype=torch.long))[0]
                              for c in candidates[0]])
    policy = mavis_logprobs(logprobs, values[None], torch.ones(1), 2.0)[0]
    index = (candidates[0] == seq.token_ids[0]).nonzero()[0, 0]
    assert seq.logprobs[0] == pytest.approx(float(policy[index]), abs=1e-4)


def requests(weights_per_row):
    return [RowRequest(SamplingSettings(beta=0.0, top_k=4),
                       torch.Generator().manual_seed(50 + i), proposal_weights=w)
            for i, w in enumerate(weights_per_row)]


def run(decoder, prompts, rows, steps, join_at=None, select=None):
    half = len(prompts) // 2 if join_at is not None else len(prompts)
    state = decoder.start_rows(decoder.encode(prompts[:half]), rows[:half])
    with torch.inference_mode():
        for step in range(steps):
            if join_at is not None and step == join_at:
                state.merge(decoder.start_rows(decoder.encode(prompts[half:]), rows[half:]))
            state.choose()
            state.advance()
        if select is not None:
            state.select(torch.tensor(select))
            state.choose()
    return [(state.generated(r), state.generated(r, "logprobs"),
             state.generated(r, "ref_logprobs")) for r in range(state.batch_size)]


def test_per_row_proposal_weights_select_and_merge(decoder, models):
    _, _, policies = models
    mod = decoder.with_proposals([(policies[0], 0.5), (policies[1], 0.5)])
    prompts = ["hello there", "hi", "how are you doing today", "abc"]
    weights = [(1.0, 0.0), (0.0, 1.0), None, (0.2, 0.8)]  # None: the decoder's (0.5, 0.5)
    together = run(mod, prompts, requests(weights), steps=5)
    for i, prompt in enumerate(prompts):
        alone = run(mod, [prompt], requests(weights)[i:i + 1], steps=5)
        assert alone[0][0] == together[i][0], i
        torch.testing.assert_close(torch.tensor(alone[0][1:]), torch.tensor(together[i][1:]),
                                   atol=1e-5, rtol=1e-5)
    assert len({tuple(t[0]) for t in together}) > 2
    # rows 2-3 join after 2 steps; then rows are reordered and duplicated, caches following
    joined = run(mod, prompts, requests(weights), steps=5, join_at=2, select=[3, 0, 0])
    for row, origin in enumerate([3, 0, 0]):
        steps = 5 if origin < 2 else 3
        alone = run(mod, [prompts[origin]], requests(weights)[origin:origin + 1], steps=steps)
        assert joined[row][0][:steps] == alone[0][0], (row, origin)
    # the duplicated rows continue from the same state (same logits; own draws after)
    assert joined[1][2][:5] == pytest.approx(joined[2][2][:5])


def test_proposal_errors(decoder, models, other_tokenizer_lm):
    _, _, policies = models
    other, _ = load_causal_lm(str(other_tokenizer_lm))
    with pytest.raises(MavisError, match="vocabulary"):
        decoder.with_proposals([(other, 1.0)])
    with pytest.raises(MavisError, match="weights must be finite"):
        decoder.with_proposals([(policies[0], -1.0)])
    with pytest.raises(MavisError, match="every proposal weight is zero"):
        decoder.with_proposals([(policies[0], 0.0)])
    with pytest.raises(MavisError, match="no proposal models"):
        decoder.start_rows(decoder.encode(["hi"]), requests([(1.0,)]))
    mod = decoder.with_proposals([(policies[0], 0.5), (policies[1], 0.5)])
    with pytest.raises(MavisError, match="2 finite numbers"):
        mod.start_rows(mod.encode(["hi"]), requests([(1.0,)]))
    state = mod.start_rows(mod.encode(["hi"]), requests([None]))
    with pytest.raises(MavisError, match="different proposal models"):
        state.merge(decoder.start_rows(decoder.encode(["hi"]),
                                       [RowRequest(SamplingSettings(beta=0.0, top_k=4))]))


def test_no_proposals_is_the_reference(decoder):
    """The default path: candidates from pi_ref, logprobs equal plain top-k of pi_ref."""
    seq = decoder.generate(["hi"], beta=0.0, top_k=36, max_new_tokens=4, seed=0)[0]
    assert seq.kl == pytest.approx(0.0, abs=1e-4)
    assert not decoder.proposals
