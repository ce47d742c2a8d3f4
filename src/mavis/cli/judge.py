"""`mavis judge A.jsonl B.jsonl --objective helpful --base-url URL --model NAME`: the win rate
of one set of answers over another, judged pairwise by a model behind an OpenAI-compatible chat
endpoint, in both answer orders (the library: `mavis.evaluation.judge`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from mavis.errors import MavisError

JUDGEMENTS = "judgements.jsonl"
SUMMARY = "summary.json"


def register(app: typer.Typer) -> None:
    app.command("judge")(judge)


def judge(
    answers_a: Annotated[Path, typer.Argument(
        metavar="A.jsonl", help="Answers of policy A (`mavis evaluate --answers`, `mavis "
        "generate --json`).")],
    answers_b: Annotated[Path, typer.Argument(
        metavar="B.jsonl", help="Answers of policy B to the same prompts.")],
    objective: Annotated[str, typer.Option(
        help="What the judge compares for, e.g. helpful, harmless (a built-in objective's "
        "description is given to the judge).")],
    base_url: Annotated[str, typer.Option(
        help="API root of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")],
    model: Annotated[str, typer.Option(help="The judge model, by its served name.")],
    describe: Annotated[str | None, typer.Option(
        help="What the objective means, told to the judge (instead of the built-in one).")]
    = None,
    api_key_env: Annotated[str | None, typer.Option(
        metavar="VAR", help="Environment variable holding the API key (sent as a bearer "
        "token).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for judgements.jsonl and summary.json (default: judge-A-vs-B-OBJECTIVE); "
        "a rerun there skips what is judged.")] = None,
    limit: Annotated[int | None, typer.Option(help="Judge the first N pairs only.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens of each judge reply.")] = 512,
    temperature: Annotated[float, typer.Option(help="The judge's temperature.")] = 0.0,
    workers: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 120.0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Win rate of A over B judged by a model, each pair asked in both answer orders: both
    orders agree -> a win; they disagree -> inconsistent (counted, half a win, as ties are)."""
    from mavis.evaluation import judge as lib
    from mavis.paths import check_writable, write_text_atomic

    endpoint = lib.ChatEndpoint(base_url=base_url, model=model, api_key=_api_key(api_key_env),
                                temperature=temperature, max_tokens=max_tokens, timeout=timeout)
    _check_numbers(limit, max_tokens, temperature, workers, timeout)
    if not objective.strip():
        raise MavisError("--objective is empty; name what the judge compares for, e.g. "
                         "--objective helpful")
    description = lib.objective_description(objective, describe)
    if describe is not None and not description:
        raise MavisError("--describe is empty; say what the objective means, e.g. --describe "
                         "'answers the question fully and correctly'")
    pairs = lib.pair_answers(lib.read_answers(answers_a), lib.read_answers(answers_b),
                             str(answers_a), str(answers_b))[:limit]
    out = check_writable(out or _default_out(answers_a, answers_b, objective), folder=True,
                         what="--out")
    log = lib.JudgementLog(out / JUDGEMENTS)
    tasks = lib.plan_judgements(pairs, objective, description, endpoint.setup, log)
    if tasks:
        with lib.ChatJudge(endpoint) as chat:
            chat.check()
            lib.ask_judge(tasks, chat, log, workers=workers, progress=progress)
    summary = lib.judge_summary(
        pairs, log, answers={"A": str(answers_a), "B": str(answers_b)}, objective=objective,
        description=description, judge={"base_url": base_url, **endpoint.setup},
        asked=len(tasks))
    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, out)


def _api_key(variable: str | None) -> str | None:
    if variable is None:
        return None
    key = os.environ.get(variable, "").strip()
    if not key:
        raise MavisError(f"--api-key-env {variable}: the environment variable {variable} is "
                         f"not set; export {variable}=KEY or leave the option out")
    return key


def _check_numbers(limit: int | None, max_tokens: int, temperature: float, workers: int,
                   timeout: float) -> None:
    for option, value, low in (("--limit", limit, 1), ("--max-tokens", max_tokens, 1),
                               ("--workers", workers, 1)):
        if value is not None and value < low:
            raise MavisError(f"{option} is {value}; give a whole number >= {low}")
    if not 0 <= temperature < float("inf"):
        raise MavisError(f"--temperature is {temperature}; give a number >= 0 (0: greedy)")
    if not 0 < timeout < float("inf"):
        raise MavisError(f"--timeout is {timeout}; give a number of seconds > 0")


def _default_out(a: Path, b: Path, objective: str) -> Path:
    return Path(f"judge-{_slug(a.stem)}-vs-{_slug(b.stem)}-{_slug(objective)}")


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "x"


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    judge, rate = summary["judge"], summary["win_rate"]
    typer.echo(f"judge {judge['model']} at {judge['base_url']}, objective "
               f"{summary['objective']}: {summary['pairs']} pairs, both orders "
               f"({summary['judgements']} judgements, {summary['asked']} asked now)")
    typer.echo(f"A: {summary['answers']['A']}\nB: {summary['answers']['B']}")
    if rate is None:
        typer.echo(f"{'win rate A over B':<20} n/a (no valid pair)")
    else:
        typer.echo(f"{'win rate A over B':<20} {rate:.3f} ± {summary['se']:.3f}   "
                   f"95%: {summary['low']:.3f} .. {summary['high']:.3f}   (ties count half)")
    for label, key in (("wins", "wins"), ("losses", "losses"), ("ties", "ties"),
                       ("inconsistent", "inconsistent"), ("invalid", "invalid")):
        typer.echo(f"{label:<20} {summary[key]}")
    typer.echo(f"{'unparseable replies':<20} {summary['invalid_judgements']} of "
               f"{summary['judgements']}")
    typer.echo(f"judgements: {out / JUDGEMENTS}; summary: {out / SUMMARY}")
