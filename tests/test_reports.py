"""`mavis report`: the iteration table from a results.jsonl, and teachers vs distilled student
(evaluated here, resumable) on tiny models."""

import csv
import json

import pytest
import torch

from mavis.cli import main
from mavis.errors import MavisError
from mavis.models.value_model import ValueModel
from mavis.recipes.reports import iteration_report

PNG = b"\x89PNG\r\n\x1a\n"


def result_row(iteration, objective, reward, kl):
    return {"iteration": iteration, "objective": objective, "beta": 8.0,
            "zeta": 0.01 * iteration, "reference_reward": 0.1, "reference_reward_se": 0.02,
            "mavis_reward": reward, "mavis_reward_se": 0.03, "mavis_kl": kl,
            "mavis_kl_se": 0.4, "test_prompts": 48, "samples": 48,
            "val_sibling_accuracy": 0.6 + 0.1 * iteration}


def test_iteration_report_from_results(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [result_row(0, "relevant", 0.30, 4.0), result_row(0, "harmless", 0.20, 3.0),
            result_row(1, "relevant", 0.35, 4.5), result_row(1, "harmless", 0.15, 3.5)]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = iteration_report(run, tmp_path / "out")
    assert [(r["objective"], r["iteration"]) for r in table] == [
        ("harmless", 0), ("harmless", 1), ("relevant", 0), ("relevant", 1)]
    assert table[1]["change"] == pytest.approx(-0.05) and table[0]["change"] is None
    assert table[3]["gain"] == pytest.approx(0.25)
    markdown = (tmp_path / "out" / "iterations.md").read_text()
    assert "| relevant | 1 | 8 | 0.01 | 0.100 ± 0.020 | 0.350 ± 0.030 | +0.250 | +0.050 |" \
        in markdown
    assert len(list(csv.DictReader((tmp_path / "out" / "iterations.csv").open()))) == 4
    assert (tmp_path / "out" / "iterations.png").read_bytes()[:8] == PNG
    assert main(["report", "iterations", str(run), "--out", str(tmp_path / "cli")]) == 0
    assert "relevant     iteration 1" in capsys.readouterr().out
    with pytest.raises(MavisError, match="run `mavis iterate"):
        iteration_report(tmp_path / "nothing", tmp_path / "out")


@pytest.fixture()
def distilled(tmp_path, monkeypatch, tiny_lm):
    """Two teachers (one head each) and a student with both heads, as `mavis distill` leaves
    them (report.json naming the teachers, the model in best/), and a prompt file."""
    from mavis.objectives import clear_objective_cache

    (tmp_path / "rep_rewards.py").write_text(
        "def vowels(prompts, responses):\n"
        "    return [sum(c in 'aeiou' for c in r) / max(len(r), 1) for r in responses]\n"
        "def spaces(prompts, responses):\n"
        "    return [r.count(' ') / max(len(r), 1) for r in responses]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    clear_objective_cache()
    names = ["python:rep_rewards:vowels", "python:rep_rewards:spaces"]
    torch.manual_seed(0)
    teachers = {}
    for index, name in enumerate(names):
        vm = ValueModel.build(str(tiny_lm), [name], num_layers=1, lora=None)
        with torch.no_grad():
            vm.head.weight.normal_()
        teachers[name] = str(vm.save(tmp_path / f"teacher{index}"))
    student = ValueModel.build(str(tiny_lm), names, num_layers=1, lora=None)
    student.save(tmp_path / "student" / "best")
    (tmp_path / "student" / "report.json").write_text(json.dumps({"teachers": teachers}))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": f"say {w}"}) + "\n"
                                              for w in ["hi", "yes", "no", "ok", "sun"]))
    yield tmp_path, names
    clear_objective_cache()


def test_distill_report_compares_teachers_and_student(distilled, tiny_lm, capsys, monkeypatch):
    folder, names = distilled
    args = ["report", "distill", str(folder / "student"), "--beta", f"{names[0]}=2,{names[1]}=3",
            "--prompts", str(folder / "p.jsonl"), "--split", "all", "--limit", "3",
            "--top-k", "5", "--max-new-tokens", "4", "--model", str(tiny_lm),
            "--out", str(folder / "report")]
    assert main(args) == 0
    rows = list(csv.DictReader((folder / "report" / "distill.csv").open()))
    assert [r["case"] for r in rows] == [*names, "all (equal weights)"]
    assert [float(r["beta"]) for r in rows] == [2.0, 3.0, 2.5]
    for row in rows:
        assert float(row["teachers_tokens_per_second"]) > 0
        assert float(row["student_tokens_per_second"]) > 0
        assert float(row["reward_loss"]) == pytest.approx(
            float(row["teachers_reward"]) - float(row["student_reward"]))
    saved = json.loads((folder / "report" / "distill-teachers.json").read_text())
    assert saved["identity"]["teachers"] == {n: str(folder / f"teacher{i}")
                                             for i, n in enumerate(names)}
    assert len(saved["points"]) == 3
    assert "| all (equal weights) | 2.5 |" in (folder / "report" / "distill.md").read_text()
    assert (folder / "report" / "distill.png").read_bytes()[:8] == PNG
    # a rerun evaluates nothing
    import mavis.recipes.reports as reports

    monkeypatch.setattr(reports, "run_sweep", lambda *a, **k: pytest.fail("evaluated again"))
    capsys.readouterr()
    assert main(args) == 0
    assert "(teachers)" in capsys.readouterr().out
    assert main([*args[:3], "--beta", "x=1", *args[5:]]) == 2


