"""The decoding engine on tiny models built by the tests."""

import math
import warnings

import pytest
import torch
from scipy.stats import chisquare

from mavis.cli.options import parse_weights
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.decoding.tilt import mavis_logprobs, nucleus, top_k_candidates
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel


def make_value_model(path, objectives, layers=1, seed=0, attn="sdpa"):
    torch.manual_seed(seed)
    vm = ValueModel.build(str(path), objectives, num_layers=layers, lora=None,
                          attn_implementation=attn)
    with torch.no_grad():
        vm.head.weight.normal_(std=1.0)
    return vm.eval()


@pytest.fixture(scope="module")
def decoder(tiny_lm):
    model, tok = load_causal_lm(str(tiny_lm))
    vms = [make_value_model(tiny_lm, ["a", "b"], seed=1), make_value_model(tiny_lm, ["c"], seed=2)]
    return MavisDecoder(model, tok, vms)


def full_value(vm, ids):
    """V of one unpadded sequence by a fresh forward, no cache."""
    with torch.no_grad():
        return vm.values(ids[None], torch.ones_like(ids)[None])[0]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cached_candidate_scoring_equals_full_recompute(tiny_lm, attn):
    model, tok = load_causal_lm(str(tiny_lm), attn_implementation=attn)
    vm = make_value_model(tiny_lm, ["a"], layers=2, seed=3, attn=attn)
    dec = MavisDecoder(model, tok, [vm])
    batch = dec.encode(["hello there, how are you", "hi"], max_new_tokens=8)
    settings = dec.resolve(SamplingSettings(weights={"a": 1.0}, beta=2.0, top_k=6))
    state = dec.start(batch, settings)
    lengths = batch.attention_mask.sum(-1)
    assert lengths[0] != lengths[1]  # rows of different lengths, left padded
    with torch.inference_mode():
        for _ in range(4):  # choose(), part by part, checking the scored values
            candidates = state.candidates()
            values, _ = state.score(candidates.ids)
            for row in range(2):
                real = batch.input_ids[row][batch.attention_mask[row].bool()]
                for j, cand in enumerate(candidates.ids[row]):
                    seq = torch.cat([real, state.tokens[row], cand[None]])
                    expected = full_value(vm, seq)
                    torch.testing.assert_close(values[row, j], expected, atol=1e-4, rtol=1e-4)
            policy = mavis_logprobs(candidates.logprobs, values, state.weights, 2.0)
            choice = state.sample(policy, torch.Generator().manual_seed(0))
            state.keep(candidates, policy, values, choice)
            state.advance()


def test_values_are_divided_by_each_objectives_scale(tiny_lm):
    """A value model saved with a scale per objective is tilted by value / scale (clamped to
    its range first), so that one beta means the same for objectives of different spreads."""
    model, tok = load_causal_lm(str(tiny_lm))
    vm = make_value_model(tiny_lm, ["a", "b"], seed=4)
    plain = MavisDecoder(model, tok, [vm])
    batch = plain.encode(["hello", "hi there"])
    with torch.inference_mode():
        state = plain.start(batch, plain.resolve(SamplingSettings(
            weights={"a": 0.5, "b": 0.5}, beta=1.0, top_k=5)))
        raw, _ = state.score(state.candidates().ids)
    vm.config.value_scale = {"a": 0.25, "b": 4.0}
    vm.config.value_range = {"a": [-1.0, 1.0], "b": [-10.0, 10.0]}
    scaled = MavisDecoder(model, tok, [vm])
    assert scaled.guide.scaled() and not MavisDecoder(model, tok, []).guide.value_models
    with torch.inference_mode():
        state = scaled.start(batch, scaled.resolve(SamplingSettings(
            weights={"a": 0.5, "b": 0.5}, beta=1.0, top_k=5)))
        normalised, _ = state.score(state.candidates().ids)
    expected = torch.stack([raw[..., 0].clamp(-1, 1) / 0.25, raw[..., 1].clamp(-10, 10) / 4.0],
                           dim=-1)
    torch.testing.assert_close(normalised, expected)
    assert state.guide.spread(state.weights)[0] == pytest.approx(0.5 * 2 / 0.25 + 0.5 * 20 / 4.0)
    vm.config.value_scale, vm.config.value_range = {}, {}


