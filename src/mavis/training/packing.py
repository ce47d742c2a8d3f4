"""Training sequences from trees: one per node (the naive way) or one per tree (packed).

Every node of a tree is a prefix of its leaves' paths. Packed, a tree becomes one sequence:
the prompt, then every needed node's own segment in depth-first order, with a tree attention
mask in which each token sees the prompt, its ancestors' segments and the earlier tokens of its
own segment, and position ids that count along its path (prompt length + tokens above it). The
hidden state at the last token of a node's segment is then exactly the one a forward over
prompt + path would give, so one forward reads every node's value at a fraction of the tokens.

A `Unit` is one such sequence with the positions to read and their targets; `collate` pads
units into a `Batch`: a plain 2D padding mask when every unit is a plain causal sequence, the
4D additive mask (0 where allowed, the dtype's minimum elsewhere) otherwise, which both sdpa and
eager attention take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mavis.trees.table import TreeTable


@dataclass
class Unit:
    """One training sequence.

    tokens, positions: [L]; segment: [L] index of the segment each token belongs to (0 is the
    prompt); ancestry: [S, S] with ancestry[a, b] True when segment b is a or one of its
    ancestors (None: a plain causal sequence); reads: [K] token indices whose value is read;
    targets: [K, M] (NaN: no target); nodes: [K] the tree node of each read (-1: none).
    """

    tokens: np.ndarray
    positions: np.ndarray
    segment: np.ndarray
    ancestry: np.ndarray | None
    reads: np.ndarray
    targets: np.ndarray
    nodes: np.ndarray

    @property
    def num_reads(self) -> int:
        return len(self.reads)

    def __len__(self) -> int:
        return len(self.tokens)

    def allowed(self) -> np.ndarray:
        """[L, L] boolean attention pattern: query i may attend to key j."""
        length = len(self.tokens)
        causal = np.tril(np.ones((length, length), dtype=bool))
        if self.ancestry is None:
            return causal
        return causal & self.ancestry[self.segment[:, None], self.segment[None, :]]


# -- which nodes a tree needs, and how long their sequences are -------------------------------
def _children(data: TreeTable, prompt: int) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for node in data.tree(prompt):
        parent = int(data.parent[node])
        if parent >= 0:
            children.setdefault(parent, []).append(node)
    return children


def _root(data: TreeTable, prompt: int) -> int:
    return int(data.first_node[prompt])


def _path_lengths(data: TreeTable, prompt: int) -> dict[int, int]:
    """Response length (tokens of the node's path, its own segment included) per node."""
    children = _children(data, prompt)
    root = _root(data, prompt)
    lengths = {root: int(data.token_count[root])}
    stack = [root]
    while stack:
        node = stack.pop()
        for child in children.get(node, []):
            lengths[child] = lengths[node] + int(data.token_count[child])
            stack.append(child)
    return lengths


def fit_length(data: TreeTable, prompt: int, reads: list[int],
               max_length: int | None) -> tuple[np.ndarray, list[int]]:
    """The tree's prompt tokens and the reads that fit in `max_length` tokens.

    Reads whose response alone needs more than `max_length - 1` tokens are dropped; the prompt
    then loses its first tokens until prompt + the longest kept path fits. Packed and per-node
    sequences use the same result, so they see the same tokens.
    """
    prompt_tokens = data.prompt_tokens(prompt)
    if max_length is None:
        return prompt_tokens, reads
    lengths = _path_lengths(data, prompt)
    kept = [node for node in reads if lengths[node] <= max_length - 1]
    longest = max((lengths[node] for node in kept), default=0)
    budget = max(max_length - longest, 1)
    return prompt_tokens[-budget:], kept


# -- the two kinds of unit ------------------------------------------------------------------------
def node_unit(data: TreeTable, node: int, prompt_tokens: np.ndarray,
              targets: np.ndarray) -> Unit:
    """Prompt + `node`'s path as one causal sequence, read at its last token."""
    tokens = np.concatenate([prompt_tokens, data.response_tokens(node)]).astype(np.int64)
    length = len(tokens)
    return Unit(tokens=tokens, positions=np.arange(length), segment=np.zeros(length, np.int64),
                ancestry=None, reads=np.array([length - 1]),
                targets=targets[[node]].astype(np.float32), nodes=np.array([node]))


class _PackBuilder:
    """Accumulates one packed sequence: prompt first, then node segments, ancestors first."""

    def __init__(self, data: TreeTable, root: int, prompt_tokens: np.ndarray) -> None:
        self.data = data
        self.parts = [prompt_tokens.astype(np.int64)]
        self.positions = [np.arange(len(prompt_tokens))]
        self.segment_of: dict[int, int] = {root: 0}   # node -> segment index
        self.parent_segment = [-1]
        self.path_end = {root: len(prompt_tokens)}     # node -> position after its path
        self.last_index = {root: len(prompt_tokens) - 1}  # node -> token index of its value
        self.size = len(prompt_tokens)
        self.reads: list[int] = []
        self.read_nodes: list[int] = []

    def cost(self, chain: list[int]) -> int:
        return sum(int(self.data.token_count[n]) for n in chain if n not in self.segment_of)

    def add(self, chain: list[int]) -> None:
        """Add the nodes of `chain` (root first) that are not in the pack yet."""
        for node in chain:
            if node in self.segment_of:
                continue
            parent = int(self.data.parent[node])
            tokens = self.data.segment(node).astype(np.int64)
            start = self.path_end[parent]
            self.segment_of[node] = len(self.parent_segment)
            self.parent_segment.append(self.segment_of[parent])
            self.parts.append(tokens)
            self.positions.append(np.arange(start, start + len(tokens)))
            self.path_end[node] = start + len(tokens)
            end = self.size + len(tokens) - 1
            self.last_index[node] = end if len(tokens) else self.last_index[parent]
            self.size += len(tokens)

    def read(self, node: int, every_token: bool = False) -> None:
        if not every_token:
            self.reads.append(self.last_index[node])
            self.read_nodes.append(node)
            return
        count = int(self.data.token_count[node])
        last = self.last_index[node]
        self.reads.extend(range(last - count + 1, last + 1))
        self.read_nodes.extend([node] * count)

    def unit(self, targets: np.ndarray | None, num_objectives: int) -> Unit:
        count = len(self.parent_segment)
        ancestry = np.zeros((count, count), dtype=bool)
        for index, parent in enumerate(self.parent_segment):
            if parent >= 0:
                ancestry[index] = ancestry[parent]
            ancestry[index, index] = True
        segment = np.concatenate([np.full(len(part), index, dtype=np.int64)
                                  for index, part in enumerate(self.parts)])
        nodes = np.array(self.read_nodes, dtype=np.int64)
        unit_targets = (targets[nodes].astype(np.float32) if targets is not None
                        else np.full((len(nodes), num_objectives), np.nan, np.float32))
        return Unit(tokens=np.concatenate(self.parts), positions=np.concatenate(self.positions),
                    segment=segment, ancestry=ancestry, reads=np.array(self.reads, np.int64),
                    targets=unit_targets, nodes=nodes)


def pack_tree(data: TreeTable, prompt: int, reads: list[int], prompt_tokens: np.ndarray,
              targets: np.ndarray | None, *, max_tokens: int, max_reads: int | None = None,
              every_token: bool = False, num_objectives: int | None = None) -> list[Unit]:
    """Pack the part of `prompt`'s tree that `reads` need into as few units as fit.

    Each node of `reads` is read once, at its segment's last token (every token of its segment
    with `every_token`, for distillation; then `targets` may be None and is left NaN). A unit
    holds at most `max_tokens` tokens unless one root-to-node chain alone is longer, and at
    most `max_reads` reads unless one node alone has more; a tree that does not fit is split
    between depth-first neighbours, each unit repeating the prompt and the ancestors it needs.
    """
    wanted = set(reads)
    if not wanted:
        return []
    root = _root(data, prompt)
    children = _children(data, prompt)
    needed = set()
    for node in wanted:
        needed.update(data.ancestors(node))
    order, stack = [], [root]
    while stack:  # depth-first (pre-order) over the needed nodes
        node = stack.pop()
        order.append(node)
        stack.extend(reversed([c for c in children.get(node, []) if c in needed]))
    width = num_objectives if num_objectives is not None else targets.shape[1]
    units: list[Unit] = []
    pack = _PackBuilder(data, root, prompt_tokens)
    for node in order:
        chain = data.ancestors(node)
        reading = node in wanted and (node != root or not every_token)
        new_reads = (int(data.token_count[node]) if every_token else 1) if reading else 0
        too_long = pack.size + pack.cost(chain) > max_tokens
        too_many = max_reads is not None and len(pack.reads) + new_reads > max_reads
        if pack.reads and (too_long or too_many):
            units.append(pack.unit(targets, width))
            pack = _PackBuilder(data, root, prompt_tokens)
        pack.add(chain)
        if reading:
            pack.read(node, every_token)
    if pack.reads:
        units.append(pack.unit(targets, width))
    return units


def sub_unit(unit: Unit, reads: np.ndarray | list[int]) -> Unit:
    """The part of `unit` that its reads number `reads` (indices into `unit.reads`) need, read
    there: the same values from fewer tokens. Packed: the segments of those reads and of their
    ancestors, with their positions and tree mask (every kept token sees exactly what it saw);
    a plain causal sequence: its tokens up to the last of those reads. Data-parallel training
    cuts a global batch's units into one such part per process (`parallel.shard_batch`)."""
    reads = np.asarray(reads, dtype=np.int64)
    if len(reads) == unit.num_reads and np.array_equal(reads, np.arange(unit.num_reads)):
        return unit
    at = unit.reads[reads]
    if unit.ancestry is None:
        end = int(at.max()) + 1
        return Unit(tokens=unit.tokens[:end], positions=unit.positions[:end],
                    segment=unit.segment[:end], ancestry=None, reads=at,
                    targets=unit.targets[reads], nodes=unit.nodes[reads])
    needed = unit.ancestry[unit.segment[at]].any(axis=0)  # [S]: the reads' segments, ancestors
    keep = needed[unit.segment]
    kept_segments = np.flatnonzero(needed)
    renumber = np.full(len(needed), -1, dtype=np.int64)
    renumber[kept_segments] = np.arange(len(kept_segments))
    new_index = np.cumsum(keep) - 1
    return Unit(tokens=unit.tokens[keep], positions=unit.positions[keep],
                segment=renumber[unit.segment[keep]],
                ancestry=unit.ancestry[np.ix_(kept_segments, kept_segments)],
                reads=new_index[at], targets=unit.targets[reads], nodes=unit.nodes[reads])


def build_units(data: TreeTable, nodes: np.ndarray, targets: np.ndarray, *, packed: bool,
                max_pack_tokens: int, max_length: int | None,
                max_pack_reads: int | None = None) -> tuple[list[Unit], int]:
    """Training units for the selected `nodes` (global indices) and the count of nodes dropped
    for `max_length`. Packed: a few units per tree (see `pack_tree`); else one per node."""
    by_prompt: dict[int, list[int]] = {}
    for node in np.asarray(nodes).tolist():
        by_prompt.setdefault(int(data.prompt[node]), []).append(node)
    units: list[Unit] = []
    dropped = 0
    for prompt, reads in sorted(by_prompt.items()):
        prompt_tokens, kept = fit_length(data, prompt, reads, max_length)
        dropped += len(reads) - len(kept)
        if packed:
            units.extend(pack_tree(data, prompt, kept, prompt_tokens, targets,
                                   max_tokens=max_pack_tokens, max_reads=max_pack_reads))
        else:
            units.extend(node_unit(data, node, prompt_tokens, targets) for node in kept)
    return units, dropped


# -- batches -------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Padded model inputs plus where to read values: `values[read_rows, read_cols]`."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    read_rows: torch.Tensor
    read_cols: torch.Tensor
    targets: torch.Tensor
    nodes: torch.Tensor
    num_tokens: int

    def to(self, device: torch.device | str) -> Batch:
        moved = {name: getattr(self, name).to(device) for name in
                 ("input_ids", "attention_mask", "position_ids", "read_rows", "read_cols",
                  "targets", "nodes")}
        return Batch(**moved, num_tokens=self.num_tokens)


def collate(units: list[Unit], dtype: torch.dtype = torch.float32, pad_id: int = 0) -> Batch:
    """Right-pad `units` into one batch.

    Plain causal units get a [B, L] padding mask; as soon as one unit is packed, all get a
    [B, 1, L, L] additive mask (padding queries see only themselves, so no row is empty).
    """
    width = max(len(unit) for unit in units)
    batch = len(units)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((batch, width), dtype=torch.long)
    tree = any(unit.ancestry is not None for unit in units)
    if tree:
        allowed = torch.eye(width, dtype=torch.bool).repeat(batch, 1, 1, 1)
    else:
        allowed = torch.zeros((batch, width), dtype=torch.long)
    rows, cols = [], []
    for index, unit in enumerate(units):
        length = len(unit)
        input_ids[index, :length] = torch.from_numpy(unit.tokens)
        position_ids[index, :length] = torch.from_numpy(unit.positions)
        if tree:
            allowed[index, 0, :length, :length] = torch.from_numpy(unit.allowed())
        else:
            allowed[index, :length] = 1
        rows.append(torch.full((unit.num_reads,), index, dtype=torch.long))
        cols.append(torch.from_numpy(unit.reads))
    if tree:
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    else:
        mask = allowed
    return Batch(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                 read_rows=torch.cat(rows), read_cols=torch.cat(cols),
                 targets=torch.from_numpy(np.concatenate([u.targets for u in units])),
                 nodes=torch.from_numpy(np.concatenate([u.nodes for u in units])),
                 num_tokens=sum(len(unit) for unit in units))


def plan_batches(units: list[Unit], batch_size: int,
                 rng: np.random.Generator | None = None) -> list[list[int]]:
    """Group unit indices into batches of at most `batch_size` reads (a unit with more is a
    batch alone); shuffled with `rng`, else in order of length (least padding, for evaluation).
    """
    if rng is not None:
        order = rng.permutation(len(units)).tolist()
    else:
        order = sorted(range(len(units)), key=lambda i: len(units[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    reads = 0
    for index in order:
        count = units[index].num_reads
        if current and reads + count > batch_size:
            batches.append(current)
            current, reads = [], 0
        current.append(index)
        reads += count
    if current:
        batches.append(current)
    return batches


def predict(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The model's values at the batch's read positions: [K, M]."""
    values, _ = model(batch.input_ids, attention_mask=batch.attention_mask,
                      position_ids=batch.position_ids)
    return values[batch.read_rows, batch.read_cols]
