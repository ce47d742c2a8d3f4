"""Tree data for value-model training (GET_DATA, Algorithm 3): collection, storage, inspection.

    from mavis.data import collect_trees, TreeDataset
    collect_trees(decoder, prompts, "relevant,harmless", "runs/x/trees.h5",
                  T=48, L=4, K_root=4, K=2, top_k=40, seed=0)
    with TreeDataset("runs/x/trees.h5") as data:
        data.value, data.lpr, data.path_tokens(node)

The file layout is described in `mavis.data.schema`. Names are imported lazily, so that
`import mavis.data` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "collect_trees": "mavis.data.collect",
    "collect_trees_distributed": "mavis.data.distributed",
    "TreeDataset": "mavis.data.store",
    "TreeArrays": "mavis.data.store",
    "read_trees": "mavis.data.store",
    "write_trees": "mavis.data.store",
    "merge_parts": "mavis.data.store",
    "inspect_trees": "mavis.data.inspect",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mavis.data' has no attribute {name!r}")