def test_sampled_frequencies_match_analytic_distribution(decoder):
    weights = {"a": 0.5, "b": 0.2, "c": 0.3}
    beta, k = 1.5, 6
    n = 3000
    out = decoder.generate(["ab"], weights=weights, beta=beta, top_k=k, max_new_tokens=1,
                           num_samples=n, seed=123, batch_size=n)
    # Analytic MAVIS distribution of the first token, from fresh forwards.
    batch = decoder.encode(["ab"])
    ids = batch.input_ids[0]
    with torch.no_grad():
        logits = decoder.reference(ids[None]).logits[0, -1]
    lp, cand = top_k_candidates(logits[None], k)
    values = []
    for c in cand[0]:
        seq = torch.cat([ids, c[None]])
        v_ab = full_value(decoder.guide.value_models[0], seq)
        v_c = full_value(decoder.guide.value_models[1], seq)
        values.append(0.5 * v_ab[0] + 0.2 * v_ab[1] + 0.3 * v_c[0])
    probs = mavis_logprobs(lp, torch.stack(values)[None, :, None], torch.ones(1), beta).exp()[0]
    counts = torch.zeros(k)
    for seq in out:
        counts[(cand[0] == seq.token_ids[0]).nonzero()[0, 0]] += 1
    assert counts.sum() == n
    # The tilt must matter here, or the test would not tell MAVIS from top-k sampling.
    plain = torch.softmax(lp[0], -1)
    assert (probs - plain).abs().max() > 0.05
    stat = chisquare(counts.numpy(), (probs * n).numpy())
    assert stat.pvalue > 0.001, (counts, probs * n)
    assert chisquare(counts.numpy(), (plain * n).numpy()).pvalue < 1e-6


def test_returned_logprobs_match_fresh_forward(decoder):
    weights = {"a": 0.7, "c": 0.3}
    # every step guided (certain_p 1): the check recomputes the tilt at each step
    out = decoder.generate(["hello", "a longer prompt"], weights=weights, beta=2.0, top_k=5,
                           max_new_tokens=6, seed=7, certain_p=1.0)
    for seq in out:
        prompt_ids = decoder.encode([seq.prompt]).input_ids[0]
        gen = torch.tensor(seq.token_ids)
        full = torch.cat([prompt_ids, gen])
        with torch.no_grad():
            logits = decoder.reference(full[None]).logits[0]
        for t, token in enumerate(seq.token_ids):
            step_logits = logits[len(prompt_ids) + t - 1]
            ref_lp = torch.log_softmax(step_logits, -1)[token]
            assert seq.ref_logprobs[t] == pytest.approx(float(ref_lp), abs=1e-4)
            lp, cand = top_k_candidates(step_logits[None], 5)
            prefix = full[: len(prompt_ids) + t]
            vals = []
            for c in cand[0]:
                seq_ids = torch.cat([prefix, c[None]])
                vals.append(0.7 * full_value(decoder.guide.value_models[0], seq_ids)[0]
                            + 0.3 * full_value(decoder.guide.value_models[1], seq_ids)[0])
            pol = mavis_logprobs(lp, torch.stack(vals)[None, :, None], torch.ones(1), 2.0)[0]
            idx = (cand[0] == token).nonzero()[0, 0]
            assert seq.logprobs[t] == pytest.approx(float(pol[idx]), abs=1e-4)
            plain = torch.log_softmax(lp[0], -1)  # plain top-k sampling
            assert seq.topk_logprobs[t] == pytest.approx(float(plain[idx]), abs=1e-4)
            tv = 0.5 * float((pol.exp() - plain.exp()).abs().sum())
            assert seq.tv[t] == pytest.approx(tv, abs=1e-4)
        assert seq.kl == pytest.approx(sum(seq.logprobs) - sum(seq.ref_logprobs))
        assert seq.kl_topk == pytest.approx(sum(seq.logprobs) - sum(seq.topk_logprobs))


