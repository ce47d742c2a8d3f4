"""`mavis evaluate` (reward and KL of one policy) and `mavis pareto` (a weight sweep, plotted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mavis.cli.options import parse_assignments, parse_numbers, parse_weights
from mavis.errors import MavisError
from mavis.evaluation.settings import EvaluationSettings

DEFAULT_BETA = 8.0
_E = EvaluationSettings


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("pareto")(pareto)


def _decoder(model: str, value_model: list[str], objectives: list[str], known: list[str]):
    from mavis.decoding.decoder import MavisDecoder
    from mavis.models.bundled import choose_value_models

    explicit = parse_assignments(value_model, "--value-model", "harmless=runs/vm/best")
    folders = choose_value_models(model, explicit, objectives, known)
    return MavisDecoder.load(model, folders)


def _prompts(prompts: str, split: str, limit: int, model: str) -> list[str]:
    from mavis.prompts import load_prompts

    if limit < 1:
        raise MavisError(f"--limit is {limit}; evaluate at least 1 prompt")
    return [p.text for p in load_prompts(prompts, split, tokenizer=model, limit=limit)]


def evaluate(
    objectives: Annotated[str, typer.Option(help="Objectives to score, e.g. relevant,harmless")],
    weights: Annotated[str, typer.Option(help="Guidance weights (empty: pi_ref).")] = "",
    beta: Annotated[float, typer.Option()] = DEFAULT_BETA,
    prompts: Annotated[str, typer.Option(help="Prompt set or file.")] = "chitchat",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option()] = 32,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = _E.num_samples,
    top_k: Annotated[int, typer.Option("--top-k")] = _E.top_k,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = _E.max_new_tokens,
    seed: Annotated[int, typer.Option()] = _E.seed,
    model: Annotated[str, typer.Option()] = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option("--value-model")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mean reward per objective and KL (equation 7) of MAVIS at the given weights."""
    from mavis.evaluation.policy import evaluate_policy
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    parsed = parse_weights(weights) if weights else {}
    settings = EvaluationSettings(max_new_tokens=max_new_tokens, num_samples=num_samples,
                                  top_k=top_k, seed=seed)
    guided = bool(parsed) and beta > 0
    texts = _prompts(prompts, split, limit, model)
    decoder = _decoder(model, value_model, [n for n, w in parsed.items() if w > 0] if guided
                       else [], names + list(parsed))
    result = evaluate_policy(decoder, texts, names, weights=parsed if guided else None,
                             beta=beta if guided else 0.0, settings=settings, progress=True)
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
    beta: Annotated[float, typer.Option()] = DEFAULT_BETA,
    best_of: Annotated[int, typer.Option("--best-of", help="Also plot best-of-N from pi_ref "
                                         "at each weight (0 = off).")] = 0,
    prompts: Annotated[str, typer.Option()] = "harmful",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option()] = 16,
    top_k: Annotated[int, typer.Option("--top-k")] = _E.top_k,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = _E.max_new_tokens,
    seed: Annotated[int, typer.Option()] = _E.seed,
    model: Annotated[str, typer.Option()] = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option("--value-model")] = [],  # noqa: B006
) -> None:
    """Sweep the weights of two objectives; plot MAVIS against pi_ref (and best-of-N)."""
    from mavis.evaluation.best_of_n import best_of_n_sweep
    from mavis.evaluation.pareto import plot_pareto, sweep_weights
    from mavis.evaluation.policy import evaluate_policy
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    if len(names) != 2:
        raise MavisError(f"pareto needs exactly two objectives, got {len(names)}")
    pair = (names[0], names[1])
    grid = parse_numbers(lambdas, "--lambdas", low=0.0, high=1.0)
    if best_of < 0:
        raise MavisError(f"--best-of is {best_of}; give N >= 2, or 0 for none")
    settings = EvaluationSettings(max_new_tokens=max_new_tokens, top_k=top_k, seed=seed)
    texts = _prompts(prompts, split, limit, model)
    decoder = _decoder(model, value_model, names, names)
    series = {"MAVIS": sweep_weights(decoder, texts, pair, lambdas=grid, beta=beta,
                                     settings=settings),
              "pi_ref": [evaluate_policy(decoder, texts, names, label="pi_ref",
                                         settings=settings)]}
    if best_of:
        series[f"best-of-{best_of}"] = best_of_n_sweep(decoder, texts, pair, grid, best_of,
                                                       settings)
    path = plot_pareto(series, pair, out, title=f"{pair[0]} vs {pair[1]} ({prompts}/{split})")
    Path(path).with_suffix(".json").write_text(json.dumps(
        {k: [p.to_dict() for p in v] for k, v in series.items()}, indent=2))
    for label, points in series.items():
        for p in points:
            typer.echo(f"{label:<12} {p.label:<22} {pair[0]} {p.reward[pair[0]]:+.3f}  "
                       f"{pair[1]} {p.reward[pair[1]]:+.3f}  KL {p.kl:.2f}")
    typer.echo(f"plot: {path}")
