"""`mavis train` (value models on collected trees) and `mavis distill` (appendix E)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mavis.checks import SettingsError
from mavis.cli.options import option_error, parse_assignments, parse_names
from mavis.errors import MavisError
from mavis.paths import check_writable
from mavis.training.config import TrainConfig
from mavis.training.stopping import resume_hint

# A stopped run (Ctrl-C, SIGTERM, kill -9) continues when the same command runs again.
CONTINUE = "run the same command again to continue"

_PAPER = "The paper's value is the default."
_T = TrainConfig


def register(app: typer.Typer) -> None:
    """Add `train` and `distill` to the main app."""
    app.command("train")(train_command)
    app.command("distill")(distill_command)


def _summary(report: dict) -> str:
    if "models" in report:
        return "\n".join(_summary(r) for r in report["runs"].values())
    best = report["best"]
    rho = best.get("spearman") or {}
    parts = [f"{','.join(report['objectives'])}: {report['model']}",
             f"steps {report['steps']}/{report['total_steps']}"]
    if best.get("val_loss") is not None:
        parts.append(f"best val loss {best['val_loss']:.4f} at step {best['step']}")
    parts += [f"spearman {k} {v:.3f}" for k, v in rho.items() if v is not None]
    parts += [f"siblings {k} {v:.3f}" for k, v in (best.get("sibling_accuracy") or {}).items()
              if v is not None]
    if not report["complete"]:
        parts.append(f"stopped early: {CONTINUE}")
    return "  ".join(parts)


def _show(report: dict, json_output: bool) -> None:
    """Print the report, once: by the first process of a data-parallel run."""
    from mavis.training.parallel import is_main_process

    if is_main_process():
        typer.echo(json.dumps(report, indent=2) if json_output else _summary(report))


def train_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Tree file (HDF5) from data collection.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; the model is OUT/best "
                                      "(OUT/<objective>/best for several objectives without "
                                      "--shared).")],
    objectives: Annotated[str | None, typer.Option(
        help="Comma-separated objective names in the tree file (default: all).")] = None,
    base: Annotated[str | None, typer.Option(
        help="Backbone: packaged name, folder or hub id (default: the packaged model).")]
    = _T.base,
    num_layers: Annotated[int | None, typer.Option(help="Keep this many backbone layers.")]
    = _T.num_layers,
    shared: Annotated[bool, typer.Option(
        "--shared", help="One backbone with a head per objective, trained in one pass "
        "(default: one model per objective, as in the paper).")] = False,
    zeta: Annotated[float, typer.Option(help="KL multiplier of equation 6.")] = _T.zeta,
    epochs: Annotated[int, typer.Option(help="Epochs. " + _PAPER)] = _T.epochs,
    batch_size: Annotated[int, typer.Option(
        help="Nodes per step, over all processes (the global batch). " + _PAPER)]
    = _T.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adafactor). " + _PAPER)]
    = _T.lr,
    warmup_steps: Annotated[int, typer.Option(help="Warm-up steps. " + _PAPER)]
    = _T.warmup_steps,
    weight_decay: Annotated[float, typer.Option(help=_PAPER)] = _T.weight_decay,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0: train the whole backbone).")]
    = _T.lora_r,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = _T.lora_alpha,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = _T.lora_dropout,
    leaf_fraction: Annotated[float, typer.Option(help="Share of leaves kept.")]
    = _T.leaf_fraction,
    validation_fraction: Annotated[float, typer.Option(help="Share of prompts held out.")]
    = _T.validation_fraction,
    train_prompts: Annotated[int | None, typer.Option(
        help="Train on this many training prompts' trees only (a nested, seeded subset; "
             "the validation prompts unchanged): a learning curve's points.")] = None,
    validation_without_leaves: Annotated[bool, typer.Option(
        "--validation-without-leaves", help="Validate on incomplete sequences only.")] = False,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps (0: epoch ends).")]
    = _T.eval_every,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N steps (resumable).")]
    = _T.max_steps,
    max_length: Annotated[int | None, typer.Option(help="Longest prompt + response.")]
    = _T.max_length,
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu or cuda.")]
    = _T.device,
    mixed_precision: Annotated[str, typer.Option(
        help="auto (bf16 autocast on a GPU), no or bf16.")] = _T.mixed_precision,
    gradient_checkpointing: Annotated[bool, typer.Option(
        "--gradient-checkpointing", help="Recompute activations in the backward pass (less "
        "memory, more compute).")] = False,
    sibling_weight: Annotated[float, typer.Option(
        help="Weight of the sibling-difference term beside equation 6 (0: the paper's loss).")]
    = _T.sibling_weight,
    balance_objectives: Annotated[bool, typer.Option(
        "--balance-objectives/--no-balance-objectives",
        help="Weigh each objective's errors by its targets' variance, so that every head of "
             "a shared model counts alike whatever its reward's scale.")]
    = _T.balance_objectives,
    select_best_by: Annotated[str, typer.Option(
        help="Keep the checkpoint with the lowest val_loss or the highest sibling_accuracy.")]
    = _T.select_best_by,
    per_node: Annotated[bool, typer.Option(
        "--per-node", help="One sequence per node instead of packed trees (slower).")] = False,
    init_from: Annotated[str | None, typer.Option(
        help="Start from this value model (folder or hub id org/name) or earlier run "
        "(Algorithm 1: V^i <- V^{i-1}); its backbone, layers and LoRA are trained on (--base, "
        "--num-layers and --lora-* other than its own are refused).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT's run even under "
                                         "other settings (the same command continues it "
                                         "anyway).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of split, leaf choice and order.")] = _T.seed,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
    = False,
) -> None:
    """Train value models on collected trees (equation 6; best checkpoint by validation).

    A stopped run continues when the same command runs again."""
    from mavis.training import train

    if eval_every < 0:
        raise MavisError(f"--eval-every is {eval_every}; give a whole number >= 1, or 0 "
                         "(evaluate at the end of each epoch)")
    check_writable(out, folder=True, what="--out")
    try:
        config = TrainConfig(
            base=base, num_layers=num_layers,
            objectives=parse_names(objectives, "--objectives"), shared=shared,
            init_from=init_from, lora_r=lora_r, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout, zeta=zeta, leaf_fraction=leaf_fraction,
            validation_fraction=validation_fraction, train_prompts=train_prompts,
            validation_without_leaves=validation_without_leaves, max_length=max_length, lr=lr,
            weight_decay=weight_decay, warmup_steps=warmup_steps, batch_size=batch_size,
            epochs=epochs, max_steps=max_steps, packed=not per_node,
            select_best_by=select_best_by, sibling_weight=sibling_weight,
            balance_objectives=balance_objectives, device=device,
            mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
            eval_every=eval_every or None, seed=seed,
        )
    except SettingsError as exc:
        raise option_error(exc, {"packed": "--per-node"}) from None
    if init_from is not None:
        _check_init_from(ctx, config, data)
    with resume_hint(CONTINUE):
        report = train(config, data, out, resume=resume)
    _show(report, json_output)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was typed (not its default), whichever click typer runs on."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


# The options --init-from overrides: the initial model's backbone is trained on.
_BACKBONE_OPTIONS = {"base": "--base", "num_layers": "--num-layers", "lora_r": "--lora-r",
                     "lora_alpha": "--lora-alpha", "lora_dropout": "--lora-dropout"}


def _check_init_from(ctx: typer.Context, config: TrainConfig, data: Path) -> None:
    """Refuse --base, --num-layers and --lora-* given beside --init-from with values other
    than the initial model's (which training goes on from): they would be ignored."""
    from mavis.training.trainer import initial_backbone, initial_folders
    from mavis.trees.store import read_attrs

    given = [name for name in _BACKBONE_OPTIONS if _given(ctx, name)]
    names = config.objectives or read_attrs(data)[0]
    for folder in initial_folders(config, names):
        own = initial_backbone(folder)
        differ = [name for name in given if getattr(config, name) != own[name]]
        if differ:
            asked = ", ".join(f"{_BACKBONE_OPTIONS[n]} {getattr(config, n)}" for n in differ)
            has = ", ".join(f"{n} {own[n]!r}" for n in differ)
            raise MavisError(f"--init-from {str(folder)!r} has {has}: training goes on from "
                             f"its backbone, so {asked} would be ignored; leave "
                             f"{'them' if len(differ) > 1 else 'it'} out, or train from "
                             "scratch without --init-from")