def test_kl_budget_chooses_beta_per_step(decoder):
    common = dict(weights={"a": 0.5, "c": 0.5}, beta=20.0, top_k=6, max_new_tokens=6, seed=4,
                  certain_p=1.0)  # every step guided, so every step has its beta
    free = decoder.generate(["abc"], **common)[0]  # a beta alone is a fixed beta
    assert free.betas == [20.0] * len(free.token_ids) and free.kl_budget is None
    tight = decoder.generate(["abc"], kl_budget=1e-6, **common)[0]
    assert max(tight.betas) < 0.1 and max(tight.tv) < 0.01
    loose = decoder.generate(["abc"], kl_budget=1e9, **common)[0]
    assert loose.token_ids == free.token_ids and loose.betas == free.betas
    # the budget is nats per answer: 0.3 over 6 tokens allows 0.05 per step
    middle = decoder.generate(["abc", "hello"], kl_budget=0.3, num_samples=8, **common)
    assert all(0 <= b <= 20.0 for seq in middle for b in seq.betas)
    assert all(seq.kl_budget == 0.3 for seq in middle)
    assert sum(s.kl_topk for s in middle) / len(middle) < 0.3 + 0.3  # the budget, roughly


def test_beta_zero_adds_no_kl_over_top_k_and_greedy_is_a_point_mass(decoder):
    plain = decoder.generate(["abc", "hello"], beta=0.0, top_k=4, max_new_tokens=6, seed=2)
    for seq in plain:
        assert seq.kl_topk == pytest.approx(0.0, abs=1e-5) and max(seq.tv) < 1e-5
        assert seq.kl > 0  # the truncation to the top-k itself costs KL against pi_ref
    greedy = decoder.generate(["abc"], weights={"a": 1.0}, beta=2.0, top_k=4, max_new_tokens=6,
                              greedy=True)[0]
    assert greedy.logprobs == [0.0] * len(greedy.token_ids)
    assert greedy.kl == pytest.approx(-sum(greedy.ref_logprobs))


def test_beta_zero_is_top_k_sampling(decoder):
    out = decoder.generate(["abc"], weights={"a": 1.0}, beta=0.0, top_k=3, max_new_tokens=5,
                           seed=1)[0]
    prompt_ids = decoder.encode(["abc"]).input_ids[0]
    full = torch.cat([prompt_ids, torch.tensor(out.token_ids)])
    with torch.no_grad():
        logits = decoder.reference(full[None]).logits[0]
    for t, token in enumerate(out.token_ids):
        lp, cand = top_k_candidates(logits[len(prompt_ids) + t - 1][None], 3)
        assert token in cand[0].tolist()
        renorm = torch.log_softmax(lp[0], -1)[(cand[0] == token).nonzero()[0, 0]]
        assert out.logprobs[t] == pytest.approx(float(renorm), abs=1e-5)


def test_seed_reproducible_and_batches_independent(decoder):
    kw = dict(weights={"a": 0.5, "c": 0.5}, beta=1.0, top_k=8, max_new_tokens=8)
    first = decoder.generate(["hi", "yo"], seed=5, **kw)
    second = decoder.generate(["hi", "yo"], seed=5, **kw)
    assert [s.token_ids for s in first] == [s.token_ids for s in second]
    greedy_batched = decoder.generate(["hi", "a much longer prompt here"], greedy=True, **kw)
    greedy_alone = decoder.generate(["a much longer prompt here"], greedy=True, **kw)
    assert greedy_batched[1].token_ids == greedy_alone[0].token_ids


def test_stop_strings_and_lengths(decoder):
    out = decoder.generate(["abc"] * 4, weights={"a": 1}, beta=1.0, top_k=30, max_new_tokens=12,
                           seed=0, stop=["e"])
    for seq in out:
        assert len(seq.token_ids) <= 12
        assert seq.finish_reason in {"eos", "length", "stop"}
        assert "e" not in seq.text
        if seq.finish_reason == "length":
            assert len(seq.token_ids) == 12


