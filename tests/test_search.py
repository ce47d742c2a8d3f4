"""Beam search, best-of-N and the generate command on tiny models."""

import json
import sys

import pytest
import torch

from mavis.cli import main
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.decoding.search import BeamSettings, beam_search
from mavis.evaluation.best_of_n import best_of_n
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel


def value_model(path, objectives, seed):
    torch.manual_seed(seed)
    vm = ValueModel.build(str(path), objectives, num_layers=1, lora=None)
    with torch.no_grad():
        vm.head.weight.normal_()
    return vm.eval()


@pytest.fixture(scope="module")
def decoder(tiny_lm):
    model, tok = load_causal_lm(str(tiny_lm))
    vms = [value_model(tiny_lm, ["a"], 1), value_model(tiny_lm, ["b"], 2)]
    return MavisDecoder(model, tok, vms)


def test_beam_search_returns_n_sequences_ordered_by_weighted_value(decoder):
    weights = {"a": 0.5, "b": 0.5}
    beams = beam_search(decoder, "hello", weights=weights, beta=2.0, top_k=6,
                        max_new_tokens=10, seed=0,
                        beam=BeamSettings(num_beams=3, expand=2, prune_every=3))
    assert len(beams) == 3
    values = [b.value for b in beams]
    assert values == sorted(values, reverse=True)
    prompt_ids = decoder.encode(["hello"]).input_ids[0]
    for beam in beams:
        full = torch.cat([prompt_ids, torch.tensor(beam.token_ids)])
        with torch.no_grad():
            fresh = sum(0.5 * vm.values(full[None], torch.ones_like(full)[None])[0, 0]
                        for vm in decoder.guide.value_models)
        # the value a beam is ranked by is V_lambda of its final state
        assert beam.value == pytest.approx(float(fresh), abs=1e-4)
        assert len(beam.token_ids) <= 10


def test_beam_search_beats_sampling_on_value(decoder):
    weights = {"a": 1.0}
    best_beam = beam_search(decoder, "abc", weights=weights, beta=1.0, top_k=8,
                            max_new_tokens=8, seed=0,
                            beam=BeamSettings(num_beams=4, expand=3, prune_every=2))[0].value
    samples = decoder.generate(["abc"] * 4, weights=weights, beta=1.0, top_k=8,
                               max_new_tokens=8, seed=0)
    assert best_beam >= max(s.value for s in samples) - 1e-6


def test_best_of_n_picks_max_reward(decoder, tmp_path, monkeypatch):
    (tmp_path / "letter_rewards.py").write_text(
        "def count_a(prompts, responses):\n"
        "    return [r.count('a') / max(len(r), 1) for r in responses]\n"
        "def count_b(prompts, responses):\n"
        "    return [r.count('b') / max(len(r), 1) for r in responses]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = best_of_n(decoder, "hi", weights={"python:letter_rewards:count_a": 1.0}, n=6,
                       top_k=10, max_new_tokens=8, seed=3)
    rewards = result.rewards["python:letter_rewards:count_a"]
    assert len(result.candidates) == 6
    assert result.weighted[result.candidates.index(result.best)] == max(rewards)
    assert result.best.text.count("a") / max(len(result.best.text), 1) == max(rewards)
    both = best_of_n(decoder, "hi", weights={"python:letter_rewards:count_a": 1.0,
                                             "python:letter_rewards:count_b": 0.0},
                     n=3, top_k=10, max_new_tokens=8, seed=3)
    assert len(both.rewards["python:letter_rewards:count_b"]) == 3  # scored, though weight 0


def test_generate_command_json(decoder, tiny_lm, tmp_path, capsys):
    decoder.guide.value_models[0].save(tmp_path / "a")
    code = main(["generate", "hello", "--model", str(tiny_lm), "--weights", "a=1",
                 "--value-model", f"a={tmp_path / 'a'}", "--top-k", "5", "--beta", "2",
                 "--max-new-tokens", "6", "--seed", "0", "--json", "-n", "2"])
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2
    for row in lines:
        keys = {"text", "token_ids", "logprobs", "ref_logprobs", "kl", "weights", "beta"}
        assert keys <= set(row)
        assert row["weights"] == {"a": 1.0} and row["beta"] == 2.0
        assert row["kl"] == pytest.approx(sum(row["logprobs"]) - sum(row["ref_logprobs"]))


def test_generate_command_errors(tiny_lm, capsys):
    assert main(["generate", "hello", "--model", str(tiny_lm), "--weights", "zzz=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no value model for objective 'zzz'") and err[-1] == "\n"
    assert err.count("\n") == 1
    assert main(["generate", "hello", "--model", str(tiny_lm), "--value-model", "oops"]) == 2
    assert "write NAME=VALUE, e.g. --value-model" in capsys.readouterr().err


def test_module_entry_point_runs(tiny_lm):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "mavis", "generate", "hi", "--model", str(tiny_lm),
                          "--beta", "0", "--top-k", "3", "--max-new-tokens", "3", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[0])["beta"] == 0.0


def test_generate_best_of_n_prints_the_best_answer(decoder, tiny_lm, tmp_path, capsys):
    """`--best-of N --rank value` prints the answer of highest value among N guided ones, the
    same as `best_of_n` in the library; no reward model is needed."""
    decoder.guide.value_models[0].save(tmp_path / "a")
    code = main(["generate", "hello", "--model", str(tiny_lm), "--weights", "a=1",
                 "--value-model", f"a={tmp_path / 'a'}", "--top-k", "5", "--beta", "2",
                 "--max-new-tokens", "6", "--seed", "0", "--json", "--best-of", "4",
                 "--rank", "value"])
    assert code == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    only_a = MavisDecoder(decoder.reference, decoder.tokenizer, [decoder.guide.value_models[0]])
    result = best_of_n(only_a, "hello", weights={"a": 1.0}, n=4, rank="value",
                       sampling=SamplingSettings(weights={"a": 1.0}, beta=2, top_k=5,
                                                 max_new_tokens=6, seed=0))
    assert row["token_ids"] == result.best.token_ids
    assert result.best.value == max(result.weighted) and result.rewards == {}
    assert main(["generate", "hello", "--model", str(tiny_lm), "--best-of", "2", "-n", "2"]) == 2
    assert "leave out --beam and -n" in capsys.readouterr().err