def distill_command(
    teacher: Annotated[list[str], typer.Option(
        "--teacher", help="OBJECTIVE=PATH (or a hub id org/name) of a teacher value model; "
        "repeat per objective.")],
    data: Annotated[Path, typer.Option("--data", help="Tree file whose paths to distil on.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; the student is OUT/best.")],
    base: Annotated[str | None, typer.Option(help="Student backbone (default: the packaged "
                                                  "model).")] = _T.base,
    num_layers: Annotated[int | None, typer.Option(help="Student backbone layers.")]
    = _T.num_layers,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = _T.epochs,
    batch_size: Annotated[int, typer.Option(
        help="Completion tokens per step, over all processes (the global batch).")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adafactor).")] = _T.lr,
    warmup_steps: Annotated[int, typer.Option(help="Warm-up steps.")] = _T.warmup_steps,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0: whole backbone).")] = _T.lora_r,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = _T.lora_alpha,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = _T.lora_dropout,
    validation_fraction: Annotated[float, typer.Option(help="Share of prompts held out.")]
    = _T.validation_fraction,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps (0: epoch ends).")]
    = _T.eval_every,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N steps (resumable).")]
    = _T.max_steps,
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu or cuda.")]
    = _T.device,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT's run even under "
                                         "other settings (the same command continues it "
                                         "anyway).")] = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = _T.seed,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
    = False,
) -> None:
    """Distil per-objective value models into one backbone with a head each (appendix E)."""
    from mavis.models.value_hub import parse_hub_id
    from mavis.training import distill

    teachers = parse_assignments(teacher, "--teacher", "relevant=runs/rel/best")
    check_writable(out, folder=True, what="--out")
    for name, path in teachers.items():  # a hub id is fetched (or refused) by distill
        if not Path(path).expanduser().exists() and parse_hub_id(path) is None:
            raise MavisError(f"teacher {name!r}: {path!r} does not exist")
    if eval_every < 0:
        raise MavisError(f"--eval-every is {eval_every}; give a whole number >= 1, or 0 "
                         "(evaluate at the end of each epoch)")
    try:
        config = TrainConfig(
            base=base, num_layers=num_layers, lora_r=lora_r, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout, lr=lr, warmup_steps=warmup_steps,
            batch_size=batch_size, epochs=epochs, max_steps=max_steps,
            validation_fraction=validation_fraction, eval_every=eval_every or None,
            seed=seed, device=device,
        )
    except SettingsError as exc:
        raise option_error(exc) from None
    with resume_hint(CONTINUE):
        report = distill(teachers, base, data, out, config=config, resume=resume)
    _show(report, json_output)
