"""`SamplingSettings`: the one settings value of how an answer is decoded, its rules, and that
every way in (library, command line, server) takes it whole, with the same defaults."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import build_tiny_llama
from hypothesis import given, settings
from hypothesis import strategies as st

from mavis.cli import app, main
from mavis.cli.sampling import option_name
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import (
    DEFAULT_BETA,
    DEFAULT_KL_BUDGET,
    MAX_SEED,
    SamplingSettings,
    SettingsError,
    sampling_fields,
)
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel


def test_the_guidance_rule():
    assert (SamplingSettings().beta, SamplingSettings().kl_budget) == (DEFAULT_BETA,
                                                                       DEFAULT_KL_BUDGET)
    fixed = SamplingSettings(beta=4)
    assert (fixed.beta, fixed.kl_budget) == (4.0, None)  # a beta alone is a fixed beta
    capped = SamplingSettings(kl_budget=5)
    assert (capped.beta, capped.kl_budget) == (DEFAULT_BETA, 5.0)
    assert SamplingSettings(kl_budget=math.inf).kl_budget is None  # inf: no budget
    assert SamplingSettings(beta=2, kl_budget=math.inf).kl_budget is None
    # replace keeps the other fields as they were resolved
    assert dataclasses.replace(SamplingSettings(), beta=4).kl_budget == DEFAULT_KL_BUDGET


def test_the_budget_per_answer_becomes_a_per_step_allowance_in_one_place():
    settings = SamplingSettings(kl_budget=12, max_new_tokens=48)
    assert settings.step_kl_budget == pytest.approx(0.25)
    assert SamplingSettings(beta=3).step_kl_budget is None


def test_weights_are_relative_and_checked():
    assert SamplingSettings(weights={"a": 3, "b": 1}).weights == {"a": 0.75, "b": 0.25}
    assert SamplingSettings(weights={"a": 0.7, "b": 0.3}).weights == {"a": 0.7, "b": 0.3}
    assert SamplingSettings(weights={}).weights is None
    huge = SamplingSettings(weights={"a": 1e308, "b": 1e308}).weights
    assert huge == {"a": 0.5, "b": 0.5}  # no overflow to inf
    for bad in ({"a": 0.0}, {"a": -1.0}, {"a": math.nan}, {"a": math.inf}, {"": 1.0},
                {"a": True}, {"a": "1"}, "a=1"):
        with pytest.raises(SettingsError) as caught:
            SamplingSettings(weights=bad)
        assert caught.value.field == "weights"


def test_temperature_zero_is_greedy_and_seeds_have_one_range():
    greedy = SamplingSettings(temperature=0)
    assert greedy.greedy and greedy.step_temperature == 1.0
    assert SamplingSettings(seed=MAX_SEED).seed == MAX_SEED
    for field, value in (("seed", -1), ("seed", MAX_SEED + 1), ("seed", 1.5), ("seed", True),
                         ("temperature", 1e-9), ("temperature", -1), ("top_k", 0),
                         ("max_new_tokens", 0), ("beta", math.nan), ("beta", 1e308),
                         ("kl_budget", -1), ("candidate_epsilon", 1.0), ("stop", [""]),
                         ("greedy", 1), ("ignore_eos", "yes")):
        with pytest.raises(SettingsError) as caught:
            SamplingSettings(**{field: value})
        assert caught.value.field == field, (field, value)
        assert str(caught.value).startswith(field)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sampling_fields()), st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.floats(allow_nan=True), max_size=3))))
def test_random_values_are_taken_or_refused_by_name(values):
    """Every combination either builds settings that keep the invariants the decoder relies
    on, or is refused with a `SettingsError` naming a field that was given."""
    try:
        built = SamplingSettings(**values)
    except SettingsError as exc:
        assert exc.field in values
        return
    assert math.isfinite(built.beta) and built.beta >= 0
    assert built.kl_budget is None or (math.isfinite(built.kl_budget) and built.kl_budget >= 0)
    assert built.top_k >= 1 and built.max_new_tokens >= 1 and built.step_temperature > 0
    assert built.weights is None or math.isclose(sum(built.weights.values()), 1.0)
    assert built.seed is None or 0 <= built.seed <= MAX_SEED
    assert all(isinstance(s, str) and s for s in built.stop)
    json.dumps(built.to_dict())  # reportable as it is


def test_every_field_is_an_option_of_every_sampling_command():
    """A new field of `SamplingSettings` is an option of each command that samples, from the
    field itself (the guidance-per-lambda commands take their own --beta)."""
    import typer.main

    commands = {c.name: c for c in typer.main.get_command(app).commands.values()}
    generate = {opt for p in commands["generate"].params for opt in p.opts}
    assert {option_name(name) for name in sampling_fields()} <= generate
    evaluate = {opt for p in commands["evaluate"].params for opt in p.opts}
    assert {option_name(name) for name in sampling_fields()} <= evaluate


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    reference = build_tiny_llama(root / "reference")
    torch.manual_seed(5)
    value_model = ValueModel.build(str(reference), ["a"], num_layers=1, lora=None)
    with torch.no_grad():
        value_model.head.weight.normal_(std=2.0)
    value_model.save(root / "vm")
    return reference, root / "vm"


def test_the_library_decodes_as_the_command_line_with_no_other_option(models, capsys,
                                                                     monkeypatch):
    """`decoder.generate(prompts, weights=...)` alone and `mavis generate PROMPT --weights ...`
    alone give the same tokens and report the same defaults. Neither is given a seed, so both
    draw from torch's global generator, set to the same state as each starts decoding."""
    reference, folder = models
    model, tokenizer = load_causal_lm(str(reference))
    decoder = MavisDecoder(model, tokenizer, [ValueModel.load(folder)])
    run = MavisDecoder._run

    def seeded(self, *args, **kwargs):
        torch.manual_seed(1234)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(MavisDecoder, "_run", seeded)
    (library,) = decoder.generate(["hello there"], weights={"a": 1.0})
    code = main(["generate", "hello there", "--weights", "a=1", "--model", str(reference),
                 "--value-model", f"a={folder}", "--json"])
    assert code == 0
    command = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert command["token_ids"] == library.token_ids
    assert (command["beta"], command["kl_budget"], command["top_k"]) == (
        library.beta, library.kl_budget, library.top_k) == (DEFAULT_BETA, DEFAULT_KL_BUDGET,
                                                            min(40, model.config.vocab_size))
    assert len(library.token_ids) <= SamplingSettings().max_new_tokens


