"""`mavis generate`: value-guided answers with per-call objective weights."""

from __future__ import annotations

import json
import warnings
from typing import Annotated

import typer

from mavis.cli.options import parse_assignments, parse_weights, per_token_budget
from mavis.decoding.settings import StepSettings, guidance
from mavis.errors import MavisError


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def generate(
    prompt: Annotated[str, typer.Argument(help="The user prompt (chat template applied).")],
    weights: Annotated[str, typer.Option(
        help="Objective weights, e.g. relevant=0.6,harmless=0.4 (normalised to sum 1).")] = "",
    beta: Annotated[float | None, typer.Option(
        help="Guidance strength (the most, under a KL budget); 0 = plain top-k. Default: 16 "
             "under a KL budget of 10 nats per answer.")] = None,
    kl_budget: Annotated[float | None, typer.Option(
        "--kl-budget", help="Nats of KL per answer that steering may add over plain top-k "
        "sampling: each step's beta is the largest up to --beta within budget / "
        "max-new-tokens. Default: 10 when no --beta is given, else none (a fixed beta).")]
    = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Candidates scored per step.")]
    = StepSettings.top_k,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 64,
    temperature: Annotated[float, typer.Option()] = StepSettings.temperature,
    seed: Annotated[int | None, typer.Option()] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = 1,
    greedy: Annotated[bool, typer.Option(help="Take the most likely token of the tilt.")] = False,
    beam: Annotated[int, typer.Option(
        help="Value-guided beam search with this many beams (0 = sampling).")] = 0,
    prune_every: Annotated[int, typer.Option("--prune-every")] = 8,
    epsilon: Annotated[float, typer.Option(
        help="Skip candidates whose omission moves each step's distribution by at most "
             "this total variation (needs value ranges; 0 = score all k).")] = 0.0,
    stop: Annotated[list[str], typer.Option(help="Stop string (repeatable).")] = [],  # noqa: B006
    model: Annotated[str, typer.Option(help="Reference model: packaged name, path or hub id.")]
    = "smollm2-135m-instruct",
    value_model: Annotated[list[str], typer.Option(
        "--value-model", help="NAME=PATH of a value model (repeatable); defaults to the "
        "bundled ones.")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sequence.")]
    = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default: cpu)")]
    = None,
    compile_steps: Annotated[bool | None, typer.Option(
        "--compile/--no-compile", help="Static caches and compiled decoding steps (default: "
        "on for CUDA; the first call compiles, later ones are faster).")] = None,
) -> None:
    """Generate an answer guided by the value models, with the weights you choose."""
    from mavis.decoding.decoder import MavisDecoder
    from mavis.decoding.search import beam_search
    from mavis.models.bundled import choose_value_models
    from mavis.models.loading import model_vocab_size

    parsed = parse_weights(weights) if weights else {}
    _check_counts(prompt, num_samples, max_new_tokens, beam, prune_every, stop)
    beta, kl_budget = guidance(beta, kl_budget)
    per_token = per_token_budget(kl_budget, max_new_tokens)
    StepSettings(beta=beta, top_k=top_k, temperature=temperature, greedy=greedy,
                 candidate_epsilon=epsilon, kl_budget=per_token)  # checked before loading
    wanted = [name for name, w in parsed.items() if w > 0] if beta > 0 else []
    explicit = parse_assignments(value_model, "--value-model", "harmless=runs/vm/best")
    folders = choose_value_models(model, explicit, wanted, list(parsed))
    vocab = model_vocab_size(model)
    if top_k > vocab:
        raise MavisError(f"--top-k {top_k} is more than the model's vocabulary ({vocab})")
    decoder = MavisDecoder.load(model, folders, device=device, compile=compile_steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if beam:
            outputs = beam_search(decoder, prompt, weights=parsed, beta=beta, top_k=top_k,
                                  num_beams=beam, prune_every=prune_every,
                                  max_new_tokens=max_new_tokens, temperature=temperature,
                                  seed=seed, candidate_epsilon=epsilon)
        else:
            outputs = decoder.generate([prompt], weights=parsed or None, beta=beta, top_k=top_k,
                                       max_new_tokens=max_new_tokens, temperature=temperature,
                                       seed=seed, num_samples=num_samples, greedy=greedy,
                                       stop_strings=stop, candidate_epsilon=epsilon,
                                       kl_budget=per_token)
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            typer.echo(f"note: {warning.message}", err=True)
    for seq in outputs:
        if as_json:
            typer.echo(json.dumps(seq.to_dict()))
        else:
            typer.echo(seq.text.strip())
            extra = f", value {seq.value:.3f}" if seq.value is not None else ""
            if per_token is not None:
                extra += f", beta used {seq.mean_beta:.2f}"
            typer.echo(f"  [{len(seq.token_ids)} tokens, {seq.finish_reason}, "
                       f"KL {seq.kl:.2f} (over top-k {seq.kl_topk:.2f}){extra}]", err=True)


def _check_counts(prompt: str, num_samples: int, max_new_tokens: int, beam: int,
                  prune_every: int, stop: list[str]) -> None:
    """The checks of `generate` that need no model."""
    if not prompt.strip():
        raise MavisError("the prompt is empty; give some text to answer")
    if num_samples < 1:
        raise MavisError(f"-n/--num-samples is {num_samples}; ask for at least 1 answer")
    if max_new_tokens < 1:
        raise MavisError(f"--max-new-tokens is {max_new_tokens}; it must be >= 1")
    if beam < 0 or prune_every < 1:
        raise MavisError("--beam must be >= 0 (0: sampling) and --prune-every >= 1")
    if any(not s for s in stop):
        raise MavisError("--stop \"\" would stop at once; give a non-empty stop string")

