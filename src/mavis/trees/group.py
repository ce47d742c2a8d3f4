"""Collecting the trees of one group of prompts: generation, the two-layer guarantee, scoring,
values and LPR, assembled into the arrays of the tree file.

A group is the unit of work, of resuming and of sharding: its random streams are derived
from (seed, group index) alone, so a group gives the same trees whichever process collects
it, and whatever ran before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mavis.errors import MavisError
from mavis.objectives import score_all
from mavis.trees.grow import Node, Start, grow
from mavis.trees.settings import CollectionSettings
from mavis.trees.table import TreeTable
from mavis.trees.tree_shape import path_sums, propagate_means


@dataclass(frozen=True)
class PromptRecord:
    """What collection needs of a prompt; plain data, so it travels to other processes."""

    id: str
    text: str
    base_text: str = ""  # how a base model without a chat template sees it ("": `text`)

    @property
    def plain_text(self) -> str:
        return self.base_text or self.text


def prompt_records(prompts: Sequence[Any]) -> list[PromptRecord]:
    """`mavis.prompts.Prompt` objects, records or plain strings -> records (ids kept or made)."""
    records = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, PromptRecord):
            records.append(prompt)
        elif isinstance(prompt, str):
            digest = hashlib.sha256(prompt.encode()).hexdigest()[:16]
            records.append(PromptRecord(id=f"text-{digest}", text=prompt))
        elif hasattr(prompt, "id") and hasattr(prompt, "text"):
            records.append(PromptRecord(id=str(prompt.id), text=str(prompt.text),
                                        base_text=str(getattr(prompt, "base_text", "") or "")))
        else:
            raise MavisError(f"prompt {i} is a {type(prompt).__name__}; give strings or "
                             "mavis.prompts.Prompt objects")
    for i, record in enumerate(records):
        if not record.text.strip():
            raise MavisError(f"prompt {i} ({record.id}) is empty")
    return records


def group_streams(seed: int, group: int, device: torch.device
                  ) -> tuple[np.random.Generator, torch.Generator]:
    """The group's two random streams: segment lengths/split points, and token sampling."""
    sequence = np.random.SeedSequence([seed, group])
    shape_seed, token_seed = sequence.spawn(2)
    rng = np.random.default_rng(shape_seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(token_seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return rng, generator


@dataclass
class GroupResult:
    trees: TreeTable
    generated_tokens: int


def collect_group(decoder: Any, records: Sequence[PromptRecord], group: int,
                  objectives: Sequence[str], settings: CollectionSettings,
                  meta: Mapping[str, Any],
                  on_step: Callable[[int], None] | None = None) -> GroupResult:
    """Grow, score and assemble the trees of `records` (the prompts of group `group`)."""
    sampling = decoder.resolve(settings.sampling)
    shape = settings.shape
    eos = decoder.eos
    batch = decoder.encode(records, max_new_tokens=settings.T)
    prompt_ids = [ids[mask.bool()].tolist() for ids, mask in
                  zip(batch.input_ids.cpu(), batch.attention_mask.cpu(), strict=True)]
    rng, generator = group_streams(settings.seed, group, decoder.device)

    nodes: list[Node] = [Node(parent=-1, depth=0, prompt=p, used=0) for p in range(len(records))]
    starts = [Start(node=p, context=prompt_ids[p], count=settings.K_root)
              for p in range(len(records))]
    generated = grow(decoder, sampling, starts, nodes, shape, eos, rng, generator,
                     on_step).tokens
    if settings.two_layer_guarantee:
        extra = split_first_layer(nodes, rng, settings.split_children)
        extra_starts = [Start(node=n, context=prompt_ids[nodes[n].prompt] + nodes[n].tokens,
                              count=count) for n, count in extra]
        more = grow(decoder, sampling, extra_starts, nodes, shape, eos, rng, generator,
                    on_step)
        generated += more.tokens

    trees = assemble(nodes, records, prompt_ids, decoder.tokenizer, objectives, meta, score_all)
    return GroupResult(trees, generated)


def split_first_layer(nodes: list[Node], rng: np.random.Generator, children: int
                      ) -> list[tuple[int, int]]:
    """The two-layer guarantee (appendix C): a first-layer node that ended with EOS is split
    at a uniformly drawn point into a parent (child of the root) and a child that keeps the
    rest, EOS included. Returns (parent, number of extra children to grow under it).

    A first-layer node that is a lone EOS token cannot be split and stays a leaf.
    """
    extra = []
    for index in range(len(nodes)):
        node = nodes[index]
        if node.depth != 1 or not node.ended_eos or len(node.tokens) < 2:
            continue
        cut = int(rng.integers(1, len(node.tokens)))
        child = Node(parent=index, depth=2, prompt=node.prompt, used=node.used,
                     tokens=node.tokens[cut:], logp_gen=node.logp_gen[cut:],
                     logp_ref=node.logp_ref[cut:], ended_eos=True, is_leaf=True)
        node.tokens, node.logp_gen, node.logp_ref = (node.tokens[:cut], node.logp_gen[:cut],
                                                     node.logp_ref[:cut])
        node.used, node.ended_eos, node.is_leaf = cut, False, False
        nodes.append(child)
        extra.append((index, children))
    return extra


def tree_order(nodes: Sequence[Node]) -> list[int]:
    """Node order in the file: tree by tree, breadth first (depth, then creation order)."""
    return sorted(range(len(nodes)), key=lambda i: (nodes[i].prompt, nodes[i].depth, i))


def assemble(nodes: Sequence[Node], records: Sequence[PromptRecord],
             prompt_ids: Sequence[Sequence[int]], tokenizer: Any, objectives: Sequence[str],
             meta: Mapping[str, Any], score: Callable[..., dict[str, list[float]]]
             ) -> TreeTable:
    """Order the nodes into a table, score its leaves with every objective, propagate values
    and LPR."""
    table = node_table(nodes, records, prompt_ids, objectives, meta)
    leaves = np.flatnonzero(table.is_leaf)
    responses = [tokenizer.decode(table.response_tokens(leaf).tolist(),
                                  skip_special_tokens=True) for leaf in leaves]
    prompts = [records[int(table.prompt[leaf])].text for leaf in leaves]
    scores = score(list(objectives), prompts, responses) if len(leaves) else {}
    reward = np.full(table.reward.shape, np.nan)
    for column, name in enumerate(objectives):
        values = np.asarray(scores.get(name, []), dtype=np.float64)
        if len(values) != len(leaves) or not np.isfinite(values).all():
            raise MavisError(f"objective {name!r} returned a missing or non-finite score")
        reward[leaves, column] = values
    table.data["nodes/reward"] = reward.astype(np.float32)
    table.data["nodes/value"] = propagate_means(
        table.parent, table.is_leaf, np.where(table.is_leaf[:, None], reward, 0.0)
    ).astype(np.float32)
    logp_gen = table["tokens/logp_gen"].astype(np.float64)
    running = np.concatenate([[0.0], np.cumsum(logp_gen - table["tokens/logp_ref"])])
    ends = np.concatenate([table.token_offset, [table.num_tokens]])
    own_lpr = running[ends[1:]] - running[ends[:-1]]
    leaf_lpr = path_sums(table.parent, own_lpr)
    table.data["nodes/lpr"] = propagate_means(table.parent, table.is_leaf,
                                              leaf_lpr).astype(np.float32)
    table.validate()
    return table


def node_table(nodes: Sequence[Node], records: Sequence[PromptRecord],
               prompt_ids: Sequence[Sequence[int]], objectives: Sequence[str],
               meta: Mapping[str, Any]) -> TreeTable:
    """The grown nodes in file order (`tree_order`), rewards still NaN."""
    order = tree_order(nodes)
    position = {old: new for new, old in enumerate(order)}
    ordered = [nodes[i] for i in order]
    count = np.array([len(n.tokens) for n in ordered], dtype=np.int32)
    node_prompt = np.array([n.prompt for n in ordered], dtype=np.int32)
    node_count = np.bincount(node_prompt, minlength=len(records)).astype(np.int32)
    prompt_count = np.array([len(ids) for ids in prompt_ids], dtype=np.int32)
    data = {
        "prompts/text": [r.text for r in records],
        "prompts/id": [r.id for r in records],
        "prompts/token_offset": _starts(prompt_count),
        "prompts/token_count": prompt_count,
        "prompts/tokens": [t for ids in prompt_ids for t in ids],
        "prompts/first_node": _starts(node_count),
        "prompts/node_count": node_count,
        "nodes/parent": [position[n.parent] if n.parent >= 0 else -1 for n in ordered],
        "nodes/depth": [n.depth for n in ordered],
        "nodes/prompt": node_prompt,
        "nodes/token_offset": _starts(count),
        "nodes/token_count": count,
        "nodes/is_leaf": [n.is_leaf for n in ordered],
        "nodes/ended_eos": [n.ended_eos for n in ordered],
        "nodes/reward": np.full((len(ordered), len(objectives)), np.nan),
        "nodes/value": np.zeros((len(ordered), len(objectives))),
        "nodes/lpr": np.zeros(len(ordered)),
        "tokens/id": [t for n in ordered for t in n.tokens],
        "tokens/logp_gen": [x for n in ordered for x in n.logp_gen],
        "tokens/logp_ref": [x for n in ordered for x in n.logp_ref],
    }
    return TreeTable(list(objectives), dict(meta), data)


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)[:-1]]).astype(np.int64) if len(
        counts) else np.zeros(0, dtype=np.int64)

