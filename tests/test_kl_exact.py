"""The KL of equation 7, as the decoder reports it, against the exact KL by enumeration.

A tiny Llama over a 7-token vocabulary and a horizon of 3 tokens has 7^3 = 343 continuations:
few enough to compute the MAVIS policy (top-k of pi_ref tilted by exp(beta * V)) and pi_ref
exactly for every one, by plain forward passes over whole sequences (no cache), and so the exact
KL(pi || pi_ref). The decoder's per-sample KLs must (1) equal the exact log-ratio of the very
sequence sampled and (2) average to the exact KL within sampling error.
"""

import itertools
import math

import pytest
import torch
from conftest import build_tiny_llama

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.tilt import mavis_logprobs, top_k_candidates
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel

HORIZON, TOP_K, BETA, SAMPLES = 3, 4, 1.5, 3000
PROMPT = "ab"


@pytest.fixture(scope="module")
def small_decoder(tmp_path_factory):
    path = build_tiny_llama(tmp_path_factory.mktemp("lm-ab"), alphabet="ab", seed=3)
    model, tokenizer = load_causal_lm(str(path))
    torch.manual_seed(0)
    value_model = ValueModel.build(str(path), ["toy"], num_layers=1, lora=None)
    with torch.no_grad():
        value_model.head.weight.normal_()
    return MavisDecoder(model, tokenizer, [value_model.eval()])


@torch.no_grad()
def exact_step_tables(decoder: MavisDecoder, prompt_ids: torch.Tensor):
    """{prefix tuple: (log pi_ref over the vocabulary [V], {token: log pi_MAVIS})} for every
    prefix shorter than the horizon, from full forward passes."""
    reference, value_model = decoder.reference, decoder.guide.value_models[0]
    vocab = reference.config.vocab_size
    tables = {}
    for length in range(HORIZON):
        prefixes = list(itertools.product(range(vocab), repeat=length))
        ids = torch.stack([torch.cat([prompt_ids, torch.tensor(p, dtype=torch.long)])
                           for p in prefixes])
        logits = reference(input_ids=ids).logits[:, -1].float()
        ref_logprobs = torch.log_softmax(logits, dim=-1)
        cand_logprobs, cand_ids = top_k_candidates(logits, TOP_K)
        extended = torch.cat([ids.repeat_interleave(TOP_K, 0), cand_ids.reshape(-1, 1)], dim=1)
        values = value_model.values(extended, torch.ones_like(extended))[:, 0]
        policy = mavis_logprobs(cand_logprobs, values.reshape(-1, TOP_K, 1), torch.ones(1), BETA)
        for row, prefix in enumerate(prefixes):
            steps = {int(t): float(lp) for t, lp in zip(cand_ids[row], policy[row], strict=True)}
            tables[prefix] = (ref_logprobs[row], steps)
    return tables


def sequence_log_ratio(tables, sequence) -> tuple[float, float]:
    """(log pi_MAVIS(y), log pi_MAVIS(y) - log pi_ref(y)); -inf when pi_MAVIS(y) = 0."""
    log_pi = log_ref = 0.0
    for t, token in enumerate(sequence):
        ref_logprobs, steps = tables[tuple(sequence[:t])]
        if token not in steps:
            return -math.inf, math.nan
        log_pi += steps[token]
        log_ref += float(ref_logprobs[token])
    return log_pi, log_pi - log_ref


def test_sampled_kl_matches_exact_kl_by_enumeration(small_decoder):
    decoder = small_decoder
    vocab = decoder.reference.config.vocab_size
    assert vocab == 7 and vocab > TOP_K  # the top-k truncation itself costs KL too
    prompt_ids = decoder.encode([PROMPT]).input_ids[0]
    tables = exact_step_tables(decoder, prompt_ids)

    exact = {}
    for sequence in itertools.product(range(vocab), repeat=HORIZON):
        log_pi, ratio = sequence_log_ratio(tables, sequence)
        if log_pi > -math.inf:
            exact[sequence] = (math.exp(log_pi), ratio)
    assert sum(p for p, _ in exact.values()) == pytest.approx(1.0, abs=1e-5)
    kl = sum(p * r for p, r in exact.values())
    variance = sum(p * r * r for p, r in exact.values()) - kl * kl
    assert kl > 0.1  # the tilt and the truncation both move the policy

    samples = decoder.generate([PROMPT], weights={"toy": 1.0}, beta=BETA, top_k=TOP_K,
                               num_samples=SAMPLES, max_new_tokens=HORIZON, seed=0,
                               ignore_eos=True, batch_size=SAMPLES,
                               certain_p=1.0)  # every step tilted, as the tables assume
    assert len(samples) == SAMPLES
    for sample in samples:
        sequence = tuple(sample.token_ids)
        assert sequence in exact, "sampled a continuation the MAVIS policy gives no mass"
        assert sample.kl == pytest.approx(exact[sequence][1], abs=1e-4)

    mean = sum(s.kl for s in samples) / SAMPLES
    standard_error = math.sqrt(variance / SAMPLES)
    assert abs(mean - kl) < 4 * standard_error, (mean, kl, standard_error)

    # The sampler draws from the exact policy: first-token frequencies within 4 SE.
    first = {t: sum(p for s, (p, _) in exact.items() if s[0] == t) for t in tables[()][1]}
    for token, probability in first.items():
        frequency = sum(s.token_ids[0] == token for s in samples) / SAMPLES
        se = math.sqrt(probability * (1 - probability) / SAMPLES)
        assert abs(frequency - probability) < 4 * se + 1e-9, (token, frequency, probability)
