"""`mavis generate`: value-guided answers with per-call objective weights."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mavis.cli.options import (
    Compile,
    Device,
    Model,
    NumSamples,
    ValueDtype,
    ValueModels,
    checked_dtype,
    parse_assignments,
)
from mavis.cli.sampling import sampling_options
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_MODEL, DEFAULT_VALUE_DTYPE


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


@sampling_options()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user prompt (chat template applied).")],
    num_samples: NumSamples = 1,
    beam: Annotated[int, typer.Option(
        help="Value-guided beam search with this many beams (0 = sampling).")] = 0,
    prune_every: Annotated[int, typer.Option("--prune-every")] = 8,
    best_of: Annotated[int, typer.Option(
        "--best-of", help="Sample N answers and print the best (by --rank); 0: one answer.")]
    = 0,
    rank: Annotated[str, typer.Option(
        help="How --best-of chooses: reward (the reward models of the weighted objectives) or "
             "value (the value models' own value of the finished answer: no reward model "
             "runs).")] = "reward",
    model: Model = DEFAULT_MODEL,
    value_model: ValueModels = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sequence.")]
    = False,
    device: Device = None,
    value_dtype: ValueDtype = DEFAULT_VALUE_DTYPE,
    compile_steps: Compile = None,
    *, sampling: SamplingSettings,
) -> None:
    """Generate an answer guided by the value models, with the weights you choose.

    Without --weights every objective of the loaded value models (the bundled ones, or those of
    --value-model) gets the same weight; --beta 0 is plain sampling from the reference."""
    from mavis.decoding.decoder import MavisDecoder
    from mavis.decoding.search import BeamSettings, beam_search
    from mavis.models.bundled import bundled_value_models, choose_value_models
    from mavis.models.devices import check_device

    _check_counts(prompt, num_samples, beam, prune_every, sampling)
    check_device(device, "--device")
    _check_best_of(best_of, rank, beam, num_samples, sampling)
    explicit = parse_assignments(value_model, "--value-model", "harmless=runs/vm/best")
    if sampling.beta == 0:
        wanted: list[str] = []
    elif sampling.weights is None:
        wanted = list(explicit) or sorted(bundled_value_models(model))
    else:
        wanted = [name for name, w in sampling.weights.items() if w > 0]
    folders = choose_value_models(model, explicit, wanted, [*(sampling.weights or {}), *wanted])
    decoder = MavisDecoder.load(model, folders, device=device, compile=compile_steps,
                                value_dtype=checked_dtype(value_dtype))
    if beam:
        outputs = beam_search(decoder, prompt, sampling,
                              beam=BeamSettings(num_beams=beam, prune_every=prune_every))
    elif best_of:
        from mavis.evaluation.best_of_n import best_of_n

        weights = decoder.resolve(sampling).weights or {}
        if rank == "reward" and not weights:
            raise MavisError("--rank reward weighs the objectives' rewards: give --weights")
        outputs = [best_of_n(decoder, prompt, weights=weights, n=best_of, rank=rank,
                             sampling=sampling).best]
    else:
        outputs = decoder.generate([prompt], sampling, num_samples=num_samples)
    for seq in outputs:
        if as_json:
            typer.echo(json.dumps(seq.to_dict()))
            continue
        typer.echo(seq.text.strip())
        extra = f", value {seq.value:.3f}" if seq.value is not None else ""
        if seq.weights:
            extra += ", weights " + ",".join(f"{k}={v:.3g}" for k, v in seq.weights.items())
            extra += f", beta used {seq.mean_beta:.2f}" if seq.kl_budget is not None else (
                f", beta {seq.beta:g}")
        typer.echo(f"  [{len(seq.token_ids)} tokens, {seq.finish_reason}, "
                   f"KL {seq.kl:.2f} (over top-k {seq.kl_topk:.2f}){extra}]", err=True)


def _check_best_of(best_of: int, rank: str, beam: int, num_samples: int,
                   sampling: SamplingSettings) -> None:
    if best_of < 0 or best_of == 1:
        raise MavisError("--best-of takes N >= 2 (or 0: one answer)")
    if rank not in ("reward", "value"):
        raise MavisError(f"--rank {rank!r}: choose reward or value")
    if best_of and (beam or num_samples != 1):
        raise MavisError("--best-of prints the best of its N answers; leave out --beam and -n")
    if best_of and rank == "value" and sampling.beta == 0:
        raise MavisError("--rank value ranks by the value models: give beta > 0")


def _check_counts(prompt: str, num_samples: int, beam: int, prune_every: int,
                  sampling: SamplingSettings) -> None:
    """The checks of `generate` that need no model."""
    if not prompt.strip():
        raise MavisError("the prompt is empty; give some text to answer")
    if num_samples < 1:
        raise MavisError(f"-n/--num-samples is {num_samples}; ask for at least 1 answer")
    if beam < 0 or prune_every < 1:
        raise MavisError("--beam must be >= 0 (0: sampling) and --prune-every >= 1")
    if beam and num_samples != 1:
        raise MavisError("--beam returns its beams as the answers; leave out -n/--num-samples")
    if beam and sampling.greedy:
        raise MavisError("--beam samples the copies of each beam; leave out --greedy "
                         "(and --temperature 0)")
