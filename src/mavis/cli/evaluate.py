"""`mavis evaluate` (reward and KL of one policy) and `mavis pareto` (a weight sweep, plotted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mavis.cli.options import (
    Limit,
    Model,
    NumSamples,
    PromptSets,
    Split,
    ValueDtype,
    ValueModels,
    checked_dtype,
    option_error,
    parse_assignments,
    parse_betas,
    parse_names,
    parse_numbers,
)
from mavis.cli.sampling import build, sampling_options
from mavis.decoding.sampling import (
    DEFAULT_BETA,
    DEFAULT_KL_BUDGET,
    REPRODUCIBLE,
    SamplingSettings,
    SettingsError,
)
from mavis.errors import MavisError
from mavis.evaluation.settings import EvaluationSettings
from mavis.models.names import DEFAULT_MODEL, DEFAULT_VALUE_DTYPE
from mavis.paths import check_writable

# Evaluation's own defaults: 48-token answers and seed 0, so that a rerun gives the same answers
EVALUATION = REPRODUCIBLE


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("pareto")(pareto)


def evaluation_settings(sampling: SamplingSettings, num_samples: int) -> EvaluationSettings:
    """The `EvaluationSettings` of a command; a value they refuse names its option."""
    try:
        return EvaluationSettings(sampling, num_samples=num_samples)
    except SettingsError as exc:
        raise option_error(exc, {"num_samples": "-n/--num-samples"}) from None


def _value_folders(model: str, value_model: list[str], objectives: list[str],
                   known: list[str]) -> dict[str, str]:
    """The value models guiding `objectives` (--value-model ones first, then bundled ones),
    each labelled by the objectives it serves (how a results file names them)."""
    from mavis.models.bundled import choose_value_models
    from mavis.models.value_folder import read_value_config

    explicit = parse_assignments(value_model, "--value-model", "harmless=runs/vm/best")
    return {",".join(read_value_config(folder).objectives): str(folder)
            for folder in choose_value_models(model, explicit, objectives, known)}


def _decoder(model: str, folders: dict[str, str], value_dtype: str = DEFAULT_VALUE_DTYPE):
    from mavis.decoding.decoder import MavisDecoder

    return MavisDecoder.load(model, list(folders.values()), value_dtype=value_dtype)


def load_prompt_sets(prompts: str, split: str, limit: int, model: str) -> list:
    """The prompts of one set or file, or of several ("chitchat,harmful": `limit` from each)."""
    from mavis.models.loading import load_tokenizer
    from mavis.prompts import load_prompts

    if limit < 1:
        raise MavisError(f"--limit is {limit}; evaluate at least 1 prompt")
    names = parse_names(prompts, "--prompts") or []
    tokenizer = load_tokenizer(model) if len(names) > 1 else model
    return [p for name in names for p in load_prompts(name, split, tokenizer=tokenizer,
                                                      limit=limit)]


@sampling_options(defaults=EVALUATION)
def evaluate(
    objectives: Annotated[str, typer.Option(help="Objectives to score, e.g. relevant,harmless")],
    prompts: PromptSets = "chitchat",
    split: Split = "test",
    limit: Limit = 32,
    num_samples: NumSamples = 1,
    model: Model = DEFAULT_MODEL,
    value_model: ValueModels = [],  # noqa: B006
    value_dtype: ValueDtype = DEFAULT_VALUE_DTYPE,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Keep the result in this JSON file; a rerun with the same settings reads it "
             "instead of evaluating again.")] = None,
    answers: Annotated[Path | None, typer.Option(
        help="Keep every answer in this JSON Lines file (prompt, text, KL, rewards), e.g. "
             "for `mavis judge`.")] = None,
    best_of: Annotated[int, typer.Option(
        "--best-of", help="N answers per prompt, the best kept (by --rank): best-of-N from "
        "pi_ref with --beta 0, MAVIS + best-of-N otherwise (0: one answer).")] = 0,
    rank: Annotated[str, typer.Option(
        help="How --best-of chooses: reward (the reward models) or value (the value models' "
             "own value of the finished answer: no reward model at inference).")] = "reward",
    beam: Annotated[int, typer.Option(
        help="MAVIS beam search with this many beams; the best of them by reward counts.")]
    = 0,
    *, sampling: SamplingSettings,
) -> None:
    """Mean reward per objective and KL (equation 7) of MAVIS at the given weights (without
    --weights: the scored objectives, each the same weight; --beta 0: pi_ref itself), or of
    a search mode on top of it (--best-of N --rank reward|value, --beam N)."""
    from mavis.evaluation.sweep import SweepStore, run_sweep
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    settings = evaluation_settings(sampling, num_samples)
    guided = sampling.beta > 0
    weights = sampling.weights or {name: 1.0 / len(names) for name in names}
    point = evaluation_point(weights, sampling, best_of, rank, beam)
    for path, option in ((out, "--out"), (answers, "--answers")):
        if path is not None:
            check_writable(path, what=option)
    chosen = load_prompt_sets(prompts, split, limit, model)
    identity = {"model": model, "value_models": sorted(value_model), "prompts": prompts,
                "split": split, "prompt_ids": [p.id for p in chosen], "objectives": names,
                "settings": settings.to_dict(), **_dtype_identity(value_dtype)}
    folders = _value_folders(model, value_model, [n for n, w in weights.items() if w > 0]
                             if guided else [], names + list(weights))
    store = SweepStore(out, identity, value_models=folders) if out is not None else None
    if store is not None and store.done(point) is not None and answers is None:
        result = store.done(point)
    elif answers is not None:  # the answers themselves are wanted: decode them
        from mavis.evaluation.policy import evaluate_policy

        if point.n or point.beams:
            raise MavisError("--answers keeps the answers of one sampled policy; leave out "
                             "--best-of and --beam")
        result = evaluate_policy(_decoder(model, folders, value_dtype), chosen, names,
                                 point.settings(settings), label=point.label or "pi_ref",
                                 progress=True, answers=answers)
        if store is not None:
            store.save(point, result)
    else:
        decoder = _decoder(model, folders, value_dtype)
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
                   f"the KL budget of {result.kl_budget:g} nats per answer)")


def evaluation_point(weights: dict[str, float], sampling: SamplingSettings, best_of: int,
                     rank: str, beams: int):
    """The one point `mavis evaluate` evaluates: MAVIS (or pi_ref at beta 0), or a search mode
    on top of it, each checked against the others."""
    from mavis.evaluation.best_of_n import RANKS
    from mavis.evaluation.sweep import REFERENCE, SweepPoint

    guided, budget = sampling.beta > 0, sampling.kl_budget
    if best_of < 0 or best_of == 1 or beams < 0 or beams == 1:
        raise MavisError("--best-of and --beam take N >= 2 (or 0: one answer)")
    if best_of and beams:
        raise MavisError("choose one search mode: --best-of N or --beam N")
    if rank not in RANKS:
        raise MavisError(f"--rank {rank!r}: choose {' or '.join(RANKS)}")
    if rank == "value" and not (best_of and guided):
        raise MavisError("--rank value ranks MAVIS's answers by their value: give --best-of N "
                         "and guidance (beta > 0)")
    if beams:
        if not guided:
            raise MavisError("--beam ranks beams by their values: give beta > 0")
        return SweepPoint(f"beam-{beams}", weights, sampling.beta, kl_budget=budget,
                          beams=beams)
    if best_of:
        if not guided:
            return SweepPoint(f"best-of-{best_of}", weights, n=best_of)
        family = "MAVIS+rerank" if rank == "value" else "MAVIS+best-of"
        return SweepPoint(f"{family}-{best_of}", weights, sampling.beta, n=best_of,
                          kl_budget=budget)
    return SweepPoint("MAVIS", weights, sampling.beta, kl_budget=budget) if guided else (
        SweepPoint(REFERENCE))


@sampling_options(exclude=("weights", "beta", "kl_budget"), defaults=EVALUATION)
def pareto(
    ctx: typer.Context,
    objectives: Annotated[str, typer.Option(
        help="Two objectives, e.g. relevant,harmless (more: a simplex grid of weights).")],
    out: Annotated[Path, typer.Option(help="PNG file for the plot; the points are kept in a .json "
                                           "file beside it (a rerun resumes) and a .csv.")]
    = Path("runs/pareto.png"),
    methods: Annotated[str, typer.Option(
        help="Methods to compare: mavis, morlhf, rsoup, mod, bon, beam, mavis-bon, "
             "mavis-rerank (pi_ref always). "
             "morlhf/rsoup/mod train what is missing in --baselines-dir.")] = "mavis",
    lambdas: Annotated[str, typer.Option(help="Weights of the first objective.")]
    = "0,0.25,0.5,0.75,1",
    vectors: Annotated[str, typer.Option(
        help="The weight vectors themselves instead of --lambdas, in --objectives order, "
             "e.g. 0.4,0.4,0.2;0.6,0.2,0.2 (the paper's Table 1).")] = "",
    morlhf_lambdas: Annotated[str, typer.Option(
        "--morlhf-lambdas", help="Weights of the first objective for MORLHF, which trains one "
        "policy (an RL run) per weight, e.g. 0,0.5,1 (default: --lambdas). Rewarded Soups "
        "and MOD need only the two ends.")] = "",
    beta: Annotated[str | None, typer.Option(
        help="Guidance strength: one number, or a beta per lambda, e.g. 0:8,0.5:12,1:8. "
             f"Default: {DEFAULT_BETA:g} under a KL budget of {DEFAULT_KL_BUDGET:g} nats per "
             "answer; a beta alone is a fixed beta.")] = None,
    kl_budget: Annotated[float | None, typer.Option(
        "--kl-budget", help=SamplingSettings.__dataclass_fields__["kl_budget"].metadata[
            "help"])] = None,
    best_of: Annotated[str, typer.Option(
        "--best-of", help="N of best-of-N from pi_ref (and of mavis-bon, mavis-rerank) at "
        "each weight, e.g. 4,16 (default: 4,16 with those methods, else none; 0: none).")]
    = "",
    beams: Annotated[str, typer.Option(
        help="With --methods beam: MAVIS beam search with N beams beside best-of-N at the same "
             "N, for each N.")] = "2,4,8",
    beam_expand: Annotated[int, typer.Option(help="Beam search: copies per beam.")] = 2,
    beam_prune_every: Annotated[int, typer.Option(help="Beam search: tokens between "
                                                       "prunings.")] = 8,
    recipe: Annotated[Path | None, typer.Option(
        help="Recipe whose baselines: section says how MORLHF policies are trained.")] = None,
    baselines_dir: Annotated[Path | None, typer.Option(
        "--baselines-dir", help="Folder of the fine-tuned policies (default: baselines/ beside "
        "--out), shared by comparisons.")] = None,
    hv_reference: Annotated[str, typer.Option(
        "--hv-reference", help="Hypervolume reference point, e.g. relevant=0,harmless=0 "
        "(default: pi_ref's rewards).")] = "",
    prompts: PromptSets = "harmful",
    split: Split = "test",
    limit: Limit = 16,
    num_samples: NumSamples = 1,
    model: Model = DEFAULT_MODEL,
    value_model: ValueModels = [],  # noqa: B006
    value_dtype: ValueDtype = DEFAULT_VALUE_DTYPE,
    *, sampling: SamplingSettings,
) -> None:
    """Sweep the objective weights; compare MAVIS with pi_ref and the baselines of paper
    section 4 (fine-tuned MORLHF policies, Rewarded Soups, MOD, best-of-N, beam search).

    Every finished point is saved at once; rerun the same command to resume (or to add
    methods). Writes the plot (fronts with hypervolumes, and KL), the points as .json and .csv
    with the command and settings, and which points are dominated."""
    from mavis.baselines.compare import comparison_points
    from mavis.decoding.search import BeamSettings
    from mavis.objectives import parse_objective_names

    names = parse_objective_names(objectives)
    if len(names) < 2:
        raise MavisError(f"pareto needs two objectives or more, got {len(names)}")
    chosen_methods = parse_names(methods, "--methods") or []
    grid = parse_numbers(lambdas, "--lambdas", low=0.0, high=1.0, distinct=True)
    morlhf_grid = (parse_numbers(morlhf_lambdas, "--morlhf-lambdas", low=0.0, high=1.0,
                                 distinct=True) if morlhf_lambdas.strip() else None)
    betas, budget = _guidance(beta, kl_budget, grid)
    searching = sorted(BEST_OF_METHODS & set(chosen_methods))
    sizes = _sizes(best_of, "--best-of", default=[4, 16] if searching else [],
                   needed_by=searching)
    beam_sizes = (_sizes(beams, "--beams", default=[], needed_by=["beam"])
                  if "beam" in chosen_methods else [])
    try:
        beam = BeamSettings(expand=beam_expand, prune_every=beam_prune_every)
    except SettingsError as exc:
        raise option_error(exc, {"expand": "--beam-expand",
                                 "prune_every": "--beam-prune-every"}) from None
    settings = evaluation_settings(sampling, num_samples)
    points = comparison_points(names, grid, chosen_methods, betas=betas, best_of=sizes,
                               beams=beam_sizes, morlhf_lambdas=morlhf_grid,
                               kl_budget=budget, vectors=_vectors(vectors, names))
    corner = _reference_point(hv_reference, names)
    from mavis.evaluation.plots import check_plot_path

    check_plot_path(out, "--out")
    for path in (out, out.with_suffix(".json"), out.with_suffix(".csv")):
        check_writable(path, what="--out")
    baselines = _baselines(chosen_methods, names, recipe, baselines_dir or out.parent /
                           "baselines", model, prompts)
    chosen = load_prompt_sets(prompts, split, limit, model)
    identity = {"model": model, "value_models": sorted(value_model), "prompts": prompts,
                "split": split, "prompt_ids": [p.id for p in chosen], "objectives": names,
                "settings": settings.to_dict(), **_dtype_identity(value_dtype)}
    _run_comparison(ctx, out, identity, points, baselines, beam, chosen, settings, corner,
                    value_model)


def _dtype_identity(value_dtype: str) -> dict[str, str]:
    """What a results file keeps of the value models' dtype (`dtype_identity`)."""
    from mavis.models.dtypes import dtype_identity

    return dtype_identity(checked_dtype(value_dtype))


