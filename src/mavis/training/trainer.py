"""Train value models on collected trees (Algorithm 1's "Train V^i on N^i", equation 6).

    report = train(TrainConfig(objectives=["relevant"]), "trees.h5", "runs/vm")

The loop (`fit`) is plain PyTorch with accelerate around it, so that the same code runs in one
CPU process here and data-parallel on several GPUs (`accelerate launch`): Adafactor with a fixed
learning rate (the paper's optimiser), linear warm-up then linear decay, gradient clipping, an
evaluation every `eval_every` steps and at each epoch's end (validation loss and the Spearman
correlation of predicted and Monte-Carlo values), the best model by validation loss kept in
`best/`, and a resumable `last/` checkpoint saved regularly.

A fresh model's head starts at the best constant (weights 0, bias = the training targets'
mean), so step 0 of `metrics.jsonl` is the mean-only baseline and the best checkpoint is never
worse than it on validation: where nothing beyond the mean is learnable, the saved value model
is flat and MAVIS falls back to the reference policy instead of following noise. (`init_from`
models keep their head.)
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mavis.errors import MavisError
from mavis.models.value_model import CONFIG_NAME, ValueModel, ValueModelConfig
from mavis.training.checkpoint import (
    append_metrics,
    find_last,
    load_state,
    read_metrics,
    rng_state,
    save_model,
    set_rng_state,
    truncate_metrics,
)
from mavis.training.config import TrainConfig
from mavis.training.loss import masked_mse
from mavis.training.nodes import TreeData, read_trees
from mavis.training.packing import Unit, collate, plan_batches, predict
from mavis.training.samples import Samples, prepare_samples

REPORT_NAME = "report.json"
METRICS_NAME = "metrics.jsonl"
_ORDER_STREAM = 3


def train(config: TrainConfig, data: str | Path | TreeData, out_dir: str | Path, *,
          resume: bool = False) -> dict[str, Any]:
    """Train value models for `config.objectives` on the trees in `data`; return the report.

    Shared (`config.shared`) or with a single objective, the run lives in `out_dir` itself and
    the model is `out_dir/best`; otherwise each objective gets `out_dir/<objective>/` (see
    `run_folder_name`) and a summary `out_dir/report.json` lists them. `resume=True`
    continues from the `last/` checkpoints.
    """
    trees = data if isinstance(data, TreeData) else read_trees(data)
    objectives = list(config.objectives or trees.objectives)
    trees.columns(objectives)  # a clear error for unknown names, before any model loads
    groups = [objectives] if config.shared else [[name] for name in objectives]
    out_dir = Path(out_dir).expanduser()
    folders = [run_folder_name(group[0]) for group in groups]
    if len(set(folders)) < len(folders):
        raise MavisError(f"objectives {', '.join(objectives)} map to the same run folder; "
                         "train them in separate runs or with --shared")
    reports = {}
    for group in groups:
        run_dir = out_dir if len(groups) == 1 else out_dir / run_folder_name(group[0])
        samples = prepare_samples(trees, group, config)
        reports[",".join(group)] = fit(lambda g=group: initial_model(config, g), samples, config,
                                       run_dir, resume=resume)
    if len(groups) == 1:
        return next(iter(reports.values()))
    summary = {"models": {name: r["model"] for name, r in reports.items()}, "runs": reports}
    (out_dir / REPORT_NAME).write_text(json.dumps(summary, indent=2))
    return summary


def run_folder_name(objective: str) -> str:
    """A folder name for an objective's run: its name with anything but letters, digits, '.',
    '-' and '_' replaced (objective specs like "python:/path/f.py:fn" hold '/' and ':')."""
    return re.sub(r"[^\w.-]+", "_", objective).strip("._") or "objective"


# -- model -------------------------------------------------------------------------------------
def initial_model(config: TrainConfig, objectives: list[str]) -> ValueModel:
    """A fresh value model, or (with `init_from`) the previous iteration's, with one head
    output per objective in `objectives`, its LoRA adapter trainable."""
    if config.init_from is None:
        return ValueModel.build(config.base, objectives, num_layers=config.num_layers,
                                lora=config.lora(),
                                attn_implementation=config.attn_implementation)
    path = resolve_init(config.init_from, objectives)
    model = ValueModel.load(path, merge=False, attn_implementation=config.attn_implementation)
    if model.objectives == objectives:
        return model
    rows = [model.objectives.index(name) for name in objectives]
    new_config = dataclasses.replace(model.config, objectives=list(objectives), value_range={})
    narrowed = ValueModel(model.backbone, new_config)
    with torch.no_grad():
        narrowed.head.weight.copy_(model.head.weight[rows])
        narrowed.head.bias.copy_(model.head.bias[rows])
    return narrowed


def resolve_init(path: str | Path, objectives: list[str]) -> Path:
    """The value-model folder to start from: `path` itself, or `path/best`, or (one objective)
    `path/<objective>/best`, whichever holds a model with every name in `objectives`."""
    path = Path(path).expanduser()
    candidates = [path, path / "best"]
    if len(objectives) == 1:
        folder = run_folder_name(objectives[0])
        candidates += [path / folder / "best", path / folder]
    for candidate in candidates:
        if (candidate / CONFIG_NAME).exists():
            config = ValueModelConfig.from_dict(json.loads((candidate / CONFIG_NAME).read_text()))
            missing = [name for name in objectives if name not in config.objectives]
            if missing:
                raise MavisError(f"the value model {str(candidate)!r} to start from has no head "
                                 f"for {', '.join(missing)}; it has {', '.join(config.objectives)}")
            return candidate
    raise MavisError(f"init_from {str(path)!r} holds no value model (looked for {CONFIG_NAME} in "
                     + ", ".join(str(c) for c in candidates) + ")")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adafactor with a fixed learning rate, as the paper (and HF Trainer's "adafactor")."""
    from transformers.optimization import Adafactor

    params = [p for p in model.parameters() if p.requires_grad]
    return Adafactor(params, lr=config.lr, weight_decay=config.weight_decay,
                     scale_parameter=False, relative_step=False, warmup_init=False)