def test_bad_input_errors(decoder, tiny_lm, other_tokenizer_lm):
    with pytest.raises(MavisError, match="weights name.*'nope' without a value model.*cover: "
                                         "a, b, c"):
        decoder.generate(["x"], weights={"nope": 1.0}, top_k=5)
    with pytest.raises(MavisError, match="must be finite numbers >= 0"):
        decoder.generate(["x"], weights={"a": -0.5, "b": 1.5}, top_k=5)
    with warnings.catch_warnings():  # weights are relative: normalised, and reported so
        warnings.simplefilter("error")
        (seq,) = decoder.generate(["x"], weights={"a": 1.0, "c": 1.0}, max_new_tokens=1,
                                  top_k=5)
    assert seq.weights == {"a": 0.5, "c": 0.5}
    vocab = decoder.reference.config.vocab_size
    (seq,) = decoder.generate(["x"], weights={"a": 1.0}, top_k=999, max_new_tokens=1)
    assert seq.top_k == vocab  # at most the vocabulary, as transformers' top-k
    with pytest.raises(MavisError, match="give a SamplingSettings or its fields"):
        decoder.generate(["x"], SamplingSettings(), beta=2.0)
    with pytest.raises(MavisError, match="prompt 1 is empty"):
        decoder.generate(["x", "  "], weights={"a": 1.0}, top_k=5)
    with pytest.raises(MavisError, match="exceeds the model's context of 256"):
        decoder.generate(["x" * 250], weights={"a": 1.0}, max_new_tokens=10,
                         top_k=5)
    with pytest.raises(MavisError, match="cannot read --weights 'b'"):
        parse_weights("a=0.5,b")
    model, tok = load_causal_lm(str(tiny_lm))
    foreign = make_value_model(other_tokenizer_lm, ["x"])
    with pytest.raises(MavisError, match="tokenizer differs from the reference"):
        MavisDecoder(model, tok, [foreign])


def test_zero_weight_value_models_are_not_run(decoder):
    batch = decoder.encode(["hi"])
    settings = decoder.resolve(SamplingSettings(weights={"a": 1.0, "c": 0.0}, beta=1.0,
                                                top_k=4))
    state = decoder.start(batch, settings)
    assert state.active == [0] and decoder.guide.entries[0].model.objectives == ["a", "b"]
    assert settings.weights == {"a": 1.0, "c": 0.0}
    assert math.isinf(state.guide.spread(state.weights)[0])  # no value range: no skipping


def run_rows(decoder, prompts, requests, steps, join_at=None):
    """Decode `requests` (RowRequest per prompt) together for `steps` steps; with `join_at`,
    the second half of the rows joins the first half's running state after that many steps
    (continuous batching). Returns each row's tokens."""
    half = len(prompts) // 2 if join_at is not None else len(prompts)
    state = decoder.start_rows(decoder.encode(prompts[:half]), requests[:half])
    with torch.inference_mode():
        for step in range(steps):
            if join_at is not None and step == join_at:
                state.merge(decoder.start_rows(decoder.encode(prompts[half:]), requests[half:]))
            state.choose()
            state.advance()
    return [state.generated(row) for row in range(state.batch_size)]


def requests_for(decoder, count):
    from mavis.decoding.decoder import RowRequest

    grid = [({"a": 1.0}, 2.0, 5, 1.0), ({"c": 1.0}, 4.0, 3, 0.7), (None, 0.0, 6, 1.3),
            ({"a": 0.3, "b": 0.3, "c": 0.4}, 8.0, 4, 1.0)]
    out = []
    for i in range(count):
        weights, beta, top_k, temperature = grid[i % len(grid)]
        settings = decoder.resolve(SamplingSettings(
            weights=weights, beta=beta, top_k=top_k, temperature=temperature,
            kl_budget=0.8 if i % 3 == 2 else None, max_new_tokens=8,
            min_p=0.7 if i % 2 else 0.0))  # alone, such rows have forced steps
        out.append(RowRequest(settings, torch.Generator().manual_seed(100 + i)))
    return out


