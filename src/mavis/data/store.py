"""Reading and writing tree files (the HDF5 layout of `mavis.data.schema`, format v1).

    with TreeDataset("runs/x/trees.h5") as data:
        data.num_trees, data.num_nodes, data.objectives
        data.value[node], data.lpr[node], data.parent[node]
        data.path_tokens(node)      # prompt tokens + the segments along the path to `node`
        data.summary()

`TreeArrays` is a file's whole content in memory (one array per dataset); `write_trees` writes
one atomically (temporary name, then `os.replace`, so a crash never leaves half a file under
the final name); `merge_parts` concatenates files in order, streaming one part at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mavis.data.schema import AXIS_DATASET, DATASETS, FORMAT, INDEX_DATASETS, VERSION
from mavis.errors import MavisError


def _numpy_dtype(name: str) -> Any:
    if name == "str":
        import h5py

        return h5py.string_dtype(encoding="utf-8")
    return np.dtype(name)


def _empty(name: str, objectives: int) -> np.ndarray:
    dtype, _, per_objective = DATASETS[name]
    shape = (0, objectives) if per_objective else (0,)
    return np.empty(shape, dtype=object if dtype == "str" else dtype)


@dataclass
class TreeArrays:
    """The content of a tree file: `data` maps every dataset path of the schema to an array."""

    objectives: list[str]
    meta: dict[str, Any]
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (dtype, _, _) in DATASETS.items():
            if name not in self.data:
                self.data[name] = _empty(name, len(self.objectives))
            elif dtype == "str":
                self.data[name] = np.asarray(list(self.data[name]), dtype=object)
            else:
                self.data[name] = np.asarray(self.data[name], dtype=dtype)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def axis_length(self, axis: str) -> int:
        return len(self.data[AXIS_DATASET[axis]])

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
        _check_offsets(self.data["nodes/token_offset"], self.data["nodes/token_count"],
                       self.axis_length("tokens"), "nodes")
        _check_offsets(self.data["prompts/first_node"], self.data["prompts/node_count"],
                       self.axis_length("nodes"), "trees")
        parent, prompt = self.data["nodes/parent"], self.data["nodes/prompt"]
        roots = np.nonzero(parent < 0)[0]
        if not np.array_equal(roots, self.data["prompts/first_node"]):
            raise ValueError("every tree must start with its root (parent -1) at first_node")
        if (parent >= np.arange(len(parent))).any():
            raise ValueError("a node's parent must come before it")
        expected = np.repeat(np.arange(len(self.data["prompts/id"])),
                             self.data["prompts/node_count"])
        if not np.array_equal(prompt, expected):
            raise ValueError("nodes/prompt does not match the trees' node ranges")

    @staticmethod
    def concat(parts: Sequence[TreeArrays], meta: Mapping[str, Any] | None = None
               ) -> TreeArrays:
        """Concatenate in order, shifting the index datasets."""
        if not parts:
            raise ValueError("nothing to concatenate")
        objectives = parts[0].objectives
        data: dict[str, list[np.ndarray]] = {name: [] for name in DATASETS}
        offsets = dict.fromkeys(AXIS_DATASET, 0)
        for part in parts:
            if part.objectives != objectives:
                raise ValueError(f"objectives differ: {part.objectives} vs {objectives}")
            for name in DATASETS:
                data[name].append(_shifted(name, part.data[name], offsets))
            for axis in offsets:
                offsets[axis] += part.axis_length(axis)
        merged = {name: np.concatenate(arrays) for name, arrays in data.items()}
        return TreeArrays(list(objectives), dict(meta if meta is not None else parts[0].meta),
                          merged)


def _shifted(name: str, array: np.ndarray, offsets: Mapping[str, int]) -> np.ndarray:
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


# -- files --------------------------------------------------------------------------------------

def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_attrs(handle: Any, objectives: Sequence[str], meta: Mapping[str, Any],
                 extra: Mapping[str, Any]) -> None:
    handle.attrs["format"] = FORMAT
    handle.attrs["version"] = VERSION
    handle.attrs["objectives"] = json.dumps(list(objectives))
    handle.attrs["meta"] = json.dumps(dict(meta), sort_keys=True)
    for key, value in extra.items():
        handle.attrs[key] = value


def write_trees(path: str | Path, trees: TreeArrays, *,
                attrs: Mapping[str, Any] | None = None) -> Path:
    """Write `trees` to `path` atomically (a temporary file, then `os.replace`)."""
    import h5py

    trees.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_name(path)
    try:
        with h5py.File(temp, "w") as handle:
            _write_attrs(handle, trees.objectives, trees.meta, attrs or {})
            for name, (dtype, _, _) in DATASETS.items():
                handle.create_dataset(name, data=trees.data[name], dtype=_numpy_dtype(dtype))
        _fsync(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open(path: str | Path) -> Any:
    import h5py

    path = Path(path)
    if not path.exists():
        raise MavisError(f"no tree file at {str(path)!r}; collect one with `mavis collect`")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise MavisError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    fmt = handle.attrs.get("format")
    version = handle.attrs.get("version")
    if fmt != FORMAT:
        handle.close()
        raise MavisError(f"{str(path)!r} is not a mavis tree file (format {fmt!r})")
    if version != VERSION:
        handle.close()
        raise MavisError(f"{str(path)!r} has tree format version {version}; this mavis reads "
                         f"version {VERSION}")
    return handle


def read_attrs(path: str | Path) -> tuple[list[str], dict[str, Any]]:
    """(objectives, meta) of a tree file, without reading its arrays."""
    with _open(path) as handle:
        return json.loads(handle.attrs["objectives"]), json.loads(handle.attrs["meta"])


def _read_dataset(handle: Any, name: str) -> np.ndarray:
    dataset = handle[name]
    if DATASETS[name][0] == "str":
        return np.asarray(dataset.asstr()[()], dtype=object)
    return dataset[()]


def read_trees(path: str | Path) -> TreeArrays:
    """A whole tree file in memory."""
    with _open(path) as handle:
        return TreeArrays(json.loads(handle.attrs["objectives"]),
                          json.loads(handle.attrs["meta"]),
                          {name: _read_dataset(handle, name) for name in DATASETS})


def merge_parts(parts: Iterable[str | Path], out: str | Path, *,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Concatenate tree files (in the given order) into `out`, one part in memory at a time.

    The objectives must agree; `meta` (default: the first part's) goes into the result. The
    result is written under a temporary name and moved into place at the end.
    """
    import h5py

    parts = [Path(p) for p in parts]
    if not parts:
        raise MavisError("no part files to merge")
    lengths = dict.fromkeys(AXIS_DATASET, 0)
    objectives: list[str] | None = None
    for part in parts:
        with _open(part) as handle:
            names = json.loads(handle.attrs["objectives"])
            if objectives is None:
                objectives = names
                first_meta = json.loads(handle.attrs["meta"])
            elif names != objectives:
                raise MavisError(f"{part} has objectives {names}, the others {objectives}")
            for axis, name in AXIS_DATASET.items():
                lengths[axis] += len(handle[name])
    assert objectives is not None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_name(out)
    try:
        with h5py.File(temp, "w") as target:
            _write_attrs(target, objectives, meta if meta is not None else first_meta, {})
            for name, (dtype, axis, per_objective) in DATASETS.items():
                shape = (lengths[axis], len(objectives)) if per_objective else (lengths[axis],)
                target.create_dataset(name, shape=shape, dtype=_numpy_dtype(dtype))
            offsets = dict.fromkeys(AXIS_DATASET, 0)
            for part in parts:
                with _open(part) as source:
                    sizes = {axis: len(source[name]) for axis, name in AXIS_DATASET.items()}
                    for name, (_, axis, _) in DATASETS.items():
                        array = _shifted(name, _read_dataset(source, name), offsets)
                        if len(array):
                            target[name][offsets[axis]:offsets[axis] + len(array)] = array
                for axis in offsets:
                    offsets[axis] += sizes[axis]
        _fsync(temp)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    return out


