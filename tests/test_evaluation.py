"""Policy evaluation (reward, KL of equation 7), Pareto fronts and plots."""

import math

import pytest
import torch

from mavis.decoding.decoder import MavisDecoder
from mavis.evaluation.pareto import pareto_front, plot_pareto, sweep_weights
from mavis.evaluation.policy import PolicyEvaluation, evaluate_policy, mean_and_se
from mavis.evaluation.settings import EvaluationSettings
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel

REWARDS = (
    "def vowels(prompts, responses):\n"
    "    return [sum(c in 'aeiou' for c in r) / max(len(r), 1) for r in responses]\n"
    "def spaces(prompts, responses):\n"
    "    return [r.count(' ') / max(len(r), 1) for r in responses]\n"
)


@pytest.fixture()
def rewards(tmp_path, monkeypatch):
    (tmp_path / "toy_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "python:toy_rewards:vowels", "python:toy_rewards:spaces"


@pytest.fixture(scope="module")
def decoder(tiny_lm):
    model, tok = load_causal_lm(str(tiny_lm))
    torch.manual_seed(0)
    vms = []
    for name in ("python:toy_rewards:vowels", "python:toy_rewards:spaces"):
        vm = ValueModel.build(str(tiny_lm), [name], num_layers=1, lora=None)
        with torch.no_grad():
            vm.head.weight.normal_()
        vms.append(vm.eval())
    return MavisDecoder(model, tok, vms)


def test_pareto_front_is_the_non_dominated_set():
    points = [(0.0, 1.0), (0.5, 0.5), (0.4, 0.4), (1.0, 0.0), (0.5, 0.6), (0.2, 0.9)]
    assert pareto_front(points) == [0, 5, 4, 3]


def test_mean_and_standard_error():
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3 / 4))
    assert mean_and_se([2.0]) == (2.0, 0.0)


def test_reference_policy_over_full_vocabulary_has_zero_kl(decoder, rewards):
    vocab = decoder.reference.config.vocab_size
    result = evaluate_policy(decoder, ["hello", "abc"], list(rewards),
                             settings=EvaluationSettings(top_k=vocab, max_new_tokens=5,
                                                         num_samples=3, seed=0))
    assert result.samples == 6 and result.prompts == 2
    assert result.kl == pytest.approx(0.0, abs=1e-4)
    assert set(result.reward) == set(rewards)


def test_guided_policy_kl_is_mean_of_sequence_kls(decoder, rewards):
    weights = {rewards[0]: 1.0}
    result = evaluate_policy(decoder, ["hello", "abc"], list(rewards), weights=weights,
                             beta=3.0, settings=EvaluationSettings(
                                 top_k=8, max_new_tokens=6, num_samples=2, seed=1))
    outputs = decoder.generate(["hello", "abc"], weights=weights, beta=3.0, top_k=8,
                               max_new_tokens=6, num_samples=2, seed=1)
    assert result.kl == pytest.approx(sum(o.kl for o in outputs) / len(outputs))
    assert result.kl > 0


def test_sweep_and_plot(decoder, rewards, tmp_path):
    points = sweep_weights(decoder, ["hi", "ok"], rewards, lambdas=[0.0, 1.0], beta=2.0,
                           settings=EvaluationSettings(top_k=6, max_new_tokens=4, seed=0))
    assert [p.weights for p in points] == [{rewards[0]: 0.0, rewards[1]: 1.0},
                                           {rewards[0]: 1.0, rewards[1]: 0.0}]
    ref = PolicyEvaluation("pi_ref", {}, 0.0, 2, 2, reward={r: 0.1 for r in rewards},
                           reward_se={r: 0.01 for r in rewards})
    out = plot_pareto({"MAVIS": points, "pi_ref": [ref]}, rewards, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_evaluate_and_pareto_commands(decoder, rewards, tiny_lm, tmp_path, capsys):
    import json

    from mavis.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"say {w}"}) + "\n"
                               for w in ["hi", "yes", "no", "ok", "sun", "sky", "sea", "cat",
                                         "dog", "red", "big", "far"] * 2))
    models = []
    for vm in decoder.guide.value_models:
        folder = vm.save(tmp_path / vm.objectives[0].rsplit(":", 1)[-1])
        models += ["--value-model", f"{vm.objectives[0]}={folder}"]
    common = ["--prompts", str(prompts), "--split", "all", "--limit", "3", "--top-k", "5",
              "--max-new-tokens", "4", "--model", str(tiny_lm), *models]
    assert main(["evaluate", "--objectives", ",".join(rewards), "--weights",
                 f"{rewards[0]}=1", "--beta", "2", "--json", *common]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["samples"] == 3 and set(row["reward"]) == set(rewards) and row["kl"] > 0
    out = tmp_path / "front.png"
    assert main(["pareto", "--objectives", ",".join(rewards), "--lambdas", "0,1",
                 "--best-of", "2", "--out", str(out), *common]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    assert set(saved) == {"MAVIS", "pi_ref", "best-of-2"}
    assert len(saved["MAVIS"]) == 2 and out.stat().st_size > 5000
