"""`mavis evaluate` (reward and KL of one policy) and `mavis pareto` (a weight sweep, plotted)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from mavis.cli.options import (
    parse_assignments,
    parse_betas,
    parse_names,
    parse_numbers,
    parse_weights,
    per_token_budget,
)
from mavis.decoding.settings import DEFAULT_BETA, DEFAULT_KL_BUDGET, guidance
from mavis.errors import MavisError
from mavis.evaluation.settings import EvaluationSettings
from mavis.paths import check_writable

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


def _prompts(prompts: str, split: str, limit: int, model: str) -> list:
    """The prompts of one set or file, or of several ("chitchat,harmful": `limit` from each)."""
    from mavis.models.loading import load_tokenizer
    from mavis.prompts import load_prompts

    if limit < 1:
        raise MavisError(f"--limit is {limit}; evaluate at least 1 prompt")
    names = parse_names(prompts, "--prompts") or []
    tokenizer = load_tokenizer(model) if len(names) > 1 else model
    return [p for name in names for p in load_prompts(name, split, tokenizer=tokenizer,
                                                      limit=limit)]


def evaluate(
    objectives: Annotated[str, typer.Option(help="Objectives to score, e.g. relevant,harmless")],
    weights: Annotated[str, typer.Option(help="Guidance weights (empty: pi_ref).")] = "",
    beta: Annotated[float | None, typer.Option(
        help="Guidance strength (the most, under a KL budget). Default: 16 under a KL budget "
             "of 10 nats per answer.")] = None,
    kl_budget: Annotated[float | None, typer.Option(
        "--kl-budget", help="Nats of KL per answer that steering may add over plain top-k "
        "sampling: each step's beta is the largest up to --beta within budget / "
        "max-new-tokens. Default: 10 when no --beta is given, else none (a fixed beta).")]
    = None,
    prompts: Annotated[str, typer.Option(
        help="Prompt set(s) or file(s), e.g. chitchat,harmful.")] = "chitchat",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option(help="Prompts per set.")] = 32,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = _E.num_samples,
    top_k: Annotated[int, typer.Option("--top-k")] = _E.top_k,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = _E.max_new_tokens,
    seed: Annotated[int, typer.Option()] = _E.seed,
    model: Annotated[str, typer.Option()] = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option("--value-model")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Keep the result in this JSON file; a rerun with the same settings reads it "
             "instead of evaluating again.")] = None,
) -> None:
    """Mean reward per objective and KL (equation 7) of MAVIS at the given weights."""
    from mavis.evaluation.sweep import REFERENCE, SweepPoint, SweepStore, run_sweep
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    beta, kl_budget = guidance(beta, kl_budget)
    parsed = parse_weights(weights) if weights else {}
    settings = EvaluationSettings(max_new_tokens=max_new_tokens, num_samples=num_samples,
                                  top_k=top_k, seed=seed)
    guided = bool(parsed) and beta > 0
    point = (SweepPoint("MAVIS", parsed, beta, kl_budget=per_token_budget(
        kl_budget, max_new_tokens)) if guided else SweepPoint(REFERENCE))
    if out is not None:
        check_writable(out, what="--out")
    chosen = _prompts(prompts, split, limit, model)
    identity = {"model": model, "value_models": sorted(value_model), "prompts": prompts,
                "split": split, "prompt_ids": [p.id for p in chosen], "objectives": names,
                "settings": dataclasses.asdict(settings)}
    store = SweepStore(out, identity) if out is not None else None
    if store is not None and store.done(point) is not None:
        result = store.done(point)
    else:
        decoder = _decoder(model, value_model, [n for n, w in parsed.items() if w > 0]
                           if guided else [], names + list(parsed))
        ((_, result),) = run_sweep(decoder, chosen, names, [point], settings, store)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    for name in names:
        typer.echo(f"{name:<12} {result.reward[name]:+.4f} ± {result.reward_se[name]:.4f}")
    typer.echo(f"{'KL':<12} {result.kl:.3f} ± {result.kl_se:.3f}   against pi_ref "
               f"(equation 7; {result.samples} samples)")
    typer.echo(f"{'KL top-k':<12} {result.kl_topk:.3f} ± {result.kl_topk_se:.3f}   against plain "
               f"top-k sampling (what steering added); mean per-step TV {result.tv:.3f}")
    if result.kl_budget is not None:
        typer.echo(f"{'beta used':<12} {result.mean_beta:.3f}   (mean over steps, chosen by "
                   "the KL budget)")


def pareto(
    objectives: Annotated[str, typer.Option(help="Exactly two objectives, e.g. relevant,harmless")],
    out: Annotated[Path, typer.Option(help="PNG file for the plot; the points are kept in a .json "
                                           "file beside it (a rerun resumes) and a .csv.")]
    = Path("runs/pareto.png"),
    lambdas: Annotated[str, typer.Option(help="Weights of the first objective.")]
    = "0,0.25,0.5,0.75,1",
    beta: Annotated[str | None, typer.Option(
        help="Guidance strength: one number, or a beta per lambda, e.g. 0:8,0.5:12,1:8. "
             "Default: 16 under a KL budget of 10 nats per answer.")] = None,
    kl_budget: Annotated[float | None, typer.Option(
        "--kl-budget", help="Nats of KL per answer that steering may add over plain top-k "
        "sampling: each step's beta is the largest up to --beta within budget / "
        "max-new-tokens. Default: 10 when no --beta is given, else none (a fixed beta).")]
    = None,

    best_of: Annotated[str, typer.Option(
        "--best-of", help="Also best-of-N from pi_ref at each weight, e.g. 4 or 4,16 (0: off).")]
    = "0",
    prompts: Annotated[str, typer.Option(
        help="Prompt set(s) or file(s), e.g. chitchat,harmful.")] = "harmful",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option(help="Prompts per set.")] = 16,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = _E.num_samples,
    top_k: Annotated[int, typer.Option("--top-k")] = _E.top_k,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = _E.max_new_tokens,
    seed: Annotated[int, typer.Option()] = _E.seed,
    model: Annotated[str, typer.Option()] = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option("--value-model")] = [],  # noqa: B006
) -> None:
    """Sweep the weights of two objectives; plot MAVIS against pi_ref (and best-of-N).

    Every finished point is saved at once; rerun the same command to resume."""
    from mavis.evaluation.plots import plot_pareto
    from mavis.evaluation.sweep import SweepStore, by_method, run_sweep, sweep_points
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    if beta is None:
        beta = str(DEFAULT_BETA)
        kl_budget = DEFAULT_KL_BUDGET if kl_budget is None else kl_budget
    if len(names) != 2:
        raise MavisError(f"pareto needs exactly two objectives, got {len(names)}")
    grid = parse_numbers(lambdas, "--lambdas", low=0.0, high=1.0)
    betas = parse_betas(beta, grid)
    sizes = [int(n) for n in parse_numbers(best_of, "--best-of", low=0) if n]
    if any(n < 2 or n != int(n) for n in sizes):
        raise MavisError(f"--best-of {best_of!r}: give whole numbers N >= 2, or 0 for none")
    settings = EvaluationSettings(max_new_tokens=max_new_tokens, num_samples=num_samples,
                                  top_k=top_k, seed=seed)
    for path in (out, out.with_suffix(".json"), out.with_suffix(".csv")):
        check_writable(path, what="--out")
    chosen = _prompts(prompts, split, limit, model)
    identity = {"model": model, "value_models": sorted(value_model), "prompts": prompts,
                "split": split, "prompt_ids": [p.id for p in chosen], "objectives": names,
                "settings": dataclasses.asdict(settings)}
    store = SweepStore(out.with_suffix(".json"), identity)
    decoder = _decoder(model, value_model, names, names)
    points = sweep_points(names, grid, betas=betas, best_of=sizes,
                          kl_budget=per_token_budget(kl_budget, max_new_tokens))
    results = run_sweep(decoder, chosen, names, points, settings, store)
    pair = (names[0], names[1])
    path = plot_pareto(by_method(results), pair, out,
                       title=f"{pair[0]} vs {pair[1]} ({prompts}/{split})")
    _write_csv(out.with_suffix(".csv"), results, names)
    for point, p in results:
        typer.echo(f"{point.method:<12} {p.label:<28} {pair[0]} {p.reward[pair[0]]:+.3f}  "
                   f"{pair[1]} {p.reward[pair[1]]:+.3f}  KL {p.kl:.2f}"
                   f"{' (bound)' if p.kl_is_bound else ''}  KL over top-k {p.kl_topk:.2f}")
    typer.echo(f"plot: {path}; points: {store.path}")


def _write_csv(path: Path, results: list, names: list[str]) -> None:
    """One row per point: method, weights, beta, rewards with standard errors, KLs."""
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "weights", "beta", *[f"{n}{s}" for n in names
                                                          for s in ("", "_se")],
                         "kl", "kl_is_bound", "kl_topk", "tv", "samples"])
        for point, p in results:
            writer.writerow([point.method, p.label, point.beta,
                             *[v for n in names for v in (p.reward[n], p.reward_se[n])],
                             p.kl, p.kl_is_bound, p.kl_topk, p.tv, p.samples])