# -- reading for training and inspection ---------------------------------------------------------

class TreeDataset:
    """A tree file opened for reading: node and prompt arrays in memory, tokens on demand.

    `tokens_in_memory=False` leaves the token arrays in the file (for files larger than
    memory); use it as a context manager, or call `close()`.
    """

    def __init__(self, path: str | Path, *, tokens_in_memory: bool = True) -> None:
        self.filename = Path(path)
        self._handle = _open(self.filename)
        handle = self._handle
        self.objectives: list[str] = json.loads(handle.attrs["objectives"])
        self.meta: dict[str, Any] = json.loads(handle.attrs["meta"])
        self.arrays: dict[str, np.ndarray] = {
            name: _read_dataset(handle, name) for name, (_, axis, _) in DATASETS.items()
            if axis in ("prompts", "nodes", "prompt_tokens")
        }
        self._tokens: dict[str, Any] = {
            name: (handle[name][()] if tokens_in_memory else handle[name])
            for name, (_, axis, _) in DATASETS.items() if axis == "tokens"
        }
        if tokens_in_memory:
            self.close()

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> TreeDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sizes and columns ------------------------------------------------------------------
    @property
    def num_trees(self) -> int:
        return len(self.arrays["prompts/id"])

    @property
    def num_nodes(self) -> int:
        return len(self.arrays["nodes/parent"])

    @property
    def num_tokens(self) -> int:
        return len(self._tokens["tokens/id"])

    def __getitem__(self, name: str) -> np.ndarray:
        """Any dataset by its schema path (token datasets are read in full)."""
        if name in self.arrays:
            return self.arrays[name]
        return np.asarray(self._tokens[name][()])

    parent = property(lambda self: self.arrays["nodes/parent"])
    depth = property(lambda self: self.arrays["nodes/depth"])
    prompt = property(lambda self: self.arrays["nodes/prompt"])
    is_leaf = property(lambda self: self.arrays["nodes/is_leaf"])
    ended_eos = property(lambda self: self.arrays["nodes/ended_eos"])
    reward = property(lambda self: self.arrays["nodes/reward"])
    value = property(lambda self: self.arrays["nodes/value"])
    lpr = property(lambda self: self.arrays["nodes/lpr"])
    token_count = property(lambda self: self.arrays["nodes/token_count"])

    def targets(self, zeta: float = 0.0) -> np.ndarray:
        """Equation 6's regression targets [N, M]: value - zeta * LPR."""
        return self.value - zeta * self.lpr[:, None]

    # -- trees and paths ------------------------------------------------------------------
    def tree_nodes(self, tree: int) -> range:
        """Global indices of the nodes of tree `tree` (root first)."""
        first = int(self.arrays["prompts/first_node"][tree])
        return range(first, first + int(self.arrays["prompts/node_count"][tree]))

    def children(self, node: int) -> np.ndarray:
        tree = self.tree_nodes(int(self.prompt[node]))
        local = self.parent[tree.start:tree.stop]
        return np.nonzero(local == node)[0] + tree.start

    def path(self, node: int) -> list[int]:
        """Node indices from the root down to `node`."""
        path = [int(node)]
        while self.parent[path[-1]] >= 0:
            path.append(int(self.parent[path[-1]]))
        return path[::-1]

    def prompt_tokens(self, tree: int) -> np.ndarray:
        offset = int(self.arrays["prompts/token_offset"][tree])
        return self.arrays["prompts/tokens"][offset:offset + int(
            self.arrays["prompts/token_count"][tree])]

    def segment(self, node: int, name: str = "tokens/id") -> np.ndarray:
        """The node's own segment of a token dataset (`tokens/id`, `tokens/logp_gen`, ...)."""
        offset = int(self.arrays["nodes/token_offset"][node])
        return np.asarray(self._tokens[name][offset:offset + int(self.token_count[node])])

    def response_tokens(self, node: int, name: str = "tokens/id") -> np.ndarray:
        """The segments along the path from the root to `node`, concatenated."""
        pieces = [self.segment(n, name) for n in self.path(node)]
        return np.concatenate(pieces)

    def path_tokens(self, node: int) -> np.ndarray:
        """Prompt tokens followed by the response tokens up to the end of `node`."""
        return np.concatenate([self.prompt_tokens(int(self.prompt[node])),
                               self.response_tokens(node)]).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        """Counts and statistics (see `mavis.data.inspect`)."""
        from mavis.data.inspect import summarize

        return summarize(self)
