"""Tree data for value-model training (GET_DATA, Algorithm 3): collection, storage, inspection.

    from mavis.trees import collect_trees, read_trees
    collect_trees(decoder, prompts, "relevant,harmless", "runs/x/trees.h5",
                  CollectionSettings(T=48, L=4, K_root=4, K=2))
    table = read_trees("runs/x/trees.h5")
    table.value, table.lpr, table.path_tokens(node)

The file layout is described in `mavis.trees.schema`; `TreeTable` is its content in memory.
Names are imported lazily, so that `import mavis.trees` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "collect_trees": "mavis.trees.collect",
    "collect_trees_distributed": "mavis.trees.distributed",
    "TreeTable": "mavis.trees.table",
    "CollectionSettings": "mavis.trees.settings",
    "read_trees": "mavis.trees.store",
    "write_trees": "mavis.trees.store",
    "merge_parts": "mavis.trees.store",
    "merge_tree_files": "mavis.trees.merge",
    "inspect_trees": "mavis.trees.inspect",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mavis.trees' has no attribute {name!r}")
