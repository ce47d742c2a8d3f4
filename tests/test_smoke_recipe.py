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

    # Value models predict their Monte-Carlo targets on held-out nodes better than chance.
    for name in recipe.objectives:
        report = json.loads((out / "iter0" / "value_models" / name / "report.json").read_text())
        rho = report["best"]["spearman"][name]
        n = report["data"]["nodes_val"]
        assert n >= 30
        assert rho is not None and rho > 0.1, (name, rho)
        # one-sided test of rho > 0 (t distribution with n - 2 degrees of freedom)
        t_stat = rho * ((n - 2) / (1 - rho**2)) ** 0.5
        assert student_t.sf(t_stat, n - 2) < 0.05, (name, rho, n)
    # Rerunning resumes: nothing is recomputed, the results file is unchanged.
    before = (out / "results.jsonl").read_text()
    assert main(["iterate", str(RECIPE), "--out", str(out)]) == 0
    assert (out / "results.jsonl").read_text() == before
    assert (out / "iterations.png").stat().st_size > 5000
    assert "pi_ref" in capsys.readouterr().out
