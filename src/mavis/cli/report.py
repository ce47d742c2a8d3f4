"""`mavis report`: tables of finished runs (Markdown, CSV, JSON, PNG) for the README's report.

    mavis report iterations runs/default --out reports/iterations
    mavis report distill runs/student --prompts chitchat,harmful --beta 8 --out reports/distill
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mavis.cli.evaluate import EVALUATION, evaluation_settings, load_prompt_sets
from mavis.cli.options import Limit, PromptSets, Split, parse_assignments, parse_numbers
from mavis.cli.sampling import sampling_options
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_MODEL, DEFAULT_VALUE_DTYPE

report_app = typer.Typer(
    help="Tables of finished runs: iterations of Algorithm 1, distilled vs teacher value "
         "models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the `report` command group to the main app."""
    app.add_typer(report_app, name="report")


@report_app.command("iterations")
def iterations_command(
    run: Annotated[Path, typer.Argument(help="A `mavis iterate` output folder (the recipe's "
                                             "out), holding results.jsonl.")],
    out: Annotated[Path, typer.Option(help="Folder for iterations.md/.csv/.png.")]
    = Path("reports/iterations"),
) -> None:
    """Reward and KL per iteration on held-out prompts (paper Fig. 6), from results.jsonl."""
    from mavis.recipes.reports import iteration_report

    table = iteration_report(run, out)
    for row in table:
        typer.echo(f"{row['objective']:<12} iteration {row['iteration']}  reward "
                   f"{row['mavis_reward']:.3f} (pi_ref {row['reference_reward']:.3f})  KL "
                   f"{row['mavis_kl']:.2f}")
    typer.echo(f"report: {out / 'iterations.md'}")


@report_app.command("distill")
@sampling_options(exclude=("weights", "beta", "kl_budget"), defaults=EVALUATION)
def distill_command(
    student: Annotated[Path, typer.Argument(help="A `mavis distill` output folder.")],
    beta: Annotated[str, typer.Option(
        help="Guidance strength: one number, or one per objective, e.g. relevant=8,harmless=4.")]
    = "8",
    teacher: Annotated[list[str], typer.Option(
        "--teacher", help="OBJECTIVE=PATH (default: the teachers the student was "
        "distilled from).")] = [],  # noqa: B006
    prompts: Annotated[str, typer.Option(help="Prompt set(s) or file(s).")] = "chitchat,harmful",
    split: Annotated[str, typer.Option()] = "test",
    limit: Annotated[int, typer.Option(help="Prompts per set.")] = 24,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = 1,
    model: Annotated[str, typer.Option()] = DEFAULT_MODEL,
    out: Annotated[Path, typer.Option(help="Folder for distill.md/.csv/.png and the "
                                           "evaluations (a rerun resumes).")]
    = Path("reports/distill"),
    *, sampling: SamplingSettings,
) -> None:
    """MAVIS with per-objective teachers vs with their distilled student (paper Table 3):
    reward, KL and decoding speed per objective, and for all objectives at once."""
    from mavis.recipes.reports import distill_report, student_folders, teachers_of

    teachers = parse_assignments(teacher, "--teacher", "relevant=runs/rel/best")
    names = list(teachers or teachers_of(student_folders(student)[1]))
    betas = _betas(beta, names)
    settings = evaluation_settings(sampling, num_samples)
    chosen = load_prompt_sets(prompts, split, limit, model)
    table = distill_report(student, chosen, out, reference=model, betas=betas,
                           settings=settings, teachers=teachers or None,
                           identity={"prompts": prompts, "split": split,
                                     "prompt_ids": [p.id for p in chosen]})
    for row in table:
        typer.echo(f"{row['case']:<20} reward {row['teachers_reward']:.3f} (teachers) -> "
                   f"{row['student_reward']:.3f} (student)  KL {row['teachers_kl']:.2f} -> "
                   f"{row['student_kl']:.2f}  tok/s {row['teachers_tokens_per_second']:.1f} "
                   f"-> {row['student_tokens_per_second']:.1f}")
    typer.echo(f"report: {out / 'distill.md'}")


@report_app.command("heads")
@sampling_options(exclude=("weights",), defaults=EVALUATION)
def heads_command(
    model: Annotated[Path, typer.Argument(help="A value-model folder (e.g. runs/vm/best).")],
    prompts: PromptSets = "chitchat,harmful",
    split: Split = "test",
    limit: Limit = 48,
    best_of: Annotated[int, typer.Option(
        "--best-of", help="N of the best-of-N baseline beside each head (0: none).")] = 4,
    reference: Annotated[str, typer.Option(
        "--model", help="Reference model: packaged name, path or hub id.")] = DEFAULT_MODEL,
    out: Annotated[Path, typer.Option(help="Folder for heads.md/.csv/.png and the evaluations "
                                           "(a rerun resumes).")] = Path("reports/heads"),
    value_dtype: Annotated[str, typer.Option(
        help="The value model's dtype: float32, bfloat16 or auto (the hardware's fastest).")]
    = DEFAULT_VALUE_DTYPE,
    objectives: Annotated[str | None, typer.Option(
        help="Only these heads, e.g. relevant,harmless (default: every head).")] = None,
    *, sampling: SamplingSettings,
) -> None:
    """Every head of a value model alone at weight 1 on held-out prompts: reward against pi_ref
    and best-of-N, KL, and the head's validation sibling accuracy (the README's table)."""
    from mavis.models.value_folder import find_value_model
    from mavis.objectives import parse_objective_names
    from mavis.recipes.heads import heads_report

    if best_of < 0 or best_of == 1:
        raise MavisError("--best-of takes N >= 2 (or 0: none)")
    names = None if objectives is None else parse_objective_names(objectives)
    folder = find_value_model(model, names or [])
    settings = evaluation_settings(sampling, 1)
    chosen = load_prompt_sets(prompts, split, limit, reference)
    table = heads_report(folder, chosen, out, reference=reference, settings=settings,
                         best_of=best_of, identity={"prompts": prompts, "split": split,
                                                    "prompt_ids": [p.id for p in chosen]},
                         value_dtype=value_dtype, objectives=names)
    for row in table:
        typer.echo(f"{row['objective']:<12} pi_ref {row['reference_reward']:.3f} -> MAVIS "
                   f"{row['mavis_reward']:.3f} ({row['gain']:+.3f} ± {row['gain_se']:.3f}), "
                   f"KL {row['mavis_kl']:.1f}")
    typer.echo(f"report: {out / 'heads.md'}")


def _betas(text: str, names: list[str]) -> dict[str, float]:
    """"8" (every objective) or "relevant=8,harmless=4" (one each)."""
    if "=" not in text:
        values = parse_numbers(text, "--beta", low=0.0)
        if len(values) != 1:
            raise MavisError(f"--beta {text!r}: give one number, or one per objective, e.g. "
                             "relevant=8,harmless=4")
        return {name: values[0] for name in names}
    pairs = parse_assignments([p for p in text.split(",") if p.strip()], "--beta",
                              "relevant=8,harmless=4")
    betas = {name: parse_numbers(value, f"--beta {name}", low=0.0)[0]
             for name, value in pairs.items()}
    missing = [n for n in names if n not in betas]
    if missing:
        raise MavisError(f"--beta gives no beta for {', '.join(missing)}")
    return betas