def test_no_weights_weights_every_loaded_objective_and_beta_zero_is_reported(models):
    reference, folder = models
    model, tokenizer = load_causal_lm(str(reference))
    guided = MavisDecoder(model, tokenizer, [ValueModel.load(folder)])
    (seq,) = guided.generate(["hi"], max_new_tokens=3, seed=0)
    assert seq.weights == {"a": 1.0} and seq.beta == DEFAULT_BETA
    plain = MavisDecoder(model, tokenizer).generate(["hi"], max_new_tokens=3, seed=0)[0]
    assert (plain.weights, plain.beta, plain.kl_budget) == ({}, 0.0, None)  # nothing guided
    with pytest.raises(MavisError, match="weights name.*'b' without a value model"):
        guided.generate(["hi"], weights={"b": 1.0})


def test_command_line_errors_name_the_option(models, capsys):
    reference, folder = models
    for args, option in ((["--seed", "-1"], "--seed"), (["--kl-budget", "nan"], "--kl-budget"),
                         (["--temperature", "1e-9"], "--temperature"),
                         (["--beta", "1e308"], "--beta"), (["--stop", ""], "--stop")):
        code = main(["generate", "hi", "--model", str(reference), *args])
        assert code == 2
        assert capsys.readouterr().err.startswith(f"error: {option} "), args


def test_a_changed_default_is_named_in_results_identities():
    """certain_p's default moved from 1 (to 0.9, then 0.5): a results file made at 1 (before,
    unnamed) keeps its identity, and one made at a later default names it, so none is taken
    for another."""
    from mavis.decoding.sampling import reproducible
    from mavis.evaluation.settings import EvaluationSettings

    new = EvaluationSettings(reproducible()).to_dict()
    old = EvaluationSettings(reproducible(certain_p=1.0)).to_dict()
    assert new["certain_p"] == 0.5 and "certain_p" not in old
    assert EvaluationSettings(reproducible(certain_p=0.9)).to_dict()["certain_p"] == 0.9
