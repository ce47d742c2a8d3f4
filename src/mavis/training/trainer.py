"""Train value models on collected trees (Algorithm 1's "Train V^i on N^i", equation 6).

    report = train(TrainConfig(objectives=["relevant"]), "trees.h5", "runs/vm")

The loop (`fit`) is plain PyTorch with accelerate around it, so that the same code runs in one
CPU process here and data-parallel on several GPUs (`accelerate launch`, `torchrun`): Adafactor
with a fixed learning rate (the paper's optimiser), linear warm-up then linear decay, gradient
clipping, an evaluation every `eval_every` steps and at each epoch's end (see
`validation.evaluate`), the best model by validation loss kept in `best/`, and a resumable
`last/` checkpoint saved regularly (see `checkpoint`). Data-parallel (see `parallel`),
`batch_size` is the global batch and steps are global steps, so a run trains the same model
and resumes under any process count; the first process alone writes, and a stop request stops
every process at one step.

A fresh model's head starts at the best constant (weights 0, bias = the training targets'
mean), so step 0 of `metrics.jsonl` is the mean-only baseline and the best checkpoint is never
worse than it on validation: where nothing beyond the mean is learnable, the saved value model
is flat and MAVIS falls back to the reference policy instead of following noise. (`init_from`
models keep their head.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup
from transformers.optimization import Adafactor

from mavis.errors import MavisError
from mavis.models.devices import check_device
from mavis.models.loading import DEFAULT_MODEL
from mavis.models.model_card import write_model_card
from mavis.models.value_folder import (
    DEFAULT_LORA_TARGETS,
    find_value_model,
    read_value_config,
    run_folder_name,
    value_model_files,
)
from mavis.models.value_hub import value_model_folder
from mavis.models.value_model import ValueModel
from mavis.progress import track
from mavis.training.checkpoint import (
    METRICS_NAME,
    REPORT_NAME,
    append_metrics,
    best_folder,
    find_last,
    load_state,
    read_metrics,
    read_report,
    save_model,
    truncate_metrics,
    write_json,
)
from mavis.training.config import TrainConfig
from mavis.training.loss import masked_mse, sibling_difference_mse
from mavis.training.packing import Batch, Unit, collate, plan_batches, predict
from mavis.training.parallel import (
    Shard,
    agree_on_stop,
    is_main_process,
    process_rng_states,
    restore_rng,
    same_in_every_process,
    seed_process,
    shard_batch,
    sum_over_processes,
    wait_for_main,
)
from mavis.training.samples import Samples, prepare_samples
from mavis.training.stopping import StopRequest, TrainingStopped, stop_requests
from mavis.training.validation import evaluate
from mavis.trees.store import read_trees
from mavis.trees.table import TreeTable

_ORDER_STREAM = 3


def train(config: TrainConfig, data: str | Path | TreeTable, out_dir: str | Path, *,
          resume: bool = False) -> dict[str, Any]:
    """Train value models for `config.objectives` on the trees in `data`; return the report.

    Shared (`config.shared`) or with a single objective, the run lives in `out_dir` itself and
    the model is `out_dir/best`; otherwise each objective gets `out_dir/<objective>/` (see
    `run_folder_name`) and a summary `out_dir/report.json` lists them. A stopped run (Ctrl-C,
    `kill -9`) continues from its `last/` checkpoint when started again with the same settings
    (`check_same_run`); `resume=True` continues it under changed settings too.
    """
    check_training_device(config)
    trees = data if isinstance(data, TreeTable) else read_trees(data)
    objectives = list(config.objectives or trees.objectives)
    trees.columns(objectives)  # a clear error for unknown names, before any model loads
    groups = [objectives] if config.shared else [[name] for name in objectives]
    out_dir = Path(out_dir).expanduser()
    folders = [run_folder_name(group[0]) for group in groups]
    if len(set(folders)) < len(folders):
        raise MavisError(f"objectives {', '.join(objectives)} map to the same run folder; "
                         "train them in separate runs or with --shared")
    # a missing or damaged initial model fails first
    initial = initial_folders(config, objectives) or [None] * len(groups)
    reports = {}
    extra = {} if isinstance(data, TreeTable) else {"data_file": str(data)}
    for group, folder in zip(groups, initial, strict=True):
        run_dir = out_dir if len(groups) == 1 else out_dir / run_folder_name(group[0])
        # the run's report names the backbone it trains: the initial model's, with init_from
        run_config = config if folder is None else dataclasses.replace(
            config, **initial_backbone(folder))
        samples = prepare_samples(trees, group, run_config)
        reports[",".join(group)] = fit(lambda g=group, c=run_config: initial_model(c, g),
                                       samples, run_config, run_dir, resume=resume,
                                       extra_report=extra)
    if len(groups) == 1:
        return next(iter(reports.values()))
    summary = {"models": {name: r["model"] for name, r in reports.items()}, "runs": reports}
    if is_main_process():
        write_json(out_dir / REPORT_NAME, summary)
    return summary


# -- model -------------------------------------------------------------------------------------
def initial_folders(config: TrainConfig, objectives: list[str]) -> list[Path]:
    """The value-model folders `config.init_from` names for the runs of `objectives` (one for
    all of them when shared, else one each), each checked whole (config and weight files)."""
    if config.init_from is None:
        return []
    groups = [objectives] if config.shared else [[name] for name in objectives]
    folders = [find_value_model(config.init_from, group) for group in groups]
    for folder in folders:
        value_model_files(folder)
    return folders


def initial_backbone(folder: Path) -> dict[str, Any]:
    """The backbone settings (`TrainConfig`'s base, num_layers and lora_*) of the value model
    in `folder`: what a run with `init_from` trains on, whatever its own config says."""
    initial = read_value_config(folder)
    lora = initial.lora
    return {"base": initial.base, "num_layers": initial.num_layers,
            "lora_r": lora.r if lora else 0,
            "lora_alpha": lora.alpha if lora else TrainConfig.lora_alpha,
            "lora_dropout": lora.dropout if lora else TrainConfig.lora_dropout,
            "lora_target_modules": list(lora.target_modules if lora else DEFAULT_LORA_TARGETS)}


def initial_model(config: TrainConfig, objectives: list[str]) -> ValueModel:
    """A fresh value model, or (with `init_from`: a value model or run folder, or a hub id) the
    previous iteration's, with one head output per objective in `objectives`, its LoRA adapter
    trainable."""
    if config.init_from is None:
        return ValueModel.build(config.base or DEFAULT_MODEL, objectives,
                                num_layers=config.num_layers, lora=config.lora(),
                                attn_implementation=config.attn_implementation)
    path = find_value_model(value_model_folder(config.init_from), objectives)
    model = ValueModel.load(path, merge=False, attn_implementation=config.attn_implementation)
    if model.objectives == objectives:
        return model
    rows = [model.objectives.index(name) for name in objectives]
    new_config = dataclasses.replace(model.config, objectives=list(objectives), value_range={},
                                     value_scale={})
    narrowed = ValueModel(model.backbone, new_config)
    with torch.no_grad():
        narrowed.head.weight.copy_(model.head.weight[rows])
        narrowed.head.bias.copy_(model.head.bias[rows])
    return narrowed


def check_training_device(config: TrainConfig) -> None:
    """Refuse device "cuda" on a machine without one, before anything is read or written."""
    if config.device == "cuda":
        check_device("cuda", "device")


def make_accelerator(config: TrainConfig) -> Accelerator:
    """Accelerate on the configured device (a GPU when there is one, unless told "cpu")."""
    check_training_device(config)
    return Accelerator(cpu=config.device == "cpu")


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward passes when the settings ask for it ("auto": on a GPU
    that has bf16), else nothing."""
    wanted = config.mixed_precision == "bf16" or (
        config.mixed_precision == "auto" and device.type == "cuda"
        and torch.cuda.is_bf16_supported())
    if not wanted:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adafactor with a fixed learning rate, as the paper (and HF Trainer's "adafactor")."""
    params = [p for p in model.parameters() if p.requires_grad]
    return Adafactor(params, lr=config.lr, weight_decay=config.weight_decay,
                     scale_parameter=False, relative_step=False, warmup_init=False)


def epoch_plans(units: list[Unit], config: TrainConfig) -> list[list[list[int]]]:
    """Every epoch's global batches (unit indices), fixed by the seed so that a resumed run
    sees the same order, and the same in every process whatever their number: each process
    trains on its shard of every batch (`parallel.shard_batch`)."""
    plans = []
    for epoch in range(config.epochs):
        rng = np.random.default_rng([config.seed, _ORDER_STREAM, epoch])
        plans.append(plan_batches(units, config.batch_size, rng))
    return plans


# -- the run -----------------------------------------------------------------------------------
@dataclass
class RunState:
    """Where a run is; saved in `last/` and restored on resume."""

    step: int = 0
    epoch: int = 0
    done_in_epoch: int = 0  # batches of `epoch` already trained
    seconds: float = 0.0
    tokens: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {
        "val_loss": float("inf"), "score": None, "step": None, "spearman": None,
        "sibling_accuracy": None, "within_prompt_spearman": None})
    losses: list[float] = field(default_factory=list)  # train losses since the last evaluation
    done: bool = False


@dataclass
class Run:
    """Everything the loop works with."""

    model: Any
    optimizer: Any
    scheduler: Any
    accelerator: Any
    samples: Samples
    config: TrainConfig
    run_dir: Path
    plans: list[list[list[int]]]
    state: RunState
    saved_at: int = -1
    stop: StopRequest = field(default_factory=StopRequest)
    stop_signal: str | None = None  # the stop request all processes agreed on

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def objectives(self) -> list[str]:
        return list(self.accelerator.unwrap_model(self.model).objectives)

    @property
    def dtype(self) -> torch.dtype:
        return self.accelerator.unwrap_model(self.model).head.weight.dtype

    @functools.cached_property
    def loss_weights(self) -> torch.Tensor:
        """Each objective's weight in the loss (`TrainConfig.balance_objectives`)."""
        weights = self.samples.objective_weights(self.config.balance_objectives)
        return torch.as_tensor(weights, dtype=torch.float32, device=self.accelerator.device)


def fit(make_model: Callable[[], ValueModel], samples: Samples, config: TrainConfig,
        run_dir: str | Path, *, resume: bool = False,
        extra_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the model `make_model()` builds on `samples`; write and return the run report."""
    run_dir = Path(run_dir).expanduser()
    accelerator = make_accelerator(config)  # first: it sets up the processes' group
    last = find_last(run_dir)
    same_in_every_process(None if last is None else last.name, f"the checkpoint in {run_dir}")
    saved = load_state(last) if last else None
    if saved is not None and not resume:
        check_same_run(run_dir, saved.get("config"), config)
    report = read_report(run_dir)
    wait_for_main()  # every process has read the folder before the first one writes in it
    if saved is not None and saved.get("done") and report is not None:
        return report
    run = start_run(make_model, samples, config, run_dir, accelerator,
                    last if saved else None, saved)
    # Ctrl-C / SIGTERM: finish the step, save `last/`, then stop, every process at one step
    with stop_requests(repeat_after=2.0 if run.world > 1 else 0.0) as run.stop:
        if saved is None and samples.val:
            evaluate_and_save(run)  # the starting point: step 0 in metrics.jsonl
        stopped = False
        while run.state.epoch < config.epochs and not stopped:
            stopped = train_epoch(run)
        report = finish(run, stopped, extra_report or {})
    if run.stop_signal and not report["complete"]:
        raise TrainingStopped(f"stopped by {run.stop_signal} at step {run.state.step} of "
                              f"{report['total_steps']}; the checkpoint is saved in "
                              f"{run_dir / 'last'}")
    return report


# Settings that change how a run goes on, not what it computes: a stopped run continues under
# other values of these (split a long run with max_steps, go on on another device).
RESUMABLE_CHANGES = ("max_steps", "progress", "device", "mixed_precision",
                     "gradient_checkpointing", "save_every")


def check_same_run(run_dir: Path, saved: dict[str, Any] | None, config: TrainConfig) -> None:
    """A run in `run_dir` continues when started again with the same settings (those of
    `RESUMABLE_CHANGES` aside); with others it is refused, naming them (resume=True continues
    it under the new settings anyway)."""
    if not saved:
        return
    new = config.to_dict()
    changed = [k for k in sorted(set(saved) | set(new))
               if k not in RESUMABLE_CHANGES and saved.get(k) != new.get(k)]
    if changed:
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {new.get(k)!r} now" for k in changed[:4])
        raise MavisError(f"{str(run_dir)!r} holds a training run with other settings ({shown}); "
                         "give its settings again to continue it, --resume to continue it with "
                         "these, or choose another output folder")


def start_run(make_model: Callable[[], ValueModel], samples: Samples, config: TrainConfig,
              run_dir: Path, accelerator: Accelerator, last: Path | None,
              saved: dict[str, Any] | None) -> Run:
    """The model (fresh, or from `last`), optimiser, schedule and state of a run. The run
    folder is created only once the model is built (a bad setting leaves nothing behind)."""
    main = accelerator.is_main_process
    model = (fresh_model(make_model, samples, config) if saved is None else
             ValueModel.load(last, merge=False, attn_implementation=config.attn_implementation))
    if saved is None:
        seed_process(config.seed, accelerator.process_index)  # dropout: a stream per process
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / METRICS_NAME).unlink(missing_ok=True)
    model.config.value_range = dict(samples.value_range)
    model.config.value_scale = dict(samples.value_scale)
    if config.gradient_checkpointing:
        enable_checkpointing(model.backbone)
    plans = epoch_plans(samples.train, config)
    optimizer = make_optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_steps,
                                                sum(len(p) for p in plans))
    state = RunState()
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved, config.seed, accelerator.process_index, accelerator.num_processes)
        state = RunState(**{f.name: saved[f.name] for f in dataclasses.fields(RunState)})
        if main:
            truncate_metrics(run_dir / METRICS_NAME, state.step)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    return Run(model, optimizer, scheduler, accelerator, samples, config, run_dir, plans, state)


def fresh_model(make_model: Callable[[], ValueModel], samples: Samples,
                config: TrainConfig) -> ValueModel:
    """The model a run starts from, the same in every process (seeded): a fresh one's head
    at the best constant prediction."""
    torch.manual_seed(config.seed)
    model = make_model()
    if config.init_from is None:  # start exactly at the best constant prediction
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(torch.as_tensor(samples.train_means(),
                                                  dtype=model.head.bias.dtype))
    return model


def train_epoch(run: Run) -> bool:
    """Train the rest of the current epoch; True when `max_steps` or a stop request (Ctrl-C,
    SIGTERM) stopped the run early. Either way `last/` is saved at the step it stopped."""
    config, state = run.config, run.state
    batches = run.plans[state.epoch]
    bar = track(range(state.done_in_epoch, len(batches)),
                f"epoch {state.epoch + 1}/{config.epochs}",
                total=len(batches) - state.done_in_epoch, unit="step",
                disable=not (config.progress and run.main))
    for index in bar:
        train_step(run, [run.samples.train[i] for i in batches[index]])
        end_of_epoch = index + 1 == len(batches)
        state.done_in_epoch = index + 1
        if end_of_epoch or (config.eval_every and state.step % config.eval_every == 0):
            evaluate_and_save(run, next_epoch=end_of_epoch)
        elif state.step % config.save_every == 0:
            save_last(run, next_epoch=end_of_epoch)
        run.stop_signal = agree_on_stop(run.accelerator, run.stop)
        if run.stop_signal or (config.max_steps is not None and state.step >= config.max_steps):
            if run.saved_at != state.step:
                save_last(run, next_epoch=end_of_epoch)
            stopped = not end_of_epoch or state.epoch + 1 < config.epochs
            if end_of_epoch:
                state.epoch, state.done_in_epoch = state.epoch + 1, 0
            return stopped
    state.epoch, state.done_in_epoch = state.epoch + 1, 0
    return False


def train_step(run: Run, units: list[Unit]) -> None:
    """One optimiser step on a global batch of units: equation 6's MSE on their reads (plus,
    with `sibling_weight`, the error of the predicted differences between siblings), each
    process computing its shard's share of it (see `parallel`)."""
    started = time.perf_counter()
    shard = shard_batch(units, run.samples.parent, run.world, run.accelerator.process_index,
                        pairs=bool(run.config.sibling_weight))
    batch = collate(shard.units, run.dtype).to(run.accelerator.device)
    with autocast(run.config, run.accelerator.device):
        predicted = predict(run.model, batch).float()
    loss = shard_loss(run, predicted, batch, shard)
    run.accelerator.backward(loss * run.world)  # DDP averages the processes' gradients
    if run.config.max_grad_norm is not None:
        run.accelerator.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state.step += 1
    run.state.tokens += sum(len(unit) for unit in units)
    run.state.losses.append(sum_over_processes(run.accelerator, loss))
    run.state.seconds += time.perf_counter() - started


def shard_loss(run: Run, predicted: torch.Tensor, batch: Batch, shard: Shard) -> torch.Tensor:
    """This process's share of the global batch's loss: its errors over the whole batch's
    counts, so that the shares of all processes add up to the batch's loss."""
    if shard.empty:
        return predicted.sum() * 0.0
    weights = run.loss_weights
    loss = masked_mse(predicted, batch.targets, shard.count, weights)
    if run.config.sibling_weight:
        parent = torch.from_numpy(run.samples.parent).to(batch.nodes.device)[batch.nodes]
        loss = loss + run.config.sibling_weight * sibling_difference_mse(
            predicted, batch.targets, parent, shard.pairs, weights)
    return loss


def _position(run: Run, next_epoch: bool) -> tuple[int, int]:
    """(epoch, batches done in it) to resume from."""
    state = run.state
    return (state.epoch + 1, 0) if next_epoch else (state.epoch, state.done_in_epoch)


def save_last(run: Run, next_epoch: bool = False) -> None:
    """Save the resumable `last/` checkpoint (model, optimiser, schedule, RNG, state): the
    first process writes it (with every process's RNG state), the others wait for it."""
    states = process_rng_states()
    if run.main:
        epoch, done_in_epoch = _position(run, next_epoch)
        saved = dataclasses.replace(run.state, epoch=epoch, done_in_epoch=done_in_epoch,
                                    losses=list(run.state.losses))
        save_model(run.accelerator.unwrap_model(run.model), run.run_dir / "last", {
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "rng": states[0], "rng_ranks": states, **dataclasses.asdict(saved),
            "objectives": run.objectives, "config": run.config.to_dict()})
    run.accelerator.wait_for_everyone()
    run.saved_at = run.state.step


def evaluate_and_save(run: Run, next_epoch: bool = False) -> None:
    """Validate, keep the best model, log the metrics, then save `last/`."""
    state = run.state
    epoch, done_in_epoch = _position(run, next_epoch)
    record: dict[str, Any] = {
        "step": state.step,
        "epoch": round(epoch + done_in_epoch / len(run.plans[state.epoch]), 4),
        "lr": run.scheduler.get_last_lr()[0],
        "train_loss": float(np.mean(state.losses)) if state.losses else None,
    }
    state.losses.clear()
    if run.samples.val:
        with autocast(run.config, run.accelerator.device):
            record.update(evaluate(run.model, run.samples, run.config.batch_size,
                                   run.accelerator, run.objectives, run.dtype,
                                   run.loss_weights.cpu()))
        score = selection_score(record, run.config.select_best_by)
        if state.best.get("score") is None or score > state.best["score"]:
            state.best.update({key: record[key] for key in _BEST_KEYS}, step=state.step,
                              score=score)
            if run.main:
                save_model(run.accelerator.unwrap_model(run.model), best_folder(run.run_dir),
                           training=card_facts(run))
    record.update(seconds=round(state.seconds, 2), tokens=state.tokens)
    if run.main:
        append_metrics(run.run_dir / METRICS_NAME, record)  # before `last`: see truncate_metrics
    _say(run, _describe(record))
    save_last(run, next_epoch)


_BEST_KEYS = ("val_loss", "spearman", "sibling_accuracy", "within_prompt_spearman")


def card_facts(run: Run) -> dict[str, Any]:
    """What the model card of `best/` says of a run still going (its report, once it ends)."""
    return {"steps": run.state.step, "data": run.samples.sizes, "best": run.state.best,
            "config": run.config.to_dict()}


def selection_score(record: dict[str, Any], select_by: str) -> float:
    """How good an evaluation is for choosing the best checkpoint (higher is better): minus
    the validation loss, or the mean within-sibling ranking accuracy over objectives."""
    if select_by == "val_loss":
        return -record["val_loss"]
    accuracies = [a for a in record["sibling_accuracy"].values() if a is not None]
    return float(np.mean(accuracies)) if accuracies else 0.5


def finish(run: Run, stopped: bool, extra_report: dict[str, Any]) -> dict[str, Any]:
    """Save the final state and write the run report."""
    state, config = run.state, run.config
    finished = state.epoch >= config.epochs and not stopped
    if finished and not run.samples.val and run.main:  # no validation: the last is the best
        save_model(run.accelerator.unwrap_model(run.model), best_folder(run.run_dir))
        state.best.update(step=state.step)
    if finished:
        state.done = True
        save_last(run)
    best_loss = state.best["val_loss"]
    report = {
        "objectives": run.objectives, "model": str(best_folder(run.run_dir)),
        "complete": finished, "steps": state.step,
        "total_steps": sum(len(p) for p in run.plans), "seconds": round(state.seconds, 2),
        "train_tokens_per_second": (round(state.tokens / state.seconds, 1) if state.seconds
                                    else None),
        "best": {**state.best, "val_loss": best_loss if np.isfinite(best_loss) else None},
        "final": (read_metrics(run.run_dir / METRICS_NAME) or [None])[-1],
        "data": run.samples.sizes, "value_range": run.samples.value_range,
        "value_scale": run.samples.value_scale, "config": config.to_dict(), **extra_report,
    }
    if run.main:
        write_json(run.run_dir / REPORT_NAME, report)
        best = best_folder(run.run_dir)
        if best.is_dir():  # its model card gets the run's figures
            write_model_card(best, read_value_config(best), report)
    return report


def _describe(record: dict[str, Any]) -> str:
    parts = [f"step {record['step']}", f"epoch {record['epoch']:.2f}"]
    if record.get("train_loss") is not None:
        parts.append(f"train {record['train_loss']:.4f}")
    if "val_loss" in record:
        parts.append(f"val {record['val_loss']:.4f}")
        if record.get("val_baseline_loss") is not None:
            parts.append(f"(mean-only {record['val_baseline_loss']:.4f})")
        for key, label in (("spearman", "spearman"), ("sibling_accuracy", "siblings")):
            shown = [f"{k}={v:.3f}" for k, v in record[key].items() if v is not None]
            if shown:
                parts.append(f"{label} " + " ".join(shown))
    return "  ".join(parts)


def _say(run: Run, message: str) -> None:
    if run.config.progress and run.main:
        tqdm.write(message, file=sys.stderr)


def enable_checkpointing(backbone: Any) -> None:
    """Recompute activations in the backward pass: transformers' `activation_checkpointing_enable`
    where it exists (its `gradient_checkpointing_enable` is a deprecated alias from 5.2x on)."""
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
