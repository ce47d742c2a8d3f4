"""Policy evaluation (reward, KL of equation 7), Pareto fronts and plots."""

import math

import pytest
import torch

from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.evaluation.best_of_n import pick_best, sample_best_of_n
from mavis.evaluation.plots import plot_pareto
from mavis.evaluation.policy import evaluate_policy, mean_and_se
from mavis.evaluation.settings import EvaluationSettings
from mavis.evaluation.sweep import SweepStore, by_method, run_sweep, sweep_points
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


def test_mean_and_standard_error():
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3 / 4))
    assert mean_and_se([2.0]) == (2.0, 0.0)


def test_reference_policy_over_full_vocabulary_has_zero_kl(decoder, rewards):
    vocab = decoder.reference.config.vocab_size
    settings = EvaluationSettings.from_dict(dict(top_k=vocab, max_new_tokens=5, num_samples=3,
                                                 seed=0))
    result = evaluate_policy(decoder, ["hello", "abc"], list(rewards),
                             settings.policy(None, 0.0, None))
    assert result.samples == 6 and result.prompts == 2
    assert result.kl == pytest.approx(0.0, abs=1e-4)
    assert set(result.reward) == set(rewards)


def test_guided_policy_kl_is_mean_of_sequence_kls(decoder, rewards):
    weights = {rewards[0]: 1.0}
    settings = EvaluationSettings.from_dict(dict(top_k=8, max_new_tokens=6, num_samples=2,
                                                 seed=1))
    result = evaluate_policy(decoder, ["hello", "abc"], list(rewards),
                             settings.policy(weights, 3.0, None))
    outputs = decoder.generate(["hello", "abc"], weights=weights, beta=3.0, top_k=8,
                               max_new_tokens=6, num_samples=2, seed=1)
    assert result.kl == pytest.approx(sum(o.kl for o in outputs) / len(outputs))
    assert result.kl > 0


