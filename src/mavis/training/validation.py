"""Validation of a value model during training: the loss of equation 6 on held-out prompts'
nodes, and the figures that say whether the model can steer (see `mavis.training.metrics`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object

from mavis.training.loss import masked_mse
from mavis.training.metrics import spearman
from mavis.training.packing import Unit, collate, plan_batches, predict


def predict_units(model: torch.nn.Module, units: list[Unit], batch_size: int, accelerator: Any,
                  dtype: torch.dtype, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, targets), both [K, M], over every read of `units` (all processes)."""
    model.eval()
    preds, targets = [], []
    with torch.no_grad():
        for indices in plan_batches(units, batch_size)[
                accelerator.process_index::accelerator.num_processes]:
            batch = collate([units[i] for i in indices], dtype).to(accelerator.device)
            preds.append(predict(model, batch).float().cpu().numpy())
            targets.append(batch.targets.cpu().numpy())
    model.train()
    if not units:
        empty = np.zeros((0, width), dtype=np.float32)
        return empty, empty
    return np.concatenate(gather_object(preds)), np.concatenate(gather_object(targets))


def evaluate(model: torch.nn.Module, units: list[Unit], batch_size: int, accelerator: Any,
             objectives: list[str], dtype: torch.dtype,
             train_means: np.ndarray | None = None) -> dict[str, Any]:
    """Validation loss (MSE over all read values; the best checkpoint is chosen on it, so with
    shared heads on the mean over objectives), per-objective MSE and Spearman correlation of
    predictions with the Monte-Carlo targets (the node values, less zeta * LPR), and the
    baseline: the loss of predicting the training targets' mean everywhere."""
    preds, targets = predict_units(model, units, batch_size, accelerator, dtype,
                                   len(objectives))
    loss = float(masked_mse(torch.from_numpy(preds), torch.from_numpy(targets)))
    baseline = None
    if train_means is not None and len(targets):
        constant = np.broadcast_to(train_means, targets.shape).astype(np.float32)
        baseline = float(masked_mse(torch.from_numpy(constant), torch.from_numpy(targets)))
    rhos: dict[str, float | None] = {}
    per_objective: dict[str, float | None] = {}
    for column, name in enumerate(objectives):
        valid = np.isfinite(targets[:, column])
        errors = preds[valid, column] - targets[valid, column]
        per_objective[name] = float(np.mean(errors ** 2)) if valid.any() else None
        rhos[name] = spearman(preds[valid, column], targets[valid, column])
    return {"val_loss": loss, "val_baseline_loss": baseline,
            "val_loss_per_objective": per_objective, "spearman": rhos,
            "val_count": int(np.isfinite(targets).sum())}
