"""Algorithm 1 (single-objective policy iteration for MAVIS), run from a recipe, resumable.

    iteration 0:  trees from pi_ref, scored by every objective at once (one tree set serves
                  all objectives)                                       -> iter0/trees.h5
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

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.recipes.recipe import Recipe

RESULTS = "results.jsonl"


def _say(message: str) -> None:
    import sys

    print(f"[mavis iterate] {message}", file=sys.stderr, flush=True)


def recipe_prompts(recipe: Recipe, split: str) -> list[Any]:
    """The recipe's prompts of one split: `train` or `test` prompts from each set, in order."""
    from mavis.models.loading import load_tokenizer
    from mavis.prompts import load_prompts

    tokenizer = load_tokenizer(recipe.reference)
    limit = recipe.prompts.train if split == "train" else recipe.prompts.test
    prompts: list[Any] = []
    for name in recipe.prompts.sets:
        prompts += load_prompts(name, split, tokenizer=tokenizer, limit=limit,
                                max_prompt_tokens=recipe.prompts.max_prompt_tokens,
                                seed=recipe.prompts.seed)
    return prompts


def model_folder(run_dir: Path, objective: str) -> Path:
    """Where the best value model for `objective` of a training run lives."""
    from mavis.training.trainer import resolve_init

    return resolve_init(run_dir, [objective])


def _collect(recipe: Recipe, prompts: list[Any], objectives: list[str], out: Path,
             iteration: int, value_models: dict[str, str], beta: float,
             weights: dict[str, float] | None) -> Path:
    c = recipe.collection
    it = recipe.iterations[iteration]
    k_root = it.K_root or c.K_root
    two_layer = it.two_layer_guarantee if it.two_layer_guarantee is not None else iteration > 0
    common = dict(T=c.T, L=c.L, K_root=k_root, K=c.K, top_k=c.top_k, beta=beta,
                  weights=weights, temperature=c.temperature, seed=c.seed + iteration,
                  two_layer_guarantee=two_layer, batch_prompts=c.batch_prompts,
                  meta={"iteration": iteration, "recipe": recipe.name,
                        "prompt_sets": recipe.prompts.sets})
    if c.workers > 1:
        from mavis.data.distributed import collect_trees_distributed

        return collect_trees_distributed(recipe.reference, prompts, objectives, out,
                                         workers=c.workers, value_models=value_models, **common)
    from mavis.data.collect import collect_trees
    from mavis.data.decoder_spec import DecoderSpec

    spec = DecoderSpec(recipe.reference, value_models)
    return collect_trees(spec, prompts, objectives, out, **common)


def _train(recipe: Recipe, trees: Path, objectives: list[str], out: Path, zeta: float,
           init_from: Path | None) -> dict[str, Any]:
    from mavis.training.config import TrainConfig
    from mavis.training.trainer import REPORT_NAME, train

    if (out / REPORT_NAME).exists():
        report = json.loads((out / REPORT_NAME).read_text())
        if report.get("complete", True):
            return report
    settings = dict(recipe.training)
    settings.update(objectives=objectives, zeta=zeta, base=settings.get("base", recipe.reference))
    if init_from is not None:
        settings["init_from"] = str(init_from)
        settings["warmup_steps"] = 0  # the paper warms up in iteration 0 only
    config = TrainConfig.from_dict(settings)
    return train(config, trees, out, resume=True)


def _evaluate(recipe: Recipe, prompts: list[Any], objectives: list[str],
              value_model: Path | None, beta: float) -> dict[str, Any]:
    """Reward and KL on the test prompts of pi_ref (no value model) or of the
    single-objective MAVIS policy of `value_model` for objectives[0]."""
    from mavis.decoding.decoder import MavisDecoder
    from mavis.evaluation.policy import evaluate_policy

    e = recipe.evaluation
    decoder = MavisDecoder.load(recipe.reference, [value_model] if value_model else [])
    result = evaluate_policy(decoder, [p.text for p in prompts], objectives,
                             weights={objectives[0]: 1.0} if value_model else None,
                             beta=beta if value_model else 0.0, top_k=e.top_k,
                             max_new_tokens=e.max_new_tokens, num_samples=e.num_samples,
                             seed=e.seed, candidate_epsilon=e.candidate_epsilon)
    return result.to_dict()


