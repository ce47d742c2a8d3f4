"""`mavis prompts ...`: list the prompt sets, show a split's prompts and the split sizes."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from mavis.errors import MavisError

prompts_app = typer.Typer(
    name="prompts",
    help="Prompt sets: list them, show a split's prompts and the size of each split.",
    no_args_is_help=True,
)

_OTHER_FORMS = (
    "Also accepted: hh-rlhf:PATH and summarize:PATH (local files in the hub format), and any "
    ".jsonl/.json/.csv file with a 'prompt' column."
)


def register(app: typer.Typer) -> None:
    """Add the `prompts` command group to the main app."""
    app.add_typer(prompts_app, name="prompts")


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {split}" for split, n in counts.items())


@prompts_app.command("list")
def list_command(
    counts: Annotated[bool, typer.Option(
        "--counts", help="Also count each split (whitespace-word lengths, default bounds); "
        "sets that need the Hugging Face hub are not loaded.")] = False,
) -> None:
    """List the named prompt sets."""
    from mavis.prompts import PROMPT_SETS, list_prompt_sets, load_prompts, split_counts

    for name, description in list_prompt_sets():
        line = f"{name:<24} {description}"
        if counts:
            if PROMPT_SETS.get(name).needs_hub:
                line += "  [Hugging Face hub: not counted]"
            else:
                try:
                    line += f"  [{_counts_text(split_counts(load_prompts(name, 'all')))}]"
                except MavisError as exc:
                    line += f"  [unavailable: {exc}]"
        typer.echo(line)
    typer.echo(_OTHER_FORMS)


@prompts_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Prompt set name, NAME:PATH, or a prompt file.")],
    split: Annotated[str, typer.Option(help="train, validation, test or all.")] = "test",
    limit: Annotated[int, typer.Option(help="How many prompts to show (0: all).")] = 5,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    formatted: Annotated[bool, typer.Option(
        "--formatted", help="Show the prompts in the chat template of the tokenizer "
        "(the default model's unless --tokenizer is given).")] = False,
    tokenizer: Annotated[str | None, typer.Option(
        help="Model name or folder whose tokenizer counts lengths (and formats, with "
        "--formatted); without it lengths are whitespace words.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Drop longer prompts (0: no bound).")] = 256,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
) -> None:
    """Show the first prompts of a split (id and text) and the size of each split."""
    from mavis.prompts import SPLITS, format_prompts, load_prompts, split_counts

    if split not in (*SPLITS, "all"):
        raise MavisError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}, all")
    for option, value, zero in (("--limit", limit, " (0: all)"),
                                ("--max-tokens", max_tokens, " (0: no bound)"),
                                ("--seed", seed, "")):
        if value < 0:
            raise MavisError(f"{option} is {value}; give a whole number >= 0{zero}")
    tok: Any = None
    if tokenizer is not None or formatted:
        from mavis.models.loading import DEFAULT_MODEL, load_tokenizer

        tok = load_tokenizer(tokenizer or DEFAULT_MODEL)
    everything = load_prompts(name, "all", tokenizer=tok, max_prompt_tokens=max_tokens or None,
                              seed=seed)
    counts = split_counts(everything)
    chosen = everything if split == "all" else [p for p in everything if p.split == split]
    shown = chosen[:limit] if limit else chosen
    texts = format_prompts(shown, tok) if formatted else None
    unit = f"tokens of {tokenizer or 'the default model'}" if tok is not None else (
        "whitespace words")

    if json_output:
        records = [p.to_dict() for p in shown]
        if texts is not None:
            for record, text in zip(records, texts, strict=True):
                record["formatted"] = text
        typer.echo(json.dumps({
            "set": name, "split": split, "seed": seed, "length_unit": unit,
            "max_tokens": max_tokens or None, "counts": counts, "total": len(everything),
            "prompts": records,
        }, ensure_ascii=False, indent=2))
        return

    bound = f"at most {max_tokens} {unit}" if max_tokens else f"lengths in {unit}, no bound"
    typer.echo(f"{name}: {_counts_text(counts)} ({len(everything)} in all; seed {seed}; {bound})")
    typer.echo(f"{len(shown)} of {len(chosen)} {split} prompts:")
    for i, prompt in enumerate(shown):
        body = texts[i] if texts is not None else prompt.text
        lines = body.splitlines() or [""]
        typer.echo(f"{prompt.id}  {lines[0]}")
        for line in lines[1:]:
            typer.echo(" " * (len(prompt.id) + 2) + line)