def test_heads_report_evaluates_every_head_against_pi_ref_and_best_of_n(distilled, tiny_lm,
                                                                        monkeypatch):
    """`mavis report heads MODEL`: one row per head, its reward at weight 1 against pi_ref
    and best-of-N on the same prompts, the gain's standard error, the KLs; resumable."""
    import math

    import mavis.recipes.heads as heads

    folder, names = distilled
    model = folder / "student" / "best"
    (folder / "student" / "report.json").write_text(json.dumps(
        {"best": {"sibling_accuracy": {names[0]: 0.61, names[1]: 0.57}}}))
    args = ["report", "heads", str(model), "--prompts", str(folder / "p.jsonl"), "--split",
            "all", "--limit", "4", "--best-of", "2", "--top-k", "5", "--max-new-tokens", "4",
            "--model", str(tiny_lm), "--out", str(folder / "heads")]
    assert main(args) == 0
    rows = list(csv.DictReader((folder / "heads" / "heads.csv").open()))
    assert [r["objective"] for r in rows] == names
    assert [float(r["sibling_accuracy"]) for r in rows] == [0.61, 0.57]
    saved = json.loads((folder / "heads" / "heads.json").read_text())["points"]
    assert {p["method"] for p in saved.values()} == {"pi_ref", "MAVIS", "best-of-2"}
    for row in rows:
        mavis = float(row["mavis_reward"])
        assert float(row["gain"]) == pytest.approx(mavis - float(row["reference_reward"]))
        assert float(row["gain_se"]) == pytest.approx(math.hypot(
            float(row["mavis_reward_se"]), float(row["reference_reward_se"])))
        assert math.isfinite(float(row["best_of_reward"])) and row["best_of_n"] == "2"
        assert float(row["mavis_kl"]) > 0
    assert "| objective | sibling acc. |" in (folder / "heads" / "heads.md").read_text()
    assert (folder / "heads" / "heads.png").read_bytes()[:8] == PNG
    # --objectives: only those heads; a name the model has no head for is refused, naming it
    one = [*args[:-1], str(folder / "one"), "--objectives", names[1]]
    assert main(one) == 0
    rows = list(csv.DictReader((folder / "one" / "heads.csv").open()))
    assert [r["objective"] for r in rows] == [names[1]]
    assert main([*one[:-1], "nosuch"]) == 2
    monkeypatch.setattr(heads, "run_sweep", lambda *a, **k: pytest.fail("evaluated again"))
    assert main(args) == 0


def test_heads_table_without_best_of_n_has_no_best_of_columns():
    from mavis.evaluation.settings import EvaluationSettings
    from mavis.recipes.heads import _markdown

    row = {"objective": "a", "sibling_accuracy": None, "reference_reward": 0.4,
           "reference_reward_se": 0.02, "mavis_reward": 0.5, "mavis_reward_se": 0.02,
           "gain": 0.1, "gain_se": 0.03, "beyond_2se": True, "mavis_kl": 12.0,
           "mavis_kl_topk": 6.0}
    text = _markdown([row], "m", EvaluationSettings(), 8)
    assert "best-of" not in text
    header, rule, line = text.splitlines()[2:5]
    assert header.count("|") == rule.count("|") == line.count("|") == 8
    text = _markdown([row | {"best_of_n": 4, "best_of_reward": 0.6, "best_of_gain": 0.2,
                             "best_of_kl": 6.5}], "m", EvaluationSettings(), 8)
    assert "| best-of-4 | its gain | its KL |" in text and "| 0.600 | +0.200 | 6.5 |" in text


def test_heads_table_names_the_candidate_settings_that_differ_from_the_defaults():
    from mavis.decoding.sampling import reproducible
    from mavis.evaluation.settings import EvaluationSettings
    from mavis.recipes.heads import _markdown

    plain = _markdown([], "m", EvaluationSettings(), 8)
    assert "value_min_p" not in plain and "certain_p" not in plain
    settings = EvaluationSettings(sampling=reproducible(value_min_p=0.1))
    assert "top-40, value_min_p 0.1, seed 0" in _markdown([], "m", settings, 8)