def _guidance(beta: str | None, kl_budget: float | None, lambdas: list[float]
              ) -> tuple[float | dict[float, float], float | None]:
    """(beta, or a beta per lambda; KL budget per answer) by the guidance rule of
    `SamplingSettings`: no --beta is the default beta under the default budget, a beta alone
    a fixed beta."""
    betas = parse_betas(beta, lambdas) if beta is not None else None
    rule = build({"beta": None if betas is None else 1.0, "kl_budget": kl_budget})
    return (rule.beta if betas is None else betas), rule.kl_budget


def _vectors(text: str, names: list[str]) -> list[dict[str, float]] | None:
    """--vectors "0.4,0.4,0.2;0.6,0.2,0.2" as weight vectors over `names` (None: none)."""
    if not text.strip():
        return None
    vectors = []
    for part in (p for p in text.split(";") if p.strip()):
        numbers = parse_numbers(part, "--vectors", low=0.0, high=1.0)
        if len(numbers) != len(names) or abs(sum(numbers) - 1.0) > 1e-6:
            raise MavisError(f"--vectors {part!r}: give {len(names)} weights summing to 1 (in "
                             f"the order {', '.join(names)})")
        vectors.append(dict(zip(names, numbers, strict=True)))
    if len({tuple(v.values()) for v in vectors}) < len(vectors):
        raise MavisError("--vectors names a weight vector twice; give each once")
    return vectors


