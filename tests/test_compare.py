"""`mavis pareto --methods ...`: every method of paper section 4 in one resumable sweep, on tiny
models and `python:` rewards written by the test; MORLHF policies trained for one step."""

import csv
import json
import math

import pytest
import torch
import yaml

from mavis.baselines.compare import Baselines, check_methods, comparison_points
from mavis.baselines.config import MorlhfSettings
from mavis.cli import main
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.search import BeamSettings
from mavis.errors import MavisError
from mavis.evaluation.beam import evaluate_beam
from mavis.evaluation.methods import Method
from mavis.evaluation.policy import KL_PATH, KL_WITH_BOUND, PolicyEvaluation
from mavis.evaluation.settings import EvaluationSettings
from mavis.evaluation.summary import summarise_fronts, write_points_csv
from mavis.evaluation.sweep import SweepPoint, SweepStore, run_sweep, weight_grid
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel

REWARDS = (
    "def vowels(prompts, responses):\n"
    "    return [sum(c in 'aeiou' for c in r) / max(len(r), 1) for r in responses]\n"
    "def spaces(prompts, responses):\n"
    "    return [r.count(' ') / max(len(r), 1) for r in responses]\n"
    "def length(prompts, responses):\n"
    "    return [len(r) / 10 for r in responses]\n"
)
VOWELS, SPACES = "python:cmp_rewards:vowels", "python:cmp_rewards:spaces"
WORDS = ["hi", "yes", "no", "ok", "sun", "sky", "sea", "cat", "dog", "red", "big", "far"]


@pytest.fixture()
def workspace(tmp_path, monkeypatch, tiny_lm):
    from mavis.objectives import clear_objective_cache

    (tmp_path / "cmp_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    clear_objective_cache()
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": f"say {w} {v}"}) + "\n"
                                              for w in WORDS for v in ("now", "again")))
    torch.manual_seed(0)
    vm = ValueModel.build(str(tiny_lm), [VOWELS, SPACES], num_layers=1, lora=None)
    with torch.no_grad():
        vm.head.weight.normal_()
    vm.save(tmp_path / "vm")
    recipe = {"name": "cmp", "reference": str(tiny_lm), "objectives": [VOWELS, SPACES],
              "prompts": {"sets": [str(tmp_path / "p.jsonl")]},
              "baselines": {"prompt_limit": 4, "max_prompt_tokens": None, "lora_r": 4,
                            "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"],
                            "num_generations": 2, "prompts_per_step": 2, "max_new_tokens": 6,
                            "learning_rate": 5e-2, "max_steps": 1}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    yield tmp_path
    clear_objective_cache()


def pareto_args(workspace, tiny_lm, out, methods):
    return ["pareto", "--objectives", f"{VOWELS},{SPACES}", "--methods", methods,
            "--lambdas", "0,0.5,1", "--beta", "0:2,0.5:3,1:2", "--best-of", "2", "--beams", "2",
            "--beam-prune-every", "2", "--recipe", str(workspace / "recipe.yaml"),
            "--prompts", str(workspace / "p.jsonl"), "--split", "all", "--limit", "3",
            "--top-k", "5", "--max-new-tokens", "4", "--model", str(tiny_lm),
            "--value-model", f"{VOWELS}={workspace / 'vm'}",
            "--value-model", f"{SPACES}={workspace / 'vm'}", "--out", str(out)]


