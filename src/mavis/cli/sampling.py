"""The command line's sampling options, made from `SamplingSettings` itself.

    @sampling_options(defaults={"max_new_tokens": 48})
    def evaluate(objectives: str, ..., sampling: SamplingSettings) -> None: ...

adds one option per field of `SamplingSettings` (its help text, its default unless the command
says otherwise) to the command, and hands the command one `SamplingSettings` built from them,
so every command that samples takes the same options with the same defaults and rules, and a
new field is an option of each of them at once. A value the settings refuse is an error that
names the option.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Annotated, Any

import typer

from mavis.cli.options import parse_weights
from mavis.decoding.sampling import SamplingSettings, SettingsError
from mavis.errors import MavisError

PREFIX = "sampling_"


def option_name(name: str) -> str:
    """The command-line flag of a `SamplingSettings` field (e.g. "--top-k")."""
    field = {f.name: f for f in fields(SamplingSettings)}[name]
    return field.metadata.get("option") or "--" + name.replace("_", "-")


def _option_type(name: str, hint: Any) -> Any:
    """The type typer parses: weights are text ("a=0.6,b=0.4"), stop strings repeat."""
    if name == "weights":
        return str
    if typing.get_origin(hint) is tuple:
        return list[str]
    return hint


def _parameters(exclude: Iterable[str], defaults: Mapping[str, Any]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(SamplingSettings)
    params = []
    for field in fields(SamplingSettings):
        if field.name in exclude:
            continue
        default = defaults.get(field.name, field.default)
        if field.name == "weights":
            default = default or ""
        elif isinstance(default, tuple):
            default = list(default)
        kind = _option_type(field.name, hints[field.name])
        option = typer.Option(option_name(field.name), help=field.metadata["help"])
        params.append(inspect.Parameter(PREFIX + field.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=Annotated[kind, option]))
    return params


def build(values: Mapping[str, Any]) -> SamplingSettings:
    """`SamplingSettings` from the options' values; an error names the option at fault."""
    given = dict(values)
    if "weights" in given:
        given["weights"] = parse_weights(given["weights"]) if given["weights"] else None
    if "stop" in given:
        given["stop"] = tuple(given["stop"] or ())
    try:
        return SamplingSettings(**given)
    except SettingsError as exc:
        raise MavisError(f"{option_name(exc.field)} {exc.problem}") from None


def sampling_options(*, exclude: Iterable[str] = (), defaults: Mapping[str, Any] | None = None
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of every `SamplingSettings` field but `exclude`
    (`defaults`: the command's own defaults for some); the command takes them as one keyword
    argument, `sampling`."""
    excluded = set(exclude)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "sampling"]
        extra = _parameters(excluded, defaults or {})

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = {p.name[len(PREFIX):]: kwargs.pop(p.name) for p in extra}
            return command(*args, sampling=build(values), **kwargs)

        run.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore
        run.__annotations__ = {k: v for k, v in command.__annotations__.items()
                               if k != "sampling"}
        return run

    return decorate
