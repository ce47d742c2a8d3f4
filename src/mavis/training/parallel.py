"""Data-parallel training: what each process does with a global batch, and how the processes
agree, so that a run's result does not depend on how many processes train it.

    torchrun --nproc_per_node 4 -m mavis train --data trees.h5 --out runs/vm --batch-size 32

Every process plans the same global batches (`trainer.epoch_plans`: `batch_size` reads each,
fixed by the seed, whatever the process count), so steps are global steps, for the schedule,
`max_steps`, `eval_every` and the checkpoints alike. Each process trains on its shard of every
batch (`shard_batch`): a contiguous part of the batch's reads, siblings kept together, cut out
of the batch's packed units (`packing.sub_unit`: the same values from fewer tokens). Its loss
is its share of the batch's loss, its squared errors summed over the count of the *whole*
batch (`Shard.count`), so the gradients DDP averages, times the process count, are the
one-process gradients of the same batch. A process with nothing in a batch still runs a
forward and a backward on one read, weighted 0: DDP needs every process in every step.

Validation and the teachers of a distillation are sharded by batches and gathered back into
one-process order (`gather_in_order`); the first process alone writes files, and the others
wait for it where they read them. Nothing here communicates with one process.

The processes start from the same seeded model; dropout draws its masks from a stream per
process (`seed_process`), so with LoRA dropout two process counts train equally valid but not
equal models; without it they train the same one up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object

from mavis.errors import MavisError
from mavis.training.checkpoint import rng_state, set_rng_state
from mavis.training.loss import sibling_pair_count, target_count
from mavis.training.packing import Unit, sub_unit
from mavis.training.stopping import SIGNAL_NAMES, StopRequest

_RANK_STREAM = 5


@dataclass
class Shard:
    """One process's part of a global batch: its units, and what the batch's loss averages
    over (`count` target entries, `pairs` sibling-pair entries) in all processes together.
    `empty`: the process has no reads in this batch; `units` is then one read to run, with
    weight 0."""

    units: list[Unit]
    count: int
    pairs: int
    empty: bool = False


def shard_batch(units: list[Unit], parent: np.ndarray, world: int, rank: int, *,
                pairs: bool = False) -> Shard:
    """Process `rank`'s shard of the global batch `units` among `world` processes.

    The batch's reads, in order, are grouped so that siblings (reads with one parent in
    `parent`, the tree's parent of each node; empty: group a node's reads) stay in one process
    (the sibling loss compares them), and the groups are cut into `world` contiguous runs of
    about as many reads each. `pairs`: count the sibling pairs too."""
    targets = np.concatenate([unit.targets for unit in units])
    nodes = np.concatenate([unit.nodes for unit in units])
    count = target_count(torch.from_numpy(targets))
    pair_count = (sibling_pair_count(torch.from_numpy(targets),
                                     torch.from_numpy(parent[nodes])) if pairs else 0)
    if world == 1:
        return Shard(units, count, pair_count)
    owner = _owners(nodes, parent, world)
    offsets = np.cumsum([0] + [unit.num_reads for unit in units])
    reads = [np.flatnonzero(owner[offsets[i]:offsets[i + 1]] == rank) for i in range(len(units))]
    mine = [sub_unit(unit, own) for unit, own in zip(units, reads, strict=True) if len(own)]
    if not mine:
        return Shard([sub_unit(units[0], [0])], count, pair_count, empty=True)
    return Shard(mine, count, pair_count)


def _owners(nodes: np.ndarray, parent: np.ndarray, world: int) -> np.ndarray:
    """The process of each read: groups (siblings, or a node's reads) in order of first
    appearance, each given to the process its middle read falls in."""
    if len(parent):
        keys = [("parent", int(parent[n])) if n >= 0 and parent[n] >= 0 else ("node", int(n))
                for n in nodes]
    else:
        keys = [("node", int(n)) for n in nodes]
    groups: dict[tuple[str, int], list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    owner = np.zeros(len(nodes), dtype=np.int64)
    start, total = 0, len(nodes)
    for members in groups.values():
        middle = start + len(members) / 2
        owner[members] = min(world - 1, int(world * middle / total))
        start += len(members)
    return owner


# -- agreeing -----------------------------------------------------------------------------------
def sum_over_processes(accelerator: Any, value: torch.Tensor) -> float:
    """The sum of `value` (a scalar) over all processes."""
    if accelerator.num_processes == 1:
        return float(value.detach())
    total = accelerator.reduce(value.detach().float().reshape(1).to(accelerator.device), "sum")
    return float(total)


def agree_on_stop(accelerator: Any, request: StopRequest) -> str | None:
    """The signal that stops the run at this step in every process (None: none): a request
    any process has seen so far counts for all, SIGTERM before SIGINT."""
    if accelerator.num_processes == 1:
        return request.signal_name
    seen = torch.tensor([float(request.signal_name == name) for name in SIGNAL_NAMES],
                        device=accelerator.device)
    seen = accelerator.reduce(seen, "sum").cpu()
    names = [name for name, count in zip(SIGNAL_NAMES, seen.tolist(), strict=True) if count]
    return names[-1] if names else None


def gather_in_order(pieces: list[tuple[int, Any]]) -> list[Any]:
    """Every process's `(index, piece)` pairs, gathered into all processes and put in the
    order of their indices (each index held by one process)."""
    if PartialState().num_processes > 1:
        pieces = gather_object(pieces)
    return [piece for _, piece in sorted(pieces, key=lambda pair: pair[0])]


def from_main_process(value: Any) -> Any:
    """The first process's `value`, in every process (what it read from disk, say)."""
    if PartialState().num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


def same_in_every_process(value: Any, what: str) -> None:
    """Refuse to go on when the processes see different `value`s of `what` (a run folder on
    a disk that the nodes do not share)."""
    if PartialState().num_processes == 1:
        return
    seen = gather_object([value])
    if any(other != seen[0] for other in seen):
        raise MavisError(f"the training processes see {what} differently ({seen}); with "
                         "several nodes, put --out and the data on a disk they all share")


def wait_for_main() -> None:
    """A barrier: every process waits here until all have come (the first has written)."""
    PartialState().wait_for_everyone()


def is_main_process() -> bool:
    return PartialState().is_main_process


# -- random streams -----------------------------------------------------------------------------
def seed_process(seed: int, rank: int) -> None:
    """Give each process but the first its own torch stream (dropout masks), fixed by the
    seed; the first keeps the one-process stream."""
    if rank:
        torch.manual_seed(int(np.random.SeedSequence([seed, _RANK_STREAM, rank])
                              .generate_state(1)[0]))


def process_rng_states() -> list[dict[str, Any]]:
    """Every process's RNG state, in rank order (in every process)."""
    states = [rng_state()]
    return gather_object(states) if PartialState().num_processes > 1 else states


def restore_rng(saved: dict[str, Any], seed: int, rank: int, world: int) -> None:
    """Put back this process's RNG state of the checkpoint `saved`: its own when the run had
    as many processes, else the first's for the first and a fresh stream for the others, fixed
    by the seed and the step (only dropout masks draw from it)."""
    states = saved.get("rng_ranks") or [saved["rng"]]
    if len(states) == world:
        set_rng_state(states[rank])
    elif rank == 0:
        set_rng_state(saved["rng"])
    else:
        torch.manual_seed(int(np.random.SeedSequence([seed, _RANK_STREAM, rank, saved["step"]])
                              .generate_state(1)[0]))
