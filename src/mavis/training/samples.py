"""Turn a tree file into training and validation units for some objectives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mavis.errors import MavisError
from mavis.training.config import TrainConfig
from mavis.training.loss import balance_weights
from mavis.training.packing import Unit, build_units
from mavis.training.targets import (
    node_targets,
    select_nodes,
    split_prompts,
    value_range,
    value_scale,
)
from mavis.trees.table import TreeTable


@dataclass
class Samples:
    """Units to train and validate on, the targets' range, and counts for the report."""

    train: list[Unit]
    val: list[Unit]
    value_range: dict[str, list[float]]
    sizes: dict[str, Any] = field(default_factory=dict)
    value_scale: dict[str, float] = field(default_factory=dict)
    parent: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    node_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def objective_weights(self, balanced: bool = True) -> np.ndarray:
        """[M] the loss weight of each objective (`loss.balance_weights` of the training
        targets' variances; all 1 unbalanced)."""
        targets = np.concatenate([unit.targets for unit in self.train])
        if not balanced:
            return np.ones(targets.shape[1])
        return np.asarray(balance_weights(np.nanvar(targets, axis=0).tolist()))

    def train_means(self) -> np.ndarray:
        """Mean training target per objective ([M]; 0 where an objective has none): the best
        constant prediction, used to start the head's bias and as the baseline of the loss."""
        targets = np.concatenate([unit.targets for unit in self.train])
        counts = np.isfinite(targets).sum(0)
        return np.where(counts > 0, np.nansum(targets, 0) / np.maximum(counts, 1), 0.0)


def nested_subset(prompts: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` of `prompts` (sorted), chosen by one seeded order, so that a smaller subset is
    part of a larger one (a learning curve's training sets are nested)."""
    if count > len(prompts):
        raise MavisError(f"train_prompts is {count}, but the tree file has {len(prompts)} "
                         "training prompts; give at most that many")
    order = np.random.default_rng([seed, 7]).permutation(len(prompts))
    return np.sort(prompts[order[:count]])


def prepare_samples(data: TreeTable, objectives: list[str], config: TrainConfig) -> Samples:
    """Split prompts, select nodes (appendix F.5), compute equation-6 targets, build units."""
    columns = data.columns(objectives)
    targets = node_targets(data.value[:, columns], data.lpr, config.zeta)
    train_prompts, val_prompts = split_prompts(data.num_prompts, config.validation_fraction,
                                               config.seed)
    if config.train_prompts is not None:
        train_prompts = nested_subset(train_prompts, config.train_prompts, config.seed)
    common = dict(leaf_fraction=config.leaf_fraction, seed=config.seed,
                  include_root=config.include_root)
    train_nodes = select_nodes(data.prompt, data.depth, data.is_leaf, train_prompts, **common)
    val_nodes = select_nodes(data.prompt, data.depth, data.is_leaf, val_prompts,
                             include_leaves=not config.validation_without_leaves, **common)
    # Nodes with no target for any trained objective teach nothing.
    scored = np.isfinite(targets).any(axis=1)
    train_nodes, val_nodes = train_nodes[scored[train_nodes]], val_nodes[scored[val_nodes]]
    if len(train_nodes) == 0:
        raise MavisError(f"no training nodes with a value for {', '.join(objectives)} in "
                         f"{data.source or 'the tree data'}")
    build = dict(packed=config.packed, max_pack_tokens=config.max_pack_tokens,
                 max_pack_reads=config.batch_size, max_length=config.max_length)
    train_units, train_dropped = build_units(data, train_nodes, targets, **build)
    val_units, val_dropped = build_units(data, val_nodes, targets, **build)
    all_train_nodes = np.flatnonzero(np.isin(data.prompt, train_prompts))
    sizes = {
        "prompts_train": len(train_prompts), "prompts_val": len(val_prompts),
        "nodes_in_file": data.num_nodes,
        "nodes_train": int(sum(u.num_reads for u in train_units)),
        "nodes_val": int(sum(u.num_reads for u in val_units)),
        "nodes_dropped_too_long": train_dropped + val_dropped,
        "units_train": len(train_units), "units_val": len(val_units),
        "tokens_per_epoch_train": int(sum(len(u) for u in train_units)),
        "tokens_val": int(sum(len(u) for u in val_units)),
    }
    return Samples(train=train_units, val=val_units,
                   value_range=value_range(targets, all_train_nodes, objectives), sizes=sizes,
                   value_scale=value_scale(targets, data.parent, all_train_nodes, objectives),
                   parent=np.asarray(data.parent, dtype=np.int64),
                   node_prompt=np.asarray(data.prompt, dtype=np.int64))