def test_every_row_its_own_request_same_tokens_alone_or_together(decoder):
    prompts = ["hello there", "hi", "how are you doing today", "abc", "a b c d", "ok"]
    together = run_rows(decoder, prompts, requests_for(decoder, 6), steps=6)
    for i, prompt in enumerate(prompts):
        alone = run_rows(decoder, [prompt], requests_for(decoder, 6)[i:i + 1], steps=6)
        assert alone[0] == together[i], i
    # different weights and settings give different answers (the rows are not all alike)
    assert len({tuple(t) for t in together}) > 3


def test_rows_that_join_a_running_batch_answer_as_if_alone(decoder):
    prompts = ["hello there", "abc", "how are you doing today", "hi"]
    requests = requests_for(decoder, 4)
    # rows 0-1 run 3 steps alone, then rows 2-3 join (their prompts longer and shorter)
    joined = run_rows(decoder, prompts, requests, steps=6, join_at=3)
    for i in range(4):
        alone = run_rows(decoder, [prompts[i]], requests_for(decoder, 4)[i:i + 1],
                         steps=6 if i < 2 else 3)
        assert joined[i] == alone[0], i


def test_a_value_model_no_row_weights_is_not_run_until_one_does(decoder):
    from mavis.decoding.decoder import RowRequest

    def only(weights):
        return decoder.resolve(SamplingSettings(weights=weights, beta=2.0, top_k=4))

    plain = [RowRequest(only({"a": 1.0}))]
    state = decoder.start_rows(decoder.encode(["hi"]), plain)
    assert state.active == [0]  # only the model with heads a, b
    with torch.inference_mode():
        state.choose()
        state.advance()
        newcomer = decoder.start_rows(decoder.encode(["hello"]),
                                      [RowRequest(only({"c": 1.0}))])
        state.merge(newcomer)
        assert state.active == [0, 1]  # the second model now runs, for both rows
        state.choose()
        state.select(torch.tensor([0]))  # the row that used model 1 leaves
    assert state.active == [0]


def test_top_p_and_min_p_cut_the_candidates_before_they_are_scored(decoder):
    """Sampled tokens come from each step's nucleus within the top-k, their log-probabilities
    are renormalised over it, and the candidates outside it are not scored."""
    out = decoder.generate(["abc", "hello"], beta=0.0, top_k=12, top_p=0.5, max_new_tokens=6,
                           seed=3)
    for seq in out:
        prompt_ids = decoder.encode([seq.prompt]).input_ids[0]
        full = torch.cat([prompt_ids, torch.tensor(seq.token_ids)])
        with torch.no_grad():
            logits = decoder.reference(full[None]).logits[0]
        for t, token in enumerate(seq.token_ids):
            lp, cand = top_k_candidates(logits[len(prompt_ids) + t - 1][None], 12)
            kept = nucleus(lp, 0.5)[0]
            assert token in cand[0][kept].tolist()
            renorm = torch.log_softmax(lp[0][kept], -1)
            index = cand[0][kept].tolist().index(token)
            assert seq.logprobs[t] == pytest.approx(float(renorm[index]), abs=1e-5)
    settings = decoder.resolve(SamplingSettings(weights={"a": 1.0}, beta=2.0, top_k=12,
                                                min_p=0.5))
    state = decoder.start(decoder.encode(["abc", "hello"]), settings)
    with torch.inference_mode():
        candidates = state.skip(state.candidates())
    assert candidates.ids.shape[1] < 12  # only the widest row's nucleus is scored
    probs = candidates.logprobs.exp()
    assert bool((probs[candidates.scored] >= 0.5 * probs[:, :1].expand_as(probs)[
        candidates.scored] - 1e-6).all())


