"""The smoke recipe end to end on the packaged defaults (Algorithm 1: collect -> train ->
evaluate, two iterations), as CI runs it."""

import json
from pathlib import Path

import pytest
from scipy.stats import t as student_t

from mavis.cli import main
from mavis.recipes.recipe import load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "smoke.yaml"


@pytest.mark.slow
def test_smoke_recipe_end_to_end(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["iterate", str(RECIPE), "--out", str(out)]) == 0
    recipe = load_recipe(RECIPE)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["iteration"], r["objective"]) for r in rows} == {
        (i, o) for i in range(len(recipe.iterations)) for o in recipe.objectives}
    for row in rows:
        assert row["mavis_kl"] >= 0 and row["samples"] == row["test_prompts"]

    # The best checkpoint is never worse on held-out nodes than predicting the mean ...
    for name in recipe.objectives:
        report = json.loads((out / "iter0" / "value_models" / name / "report.json").read_text())
        metrics = [json.loads(line) for line in
                   (out / "iter0" / "value_models" / name / "metrics.jsonl").read_text()
                   .splitlines()]
        best = min(m["val_loss"] for m in metrics)
        assert report["best"]["val_loss"] == pytest.approx(best)
        assert best <= metrics[0]["val_baseline_loss"] + 1e-9
    # ... and where the reward varies (positive; harmless is near 1 on every chitchat answer),
    # the value model predicts its Monte-Carlo targets better than chance.
    report = json.loads((out / "iter0" / "value_models" / "positive" / "report.json").read_text())
    rho, n = report["best"]["spearman"]["positive"], report["data"]["nodes_val"]
    assert n >= 30 and rho is not None and rho > 0.1, (rho, n)
    t_stat = rho * ((n - 2) / (1 - rho**2)) ** 0.5  # one-sided test of rho > 0
    assert student_t.sf(t_stat, n - 2) < 0.05, (rho, n)
    # Rerunning resumes: nothing is recomputed, the results file is unchanged.
    before = (out / "results.jsonl").read_text()
    assert main(["iterate", str(RECIPE), "--out", str(out)]) == 0
    assert (out / "results.jsonl").read_text() == before
    assert (out / "iterations.png").stat().st_size > 5000
    assert "pi_ref" in capsys.readouterr().out
