"""Algorithm 1 (single-objective policy iteration for MAVIS), run from a recipe, resumable.

    iteration 0:  trees from pi_ref, scored by every objective of the recipe at once (one
                  tree set serves all of them, whatever --objective
                  chooses for the later iterations)                      -> iter0/trees.h5
                  V^0_m trained on them for every objective m            -> iter0/value_models/
    iteration i:  for each objective m: trees from pi^i = MAVIS(pi_ref, V^{i-1}_m, beta_{i-1}),
                  tracking log pi^i and log pi_ref                       -> iterI/trees-<m>.h5
                  V^i_m initialised from V^{i-1}_m, trained with zeta_i  -> iterI/value_models/<m>
    after each:   the single-objective MAVIS policy of V^i_m and pi_ref itself are evaluated on
                  held-out test prompts (mean reward, KL of equation 7)  -> results.jsonl,
                                                                            iterations.png

Every step leaves its output on disk and is skipped when found complete; collection and
training resume inside a step too. Interrupt and rerun the same command to continue.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.evaluation.plots import plot_iterations
from mavis.evaluation.policy import evaluate_policy
from mavis.models.loading import load_tokenizer
from mavis.models.value_folder import find_value_model
from mavis.paths import check_writable
from mavis.prompts import load_prompts
from mavis.recipes.recipe import Recipe
from mavis.training.checkpoint import read_metrics, read_report, write_json, write_json_lines
from mavis.training.trainer import train
from mavis.trees.collect import collect_trees, load_objectives
from mavis.trees.decoder_spec import DecoderSpec
from mavis.trees.distributed import collect_trees_distributed

RESULTS = "results.jsonl"


def _say(message: str) -> None:
    print(f"[mavis iterate] {message}", file=sys.stderr, flush=True)


def recipe_prompts(recipe: Recipe, split: str) -> list[Any]:
    """The recipe's prompts of one split: `train` or `test` prompts from each set, in order."""
    tokenizer = load_tokenizer(recipe.reference)
    limit = recipe.prompts.train if split == "train" else recipe.prompts.test
    prompts: list[Any] = []
    for name in recipe.prompts.sets:
        prompts += load_prompts(name, split, tokenizer=tokenizer, limit=limit,
                                max_prompt_tokens=recipe.prompts.max_prompt_tokens,
                                seed=recipe.prompts.seed)
    if not prompts:
        raise MavisError(f"the recipe's prompt sets {recipe.prompts.sets} have no prompts in "
                         f"the {split} split; use larger sets or raise max_prompt_tokens")
    return prompts


def collect(recipe: Recipe, prompts: list[Any], objectives: list[str], out: Path, *,
            iteration: int, value_models: dict[str, str], sampling: SamplingSettings) -> Path:
    """Collect the trees of one iteration with `sampling` (pi_ref at iteration 0, else MAVIS
    with the previous iteration's value model)."""
    it = recipe.iterations[iteration]
    two_layer = it.two_layer_guarantee if it.two_layer_guarantee is not None else iteration > 0
    settings = dataclasses.replace(
        recipe.collection, K_root=it.K_root or recipe.collection.K_root,
        sampling=dataclasses.replace(sampling, seed=recipe.collection.seed + iteration),
        two_layer_guarantee=two_layer)
    meta = {"iteration": iteration, "recipe": recipe.name, "prompt_sets": recipe.prompts.sets}
    if settings.workers > 1:
        return collect_trees_distributed(recipe.reference, prompts, objectives, out, settings,
                                         value_models=value_models, meta=meta)
    spec = DecoderSpec(recipe.reference, value_models)
    return collect_trees(spec, prompts, objectives, out, settings, meta=meta)


def train_step(recipe: Recipe, trees: Path, objectives: list[str], out: Path, zeta: float,
               init_from: Path | None) -> dict[str, Any]:
    """Train V^i (resuming a stopped run; a complete one is returned as it is)."""
    report = read_report(out)
    if report is not None and report.get("complete", True):
        return report
    config = dataclasses.replace(recipe.training, objectives=objectives, zeta=zeta,
                                 base=recipe.training.base or recipe.reference)
    if init_from is not None:
        # the paper warms up in iteration 0 only
        config = dataclasses.replace(config, init_from=str(init_from), warmup_steps=0)
    return train(config, trees, out, resume=True)


