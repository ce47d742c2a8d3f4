"""`mavis evaluate` (reward and KL of one policy) and `mavis pareto` (a weight sweep, plotted)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("pareto")(pareto)


def _decoder(model: str, value_model: list[str], objectives: list[str]):
    from mavis.decoding.decoder import MavisDecoder
    from mavis.models.bundled import choose_value_models, parse_value_model_args

    folders = choose_value_models(model, parse_value_model_args(value_model), objectives)
    return MavisDecoder.load(model, folders)


def _prompts(prompts: str, split: str, limit: int, model: str) -> list[str]:
    from mavis.prompts import load_prompts

    return [p.text for p in load_prompts(prompts, split, tokenizer=model, limit=limit)]


def evaluate(
    objectives: Annotated[str, typer.Option(help="Objectives to score, e.g. relevant,harmless")],
    weights: Annotated[str, typer.Option(help="Guidance weights (empty: pi_ref).")] = "",
    beta: Annotated[float, typer.Option()] = 8.0,
    prompts: Annotated[str, typer.Option(help="Prompt set or file.")] = "chitchat",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option()] = 32,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = 1,
    top_k: Annotated[int, typer.Option("--top-k")] = 40,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 48,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[str, typer.Option()] = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option("--value-model")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mean reward per objective and KL (equation 7) of MAVIS at the given weights."""
    from mavis.decoding.guide import parse_weights
    from mavis.evaluation.policy import evaluate_policy
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    parsed = parse_weights(weights) if weights else {}
    guided = bool(parsed) and beta > 0
    decoder = _decoder(model, value_model, [n for n, w in parsed.items() if w > 0] if guided
                       else [])
    result = evaluate_policy(decoder, _prompts(prompts, split, limit, model), names,
                             weights=parsed if guided else None, beta=beta if guided else 0.0,
                             top_k=top_k, max_new_tokens=max_new_tokens,
                             num_samples=num_samples, seed=seed, progress=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    for name in names:
        typer.echo(f"{name:<12} {result.reward[name]:+.4f} ± {result.reward_se[name]:.4f}")
    typer.echo(f"{'KL':<12} {result.kl:.3f} ± {result.kl_se:.3f}   ({result.samples} samples)")


def pareto(
    objectives: Annotated[str, typer.Option(help="Exactly two objectives, e.g. relevant,harmless")],
    out: Annotated[str, typer.Option(help="PNG file for the plot (a .json file is written "
                                          "beside it).")] = "runs/pareto.png",
    lambdas: Annotated[str, typer.Option(help="Weights of the first objective.")]
    = "0,0.25,0.5,0.75,1",
    beta: Annotated[float, typer.Option()] = 8.0,
    best_of: Annotated[int, typer.Option("--best-of", help="Also plot best-of-N from pi_ref "
                                         "at each weight (0 = off).")] = 0,
    prompts: Annotated[str, typer.Option()] = "harmful",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option()] = 16,
    top_k: Annotated[int, typer.Option("--top-k")] = 40,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 48,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[str, typer.Option()] = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option("--value-model")] = [],  # noqa: B006
) -> None:
    """Sweep the weights of two objectives; plot MAVIS against pi_ref (and best-of-N)."""
    from pathlib import Path

    from mavis.errors import MavisError
    from mavis.evaluation.pareto import plot_pareto, sweep_weights
    from mavis.evaluation.policy import evaluate_policy
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    if len(names) != 2:
        raise MavisError(f"pareto needs exactly two objectives, got {len(names)}")
    pair = (names[0], names[1])
    grid = [float(x) for x in lambdas.split(",") if x.strip()]
    decoder = _decoder(model, value_model, names)
    texts = _prompts(prompts, split, limit, model)
    common = dict(top_k=top_k, max_new_tokens=max_new_tokens, seed=seed)
    series = {"MAVIS": sweep_weights(decoder, texts, pair, lambdas=grid, beta=beta, **common),
              "pi_ref": [evaluate_policy(decoder, texts, names, label="pi_ref", **common)]}
    if best_of:
        from mavis.evaluation.baselines import best_of_n_sweep

        series[f"best-of-{best_of}"] = best_of_n_sweep(decoder, texts, pair, grid, best_of,
                                                       **common)
    path = plot_pareto(series, pair, out, title=f"{pair[0]} vs {pair[1]} ({prompts}/{split})")
    Path(path).with_suffix(".json").write_text(json.dumps(
        {k: [p.to_dict() for p in v] for k, v in series.items()}, indent=2))
    for label, points in series.items():
        for p in points:
            typer.echo(f"{label:<12} {p.label:<22} {pair[0]} {p.reward[pair[0]]:+.3f}  "
                       f"{pair[1]} {p.reward[pair[1]]:+.3f}  KL {p.kl:.2f}")
    typer.echo(f"plot: {path}")
