"""The static-cache decoding path (models/layout.py) against the growing caches: the same
tokens and log-probabilities for the same seed, with and without torch.compile."""

import pytest
import torch

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.models.layout import StaticLayout
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel

PROMPTS = ["hello there, how are you?", "hi"]  # different lengths: the second is left-padded
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]


def value_model(path, objectives, seed, layers=1):
    torch.manual_seed(seed)
    vm = ValueModel.build(str(path), objectives, num_layers=layers, lora=None)
    with torch.no_grad():
        vm.head.weight.normal_(std=1.0)
    return vm.eval()


def decoders(tiny_lm, device, compile):
    model, tokenizer = load_causal_lm(str(tiny_lm), device=device)
    models = [value_model(tiny_lm, ["a", "b"], seed=1), value_model(tiny_lm, ["c"], seed=2)]
    return (MavisDecoder(model, tokenizer, models, compile=False),
            MavisDecoder(model, tokenizer, models, compile=compile))


def answers(decoder, **kwargs):
    out = decoder.generate(PROMPTS, weights={"a": 0.4, "b": 0.1, "c": 0.5}, top_k=8,
                           max_new_tokens=12, seed=3, num_samples=2, **kwargs)
    return [(o.token_ids, o.finish_reason) for o in out], out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compile", ["static", "aot_eager"])
def test_static_caches_decode_exactly_as_growing_caches(tiny_lm, device, compile):
    dynamic, static = decoders(tiny_lm, device, compile if device == "cpu" else True)
    assert static.static_layout is not None and dynamic.static_layout is None
    for kwargs in ({"beta": 4.0}, {"beta": 16.0, "kl_budget": 6.0}, {"beta": 0.0}):
        expected, dyn_out = answers(dynamic, **kwargs)
        got, static_out = answers(static, **kwargs)
        assert got == expected, kwargs
        for a, b in zip(dyn_out, static_out, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
            assert a.ref_logprobs == pytest.approx(b.ref_logprobs, abs=1e-4)
            assert a.betas == pytest.approx(b.betas, abs=1e-4)
            assert a.value == pytest.approx(b.value, abs=1e-4)


def test_finished_rows_stay_in_a_static_batch(tiny_lm):
    """Rows that end early (eos, stop strings) keep their own answer while others go on.
    Greedy: with one seeded generator for the batch, sampled rows draw from a shared random
    stream, which the dynamic path's shrinking batch consumes differently."""
    dynamic, static = decoders(tiny_lm, "cpu", "static")
    kwargs = {"beta": 4.0, "stop": ["a"], "temperature": 3.0, "greedy": True}
    expected, _ = answers(dynamic, **kwargs)
    got, _ = answers(static, **kwargs)
    assert got == expected
    assert {reason for _, reason in got} == {"stop", "length"}


def test_static_states_refuse_to_change_rows(tiny_lm):
    _, static = decoders(tiny_lm, "cpu", "static")
    batch = static.encode(PROMPTS, max_new_tokens=4)
    layout = static.static_layout
    layout.start(2, batch.input_ids.shape[1], 4, 8)
    settings = static.resolve(SamplingSettings(weights={"a": 1.0}, beta=2.0, top_k=8))
    state = static.start(batch, settings, layout)
    with pytest.raises(MavisError, match="static caches"):
        state.select(torch.tensor([0]))


def test_static_layout_checks_its_capacity():
    layout = StaticLayout("cpu")
    layout.start(batch=1, prompt_length=3, max_new_tokens=2, width=4)
    assert layout.capacity == 64
    with pytest.raises(MavisError, match="holds 64 positions"):
        layout.candidate_mask(torch.ones(1, 62, dtype=torch.long), 4, torch.float32)


def test_compiled_forwards_are_compiled_once_not_every_step(tiny_lm):
    """One graph per model (the reference step and each value model's candidate pass),
    whatever the number of steps: nothing that changes from step to step is baked in."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    _, compiled = decoders(tiny_lm, "cpu", "aot_eager")
    answers(compiled, beta=4.0)
    first = counters["stats"]["unique_graphs"]
    assert 0 < first <= 3
    compiled.generate(PROMPTS, weights={"a": 0.4, "b": 0.1, "c": 0.5}, top_k=8,
                      max_new_tokens=12, seed=4, num_samples=2, beta=2.0)
    assert counters["stats"]["unique_graphs"] == first
