"""`mavis objectives list|show` and `mavis score`: inspect reward functions and score text."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mavis.errors import MavisError

objectives_app = typer.Typer(
    help="Reward functions (objectives): list them, or show one in detail.",
    no_args_is_help=True,
)


@objectives_app.command("list")
def list_command() -> None:
    """List the objectives by name, with a one-line description each."""
    from mavis.objectives import PARAMETRIC, list_objectives

    rows = list_objectives()
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        typer.echo(f"{name:<{width}}  {description}")
    typer.echo("\nand, with arguments in the name:")
    for _, form, description in PARAMETRIC.values():
        typer.echo(f"  {form}\n      {description}")


@objectives_app.command("show")
def show_command(name: str = typer.Argument(..., help="Objective name, e.g. witty")) -> None:
    """Describe one objective: what it measures, where it comes from, how well it fits.

    For the chitchat heads (witty, upbeat, interesting) this prints the held-out Spearman and
    R^2; the first call fits the heads (a few minutes, with a progress bar) and caches them.
    """
    from mavis.objectives import get_objective

    objective = get_objective(name)
    rows = {"name": objective.name, "description": objective.description}
    rows["source"] = objective.source
    rows.update(objective.info())
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        if value:
            typer.echo(f"{key + ':':<{width + 1}} {value}")


def score_command(
    objectives: str = typer.Option(
        "harmless,positive,relevant",
        "--objectives",
        "-o",
        help="Comma-separated objective names (see `mavis objectives list`).",
    ),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="The prompt."),
    response: str | None = typer.Option(None, "--response", "-r", help="The response to score."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="JSONL file with 'prompt' and 'response' on each line."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: one object {objective: score} per pair."
    ),
) -> None:
    """Score responses with one or more objectives (higher is better)."""
    from mavis.objectives import parse_objective_names, score_all

    names = parse_objective_names(objectives)
    if file is not None:
        if prompt is not None or response is not None:
            raise MavisError("give either --file or --prompt/--response, not both")
        prompts, responses = read_pairs(file)
    elif prompt is None or response is None:
        raise MavisError("give --prompt and --response (or --file with a JSONL of pairs)")
    else:
        prompts, responses = [prompt], [response]

    scores = score_all(names, prompts, responses)
    rows = [{name: scores[name][i] for name in names} for i in range(len(prompts))]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if file is None:
        width = max(len(n) for n in names)
        for name, value in rows[0].items():
            typer.echo(f"{name:<{width}}  {value:.4f}")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("#", "response", *names, box=None)
    for i, row in enumerate(rows):
        table.add_row(str(i), Text(_shorten(responses[i])), *(f"{row[n]:.4f}" for n in names))
    Console().print(table)


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    """Read (prompt, response) pairs from a JSONL file; MavisError names the bad line."""
    if path.is_dir():
        raise MavisError(f"--file {str(path)!r} is a folder; give a JSONL file of pairs")
    if not path.is_file():
        raise MavisError(f"--file {str(path)!r}: no such file")
    from mavis.prompts.files import numbered_json_lines

    prompts, responses = [], []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, row in numbered_json_lines(handle, path):
                if not isinstance(row.get("prompt"), str) \
                        or not isinstance(row.get("response"), str):
                    raise MavisError(f"{path}:{number}: needs string fields 'prompt' and "
                                     "'response'")
                prompts.append(row["prompt"])
                responses.append(row["response"])
    except UnicodeDecodeError as exc:
        raise MavisError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8") \
            from None
    if not prompts:
        raise MavisError(f"{path}: no pairs in the file")
    return prompts, responses


def _shorten(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def register(app: typer.Typer) -> None:
    """Add `mavis objectives ...` and `mavis score` to the command line."""
    app.add_typer(objectives_app, name="objectives")
    app.command("score")(score_command)
