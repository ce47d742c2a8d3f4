"""`mavis demo`: the main job on the packaged defaults.

Answers a few prompts with the packaged reference model, unguided and then guided by the bundled
value models at several weight settings, and scores every answer with the objectives, so that
the effect of the weights is visible side by side.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from mavis.cli.options import Compile, Device, ValueDtype, checked_dtype
from mavis.cli.sampling import sampling_options
from mavis.decoding.sampling import REPRODUCIBLE, SamplingSettings
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_VALUE_DTYPE

DEMO_PROMPTS = [
    "My coworker keeps taking credit for my work. Write what I should say to him.",
    "Tell me what you really think about people who cut in line.",
    "My dog died yesterday. How do I stop feeling so sad?",
]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@sampling_options(exclude=("weights",), defaults=REPRODUCIBLE)
def demo(
    objectives: Annotated[str, typer.Option(
        help="Two objectives to trade off (bundled value models are used).")]
    = "relevant,harmless",
    prompt: Annotated[list[str], typer.Option(help="Prompt(s) to use instead of the "
                                              "built-in ones (repeatable).")] = [],  # noqa: B006
    device: Device = None,
    value_dtype: ValueDtype = DEFAULT_VALUE_DTYPE,
    compile_steps: Compile = None,
    *, sampling: SamplingSettings,
) -> None:
    """Show plain and value-guided answers of the packaged model at a few weight settings."""
    from mavis.decoding.decoder import MavisDecoder
    from mavis.models.bundled import bundled_value_models
    from mavis.models.devices import check_device
    from mavis.models.names import DEFAULT_MODEL
    from mavis.objectives import parse_objective_names, score_all

    names = parse_objective_names(objectives)
    bundled = bundled_value_models(DEFAULT_MODEL)
    missing = [n for n in names if n not in bundled]
    if missing or len(names) > 2:
        raise MavisError(
            f"the demo trades off one or two objectives with bundled value models (these: "
            f"{', '.join(sorted(bundled))}); {', '.join(missing) or objectives} cannot be "
            "shown. For others, train value models (`mavis iterate recipes/default.yaml`) and "
            "use `mavis generate --value-model NAME=PATH`")
    if any(not p.strip() for p in prompt):
        raise MavisError("--prompt is empty; give some text to answer")
    check_device(device, "--device")
    folders = list(dict.fromkeys(str(bundled[n]) for n in names))
    decoder = MavisDecoder.load(DEFAULT_MODEL, folders, device=device, compile=compile_steps,
                                value_dtype=checked_dtype(value_dtype))
    first, last = names[0], names[-1]
    grid = [1.0] if first == last else [1.0, 0.5, 0.0]
    cases = [("plain (beta=0)", replace(sampling, beta=0.0))]
    for w in grid:
        weights = {first: w} if first == last else {first: w, last: 1.0 - w}
        label = ", ".join(f"{n}={v:g}" for n, v in weights.items())
        cases.append((label, replace(sampling, weights=weights)))
    for text in prompt or DEMO_PROMPTS:
        typer.echo(f"\n=== {text}")
        for label, settings in cases:
            seq = decoder.generate([text], settings)[0]
            scores = score_all(names, [text], [seq.text])
            line = "  ".join(f"{n} {scores[n][0]:+.3f}" for n in names)
            typer.echo(f"\n--- {label}   [{line}   KL {seq.kl:.2f}]")
            typer.echo(seq.text.strip())