# The methods that need a --best-of N.
BEST_OF_METHODS = {"bon", "mavis-bon", "mavis-rerank"}


def _sizes(text: str, option: str, default: list[int], needed_by: list[str]) -> list[int]:
    """N values (best-of-N, beams): distinct whole numbers >= 2; nothing: `default`; 0: none,
    refused when a chosen method (`needed_by`) needs an N."""
    if not text.strip():
        return default
    sizes = [n for n in parse_numbers(text, option, low=0, distinct=True) if n]
    if any(n < 2 or n != int(n) for n in sizes):
        raise MavisError(f"{option} {text!r}: give whole numbers N >= 2, or 0 for none")
    if not sizes and needed_by:
        raise MavisError(f"{option} {text!r} gives no N, but --methods {', '.join(needed_by)} "
                         f"needs one; give N >= 2, e.g. {option} 4")
    return [int(n) for n in sizes]


def _reference_point(text: str, names: list[str]) -> dict[str, float] | None:
    """--hv-reference as numbers (any sign: rewards can be negative), or None (pi_ref)."""
    if not text.strip():
        return None
    pairs = parse_assignments([p for p in text.split(",") if p.strip()], "--hv-reference",
                              "relevant=0,harmless=0")
    corner = {}
    for name, value in pairs.items():
        (corner[name],) = parse_numbers(value, f"--hv-reference {name}")
    if set(corner) != set(names):
        raise MavisError(f"--hv-reference must give one value for each of {', '.join(names)}")
    return corner


