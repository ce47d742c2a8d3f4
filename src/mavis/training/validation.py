"""Validation of a value model during training: the loss of equation 6 on held-out prompts'
nodes, and the figures that say whether the model can steer (see `mavis.training.metrics`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mavis.training.loss import masked_mse
from mavis.training.metrics import sibling_accuracy, spearman, within_group_spearman
from mavis.training.packing import Unit, collate, plan_batches, predict
from mavis.training.parallel import gather_in_order
from mavis.training.samples import Samples


def predict_units(model: torch.nn.Module, units: list[Unit], batch_size: int, accelerator: Any,
                  dtype: torch.dtype, width: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions [K, M], targets [K, M], tree nodes [K]) over every read of `units`, in the
    same order whatever the number of processes: each predicts every world-th batch, and the
    batches are gathered back in order."""
    if not units:
        empty = np.zeros((0, width), dtype=np.float32)
        return empty, empty, np.zeros(0, dtype=np.int64)
    model = accelerator.unwrap_model(model)  # no DDP: the processes run different batches
    model.eval()
    pieces = []
    with torch.no_grad():
        batches = plan_batches(units, batch_size)
        for index in range(accelerator.process_index, len(batches), accelerator.num_processes):
            batch = collate([units[i] for i in batches[index]], dtype).to(accelerator.device)
            pieces.append((index, (predict(model, batch).float().cpu().numpy(),
                                   batch.targets.cpu().numpy(), batch.nodes.cpu().numpy())))
    model.train()
    preds, targets, nodes = zip(*gather_in_order(pieces), strict=True)
    return np.concatenate(preds), np.concatenate(targets), np.concatenate(nodes)


def evaluate(model: torch.nn.Module, samples: Samples, batch_size: int, accelerator: Any,
             objectives: list[str], dtype: torch.dtype,
             weights: torch.Tensor | None = None) -> dict[str, Any]:
    """Validation figures on `samples.val`, per objective where it says so:

    val_loss              MSE over all read values (with shared heads: over all objectives,
                          each weighted as in training, `weights`)
    val_baseline_loss     the same for predicting the training targets' mean everywhere
    spearman              correlation of predictions and targets over all validation nodes;
                          it mostly measures differences between prompts
    sibling_accuracy      share of pairs of siblings (children of one node) whose targets differ
                          that the predictions order the same way: what the tilt relies on
    within_prompt_spearman  mean over prompts of the correlation inside one prompt's tree
    """
    preds, targets, nodes = predict_units(model, samples.val, batch_size, accelerator, dtype,
                                          len(objectives))
    loss = float(masked_mse(torch.from_numpy(preds), torch.from_numpy(targets),
                            weights=weights))
    baseline = None
    if len(targets):
        constant = np.broadcast_to(samples.train_means(), targets.shape).astype(np.float32)
        baseline = float(masked_mse(torch.from_numpy(constant), torch.from_numpy(targets),
                                    weights=weights))
    record: dict[str, Any] = {"val_loss": loss, "val_baseline_loss": baseline,
                              "loss_weights": None if weights is None else dict(
                                  zip(objectives, weights.tolist(), strict=True)),
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