def test_forced_steps_skip_the_value_pass_and_change_nothing(decoder):
    """A step whose nucleus leaves every row one candidate runs no value model; the token is
    read with the next step's candidates (or by `catch_up`). The tokens, the scored values and
    each answer's final value are those of reading every token at once."""
    settings = decoder.resolve(SamplingSettings(weights={"a": 1.0, "c": 0.5}, beta=2.0,
                                                top_k=12, min_p=0.6, max_new_tokens=12))
    batch = decoder.encode(["abc", "hello there"])
    lazy, eager = decoder.start(batch, settings), decoder.start(batch, settings)
    eager.lazy_values = False
    forced = scored = 0
    with torch.inference_mode():
        for step in range(12):
            tokens = [s.choose(torch.Generator().manual_seed(step)) for s in (lazy, eager)]
            assert torch.equal(tokens[0], tokens[1])
            if lazy.value_tokens[0, -1] == 0:
                forced += 1
            else:
                scored += 1
                torch.testing.assert_close(lazy.value, eager.value, atol=1e-5, rtol=1e-5)
            for s in (lazy, eager):
                s.advance()
        assert forced and scored  # both kinds of step happened
        assert (lazy.value_tokens == 0).sum() == forced * 2  # no value pass on forced steps
        lazy.catch_up()
    assert lazy.unread == 0
    torch.testing.assert_close(lazy.value, eager.value, atol=1e-5, rtol=1e-5)
    assert torch.equal(lazy.betas, eager.betas)
    # the same tokens are read, in fewer forwards
    assert lazy.value_tokens.sum() == eager.value_tokens.sum()
    assert (eager.value_tokens > 0).all()
    # the caches hold the same keys and values: the next candidates get the same values
    with torch.inference_mode():
        ids = eager.candidates().ids
        torch.testing.assert_close(lazy.score(ids)[0], eager.score(ids)[0], atol=1e-5,
                                   rtol=1e-5)


def test_generated_values_are_the_whole_answers_with_forced_steps(decoder):
    """`generate` reports each answer's value of its last token even when the last steps were
    forced (left unread), as a fresh forward over the whole answer gives it."""
    out = decoder.generate(["abc", "hello there"], weights={"a": 1.0}, beta=2.0, top_k=12,
                           top_p=0.05, max_new_tokens=5, seed=0)
    vm = decoder.guide.entries[0].model
    entry = decoder.guide.entries[0]
    for seq in out:
        assert sum(seq.value_tokens) == len(seq.token_ids)  # every token read once, no candidates
        prompt_ids = decoder.encode([seq.prompt]).input_ids[0]
        full = torch.cat([prompt_ids, torch.tensor(seq.token_ids)])
        expected = entry.normalise(full_value(vm, full).float())[0]  # head a
        assert seq.value == pytest.approx(float(expected), abs=1e-4)


def test_certain_steps_are_sampled_from_plain_top_k_without_the_value_models(decoder):
    """certain_p: a step whose most likely candidate has at least that probability runs no
    value model and samples from plain top-k (no steering there: TV 0, beta 0); the others are
    guided as without it, and the answer's value is still its whole sequence's."""
    prompts = ["abc", "hello there"]
    common = dict(weights={"a": 1.0}, beta=4.0, top_k=8, max_new_tokens=10, seed=5)
    everywhere = decoder.generate(prompts, certain_p=1e-6, **common)  # every step is certain
    plain = decoder.generate(prompts, **{**common, "beta": 0.0})
    for steered, reference in zip(everywhere, plain, strict=True):
        assert steered.token_ids == reference.token_ids
        assert sum(steered.value_tokens) == len(steered.token_ids)  # read once, at the end
        assert max(steered.tv) == 0 and max(steered.betas) == 0
    settings = decoder.resolve(SamplingSettings(certain_p=0.3, **common))
    state = decoder.start(decoder.encode(prompts), settings)
    certain = guided = 0
    with torch.inference_mode():
        for _ in range(10):
            top1 = torch.softmax(state.candidates().logprobs, -1)[:, 0]
            state.choose()
            if bool((top1 >= 0.3).all()):
                certain += 1
                assert float(state.value_tokens[:, -1].max()) == 0
                assert float(state.tv[:, -1].max()) == 0
            else:
                guided += 1
                assert float(state.value_tokens[:, -1].min()) > 0
            state.advance()
    assert certain and guided