def test_pareto_compares_every_method_end_to_end(workspace, tiny_lm, capsys, monkeypatch):
    out = workspace / "cmp" / "front.png"
    args = pareto_args(workspace, tiny_lm, out, "mavis,morlhf,rsoup,mod,bon,beam")
    assert main(args) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    points = saved["points"]
    methods = sorted({p["method"] for p in points.values()})
    assert methods == ["MAVIS", "MOD", "MORLHF", "RSoup", "beam-2", "best-of-2", "pi_ref"]
    assert len(points) == 1 + 6 * 3
    # the policies: three MORLHF runs (the two ends serve soups and MOD too), one step each
    trained = sorted(p.name for p in (workspace / "cmp" / "baselines" / "morlhf").iterdir())
    vowels, spaces = (name.replace(":", "_") for name in (VOWELS, SPACES))
    assert trained == sorted([f"{spaces}=1", f"{vowels}=0.5,{spaces}=0.5", f"{vowels}=1"])
    # MOD and the soup at lambda = 1 are the first single-objective policy alone: they reuse
    # MORLHF's lambda = 1 point (test_proposals shows MOD samples that policy's distribution)
    by_key = {k.split(" beta")[0]: p for k, p in points.items()}
    end = f"{VOWELS}=1,{SPACES}=0"
    for method in ("MOD", "RSoup"):
        assert by_key[f"{method} {end}"]["reward"] == by_key[f"MORLHF {end}"]["reward"]
        assert by_key[f"{method} {end}"]["kl"] == by_key[f"MORLHF {end}"]["kl"]
    assert by_key[f"MORLHF {end}"]["kl"] != pytest.approx(by_key["pi_ref"]["kl"])
    # every KL says what it is
    kinds = {p["method"]: p["kl_kind"] for p in points.values()}
    assert kinds["best-of-2"] == KL_WITH_BOUND and kinds["beam-2"] == KL_PATH
    assert kinds["MORLHF"] == kinds["MOD"] == kinds["MAVIS"] == "estimate"
    # the command, the settings of each method, hypervolumes against pi_ref, dominance
    assert saved["commands"][-1].startswith("mavis pareto --objectives")
    assert "--methods mavis,morlhf,rsoup,mod,bon,beam" in saved["commands"][-1]
    assert saved["methods"]["MORLHF"]["morlhf"]["max_steps"] == 1
    fronts = saved["fronts"]
    assert fronts["reference_from"] == "pi_ref"
    assert fronts["reference_point"] == {VOWELS: by_key["pi_ref"]["reward"][VOWELS],
                                         SPACES: by_key["pi_ref"]["reward"][SPACES]}
    assert set(fronts["hypervolume"]) == set(methods) and fronts["hypervolume"]["pi_ref"] == 0
    assert set(fronts["dominated_overall"]) == set(points)
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == len(points)
    assert {r["dominated_overall"] for r in rows} <= {"True", "False"}
    assert all(float(r["hypervolume"]) == fronts["hypervolume"][r["method"]] for r in rows)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10000
    text = capsys.readouterr().out
    assert "hypervolume above pi_ref" in text

    # a rerun trains nothing and evaluates nothing: every point comes from the file
    import mavis.baselines.compare as compare

    def no_training(settings, weights, folder):
        info = json.loads((folder / "policy.json").read_text())
        assert info["steps"] == 1
        return info

    monkeypatch.setattr(compare, "train_morlhf", no_training)
    monkeypatch.setattr(compare, "evaluate_policy", lambda *a, **k: pytest.fail("evaluated"))
    assert main(args) == 0
    assert json.loads(out.with_suffix(".json").read_text())["points"] == points


