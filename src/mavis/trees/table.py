"""`TreeTable`: the node table of a tree file, in memory, the one type every step reads.

Collection assembles one, `write_trees` stores it, `read_trees` gives it back, and packing,
training samples, distillation and `mavis data inspect` read it:

    table = read_trees("runs/x/trees.h5")
    table.num_prompts, table.num_nodes, table.objectives
    table.value[node], table.lpr[node], table.parent[node]
    table.ancestors(node)          # root first, `node` last
    table.path_tokens(node)        # prompt tokens + the segments along the path to `node`

`table.data` maps every dataset path of `mavis.trees.schema` to an array (schema dtypes); the
named properties are views of it. Node and prompt indices are global, as in the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mavis.errors import MavisError
from mavis.trees.schema import AXIS_DATASET, DATASETS, INDEX_DATASETS


def _empty(name: str, objectives: int) -> np.ndarray:
    dtype, _, per_objective = DATASETS[name]
    shape = (0, objectives) if per_objective else (0,)
    return np.empty(shape, dtype=object if dtype == "str" else dtype)


def _column(name: str) -> property:
    return property(lambda self: self.data[name], doc=f"The `{name}` dataset.")


@dataclass
class TreeTable:
    """The trees of many prompts: one array per dataset of the schema."""

    objectives: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""  # the file it was read from, for messages

    def __post_init__(self) -> None:
        for name, (dtype, _, per_objective) in DATASETS.items():
            if name not in self.data:
                self.data[name] = _empty(name, len(self.objectives))
            elif dtype == "str":
                self.data[name] = np.asarray(
                    [v.decode() if isinstance(v, bytes) else str(v) for v in self.data[name]],
                    dtype=object)
            else:
                array = np.asarray(self.data[name], dtype=dtype)
                if per_objective and array.ndim == 1:
                    array = array[:, None]
                self.data[name] = array

    # -- columns ------------------------------------------------------------------------------
    parent = _column("nodes/parent")
    depth = _column("nodes/depth")
    prompt = _column("nodes/prompt")
    is_leaf = _column("nodes/is_leaf")
    ended_eos = _column("nodes/ended_eos")
    reward = _column("nodes/reward")
    value = _column("nodes/value")
    lpr = _column("nodes/lpr")
    token_offset = _column("nodes/token_offset")
    token_count = _column("nodes/token_count")
    first_node = _column("prompts/first_node")
    node_count = _column("prompts/node_count")
    tokens = _column("tokens/id")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    @property
    def num_prompts(self) -> int:
        return len(self.data["prompts/id"])

    @property
    def num_nodes(self) -> int:
        return len(self.data["nodes/parent"])

    @property
    def num_tokens(self) -> int:
        return len(self.data["tokens/id"])

    @property
    def prompt_ids(self) -> list[str]:
        return list(self.data["prompts/id"])

    def axis_length(self, axis: str) -> int:
        return len(self.data[AXIS_DATASET[axis]])

    def columns(self, objectives: Sequence[str]) -> list[int]:
        """Column indices of `objectives` in `value`; a clear error names what the file has."""
        missing = [name for name in objectives if name not in self.objectives]
        if missing:
            raise MavisError(
                f"objective(s) {', '.join(map(repr, missing))} not in the tree file "
                f"{self.source}; it has: {', '.join(self.objectives) or '(none)'}")
        return [self.objectives.index(name) for name in objectives]

    # -- trees and paths ----------------------------------------------------------------------
    def tree(self, prompt: int) -> range:
        """Global indices of the nodes of `prompt`'s tree, root first."""
        first = int(self.first_node[prompt])
        return range(first, first + int(self.node_count[prompt]))

    def children(self, node: int) -> np.ndarray:
        tree = self.tree(int(self.prompt[node]))
        return np.flatnonzero(self.parent[tree.start:tree.stop] == node) + tree.start

    def ancestors(self, node: int) -> list[int]:
        """`node`'s ancestors from the root down, `node` itself last."""
        chain = [int(node)]
        while self.parent[chain[-1]] >= 0:
            chain.append(int(self.parent[chain[-1]]))
        return chain[::-1]

    def prompt_tokens(self, prompt: int) -> np.ndarray:
        """The formatted prompt's token ids (int64)."""
        offset = int(self.data["prompts/token_offset"][prompt])
        count = int(self.data["prompts/token_count"][prompt])
        return self.data["prompts/tokens"][offset:offset + count].astype(np.int64)

    def segment(self, node: int, name: str = "tokens/id") -> np.ndarray:
        """The node's own segment of a token dataset (`tokens/id`, `tokens/logp_gen`, ...)."""
        offset = int(self.token_offset[node])
        return self.data[name][offset:offset + int(self.token_count[node])]

    def response_tokens(self, node: int, name: str = "tokens/id") -> np.ndarray:
        """The segments along the path from the root to `node`, concatenated."""
        return np.concatenate([self.segment(n, name) for n in self.ancestors(node)])

    def path_tokens(self, node: int) -> np.ndarray:
        """Prompt tokens followed by the response tokens up to the end of `node` (int64)."""
        return np.concatenate([self.prompt_tokens(int(self.prompt[node])),
                               self.response_tokens(node)]).astype(np.int64)

    # -- consistency --------------------------------------------------------------------------
    def validate(self) -> None:
        """Check lengths and the offsets/counts against each other (ValueError if broken)."""
        m = len(self.objectives)
        for name, (_, axis, per_objective) in DATASETS.items():
            array = self.data[name]
            if len(array) != self.axis_length(axis):
                raise ValueError(f"{name} has {len(array)} rows, expected {axis} = "
                                 f"{self.axis_length(axis)}")
            if per_objective and array.shape[1:] != (m,):
                raise ValueError(f"{name} has shape {array.shape}, expected [N, {m}]")
        _check_offsets(self.data["prompts/token_offset"], self.data["prompts/token_count"],
                       self.axis_length("prompt_tokens"), "prompts")
        _check_offsets(self.token_offset, self.token_count, self.num_tokens, "nodes")
        _check_offsets(self.first_node, self.node_count, self.num_nodes, "trees")
        roots = np.flatnonzero(self.parent < 0)
        if not np.array_equal(roots, self.first_node):
            raise ValueError("every tree must start with its root (parent -1) at first_node")
        if (self.parent >= np.arange(self.num_nodes)).any():
            raise ValueError("a node's parent must come before it")
        expected = np.repeat(np.arange(self.num_prompts), self.node_count)
        if not np.array_equal(self.prompt, expected):
            raise ValueError("nodes/prompt does not match the trees' node ranges")

    @staticmethod
    def concat(parts: Sequence[TreeTable], meta: Mapping[str, Any] | None = None) -> TreeTable:
        """Concatenate in order, shifting the index datasets."""
        if not parts:
            raise ValueError("nothing to concatenate")
        objectives = parts[0].objectives
        arrays: dict[str, list[np.ndarray]] = {name: [] for name in DATASETS}
        offsets = dict.fromkeys(AXIS_DATASET, 0)
        for part in parts:
            if part.objectives != objectives:
                raise ValueError(f"objectives differ: {part.objectives} vs {objectives}")
            for name in DATASETS:
                arrays[name].append(shifted(name, part.data[name], offsets))
            for axis in offsets:
                offsets[axis] += part.axis_length(axis)
        merged = {name: np.concatenate(chunks) for name, chunks in arrays.items()}
        return TreeTable(list(objectives), dict(meta if meta is not None else parts[0].meta),
                         merged)


def shifted(name: str, array: np.ndarray, offsets: Mapping[str, int]) -> np.ndarray:
    """`array` of dataset `name` moved behind `offsets` rows of each axis (index datasets
    shift; the root's parent, -1, stays -1)."""
    axis = INDEX_DATASETS.get(name)
    if axis is None or offsets[axis] == 0:
        return array
    if name == "nodes/parent":
        return np.where(array >= 0, array + offsets[axis], array)
    return array + offsets[axis]


def _check_offsets(offset: np.ndarray, count: np.ndarray, total: int, what: str) -> None:
    expected = np.concatenate([[0], np.cumsum(count, dtype=np.int64)[:-1]]) if len(count) else (
        np.zeros(0, dtype=np.int64))
    if not np.array_equal(offset, expected) or int(count.sum()) != total:
        raise ValueError(f"the {what}' offsets and counts are not back to back over {total}")