# -- evaluation --------------------------------------------------------------------------------
def evaluate(model: torch.nn.Module, units: list[Unit], batch_size: int, accelerator: Any,
             objectives: list[str], dtype: torch.dtype,
             train_means: np.ndarray | None = None) -> dict[str, Any]:
    """Validation loss (MSE over all read values; the best checkpoint is chosen on it, so with
    shared heads on the mean over objectives), per-objective MSE and Spearman correlation of
    predictions with the Monte-Carlo targets (the node values, less zeta * LPR), and the
    baseline: the loss of predicting the training targets' mean everywhere."""
    from accelerate.utils import gather_object
    from scipy.stats import spearmanr

    model.eval()
    batches = plan_batches(units, batch_size)
    preds, targets = [], []
    with torch.no_grad():
        for indices in batches[accelerator.process_index::accelerator.num_processes]:
            batch = collate([units[i] for i in indices], dtype).to(accelerator.device)
            preds.append(predict(model, batch).float().cpu().numpy())
            targets.append(batch.targets.cpu().numpy())
    model.train()
    preds = np.concatenate(gather_object(preds)) if units else np.zeros((0, len(objectives)))
    targets = np.concatenate(gather_object(targets)) if units else preds
    loss = float(masked_mse(torch.from_numpy(preds), torch.from_numpy(targets)))
    baseline = None
    if train_means is not None and len(targets):
        constant = np.broadcast_to(train_means, targets.shape).astype(np.float32)
        baseline = float(masked_mse(torch.from_numpy(constant), torch.from_numpy(targets)))
    spearman: dict[str, float | None] = {}
    per_objective: dict[str, float | None] = {}
    for column, name in enumerate(objectives):
        valid = np.isfinite(targets[:, column])
        errors = preds[valid, column] - targets[valid, column]
        per_objective[name] = float(np.mean(errors ** 2)) if valid.any() else None
        if valid.sum() < 3 or np.ptp(targets[valid, column]) == 0:
            spearman[name] = None
            continue
        rho = spearmanr(preds[valid, column], targets[valid, column]).statistic
        spearman[name] = None if np.isnan(rho) else float(rho)
    return {"val_loss": loss, "val_baseline_loss": baseline,
            "val_loss_per_objective": per_objective, "spearman": spearman,
            "val_count": int(np.isfinite(targets).sum())}


