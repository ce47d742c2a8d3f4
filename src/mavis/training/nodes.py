"""Read a tree dataset (HDF5, `mavis.data.schema` format v1) into plain numpy arrays.

Training needs the whole node table in memory (it is small: a few ints and floats per node plus
the generated tokens), so this reads every array once with h5py and checks the file is what it
claims to be. It deliberately depends on the schema only, not on `mavis.data`'s reader class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mavis.data.schema import FORMAT, VERSION
from mavis.errors import MavisError

_REQUIRED = (
    "prompts/id", "prompts/token_offset", "prompts/token_count", "prompts/tokens",
    "prompts/first_node", "prompts/node_count",
    "nodes/parent", "nodes/depth", "nodes/prompt", "nodes/token_offset", "nodes/token_count",
    "nodes/is_leaf", "nodes/value", "nodes/lpr", "tokens/id",
)


@dataclass
class TreeData:
    """The node table of one tree file. Node and prompt indices are global, as in the file."""

    objectives: list[str]
    prompt_ids: list[str]
    prompt_tokens: list[np.ndarray]
    first_node: np.ndarray
    node_count: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    prompt: np.ndarray
    token_offset: np.ndarray
    token_count: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    lpr: np.ndarray
    tokens: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def num_nodes(self) -> int:
        return len(self.parent)

    @property
    def num_prompts(self) -> int:
        return len(self.prompt_tokens)

    def segment(self, node: int) -> np.ndarray:
        """The tokens `node` added to its parent's sequence (empty for the root)."""
        start = int(self.token_offset[node])
        return self.tokens[start:start + int(self.token_count[node])]

    def tree(self, prompt: int) -> range:
        """Global indices of the nodes of `prompt`'s tree."""
        first = int(self.first_node[prompt])
        return range(first, first + int(self.node_count[prompt]))

    def ancestors(self, node: int) -> list[int]:
        """`node`'s ancestors from the root down, `node` itself last."""
        chain = [node]
        while self.parent[chain[-1]] >= 0:
            chain.append(int(self.parent[chain[-1]]))
        return chain[::-1]

    def response_tokens(self, node: int) -> np.ndarray:
        """The response generated up to and including `node` (its path's segments joined)."""
        parts = [self.segment(n) for n in self.ancestors(node)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def columns(self, objectives: list[str]) -> list[int]:
        """Column indices of `objectives` in `value`; a clear error names what the file has."""
        missing = [name for name in objectives if name not in self.objectives]
        if missing:
            raise MavisError(
                f"objective(s) {', '.join(map(repr, missing))} not in the tree file "
                f"{self.source or ''}; it has: {', '.join(self.objectives) or '(none)'}"
            )
        return [self.objectives.index(name) for name in objectives]


def _strings(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read_trees(path: str | Path) -> TreeData:
    """Load the tree file at `path`; raise `MavisError` if it is missing or not a tree file."""
    import h5py

    path = Path(path).expanduser()
    if not path.exists():
        raise MavisError(f"tree data file {str(path)!r} does not exist; collect trees with "
                         "`mavis collect` first")
    if not h5py.is_hdf5(path):
        raise MavisError(f"{str(path)!r} is not a mavis tree file (not HDF5)")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise MavisError(f"{str(path)!r} is not a mavis tree file (format attribute is "
                             f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        version = int(f.attrs.get("version", 0))
        if version > VERSION:
            raise MavisError(f"{str(path)!r} has tree format version {version}; this mavis "
                             f"reads up to version {VERSION}: upgrade mavis")
        missing = [name for name in _REQUIRED if name not in f]
        if missing:
            raise MavisError(f"{str(path)!r} is not a complete mavis tree file: "
                             f"missing {', '.join(missing)}")
        arrays = {name: f[name][()] for name in _REQUIRED}
        objectives = json.loads(f.attrs.get("objectives", "[]"))
        meta = json.loads(f.attrs.get("meta", "{}"))
    offsets, counts, flat = (arrays["prompts/token_offset"], arrays["prompts/token_count"],
                             arrays["prompts/tokens"])
    value = np.asarray(arrays["nodes/value"], dtype=np.float32)
    if value.ndim == 1:
        value = value[:, None]
    return TreeData(
        objectives=list(objectives),
        prompt_ids=_strings(arrays["prompts/id"]),
        prompt_tokens=[flat[int(o):int(o) + int(c)].astype(np.int64)
                       for o, c in zip(offsets, counts, strict=True)],
        first_node=arrays["prompts/first_node"].astype(np.int64),
        node_count=arrays["prompts/node_count"].astype(np.int64),
        parent=arrays["nodes/parent"].astype(np.int64),
        depth=arrays["nodes/depth"].astype(np.int64),
        prompt=arrays["nodes/prompt"].astype(np.int64),
        token_offset=arrays["nodes/token_offset"].astype(np.int64),
        token_count=arrays["nodes/token_count"].astype(np.int64),
        is_leaf=arrays["nodes/is_leaf"].astype(bool),
        value=value,
        lpr=np.asarray(arrays["nodes/lpr"], dtype=np.float32),
        tokens=arrays["tokens/id"].astype(np.int64),
        meta=meta,
        source=str(path),
    )
