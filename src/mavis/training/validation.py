"""Validation of a value model during training: the loss of equation 6 on held-out prompts'
nodes, and the figures that say whether the model can steer (see `mavis.training.metrics`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object

from mavis.training.loss import masked_mse
from mavis.training.metrics import sibling_accuracy, spearman, within_group_spearman
from mavis.training.packing import Unit, collate, plan_batches, predict
from mavis.training.samples import Samples


def predict_units(model: torch.nn.Module, units: list[Unit], batch_size: int, accelerator: Any,
                  dtype: torch.dtype, width: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions [K, M], targets [K, M], tree nodes [K]) over every read of `units` (all
    processes)."""
    model.eval()
    preds, targets, nodes = [], [], []
    with torch.no_grad():
        for indices in plan_batches(units, batch_size)[
                accelerator.process_index::accelerator.num_processes]:
            batch = collate([units[i] for i in indices], dtype).to(accelerator.device)
            preds.append(predict(model, batch).float().cpu().numpy())
            targets.append(batch.targets.cpu().numpy())
            nodes.append(batch.nodes.cpu().numpy())
    model.train()
    if not units:
        empty = np.zeros((0, width), dtype=np.float32)
        return empty, empty, np.zeros(0, dtype=np.int64)
    return (np.concatenate(gather_object(preds)), np.concatenate(gather_object(targets)),
            np.concatenate(gather_object(nodes)))


def evaluate(model: torch.nn.Module, samples: Samples, batch_size: int, accelerator: Any,
             objectives: list[str], dtype: torch.dtype) -> dict[str, Any]:
    """Validation figures on `samples.val`, per objective where it says so:

    val_loss              MSE over all read values (with shared heads: over all objectives)
    val_baseline_loss     the same for predicting the training targets' mean everywhere
    spearman              correlation of predictions and targets over all validation nodes;
                          it mostly measures differences between prompts
    sibling_accuracy      share of pairs of siblings (children of one node) whose targets differ
                          that the predictions order the same way: what the tilt relies on
    within_prompt_spearman  mean over prompts of the correlation inside one prompt's tree
    """
    preds, targets, nodes = predict_units(model, samples.val, batch_size, accelerator, dtype,
                                          len(objectives))
    loss = float(masked_mse(torch.from_numpy(preds), torch.from_numpy(targets)))
    baseline = None
    if len(targets):
        constant = np.broadcast_to(samples.train_means(), targets.shape).astype(np.float32)
        baseline = float(masked_mse(torch.from_numpy(constant), torch.from_numpy(targets)))
    record: dict[str, Any] = {"val_loss": loss, "val_baseline_loss": baseline,
                              "val_count": int(np.isfinite(targets).sum())}
    for key in ("val_loss_per_objective", "spearman", "sibling_accuracy",
                "within_prompt_spearman"):
        record[key] = {}
    by_node = len(samples.parent) > 0  # node reads (not distillation's token reads)
    parent = samples.parent[nodes] if by_node else None
    prompt = samples.node_prompt[nodes] if by_node else None
    for column, name in enumerate(objectives):
        p, t = preds[:, column], targets[:, column]
        valid = np.isfinite(t)
        record["val_loss_per_objective"][name] = (float(np.mean((p[valid] - t[valid]) ** 2))
                                                  if valid.any() else None)
        record["spearman"][name] = spearman(p[valid], t[valid])
        record["sibling_accuracy"][name] = sibling_accuracy(p, t, parent) if by_node else None
        record["within_prompt_spearman"][name] = (within_group_spearman(p, t, prompt)
                                                  if by_node else None)
    return record
