"""`mavis iterate RECIPE`: Algorithm 1 from a recipe file, resumable."""

from __future__ import annotations

from typing import Annotated

import typer

from mavis.training.stopping import resume_hint


def register(app: typer.Typer) -> None:
    app.command("iterate")(iterate)


def iterate(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML file, e.g. recipes/smoke.yaml.")],
    iterations: Annotated[int | None, typer.Option(
        help="Run only the first N iterations of the recipe.")] = None,
    objective: Annotated[list[str], typer.Option(
        help="Only these objectives in iterations 1 and later and in the evaluations "
             "(repeatable; default: all in the recipe). Iteration 0 always serves all.",
    )] = [],  # noqa: B006
    out: Annotated[str | None, typer.Option(help="Override the recipe's output folder.")] = None,
) -> None:
    """Collect trees, train value models and evaluate them, iteration by iteration.

    Everything already on disk is reused: rerun the same command to resume."""
    from mavis.recipes.iterate import run_recipe
    from mavis.recipes.recipe import load_recipe

    loaded = load_recipe(recipe)
    if out:
        loaded.out = out
    with resume_hint("run the same command again to continue"):
        rows = run_recipe(loaded, iterations=iterations, objectives=objective or None)
    typer.echo(f"{'iter':>4}  {'objective':<12} {'pi_ref':>8} {'MAVIS':>8} {'KL':>7}  beta")
    for row in rows:
        typer.echo(f"{row['iteration']:>4}  {row['objective']:<12} "
                   f"{row['reference_reward']:>8.3f} {row['mavis_reward']:>8.3f} "
                   f"{row['mavis_kl']:>7.2f}  {row['beta']:g}")
    typer.echo(f"results: {loaded.out_dir / 'results.jsonl'}, plot: "
               f"{loaded.out_dir / 'iterations.png'}")