def test_pareto_refuses_points_of_other_baseline_settings(workspace, tiny_lm, capsys):
    out = workspace / "front.png"
    assert main(pareto_args(workspace, tiny_lm, out, "morlhf")) == 0
    recipe = yaml.safe_load((workspace / "recipe.yaml").read_text())
    recipe["baselines"]["learning_rate"] = 1e-3
    (workspace / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(pareto_args(workspace, tiny_lm, out, "morlhf")) == 2
    assert "other MORLHF settings" in capsys.readouterr().err
    # ... and other methods can still join the same file
    assert main(pareto_args(workspace, tiny_lm, out, "mavis")) == 0
    methods = {p["method"] for p in json.loads(out.with_suffix(".json").read_text())[
        "points"].values()}
    assert methods == {"MAVIS", "MORLHF", "pi_ref", "best-of-2"}


def test_methods_and_points():
    points = comparison_points(["a", "b"], [0.0, 1.0], ["mavis", "mod", "beam"],
                               betas={0.0: 2.0, 1.0: 3.0}, best_of=[4], beams=[2, 4])
    assert [(p.method, p.beta, p.n, p.beams) for p in points] == [
        ("MAVIS", 2.0, 0, 0), ("MAVIS", 3.0, 0, 0), ("pi_ref", 0.0, 0, 0),
        ("best-of-4", 0.0, 4, 0), ("best-of-4", 0.0, 4, 0),
        ("best-of-2", 0.0, 2, 0), ("best-of-2", 0.0, 2, 0),
        ("beam-2", 2.0, 0, 2), ("beam-2", 3.0, 0, 2), ("beam-4", 2.0, 0, 4),
        ("beam-4", 3.0, 0, 4), ("MOD", 0.0, 0, 0), ("MOD", 0.0, 0, 0)]
    assert len({p.key for p in points}) == len(points)
    with pytest.raises(MavisError, match="unknown method"):
        check_methods(["mavis", "ppo"], ["a", "b"])
    three = comparison_points(["a", "b", "c"], [0.0, 0.5, 1.0], ["rsoup", "mod"])
    assert {p.method for p in three} == {"pi_ref", "RSoup", "MOD"} and len(three) == 13
    corners = [p for p in three if p.same_as is not None]
    assert len(corners) == 6 and all(p.same_as.method == "MORLHF" for p in corners)


def test_soups_and_mod_at_the_ends_reuse_morlhf_points(tiny_lm):
    points = comparison_points(["a", "b"], [0.0, 0.5, 1.0], ["rsoup", "mod"])
    twins = {p.key: p.same_as.key for p in points if p.same_as is not None}
    assert twins == {"RSoup a=1,b=0": "MORLHF a=1,b=0", "RSoup a=0,b=1": "MORLHF a=0,b=1",
                     "MOD a=1,b=0": "MORLHF a=1,b=0", "MOD a=0,b=1": "MORLHF a=0,b=1"}
    calls = []

    class Fake(Method):  # stands in for sampling a policy: records what was sampled
        def evaluate(self, point, run, on_rows):
            calls.append(point.key)
            return PolicyEvaluation(label=point.label, weights=point.weights, beta=0.0,
                                    prompts=1, samples=1, reward={"a": len(calls), "b": 0.0})

    fakes = {m: Fake() for m in ("MORLHF", "RSoup", "MOD")}
    decoder = MavisDecoder.load(str(tiny_lm), [])
    results = dict((p.key, r) for p, r in run_sweep(
        decoder, ["x"], ["a", "b"], [p for p in points if p.method != "pi_ref"],
        EvaluationSettings(), progress=False, methods=fakes))
    # each single-objective policy sampled once, each interior point once
    assert sorted(calls) == sorted(["MORLHF a=0,b=1", "RSoup a=0.5,b=0.5", "MORLHF a=1,b=0",
                                    "MOD a=0.5,b=0.5"])
    assert results["MOD a=1,b=0"].reward == results["RSoup a=1,b=0"].reward
    assert results["MOD a=1,b=0"].label == "a=1,b=0"


def test_explicit_weight_vectors_replace_the_grid():
    """The paper's Table 1 names its six weight vectors over three objectives."""
    vectors = [{"a": 0.4, "b": 0.4, "c": 0.2}, {"a": 0.34, "b": 0.33, "c": 0.33}]
    points = comparison_points(["a", "b", "c"], [0.0, 1.0], ["mavis", "rsoup"], betas=4.0,
                               vectors=vectors)
    assert [p.weights for p in points if p.method == "MAVIS"] == vectors
    assert [p.weights for p in points if p.method == "RSoup"] == vectors
    assert all(p.same_as is None for p in points)  # no corner among them


def test_morlhf_may_take_a_coarser_grid():
    points = comparison_points(["a", "b"], [0.0, 0.25, 0.5, 0.75, 1.0], ["morlhf", "rsoup"],
                               best_of=[], morlhf_lambdas=[0.0, 1.0])
    weights = {m: [p.weights["a"] for p in points if p.method == m] for m in ("MORLHF", "RSoup")}
    assert weights == {"MORLHF": [0.0, 1.0], "RSoup": [0.0, 0.25, 0.5, 0.75, 1.0]}


def test_simplex_grid_for_three_objectives():
    grid = weight_grid(["a", "b", "c"], [0.0, 0.5, 1.0])
    assert len(grid) == 6 and all(sum(w.values()) == pytest.approx(1.0) for w in grid)
    assert {"a": 1.0, "b": 0.0, "c": 0.0} in grid and {"a": 0.0, "b": 0.5, "c": 0.5} in grid
    assert len(weight_grid(["a", "b", "c"], [0, 0.25, 0.5, 0.75, 1])) == 15
    assert weight_grid(["a", "b"], [0.25]) == [{"a": 0.25, "b": 0.75}]
    with pytest.raises(MavisError, match="summing to 1"):
        weight_grid(["a", "b", "c"], [0.9])


def evaluation(method, label, rewards, weights=None):
    result = PolicyEvaluation(label=label, weights=weights or {}, beta=0.0, prompts=1,
                              samples=1, reward=dict(zip("ab", rewards, strict=True)))
    return SweepPoint(method, weights or {}), result


def test_fronts_summary_hypervolume_and_dominance(tmp_path):
    results = [evaluation("pi_ref", "", (1.0, 1.0)),
               evaluation("X", "0", (3.0, 1.5), {"a": 0.0, "b": 1.0}),
               evaluation("X", "1", (2.0, 2.0), {"a": 0.5, "b": 0.5}),
               evaluation("X", "2", (1.5, 1.5), {"a": 1.0, "b": 0.0}),
               evaluation("Y", "0", (2.5, 2.5), {"a": 0.5, "b": 0.5})]
    summary = summarise_fronts(results, ["a", "b"])
    assert summary.reference_point == {"a": 1.0, "b": 1.0} and summary.reference_from == "pi_ref"
    # X: boxes [1,3]x[1,1.5] and [1,2]x[1,2] -> 1 + 1 - 0.5 = 1.5 (the third adds nothing)
    assert summary.hypervolume == {"pi_ref": 0.0, "X": pytest.approx(1.5),
                                   "Y": pytest.approx(2.25)}
    # MIP: the mean of <weights, rewards> over each method's points; pi_ref at every weight
    assert summary.mip == {"pi_ref": pytest.approx(1.0), "X": pytest.approx(5 / 3),
                           "Y": pytest.approx(2.5)}
    keys = [p.key for p, _ in results]
    assert [summary.dominated_in_method[k] for k in keys] == [False, False, False, True, False]
    assert [summary.dominated_overall[k] for k in keys] == [True, False, True, True, False]
    given = summarise_fronts(results, ["a", "b"], {"a": 0.0, "b": 0.0})
    assert given.reference_from == "given" and given.hypervolume["pi_ref"] == 1.0
    with pytest.raises(MavisError, match="no pi_ref point"):
        summarise_fronts(results[1:], ["a", "b"])
    path = write_points_csv(tmp_path / "p.csv", results, ["a", "b"], summary)
    rows = list(csv.DictReader(path.open()))
    assert [r["dominated_overall"] for r in rows] == ["True", "False", "True", "True", "False"]
    assert float(rows[1]["hypervolume"]) == pytest.approx(1.5)
    assert float(rows[1]["mip"]) == pytest.approx(5 / 3)


def test_store_refuses_points_of_changed_method_settings(tmp_path):
    point = SweepPoint("MORLHF", {"a": 1.0})
    _, result = evaluation("MORLHF", "x", (1.0, 2.0))
    store = SweepStore(tmp_path / "s.json", {"x": 1}, {"MORLHF": {"lr": 1}})
    store.save(point, result)
    assert SweepStore(tmp_path / "s.json", {"x": 1}, {"MORLHF": {"lr": 1}}).done(point)
    assert SweepStore(tmp_path / "s.json", {"x": 1}).done(point)  # not re-run: not checked
    with pytest.raises(MavisError, match="other MORLHF settings"):
        SweepStore(tmp_path / "s.json", {"x": 1}, {"MORLHF": {"lr": 2}}).done(point)


def test_store_refuses_points_of_a_changed_value_model(tmp_path, tiny_lm):
    import shutil

    from mavis.models.value_folder import value_model_fingerprint

    model = ValueModel.build(str(tiny_lm), "a", num_layers=1, lora=None)
    folder = model.save(tmp_path / "vm")
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert value_model_fingerprint(copy) == value_model_fingerprint(folder)  # contents only
    point = SweepPoint("MAVIS", {"a": 1.0}, 2.0)
    _, result = evaluation("MAVIS", "x", (1.0, 2.0))
    SweepStore(tmp_path / "s.json", {"x": 1}, value_models={"a": folder}).save(point, result)
    assert SweepStore(tmp_path / "s.json", {"x": 1}, value_models={"a": copy}).done(point)
    assert SweepStore(tmp_path / "s.json", {"x": 1}).done(point)  # unguided: not checked
    with torch.no_grad():  # trained again into the same folder
        model.head.bias.fill_(0.5)
    model.save(folder)
    assert value_model_fingerprint(folder) != value_model_fingerprint(copy)
    with pytest.raises(MavisError, match="other versions of the value model"):
        SweepStore(tmp_path / "s.json", {"x": 1}, value_models={"a": folder})
    # a file from before fingerprints were kept takes the models it is used with
    saved = json.loads((tmp_path / "s.json").read_text())
    del saved["value_models"]
    (tmp_path / "s.json").write_text(json.dumps(saved))
    assert SweepStore(tmp_path / "s.json", {"x": 1}, value_models={"a": folder}).done(point)


def test_beam_search_evaluation_keeps_the_best_of_its_beams_by_reward(workspace, tiny_lm):
    model, tokenizer = load_causal_lm(str(tiny_lm))
    decoder = MavisDecoder(model, tokenizer, [ValueModel.load(workspace / "vm")])
    settings = EvaluationSettings.from_dict(dict(top_k=5, max_new_tokens=6, num_samples=2,
                                                 seed=1))
    rows = []
    result = evaluate_beam(decoder, ["say hi", "say no"], [VOWELS, SPACES],
                           settings.policy({VOWELS: 1.0, SPACES: 0.0}, 2.0, None),
                           BeamSettings(num_beams=3, prune_every=2), on_rows=rows.append)
    assert rows == [1, 1, 1, 1] and result.samples == 4 and result.kl_kind == KL_PATH
    assert math.isfinite(result.kl)
    # per prompt and sample, the kept answer is the beam with the most vowels
    from mavis.decoding.search import beam_search

    best = []
    for prompt in ["say hi", "say no"]:
        for sample in range(2):
            beams = beam_search(decoder, prompt, weights={VOWELS: 1.0, SPACES: 0.0}, beta=2.0,
                                top_k=5, max_new_tokens=6, seed=1 + sample,
                                beam=BeamSettings(num_beams=3, prune_every=2))
            best.append(max(sum(c in "aeiou" for c in b.text) / max(len(b.text), 1)
                            for b in beams))
    assert result.reward[VOWELS] == pytest.approx(sum(best) / 4)


def test_baselines_name_their_policy_folders(tmp_path):
    settings = MorlhfSettings(objectives=["a", "b"])
    baselines = Baselines(tmp_path, settings, ["a", "b"])
    assert baselines.folder_for({"a": 0.7, "b": 1 - 0.7}).name == "a=0.7,b=0.3"
    assert baselines.folder_for({"a": 0.0, "b": 1.0}).name == "b=1"
    points = [SweepPoint("MORLHF", {"a": 0.5, "b": 0.5}), SweepPoint("MOD", {"a": 0.5, "b": 0.5}),
              SweepPoint("RSoup", {"a": 0.0, "b": 1.0}), SweepPoint("MAVIS", {"a": 1.0})]
    assert baselines.needed(points) == [{"a": 0.5, "b": 0.5}, {"a": 1.0}, {"b": 1.0}]


def test_pareto_over_three_objectives_sweeps_a_simplex_grid(workspace, tiny_lm):
    names = [VOWELS, SPACES, "python:cmp_rewards:length"]
    vm = ValueModel.build(str(tiny_lm), names, num_layers=1, lora=None).save(workspace / "vm3")
    out = workspace / "three.png"
    assert main(["pareto", "--objectives", ",".join(names), "--methods", "mavis,bon",
                 "--lambdas", "0,0.5,1", "--beta", "2", "--best-of", "2",
                 "--prompts", str(workspace / "p.jsonl"), "--split", "all", "--limit", "2",
                 "--top-k", "5", "--max-new-tokens", "3", "--model", str(tiny_lm),
                 *[f"--value-model={n}={vm}" for n in names], "--out", str(out)]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    mavis = [p for p in saved["points"].values() if p["method"] == "MAVIS"]
    assert len(mavis) == 6 and all(len(p["weights"]) == 3 for p in mavis)
    assert set(saved["fronts"]["reference_point"]) == set(names)
    assert out.stat().st_size > 5000