def _baselines(methods: list[str], names: list[str], recipe: Path | None, folder: Path,
               model: str, prompts: str):
    """The fine-tuned baselines' settings and folder, or None when no method needs them."""
    if not {"morlhf", "rsoup", "mod"} & set(methods):
        return None
    from mavis.baselines.compare import Baselines
    from mavis.baselines.config import MorlhfSettings
    from mavis.recipes.recipe import load_recipe

    if recipe is not None:
        settings = load_recipe(recipe).baselines
        if settings.reference != model:
            raise MavisError(f"the recipe's baselines are trained on {settings.reference!r} but "
                             f"--model is {model!r}; give the same reference model to both")
    else:
        settings = MorlhfSettings(reference=model, objectives=names,
                                  prompt_sets=parse_names(prompts, "--prompts") or [])
    check_writable(folder, folder=True, what="--baselines-dir")
    return Baselines(folder, settings, names)


def _run_comparison(ctx: typer.Context, out: Path, identity: dict, points: list, baselines,
                    beam, chosen: list, settings: EvaluationSettings,
                    corner: dict[str, float] | None, value_model: list[str]) -> None:
    """`run_comparison` with the value models the points need, then its summary."""
    from mavis.baselines.compare import run_comparison

    names = identity["objectives"]
    guided = any(p.beta > 0 for p in points)  # MAVIS, beam search, the MAVIS search modes
    folders = _value_folders(identity["model"], value_model, names if guided else [], names)
    where = (f"{identity['prompts']}/{identity['split']}, {len(chosen)} prompts x "
             f"{settings.num_samples}")
    comparison = run_comparison(out, reference=identity["model"], value_models=folders,
                                prompts=chosen, points=points, settings=settings,
                                identity=identity, beam=beam, baselines=baselines,
                                hv_reference=corner, command=_command(ctx),
                                title=f"{' vs '.join(names)} ({where})",
                                value_dtype=identity.get("value_dtype", "float32"))
    summary = comparison.summary
    for point, p in comparison.results:
        rewards = "  ".join(f"{n} {p.reward[n]:+.3f}" for n in names)
        typer.echo(f"{point.method:<12} {p.label:<28} {rewards}  KL {p.kl:.2f} ({p.kl_kind})"
                   f"{'  dominated' if summary.dominated_overall[point.key] else ''}")
    reference = ", ".join(f"{n}={v:.3f}" for n, v in summary.reference_point.items())
    typer.echo("hypervolume above " + (f"pi_ref ({reference})" if summary.reference_from
                                       == "pi_ref" else f"({reference})") + ": " + ", ".join(
        f"{m} {hv:.4g}" for m, hv in summary.hypervolume.items()))
    typer.echo("MIP (mean over the weights of <weights, rewards>): " + ", ".join(
        f"{m} {mip:.4g}" for m, mip in summary.mip.items()))
    typer.echo(f"plot: {comparison.plot}; points: {comparison.points_file}, {comparison.table}")


def _command(ctx: typer.Context) -> str:
    """The command that ran, every option spelled out (defaults included), so that it
    reproduces the run whatever the defaults of a later version."""
    import shlex

    parts = ["mavis", ctx.info_name or "pareto"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or not getattr(param, "opts", None):
            continue
        flag = param.opts[0]
        if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
            parts += [flag] if value else []
            continue
        for item in (value if isinstance(value, list | tuple) else [value]):
            parts += [flag, str(item)]
    return shlex.join(parts)
