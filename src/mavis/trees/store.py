"""Reading and writing tree files (the HDF5 layout of `mavis.trees.schema`).

`read_trees(path)` is the one reader: it checks the file is a mavis tree file of a version
this mavis reads and returns its `TreeTable`. `write_trees` writes a table and `merge_parts`
concatenates files, one part in memory at a time; both write through `mavis.paths.atomic_path`
(a temporary name, fsync, rename), so a crash never leaves half a file under the final name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mavis.errors import MavisError
from mavis.paths import atomic_path
from mavis.trees.schema import AXIS_DATASET, DATASETS, FORMAT, VERSION
from mavis.trees.table import TreeTable, shifted


def _h5_dtype(name: str) -> Any:
    dtype = DATASETS[name][0]
    return h5py.string_dtype(encoding="utf-8") if dtype == "str" else np.dtype(dtype)


def _write_attrs(handle: Any, objectives: Sequence[str], meta: Mapping[str, Any],
                 extra: Mapping[str, Any]) -> None:
    handle.attrs["format"] = FORMAT
    handle.attrs["version"] = VERSION
    handle.attrs["objectives"] = json.dumps(list(objectives))
    handle.attrs["meta"] = json.dumps(dict(meta), sort_keys=True)
    for key, value in extra.items():
        handle.attrs[key] = value


def write_trees(path: str | Path, table: TreeTable, *,
                attrs: Mapping[str, Any] | None = None) -> Path:
    """Write `table` to `path` atomically."""
    table.validate()
    path = Path(path)
    with atomic_path(path) as temp, h5py.File(temp, "w") as handle:
        _write_attrs(handle, table.objectives, table.meta, attrs or {})
        for name in DATASETS:
            handle.create_dataset(name, data=table.data[name], dtype=_h5_dtype(name))
    return path


_BROKEN = (OSError, RuntimeError, KeyError, ValueError, TypeError, json.JSONDecodeError)


@contextlib.contextmanager
def _open(path: str | Path) -> Iterator[Any]:
    """An open tree file, checked; every way it can be broken is a MavisError naming it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MavisError(f"no tree file at {str(path)!r}; collect one with `mavis collect`")
    if path.is_dir():
        raise MavisError(f"{str(path)!r} is a folder, not a tree file; give the .h5 file")
    try:
        handle = h5py.File(path, "r")
    except _BROKEN as exc:
        raise MavisError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    with handle:
        try:
            _check(handle, path)
            yield handle
        except _BROKEN as exc:
            raise MavisError(f"{str(path)!r} is damaged and cannot be read ({exc}); collect "
                             "it again") from None


def _check(handle: Any, path: Path) -> None:
    fmt = handle.attrs.get("format")
    if fmt != FORMAT:
        raise MavisError(f"{str(path)!r} is not a mavis tree file (format {fmt!r})")
    version = int(handle.attrs.get("version", 0))
    if not 1 <= version <= VERSION:
        raise MavisError(f"{str(path)!r} has tree format version {version}; this mavis "
                         f"reads versions 1 to {VERSION}: upgrade mavis")
    missing = [name for name in DATASETS if name not in handle]
    if missing:
        raise MavisError(f"{str(path)!r} is not a complete mavis tree file: missing "
                         f"{', '.join(missing)}")


def _read_dataset(handle: Any, name: str) -> np.ndarray:
    dataset = handle[name]
    if DATASETS[name][0] == "str":
        return np.asarray(dataset.asstr()[()], dtype=object)
    return dataset[()]


def read_attrs(path: str | Path) -> tuple[list[str], dict[str, Any]]:
    """(objectives, meta) of a tree file, without reading its arrays."""
    with _open(path) as handle:
        return json.loads(handle.attrs["objectives"]), json.loads(handle.attrs["meta"])


def read_prompt_ids(path: str | Path) -> list[str]:
    """The ids of a tree file's prompts, in order, without reading the other arrays."""
    with _open(path) as handle:
        return [str(v) for v in _read_dataset(handle, "prompts/id")]


def read_trees(path: str | Path) -> TreeTable:
    """The tree file at `path` in memory, as a `TreeTable`."""
    with _open(path) as handle:
        table = TreeTable(json.loads(handle.attrs["objectives"]),
                          json.loads(handle.attrs["meta"]),
                          {name: _read_dataset(handle, name) for name in DATASETS},
                          source=str(path))
    try:
        table.validate()
    except ValueError as exc:
        raise MavisError(f"{str(path)!r} is damaged: {exc}; collect it again") from None
    return table


def merge_parts(parts: Iterable[str | Path], out: str | Path, *,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Concatenate tree files (in the given order) into `out`, one part in memory at a time.

    The objectives must agree; `meta` (default: the first part's) goes into the result.
    """
    parts = [Path(p) for p in parts]
    if not parts:
        raise MavisError("no part files to merge")
    lengths = dict.fromkeys(AXIS_DATASET, 0)
    objectives, first_meta = read_attrs(parts[0])
    for part in parts:
        with _open(part) as handle:
            names = json.loads(handle.attrs["objectives"])
            if names != objectives:
                raise MavisError(f"{part} has objectives {names}, the others {objectives}; "
                                 "score them with the same objectives first (`mavis data "
                                 "score`)")
            for axis, name in AXIS_DATASET.items():
                lengths[axis] += len(handle[name])
    with atomic_path(out) as temp, h5py.File(temp, "w") as target:
        _write_attrs(target, objectives, meta if meta is not None else first_meta, {})
        for name, (_, axis, per_objective) in DATASETS.items():
            shape = (lengths[axis], len(objectives)) if per_objective else (lengths[axis],)
            target.create_dataset(name, shape=shape, dtype=_h5_dtype(name))
        offsets = dict.fromkeys(AXIS_DATASET, 0)
        for part in parts:
            with _open(part) as source:
                for name, (_, axis, _) in DATASETS.items():
                    array = shifted(name, _read_dataset(source, name), offsets)
                    target[name][offsets[axis]:offsets[axis] + len(array)] = array
                sizes = {axis: len(source[name]) for axis, name in AXIS_DATASET.items()}
            for axis in offsets:
                offsets[axis] += sizes[axis]
    return Path(out)
