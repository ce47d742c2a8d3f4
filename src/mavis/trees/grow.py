"""Growing GET_DATA trees on one `DecodingState`: every node is generated once, and a node
branches into its children the moment its segment is complete.

Why this works without waiting, masking or re-prefilling: a row of the state is one node
being generated, and every row has been stepped as often as every other, so all rows are
aligned. When a row's segment is complete (its length reached, or EOS), the row is either a
leaf and leaves the batch, or it is duplicated into its K children with `select` (the KV
caches follow, the prefix is never recomputed) and the children carry on from the next step.
Siblings share one segment length (Algorithm 3 draws tau once per expanded node), so they
branch together. The rows of a layer need not finish together: each node keeps its own
schedule, and the batch at any step is exactly the set of nodes still growing. The cost is
one forward per generated token of the tree (no wasted or repeated tokens) plus a cache copy
on the steps where some node finished.

`grow` is the engine; `collect.py` decides what to grow (whole trees from their prompts, or the
extra children that the two-layer guarantee adds under a split first-layer node).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mavis.decoding.batch import Batch
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.trees.tree_shape import Shape, children_count, is_terminal, sample_segment_length


@dataclass
class Node:
    """One tree node while a group is collected (indices are local to the group)."""

    parent: int
    depth: int
    prompt: int
    used: int  # tokens of the response up to and including this node's segment
    tokens: list[int] = field(default_factory=list)
    logp_gen: list[float] = field(default_factory=list)
    logp_ref: list[float] = field(default_factory=list)
    ended_eos: bool = False
    is_leaf: bool = False


@dataclass(frozen=True)
class Start:
    """Grow `count` children under `node`, whose full context (prompt + path) is `context`."""

    node: int
    context: list[int]
    count: int


@dataclass
class GrowStats:
    steps: int = 0
    tokens: int = 0
    max_rows: int = 0
    selects: int = 0


@torch.inference_mode()
def grow(decoder: MavisDecoder, settings: SamplingSettings, starts: Sequence[Start],
         nodes: list[Node], shape: Shape, eos_ids: set[int],
         rng: np.random.Generator, generator: torch.Generator | None,
         on_step: Callable[[int], None] | None = None) -> GrowStats:
    """Grow the subtrees below every `Start` down to depth L or length T, appending to `nodes`.

    `rng` draws segment lengths, `generator` samples tokens; both are consumed in a fixed
    order (rows in batch order), so the result depends only on their seeds and the inputs.
    `on_step(rows)` is called after every step with the number of tokens just generated.
    """
    stats = GrowStats()
    if not starts:
        return stats
    pad = decoder.tokenizer.pad_token_id
    pad = pad if pad is not None else next(iter(eos_ids))
    batch = Batch.from_token_lists([s.context for s in starts], pad, decoder.device)
    state = decoder.start(batch, settings)

    # rows: (node being grown, step its segment began, step it is due to end)
    rows: list[tuple[int, int, int]] = []
    order: list[int] = []
    for index, start in enumerate(starts):
        for child, begin, end in _branch(nodes, start.node, start.count, 0, shape, rng):
            rows.append((child, begin, end))
            order.append(index)
    state.select(torch.tensor(order))

    step = 0
    while rows:
        chosen = state.choose(generator).tolist()
        step += 1
        stats.steps += 1
        stats.tokens += len(rows)
        stats.max_rows = max(stats.max_rows, len(rows))
        if on_step is not None:
            on_step(len(rows))
        keep: list[int] = []
        kept_rows: list[tuple[int, int, int]] = []
        finished = [r for r, (_, _, end) in enumerate(rows)
                    if step == end or chosen[r] in eos_ids]
        segments = _segments(state, [(r, rows[r][1], step) for r in finished])
        done = dict(zip(finished, segments, strict=True))
        for r, (node_id, begin, end) in enumerate(rows):
            if r not in done:
                keep.append(r)
                kept_rows.append((node_id, begin, end))
                continue
            node = nodes[node_id]
            node.tokens, node.logp_gen, node.logp_ref = done[r]
            node.ended_eos = chosen[r] in eos_ids
            node.used = nodes[node.parent].used + len(node.tokens)
            node.is_leaf = is_terminal(node.depth, node.used, shape.T, shape.L, node.ended_eos)
            if node.is_leaf:
                continue
            count = children_count(node.depth, shape.K_root, shape.K)
            for child in _branch(nodes, node_id, count, step, shape, rng):
                keep.append(r)
                kept_rows.append(child)
        rows = kept_rows
        if not rows:
            break
        if keep != list(range(state.batch_size)):
            state.select(torch.tensor(keep))
            stats.selects += 1
        state.advance()
    return stats


def _branch(nodes: list[Node], parent: int, count: int, step: int, shape: Shape,
            rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Create `count` children of `parent` sharing one drawn segment length; their rows."""
    node = nodes[parent]
    length = sample_segment_length(node.depth, shape.T - node.used, shape.L, rng)
    rows = []
    for _ in range(count):
        nodes.append(Node(parent=parent, depth=node.depth + 1, prompt=node.prompt,
                          used=node.used))
        rows.append((len(nodes) - 1, step, step + length))
    return rows


def _segments(state, spans: list[tuple[int, int, int]]
              ) -> list[tuple[list[int], list[float], list[float]]]:
    """Tokens and both log-probs of rows' columns [begin, end) (one device transfer)."""
    if not spans:
        return []
    tokens = state.tokens.cpu()
    gen = state.logprobs.cpu()
    ref = state.ref_logprobs.cpu()
    return [(tokens[r, a:b].tolist(), gen[r, a:b].tolist(), ref[r, a:b].tolist())
            for r, a, b in spans]