# -- the loop ----------------------------------------------------------------------------------
def epoch_plans(units: list[Unit], config: TrainConfig, world: int = 1,
                rank: int = 0) -> list[list[list[int]]]:
    """Every epoch's batches (unit indices) for process `rank` of `world`, fixed by the seed so
    that a resumed run sees the same order. With several processes each takes every world-th
    batch of an equal share (DDP needs the same number of steps everywhere)."""
    plans = []
    for epoch in range(config.epochs):
        rng = np.random.default_rng([config.seed, _ORDER_STREAM, epoch])
        batches = plan_batches(units, config.batch_size, rng)
        if world > 1:
            batches = batches[: len(batches) // world * world][rank::world]
        plans.append(batches)
    return plans


def fit(make_model: Callable[[], ValueModel], samples: Samples, config: TrainConfig,
        run_dir: str | Path, *, resume: bool = False,
        extra_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the model `make_model()` builds on `samples`; write and return the run report."""
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from mavis.progress import track

    run_dir = Path(run_dir).expanduser()
    metrics_path = run_dir / METRICS_NAME
    last = find_last(run_dir)
    if last is not None and not resume:
        raise MavisError(f"{str(run_dir)!r} already holds a training run; pass --resume to "
                         "continue it, or choose another output folder")
    state: dict[str, Any] | None = load_state(last) if (resume and last) else None
    if state is not None and state.get("done") and (run_dir / REPORT_NAME).exists():
        return json.loads((run_dir / REPORT_NAME).read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    means = samples.train_means()
    if state is None:
        torch.manual_seed(config.seed)
        model = make_model()
        if config.init_from is None:  # start exactly at the best constant prediction
            with torch.no_grad():
                model.head.weight.zero_()
                model.head.bias.copy_(torch.as_tensor(means, dtype=model.head.bias.dtype))
        metrics_path.unlink(missing_ok=True)
    else:
        model = ValueModel.load(last, merge=False, attn_implementation=config.attn_implementation)
    model.config.value_range = dict(samples.value_range)
    objectives = list(model.objectives)
    dtype = model.head.weight.dtype

    accelerator = Accelerator()
    plans = epoch_plans(samples.train, config, accelerator.num_processes,
                        accelerator.process_index)
    total_steps = sum(len(p) for p in plans)
    optimizer = make_optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_steps, total_steps)
    step, epoch, done_in_epoch, seconds, tokens = 0, 0, 0, 0.0, 0
    best = {"val_loss": float("inf"), "step": None, "spearman": None}
    losses: list[float] = []  # training losses since the last evaluation
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step, epoch, done_in_epoch = state["step"], state["epoch"], state["done_in_epoch"]
        seconds, tokens, best = state["seconds"], state["tokens"], state["best"]
        losses = list(state["losses"])
        truncate_metrics(metrics_path, step)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    has_val = len(samples.val) > 0
    say = _printer(config.progress and accelerator.is_main_process)

    saved_at = -1

    def save_last(position: tuple[int, int], done: bool = False) -> None:
        nonlocal saved_at
        if accelerator.is_main_process:
            save_model(accelerator.unwrap_model(model), run_dir / "last", {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state(), "step": step, "epoch": position[0],
                "done_in_epoch": position[1], "seconds": seconds, "tokens": tokens,
                "best": best, "losses": losses, "done": done, "objectives": objectives,
                "config": config.to_dict()})
        accelerator.wait_for_everyone()
        saved_at = step

    def evaluate_and_save(position: tuple[int, int]) -> None:
        record: dict[str, Any] = {
            "step": step, "epoch": round(position[0] + position[1] / len(plans[epoch]), 4),
            "lr": scheduler.get_last_lr()[0],
            "train_loss": float(np.mean(losses)) if losses else None,
        }
        losses.clear()
        if has_val:
            record.update(evaluate(model, samples.val, config.batch_size, accelerator,
                                   objectives, dtype, means))
            if record["val_loss"] < best["val_loss"]:
                best.update(val_loss=record["val_loss"], step=step, spearman=record["spearman"])
                if accelerator.is_main_process:
                    save_model(accelerator.unwrap_model(model), run_dir / "best")
        record.update(seconds=round(seconds, 2), tokens=tokens)
        if accelerator.is_main_process:
            append_metrics(metrics_path, record)  # before `last`: see truncate_metrics
        say(_describe(record))
        save_last(position)

    if state is None and has_val:
        evaluate_and_save((0, 0))  # the starting point: step 0 in metrics.jsonl

    stopped = False
    while epoch < config.epochs and not stopped:
        batches = plans[epoch]
        bar = track(range(done_in_epoch, len(batches)), f"epoch {epoch + 1}/{config.epochs}",
                    total=len(batches) - done_in_epoch, unit="step",
                    disable=not (config.progress and accelerator.is_main_process))
        for index in bar:
            started = time.perf_counter()
            batch = collate([samples.train[i] for i in batches[index]], dtype)
            batch = batch.to(accelerator.device)
            loss = masked_mse(predict(model, batch), batch.targets)
            accelerator.backward(loss)
            if config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += batch.num_tokens
            losses.append(float(loss.detach()))
            seconds += time.perf_counter() - started
            end_of_epoch = index + 1 == len(batches)
            position = (epoch + 1, 0) if end_of_epoch else (epoch, index + 1)
            if end_of_epoch or (config.eval_every and step % config.eval_every == 0):
                evaluate_and_save(position)
            elif step % config.save_every == 0:
                save_last(position)
            if config.max_steps is not None and step >= config.max_steps:
                if saved_at != step:
                    save_last(position)
                stopped = not end_of_epoch or epoch + 1 < config.epochs
                break
        epoch, done_in_epoch = (epoch + 1, 0) if not stopped else position

    finished = epoch >= config.epochs and not stopped
    if finished and not has_val and accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), run_dir / "best")  # no validation: last
        best.update(step=step)
    if finished:
        save_last((epoch, 0), done=True)
    report = {
        "objectives": objectives, "model": str(run_dir / "best"), "complete": finished,
        "steps": step, "total_steps": total_steps, "seconds": round(seconds, 2),
        "train_tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "best": {**best, "val_loss": best["val_loss"] if np.isfinite(best["val_loss"]) else None},
        "final": (read_metrics(metrics_path) or [None])[-1],
        "data": samples.sizes, "value_range": samples.value_range, "config": config.to_dict(),
        **(extra_report or {}),
    }
    if accelerator.is_main_process:
        (run_dir / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def _describe(record: dict[str, Any]) -> str:
    parts = [f"step {record['step']}", f"epoch {record['epoch']:.2f}"]
    if record.get("train_loss") is not None:
        parts.append(f"train {record['train_loss']:.4f}")
    if "val_loss" in record:
        parts.append(f"val {record['val_loss']:.4f}")
        if record.get("val_baseline_loss") is not None:
            parts.append(f"(mean-only {record['val_baseline_loss']:.4f})")
        rhos = [f"{k}={v:.3f}" for k, v in record["spearman"].items() if v is not None]
        if rhos:
            parts.append("spearman " + " ".join(rhos))
    return "  ".join(parts)


def _printer(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if enabled:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)
    return say