def test_sweep_saves_each_point_and_resumes(decoder, rewards, tmp_path):
    settings = EvaluationSettings.from_dict(dict(top_k=6, max_new_tokens=4, seed=0,
                                                 num_samples=2))
    points = sweep_points(rewards, [0.0, 1.0], betas={0.0: 2.0, 1.0: 3.0}, best_of=[3])
    assert [(p.method, p.beta) for p in points] == [("MAVIS", 2.0), ("MAVIS", 3.0),
                                                     ("pi_ref", 0.0), ("best-of-3", 0.0),
                                                     ("best-of-3", 0.0)]
    store = SweepStore(tmp_path / "s.json", {"test": 1})
    results = run_sweep(decoder, ["hi", "ok"], rewards, points, settings, store, progress=False)
    assert [r.samples for _, r in results] == [4, 4, 4, 4, 4]
    assert results[0][1].weights == {rewards[0]: 0.0, rewards[1]: 1.0}
    first = {p.key: r.to_dict() for p, r in results}
    # a rerun with the same settings evaluates nothing: every point comes from the file
    again = SweepStore(tmp_path / "s.json", {"test": 1})
    assert set(again.points) == set(first)
    called = []
    decoder_generate = decoder.generate
    decoder.generate = lambda *a, **k: called.append(1) or decoder_generate(*a, **k)
    try:
        rerun = run_sweep(decoder, ["hi", "ok"], rewards, points, settings, again,
                          progress=False)
    finally:
        decoder.generate = decoder_generate
    assert not called and {p.key: r.to_dict() for p, r in rerun} == first
    with pytest.raises(MavisError, match="other settings"):
        SweepStore(tmp_path / "s.json", {"test": 2})
    out = plot_pareto(by_method(results), rewards, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_best_of_n_draws_once_and_picks_per_weight(decoder, rewards):
    settings = EvaluationSettings.from_dict(dict(top_k=6, max_new_tokens=5, seed=2,
                                                 num_samples=2)).policy(None, 0.0, None)
    samples = sample_best_of_n(decoder, ["hi", "ok", "yes"], rewards, 4, settings)
    assert len(samples.groups) == 6 and all(len(g) == 4 for g in samples.groups)
    first = pick_best(samples, {rewards[0]: 1.0, rewards[1]: 0.0})
    second = pick_best(samples, {rewards[0]: 0.0, rewards[1]: 1.0})
    best_first = samples.rewards[rewards[0]].max(axis=1).mean()
    assert first.reward[rewards[0]] == pytest.approx(best_first)
    assert second.reward[rewards[1]] == pytest.approx(samples.rewards[rewards[1]].max(1).mean())
    # KL: the chosen answers' measured log-ratio plus the analytic bound, labelled as such
    bound = math.log(4) - 3 / 4
    assert first.kl_is_bound and first.kl_topk == pytest.approx(bound, abs=1e-5)
    assert first.kl > bound


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
    answers = tmp_path / "answers.jsonl"
    assert main(["evaluate", "--objectives", ",".join(rewards), "--weights",
                 f"{rewards[0]}=1", "--beta", "2", "--json", "--answers", str(answers),
                 *common]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(kept) == 3 and all(k["prompt"].startswith("say ") and k["prompt_id"]
                                  for k in kept)
    assert again["reward"] == row["reward"]  # the same answers, kept this time
    for name in rewards:
        assert sum(k["rewards"][name] for k in kept) / 3 == pytest.approx(row["reward"][name])
    assert sum(k["kl"] for k in kept) / 3 == pytest.approx(row["kl"])
    assert all(k["weights"] == {rewards[0]: 1.0} and k["beta"] == 2.0 for k in kept)
    assert main(["evaluate", "--objectives", ",".join(rewards), "--weights",
                 f"{rewards[0]}=1", "--beta", "2", "--best-of", "2", "--rank", "value",
                 "--json", *common]) == 0
    rerank = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rerank["kl_kind"] == "estimate + bound" and rerank["samples"] == 3
    assert rerank["label"] == f"{rewards[0]}=1"
    out = tmp_path / "front.png"
    assert main(["pareto", "--objectives", ",".join(rewards), "--lambdas", "0,1",
                 "--best-of", "2", "--beta", "0:2,1:3", "--out", str(out), *common]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())["points"]
    assert sorted({p["method"] for p in saved.values()}) == ["MAVIS", "best-of-2", "pi_ref"]
    assert sorted(p["beta"] for p in saved.values() if p["method"] == "MAVIS") == [2.0, 3.0]
    assert out.stat().st_size > 5000
    assert out.with_suffix(".csv").read_text().count("\n") == 1 + 5


def test_mavis_with_best_of_n_by_reward_and_by_value(decoder, rewards):
    """MAVIS + best-of-N and MAVIS + value rerank share their N guided answers per prompt:
    by reward the kept answer has the best weighted reward of its N, by value the best
    weighted value; both report the sampler's KL plus the best-of-N bound."""
    from mavis.evaluation.methods import METHODS, SweepPlan

    settings = EvaluationSettings.from_dict(dict(top_k=6, max_new_tokens=5, seed=2))
    plan = SweepPlan(rewards, [1.0], betas=3.0, best_of=[3])
    points = [p for name in ("mavis-bon", "mavis-rerank") for p in METHODS.get(name).points(plan)]
    assert [p.method for p in points] == ["MAVIS+best-of-3", "MAVIS+rerank-3"]
    assert [p.family for p in points] == ["MAVIS+best-of", "MAVIS+rerank"]
    counted = []
    original = decoder.generate
    decoder.generate = lambda *a, **k: counted.append(k["num_samples"]) or original(*a, **k)
    try:
        (_, by_reward), (_, by_value) = run_sweep(decoder, ["hi", "ok"], rewards, points,
                                                  settings, progress=False)
    finally:
        decoder.generate = original
    assert counted == [3]  # one guided sampling pass for both
    samples = sample_best_of_n(decoder, ["hi", "ok"], rewards, 3, points[0].settings(settings))
    best_reward = samples.rewards[rewards[0]].max(axis=1).mean()
    assert by_reward.reward[rewards[0]] == pytest.approx(best_reward)
    values = [[a.value for a in group] for group in samples.groups]
    kept = [int(max(range(3), key=lambda i, g=g: g[i])) for g in values]
    expected = sum(samples.rewards[rewards[0]][g, i] for g, i in enumerate(kept)) / 2
    assert by_value.reward[rewards[0]] == pytest.approx(expected)
    assert by_value.beta == 3.0 and by_value.kl_is_bound
    with pytest.raises(MavisError, match="ranking by value needs answers decoded"):
        pick_best(sample_best_of_n(decoder, ["hi"], rewards, 2,
                                   settings.policy(None, 0.0, None)), {rewards[0]: 1.0},
                  rank="value")


def test_every_evaluation_counts_its_cost_per_answer(decoder, rewards):
    """Model FLOPs per answer at inference (`mavis.evaluation.cost`) and measured seconds:
    MAVIS costs more than pi_ref per answer (its value passes), best-of-N N answers of
    pi_ref's cost plus N reward calls, and the value tokens recorded per step are the
    candidates the value models read."""
    from mavis.evaluation.cost import decoding_flops, linear_parameters

    settings = EvaluationSettings.from_dict(dict(top_k=6, max_new_tokens=4, seed=0))
    plain = evaluate_policy(decoder, ["hi", "ok"], rewards, settings.policy(None, 0.0, None))
    guided = evaluate_policy(decoder, ["hi", "ok"], rewards,
                             settings.policy({rewards[0]: 1.0}, 2.0, None))
    assert 0 < plain.flops < guided.flops
    assert plain.seconds_per_answer > 0 and guided.seconds_per_answer > 0
    (seq,) = decoder.generate(["hi"], settings.policy({rewards[0]: 1.0}, 2.0, None).sampling)
    assert seq.value_tokens == [6.0] * len(seq.token_ids)  # k candidates, one value model
    lm = linear_parameters(decoder.reference)
    assert decoding_flops(decoder, seq, 5) > 2 * lm * (5 + len(seq.token_ids))
    samples = sample_best_of_n(decoder, ["hi", "ok"], rewards, 3,
                               settings.policy(None, 0.0, None))
    best = pick_best(samples, {rewards[0]: 1.0})
    assert best.flops == pytest.approx(3 * samples.answer_flops)  # python: rewards are free
    assert best.scoring_seconds == samples.scoring_seconds > 0 and best.seconds > 0
