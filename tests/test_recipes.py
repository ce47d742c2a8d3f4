"""Recipe files and the Algorithm-1 pipeline on tiny models (fast); the real packaged-model
run is tests/test_smoke_recipe.py."""

import json

import pytest
import yaml

from mavis.errors import MavisError
from mavis.recipes.iterate import run_recipe
from mavis.recipes.recipe import SET_BY_THE_PIPELINE, load_recipe

REWARDS = (
    "def vowels(prompts, responses):\n"
    "    return [sum(c in 'aeiou' for c in r) / max(len(r), 1) for r in responses]\n"
)


def write_recipe(tmp_path, tiny_lm, **overrides):
    prompts = tmp_path / "prompts.jsonl"
    words = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "happy",
             "dance", "ocean", "bread", "tiger", "chair", "plant", "smile", "sunny", "quiet",
             "brave", "sweet"]
    prompts.write_text("".join(json.dumps({"prompt": f"{q} {w}"}) + "\n"
                               for w in words for q in ("tell me about", "what is")))
    recipe = {
        "name": "tiny", "out": str(tmp_path / "run"), "reference": str(tiny_lm),
        "objectives": ["python:toy_recipe_rewards:vowels"],
        "prompts": {"sets": [str(prompts)], "train": 12, "test": 3, "max_prompt_tokens": 64},
        "collection": {"T": 6, "L": 2, "K_root": 2, "K": 2, "top_k": 5, "batch_prompts": 4},
        "iterations": [{"beta": 2.0, "zeta": 0.0}, {"beta": 2.0, "zeta": 0.01, "K_root": 2}],
        "training": {"base": str(tiny_lm), "num_layers": 1, "lora_r": 4, "lora_alpha": 8,
                     "lora_dropout": 0.0, "lr": 1e-2, "warmup_steps": 0, "epochs": 1,
                     "batch_size": 8, "validation_fraction": 0.25, "progress": False},
        "evaluation": {"max_new_tokens": 6, "top_k": 5},
    }
    recipe.update(overrides)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture()
def rewards(tmp_path, monkeypatch):
    (tmp_path / "toy_recipe_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_iterate_runs_every_iteration_and_resumes(tmp_path, tiny_lm, rewards):
    recipe = load_recipe(write_recipe(tmp_path, tiny_lm))
    rows = run_recipe(recipe)
    assert [(r["iteration"], r["objective"]) for r in rows] == [
        (0, "python:toy_recipe_rewards:vowels"), (1, "python:toy_recipe_rewards:vowels")]
    out = recipe.out_dir
    assert (out / "iter0" / "trees.h5").exists()
    assert (out / "iter1" / "trees-python:toy_recipe_rewards:vowels.h5").exists()
    assert rows[0]["reference_reward"] == rows[1]["reference_reward"]  # pi_ref evaluated once
    assert "iter1" in rows[1]["value_model"]
    before = (out / "results.jsonl").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.h5")}
    again = run_recipe(load_recipe(write_recipe(tmp_path, tiny_lm)))
    assert again == rows
    assert (out / "results.jsonl").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.h5")} == stamps
    assert (out / "iterations.png").exists()


def test_a_later_run_for_one_objective_reuses_iteration_0(tmp_path, tiny_lm, monkeypatch):
    # a module of its own: another test may have imported toy_recipe_rewards already
    (tmp_path / "two_recipe_rewards.py").write_text(
        REWARDS + "def length(prompts, responses):\n"
                  "    return [min(len(r), 20) / 20 for r in responses]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    both = ["python:two_recipe_rewards:vowels", "python:two_recipe_rewards:length"]
    recipe = load_recipe(write_recipe(tmp_path, tiny_lm, objectives=both))
    first = run_recipe(recipe, iterations=1)
    assert [r["objective"] for r in first] == both
    trees = recipe.out_dir / "iter0" / "trees.h5"
    stamp = trees.stat().st_mtime_ns
    rows = run_recipe(recipe, iterations=2, objectives=both[1:])
    assert trees.stat().st_mtime_ns == stamp  # not refused, not collected again
    assert [(r["iteration"], r["objective"]) for r in rows] == [(0, both[0]), (0, both[1]),
                                                                (1, both[1])]


def test_recipe_errors_name_the_key(tmp_path, tiny_lm):
    with pytest.raises(MavisError, match="section 'collection': unknown collection "
                                         "setting\\(s\\) depth"):
        load_recipe(write_recipe(tmp_path, tiny_lm, collection={"depth": 3}))
    with pytest.raises(MavisError, match="section 'training': learning_rate"):
        load_recipe(write_recipe(tmp_path, tiny_lm, training={"learning_rate": 1}))
    with pytest.raises(MavisError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(MavisError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize("section, key", sorted(SET_BY_THE_PIPELINE))
def test_keys_the_pipeline_sets_are_refused_before_any_work(tmp_path, tiny_lm, section, key):
    value = {"weights": {"positive": 1.0}, "objectives": ["positive"],
             "init_from": "runs/x", "two_layer_guarantee": True}.get(key, 1.0)
    with pytest.raises(MavisError, match=f"recipe key {section}.{key} is set by "):
        load_recipe(write_recipe(tmp_path, tiny_lm, **{section: {key: value}}))
    assert not (tmp_path / "run").exists()


def test_shipped_recipes_load():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert recipe.objectives and recipe.iterations