def test_certain_rows_beside_guided_ones_read_only_their_drawn_token(decoder):
    """certain_p per row: in a batch where some rows are certain at a step and others are
    not, the certain rows are sampled from plain top-k and the value models read only the
    token they drew (not their k candidates); each row's answer and value are those it gets
    decoded alone, and a row without weights reads one token per step."""
    from mavis.decoding.decoder import RowRequest

    prompts = ["hello there", "abc", "how are you doing today", "hi"]
    plans = [dict(weights={"a": 1.0}, certain_p=0.3), dict(weights={"c": 1.0}, certain_p=0.25),
             dict(weights={"a": 1.0, "c": 0.5}), dict(weights=None, beta=0.0)]

    def run(indices):
        requests = [RowRequest(decoder.resolve(SamplingSettings(
            **{"beta": 3.0, "top_k": 30, "max_new_tokens": 10, **plans[i]})),
            torch.Generator().manual_seed(11 + i)) for i in indices]
        state = decoder.start_rows(decoder.encode([prompts[i] for i in indices]), requests)
        mixed = 0
        with torch.inference_mode():
            for _ in range(10):
                top1 = torch.softmax(state.candidates().logprobs, -1)[:, 0]
                plain = (top1 >= state.certain_p) | (state.weights.abs().sum(-1) == 0)
                state.choose()
                if bool(plain.any()) and not bool(plain.all()):
                    mixed += 1
                    read = state.value_tokens[:, -1]
                    assert bool((read[plain] < read[~plain]).all())
                    assert float(state.tv[plain, -1].abs().max()) == 0
                    assert float(state.betas[plain, -1].abs().max()) == 0
                state.advance()
            state.catch_up()
        return state, mixed

    together, mixed = run(range(len(prompts)))
    assert mixed  # some steps had certain and guided rows side by side
    for i in range(len(prompts)):
        alone, _ = run([i])
        assert together.tokens[i].tolist() == alone.tokens[0].tolist()
        torch.testing.assert_close(together.tv[i], alone.tv[0], atol=1e-5, rtol=1e-4)
        if i < 3:  # the row without weights has no value alone (no value model runs)
            torch.testing.assert_close(together.value[i], alone.value[0], atol=1e-4,
                                       rtol=1e-4)
    # the row without weights read its drawn token only, one per step
    assert together.value_tokens[3].sum() == together.tokens.shape[1] * len(together.active)


def test_rows_of_different_widths_are_scored_in_groups_with_the_same_result(decoder,
                                                                           monkeypatch):
    """Rows whose nuclei differ are scored in groups of similar width (each padded to its own
    widest row only): the tokens and values are those of one pass padded to the widest row,
    certain rows among them, and rows read fewer candidate tokens."""
    import mavis.decoding.state as state_module
    from mavis.decoding.decoder import RowRequest

    prompts = ["hello there", "abc", "how are you doing today", "hi", "ok then", "a b c"]

    def run(grouped: bool):
        if not grouped:
            monkeypatch.setattr(state_module, "width_groups",
                                lambda widths: [(list(range(len(widths))), max(widths))])
        requests = [RowRequest(decoder.resolve(SamplingSettings(
            weights={"a": 1.0, "c": 1.0}, beta=3.0, top_k=16, certain_p=0.35,
            min_p=(0.0, 0.6, 0.3)[i % 3], max_new_tokens=10)),
            torch.Generator().manual_seed(7 + i)) for i in range(len(prompts))]
        state = decoder.start_rows(decoder.encode(prompts), requests)
        values = []
        with torch.inference_mode():
            for _ in range(10):
                state.choose()
                values.append(state.value.clone())
                state.advance()
            state.catch_up()
        monkeypatch.undo()
        return state, values

    grouped, plain = run(True), run(False)
    assert torch.equal(grouped[0].tokens, plain[0].tokens)
    for ours, theirs in zip(grouped[1], plain[1], strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5, equal_nan=True)
    torch.testing.assert_close(grouped[0].value, plain[0].value, atol=1e-5, rtol=1e-5)
    assert grouped[0].value_tokens.sum() < plain[0].value_tokens.sum()
    # certain rows beside uncertain ones read only their drawn token, one per value model
    assert (grouped[0].value_tokens == len(grouped[0].active)).any()