def evaluate(recipe: Recipe, prompts: list[Any], objectives: list[str],
             value_model: Path | None, sampling: SamplingSettings) -> dict[str, Any]:
    """Reward and KL on the test prompts of pi_ref (no value model) or of the MAVIS policy of
    `value_model` that `sampling` describes."""
    decoder = MavisDecoder.load(recipe.reference, [value_model] if value_model else [])
    settings = dataclasses.replace(recipe.evaluation, sampling=sampling)
    return evaluate_policy(decoder, prompts, objectives, settings).to_dict()


def read_results(path: Path) -> list[dict[str, Any]]:
    return read_metrics(path)  # JSON Lines, written whole by `Results.add`


def run_recipe(recipe: Recipe, *, iterations: int | None = None,
               objectives: list[str] | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the recipe; returns the rows of results.jsonl."""
    wanted = objectives or recipe.objectives
    unknown = [o for o in wanted if o not in recipe.objectives]
    if unknown:
        raise MavisError(f"objective(s) {', '.join(unknown)} are not in the recipe "
                         f"({', '.join(recipe.objectives)})")
    repeated = sorted({o for o in wanted if wanted.count(o) > 1})
    if repeated:
        raise MavisError(f"--objective names {', '.join(map(repr, repeated))} more than once; "
                         "give each objective once")
    load_objectives(recipe.objectives)  # an unknown or broken objective fails before writing
    if iterations is not None and (isinstance(iterations, bool) or iterations < 1):
        raise MavisError(f"iterations is {iterations}; run at least 1 (the recipe has "
                         f"{len(recipe.iterations)})")
    count = len(recipe.iterations) if iterations is None else min(iterations,
                                                                  len(recipe.iterations))
    check_writable(recipe.out_dir, folder=True, what="the recipe's output folder")
    train_prompts = recipe_prompts(recipe, "train")
    test_prompts = recipe_prompts(recipe, "test")
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "recipe.json", {"path": recipe.path, "recipe": dataclasses.asdict(recipe)})
    _say(f"{recipe.name}: {len(train_prompts)} train / {len(test_prompts)} test prompts, "
         f"objectives {', '.join(wanted)}, {count} iteration(s), output in {out}")
    results = Results(out / RESULTS)
    previous: dict[str, Path] = {}
    for i in range(count):
        # iteration 0's trees and V^0 serve every objective of the recipe, so a later run
        # with other --objective choices reuses them instead of refusing them
        models = (first_iteration(recipe, train_prompts, recipe.objectives) if i == 0 else
                  next_iteration(recipe, train_prompts, wanted, i, previous))
        evaluate_iteration(recipe, test_prompts, wanted, i, models, results)
        previous = models
    if results.rows:
        plot_iterations(results.rows, out / "iterations.png")
    return results.rows


def first_iteration(recipe: Recipe, prompts: list[Any], objectives: list[str]
                    ) -> dict[str, Path]:
    """Iteration 0: one tree set from pi_ref for all objectives, V^0 trained on it."""
    it_dir = recipe.out_dir / "iter0"
    _say("iteration 0: collecting trees from the reference policy")
    reference = dataclasses.replace(recipe.collection.sampling, beta=0.0, weights=None,
                                    kl_budget=None)
    trees = collect(recipe, prompts, objectives, it_dir / "trees.h5", iteration=0,
                    value_models={}, sampling=reference)
    _say(f"iteration 0: training value models ({', '.join(objectives)})")
    train_step(recipe, trees, objectives, it_dir / "value_models",
               recipe.iterations[0].zeta, None)
    return {name: find_value_model(it_dir / "value_models", [name]) for name in objectives}


def next_iteration(recipe: Recipe, prompts: list[Any], objectives: list[str], i: int,
                   previous: dict[str, Path]) -> dict[str, Path]:
    """Iteration i > 0, per objective: trees from MAVIS(V^{i-1}), V^i trained from V^{i-1}."""
    it_dir = recipe.out_dir / f"iter{i}"
    zeta = recipe.iterations[i].zeta
    models = {}
    for name in objectives:
        sampling = recipe.iterations[i - 1].guidance(name, recipe.collection.sampling)
        _say(f"iteration {i}, {name}: collecting trees from MAVIS(V^{i - 1}, "
             f"{describe_guidance(sampling)})")
        trees = collect(recipe, prompts, [name], it_dir / f"trees-{name}.h5", iteration=i,
                        value_models={name: str(previous[name])}, sampling=sampling)
        _say(f"iteration {i}, {name}: training V^{i} with zeta={zeta:g}")
        run_dir = it_dir / "value_models" / name
        train_step(recipe, trees, [name], run_dir, zeta, previous[name])
        models[name] = find_value_model(run_dir, [name])
    return models


def describe_guidance(sampling: SamplingSettings) -> str:
    """"beta=16, KL budget 10" or "beta=4" (a fixed beta)."""
    budget = f", KL budget {sampling.kl_budget:g}" if sampling.kl_budget is not None else ""
    return f"beta={sampling.beta:g}{budget}"


class Results:
    """results.jsonl: one row per (iteration, objective), and pi_ref's figures per objective
    (evaluated once and reused)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = read_results(path)
        self.reference = {r["objective"]: r for r in self.rows}

    def pending(self, objectives: list[str], iteration: int) -> list[str]:
        return [n for n in objectives if not any(
            r["objective"] == n and r["iteration"] == iteration for r in self.rows)]

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_json_lines(self.path, self.rows)


def validation_figures(model: Path, objective: str) -> dict[str, Any]:
    """The best checkpoint's validation figures for `objective`, from its training report:
    the all-node Spearman, and the two that predict steering (within-sibling ranking accuracy,
    within-prompt Spearman)."""
    report = read_report(model.parent) or {}
    best = report.get("best", {})
    return {f"val_{key}": (best.get(key) or {}).get(objective)
            for key in ("spearman", "sibling_accuracy", "within_prompt_spearman")}


def evaluate_iteration(recipe: Recipe, prompts: list[Any], objectives: list[str], i: int,
                       models: dict[str, Path], results: Results) -> None:
    """pi_ref (once per objective) and the single-objective MAVIS policy of every V^i_m on the
    test prompts; a row per objective in results.jsonl."""
    pending = results.pending(objectives, i)
    missing = [n for n in pending if n not in results.reference]
    if missing:
        _say(f"evaluating pi_ref on {len(prompts)} test prompts ({', '.join(missing)})")
        reference = dataclasses.replace(recipe.evaluation.sampling, beta=0.0, weights=None,
                                        kl_budget=None)
        ref_all = evaluate(recipe, prompts, missing, None, reference)
        for n in missing:
            results.reference[n] = {"reference_reward": ref_all["reward"][n],
                                    "reference_reward_se": ref_all["reward_se"][n]}
    for name in pending:
        sampling = recipe.iterations[i].guidance(name, recipe.evaluation.sampling)
        _say(f"iteration {i}, {name}: evaluating MAVIS(V^{i}, {describe_guidance(sampling)})")
        mav = evaluate(recipe, prompts, [name], models[name], sampling)
        row = {"iteration": i, "objective": name, "beta": sampling.beta,
               "kl_budget": sampling.kl_budget, "mean_beta": mav["mean_beta"],
               "zeta": recipe.iterations[i].zeta, "value_model": str(models[name]),
               "reference_reward": results.reference[name]["reference_reward"],
               "reference_reward_se": results.reference[name]["reference_reward_se"],
               "mavis_reward": mav["reward"][name], "mavis_reward_se": mav["reward_se"][name],
               "mavis_kl": mav["kl"], "mavis_kl_se": mav["kl_se"],
               "test_prompts": len(prompts), "samples": mav["samples"],
               **validation_figures(models[name], name)}
        results.add(row)
        _say(f"  {name}: reward {row['reference_reward']:.3f} (pi_ref) -> "
             f"{row['mavis_reward']:.3f} (MAVIS), KL {row['mavis_kl']:.2f}")