def _done_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_recipe(recipe: Recipe, *, iterations: int | None = None,
               objectives: list[str] | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the recipe; returns the rows of results.jsonl."""
    from mavis.evaluation.pareto import plot_iterations

    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(
        {"path": recipe.path, "recipe": asdict(recipe)}, indent=2, default=str))
    wanted = objectives or recipe.objectives
    unknown = [o for o in wanted if o not in recipe.objectives]
    if unknown:
        raise MavisError(f"objective(s) {', '.join(unknown)} are not in the recipe "
                         f"({', '.join(recipe.objectives)})")
    count = min(iterations or len(recipe.iterations), len(recipe.iterations))
    train_prompts = recipe_prompts(recipe, "train")
    test_prompts = recipe_prompts(recipe, "test")
    for split, found in (("train", train_prompts), ("test", test_prompts)):
        if not found:
            raise MavisError(f"the recipe's prompt sets {recipe.prompts.sets} have no prompts in "
                             f"the {split} split; use larger sets or raise max_prompt_tokens")
    _say(f"{recipe.name}: {len(train_prompts)} train / {len(test_prompts)} test prompts, "
         f"objectives {', '.join(wanted)}, {count} iteration(s), output in {out}")
    results_path = out / RESULTS
    rows = _done_rows(results_path)
    reference_eval = {r["objective"]: r for r in rows}
    previous: dict[str, Path] = {}
    for i in range(count):
        it = recipe.iterations[i]
        it_dir = out / f"iter{i}"
        models: dict[str, Path] = {}
        if i == 0:
            _say("iteration 0: collecting trees from the reference policy")
            trees = _collect(recipe, train_prompts, wanted, it_dir / "trees.h5", 0, {}, 0.0, None)
            _say(f"iteration 0: training value models ({', '.join(wanted)})")
            _train(recipe, trees, wanted, it_dir / "value_models", it.zeta, None)
            for name in wanted:
                models[name] = model_folder(it_dir / "value_models", name)
        else:
            for name in wanted:
                beta = recipe.iterations[i - 1].beta_for(name)
                _say(f"iteration {i}, {name}: collecting trees from MAVIS(V^{i - 1}, "
                     f"beta={beta:g})")
                trees = _collect(recipe, train_prompts, [name], it_dir / f"trees-{name}.h5", i,
                                 {name: str(previous[name])}, beta, {name: 1.0})
                _say(f"iteration {i}, {name}: training V^{i} with zeta={it.zeta:g}")
                run_dir = it_dir / "value_models" / name
                _train(recipe, trees, [name], run_dir, it.zeta, previous[name])
                models[name] = model_folder(run_dir, name)
        pending = [n for n in wanted
                   if not any(r["objective"] == n and r["iteration"] == i for r in rows)]
        missing = [n for n in pending if n not in reference_eval]
        if missing:
            _say(f"evaluating pi_ref on {len(test_prompts)} test prompts "
                 f"({', '.join(missing)})")
            ref_all = _evaluate(recipe, test_prompts, missing, None, 0.0)
            for n in missing:
                reference_eval[n] = {"reference_reward": ref_all["reward"][n],
                                     "reference_reward_se": ref_all["reward_se"][n]}
        for name in pending:
            ref = {"reward": {name: reference_eval[name]["reference_reward"]},
                   "reward_se": {name: reference_eval[name]["reference_reward_se"]}}
            beta = it.beta_for(name)
            _say(f"iteration {i}, {name}: evaluating MAVIS(V^{i}, beta={beta:g})")
            mav = _evaluate(recipe, test_prompts, [name], models[name], beta)
            row = {"iteration": i, "objective": name, "beta": beta, "zeta": it.zeta,
                   "value_model": str(models[name]),
                   "reference_reward": ref["reward"][name],
                   "reference_reward_se": ref["reward_se"][name],
                   "mavis_reward": mav["reward"][name], "mavis_reward_se": mav["reward_se"][name],
                   "mavis_kl": mav["kl"], "mavis_kl_se": mav["kl_se"],
                   "test_prompts": len(test_prompts), "samples": mav["samples"]}
            rows.append(row)
            with results_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            _say(f"  {name}: reward {row['reference_reward']:.3f} (pi_ref) -> "
                 f"{row['mavis_reward']:.3f} (MAVIS), KL {row['mavis_kl']:.2f}")
        previous = models
    if rows:
        plot_iterations(rows, out / "iterations.png")
    return rows