@pytest.mark.parametrize(("certain_p", "grouped"), [(1.0, False), (0.6, True)])
def test_value_min_p_reads_only_likely_candidates_and_keeps_the_rest(decoder, certain_p,
                                                                     grouped, monkeypatch):
    """value_min_p: the value models read only the candidates at least that times as likely as
    the most likely (the values of those are exactly full scoring's); the others stay
    candidates, and when a row draws one of them no row keeps a candidate's keys and values:
    the tokens are read with the next step's candidates. Every read value stays that of a
    fresh forward, and each answer's final value is its whole sequence's; also when rows of
    different widths are scored in groups."""
    import mavis.decoding.state as state_module
    from mavis.decoding.ragged import width_groups

    splits = []
    if grouped:  # every difference in width its own group
        def split(widths):
            splits.append(width_groups(widths, overhead=0))
            return splits[-1]
        monkeypatch.setattr(state_module, "width_groups", split)
    prompts = ["hello there", "abc", "how are you doing today"]
    settings = decoder.resolve(SamplingSettings(
        weights={"a": 1.0, "c": 0.5}, beta=2.0, top_k=12, value_min_p=0.4,
        certain_p=certain_p, max_new_tokens=12))
    batch = decoder.encode(prompts)
    state = decoder.start(batch, settings)
    generator = torch.Generator().manual_seed(2)
    seen, score = [], state.score

    def recording(ids, scored=None):
        values, read = score(ids, scored)
        seen.append((state.tokens.clone(), ids.clone(), scored.clone(), values.clone()))
        return values, read

    state.score = recording
    unread_steps = 0
    with torch.inference_mode():
        for _ in range(12):
            candidates = state.skip(state.candidates())
            valued = candidates.valued
            assert valued is not None and bool((valued.sum(-1) < 12).any())
            plain = state.plain_rows(torch.log_softmax(candidates.logprobs, -1), valued)
            token = state.choose(generator)
            chosen = candidates.ids == token[:, None]  # a plain row's drawn token is read
            picked_tail = bool(((chosen & ~valued).any(-1) & ~plain).any())
            if picked_tail and state.value_tokens[:, -1].sum() > 0:
                unread_steps += 1
                assert state.unread == 1
            state.advance()
        state.catch_up()
    assert unread_steps  # some row drew a candidate the value models had not read
    assert not grouped or any(len(groups) > 1 for groups in splits)
    assert 0 < state.value_tokens.sum() < 12 * 12 * len(prompts) * len(state.active)
    entries = decoder.guide.entries
    for tokens, ids, scored, values in seen[:6]:  # each read value is a fresh forward's
        for row in range(len(prompts)):
            real = batch.input_ids[row][batch.attention_mask[row].bool()]
            for j in scored[row].nonzero().flatten().tolist():
                seq = torch.cat([real, tokens[row], ids[row, j][None]])
                for entry in entries:
                    expected = entry.normalise(full_value(entry.model, seq).float())
                    torch.testing.assert_close(values[row, j, entry.columns], expected,
                                               atol=1e-4, rtol=1e-4)
    for row in range(len(prompts)):
        real = batch.input_ids[row][batch.attention_mask[row].bool()]
        seq = torch.cat([real, state.tokens[row]])
        whole = torch.cat([entry.normalise(full_value(entry.model, seq).float())
                           for entry in entries])
        assert float(state.value[row]) == pytest.approx(
            float((whole * state.weights[row]).sum()), abs=1e-4)
