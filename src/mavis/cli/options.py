"""Parsers for the text users type into options: `NAME=VALUE` pairs, weights, number lists.

Every parser either returns a value or raises `MavisError` with a message that names the
option, what is wrong and an example of what works; nothing else escapes (tested with random
input).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Annotated

import typer

from mavis.checks import SettingsError
from mavis.errors import MavisError

# Options several commands take, declared once (each command gives its own default).
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default: cpu)")]
ValueDtype = Annotated[str, typer.Option(
    help="The value models' dtype: float32, bfloat16, or auto (bfloat16 where the hardware "
         "computes in it natively, float32 elsewhere); the reference stays float32.")]
Compile = Annotated[bool | None, typer.Option(
    "--compile/--no-compile", help="Static caches and compiled decoding steps (default: on "
    "for CUDA; the first call compiles, later ones are faster).")]
PromptSets = Annotated[str, typer.Option(help="Prompt set(s) or file(s), e.g. chitchat,harmful.")]
Split = Annotated[str, typer.Option(help="train, validation, test or all.")]
Limit = Annotated[int, typer.Option(help="Prompts per set.")]
NumSamples = Annotated[int, typer.Option("--num-samples", "-n", help="Answers per prompt.")]
Model = Annotated[str, typer.Option(help="Reference model: packaged name, path or hub id.")]
ValueModels = Annotated[list[str], typer.Option(
    "--value-model", help="NAME=PATH of a value model: a folder or a hub id "
    "org/name[@revision] (repeatable); default: the bundled ones.")]


def option_error(exc: SettingsError, options: Mapping[str, str] | None = None) -> MavisError:
    """A settings class's `SettingsError` as the command line says it: the field's option
    (`options[field]`, else --field-name) and the problem, e.g. "--lr is nan; give ..."."""
    flag = (options or {}).get(exc.field) or "--" + exc.field.replace("_", "-")
    return MavisError(f"{flag} {exc.problem}")


def parse_assignments(items: Iterable[str], option: str, example: str) -> dict[str, str]:
    """`NAME=VALUE` items (repeated options, or the parts of a comma-separated one) -> dict.

    Names and values are stripped; an item without `=`, an empty name or value, and a name
    given twice are errors. `example` completes the message ("harmless=runs/vm").
    """
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise MavisError(f"cannot read {option} {item!r}; write NAME=VALUE, e.g. "
                             f"{option} {example}")
        if name in pairs:
            raise MavisError(f"{option} names {name!r} twice; give each name once")
        pairs[name] = value
    return pairs


def parse_weights(text: str, option: str = "--weights") -> dict[str, float]:
    """"relevant=0.6,harmless=0.4" -> {"relevant": 0.6, "harmless": 0.4}.

    Each weight must be a finite number >= 0 and at least one must be positive; they need not
    sum to 1 (the decoder normalises them, and says so).
    """
    items = [part for part in text.split(",") if part.strip()]
    if not items:
        raise MavisError(f"{option} is empty; write e.g. {option} relevant=0.6,harmless=0.4")
    weights: dict[str, float] = {}
    for name, value in parse_assignments(items, option, "relevant=0.6,harmless=0.4").items():
        try:
            number = float(value)
        except ValueError:
            raise MavisError(f"{option}: the weight of {name!r} is {value!r}, not a number; "
                             f"write e.g. {name}=0.5") from None
        if math.isnan(number) or math.isinf(number):
            raise MavisError(f"{option}: the weight of {name!r} is {value}; weights must be "
                             "finite numbers >= 0")
        if number < 0:
            raise MavisError(f"{option}: the weight of {name!r} is {value}; weights must be "
                             ">= 0 (a weight says how much an objective counts)")
        weights[name] = number
    if not any(w > 0 for w in weights.values()):
        raise MavisError(f"{option}: every weight is zero; give at least one objective a "
                         "positive weight (or use --beta 0 for plain sampling)")
    return weights


def parse_numbers(text: str, option: str, *, low: float | None = None,
                  high: float | None = None, distinct: bool = False) -> list[float]:
    """"0,0.25,0.5" -> [0.0, 0.25, 0.5], each finite and within [low, high] when given (and,
    when `distinct`, each once: a grid point given twice would be computed twice)."""
    numbers = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            number = float(part)
        except ValueError:
            raise MavisError(f"{option}: {part!r} is not a number; write e.g. "
                             f"{option} 0,0.5,1") from None
        if not math.isfinite(number):
            raise MavisError(f"{option}: {part} is not a finite number")
        if low is not None and number < low:
            raise MavisError(f"{option}: {part} is below {low:g}" + (
                f" (give numbers in [{low:g}, {high:g}])" if high is not None else ""))
        if high is not None and number > high:
            raise MavisError(f"{option}: {part} is outside [{low:g}, {high:g}]"
                             if low is not None else f"{option}: {part} is above {high:g}")
        numbers.append(number)
    if not numbers:
        raise MavisError(f"{option} is empty; write e.g. {option} 0,0.5,1")
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if distinct and repeated:
        raise MavisError(f"{option} gives {', '.join(f'{n:g}' for n in repeated)} more than "
                         "once; give each value once")
    return numbers


def parse_names(text: str | None, option: str) -> list[str] | None:
    """"a,b" -> ["a", "b"] (None stays None); empty or repeated names are errors."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise MavisError(f"{option} is empty; give names like relevant,harmless")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MavisError(f"{option} names {', '.join(map(repr, repeated))} more than once")
    return names


def parse_betas(text: str, lambdas: list[float], option: str = "--beta"
                ) -> float | dict[float, float]:
    """"8" (one beta for every lambda) or "0:6,0.5:12,1:8" (a beta per lambda, the paper's
    table 9; every lambda of the sweep needs one)."""
    if ":" not in text:
        beta = parse_numbers(text, option, low=0.0)
        if len(beta) != 1:
            raise MavisError(f"{option} {text!r}: give one number, or LAMBDA:BETA pairs")
        return beta[0]
    betas: dict[float, float] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        lam, _, beta = item.partition(":")
        (lam_value,) = parse_numbers(lam, option, low=0.0, high=1.0)
        (beta_value,) = parse_numbers(beta, option, low=0.0)
        if lam_value in betas:
            raise MavisError(f"{option} gives lambda {lam_value:g} twice; give one beta per "
                             "lambda")
        betas[lam_value] = beta_value
    missing = [f"{lam:g}" for lam in lambdas if lam not in betas]
    if missing:
        raise MavisError(f"{option} gives no beta for lambda {', '.join(missing)}; write "
                         "LAMBDA:BETA for every lambda of --lambdas")
    return betas


def checked_dtype(value: str, option: str = "--value-dtype") -> str:
    """A dtype option's value, or an error naming the option and the choices."""
    if value not in ("float32", "bfloat16", "float16", "auto"):
        raise MavisError(f"{option} {value!r}: choose float32, bfloat16, float16 or auto")
    return value
