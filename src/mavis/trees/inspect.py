"""What a tree file holds, in numbers: `mavis data inspect FILE [--json]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mavis.trees.store import read_trees
from mavis.trees.table import TreeTable
from mavis.trees.tree_shape import path_sums


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def summarize(data: TreeTable) -> dict[str, Any]:
    """Counts and statistics of a tree table."""
    parent, depth, is_leaf = data.parent, data.depth.astype(np.int64), data.is_leaf
    leaves = np.nonzero(is_leaf)[0]
    roots = np.nonzero(parent < 0)[0]
    inner = np.nonzero((parent >= 0) & ~is_leaf)[0]
    length = path_sums(parent, data.token_count)
    tree_depth = np.zeros(data.num_prompts, dtype=np.int64)
    if data.num_nodes:
        np.maximum.at(tree_depth, data.prompt, depth)
    depths, counts = np.unique(depth, return_counts=True)
    leaf_depths, leaf_counts = np.unique(depth[leaves], return_counts=True)
    children = np.bincount(parent[parent >= 0], minlength=data.num_nodes)
    below_root = parent >= 0
    return {
        "file": data.source,
        "objectives": list(data.objectives),
        "prompts": int(data.num_prompts),
        "nodes": int(data.num_nodes),
        "leaves": int(len(leaves)),
        "nodes_per_depth": {int(d): int(c) for d, c in zip(depths, counts, strict=True)},
        "leaves_per_depth": {int(d): int(c) for d, c in
                             zip(leaf_depths, leaf_counts, strict=True)},
        "tree_depth": _stats(tree_depth),
        "children": {"root": _stats(children[roots]), "inner": _stats(children[inner])},
        "eos_fraction": float(data.ended_eos[leaves].mean()) if len(leaves) else None,
        "tokens": int(data.num_tokens),
        "prompt_tokens": _stats(data["prompts/token_count"]),
        "segment_tokens": _stats(data.token_count[below_root]),
        "response_tokens": _stats(length[leaves]),
        "reward": {name: _stats(data.reward[leaves, m])
                   for m, name in enumerate(data.objectives)},
        "value": {name: _stats(data.value[below_root, m])
                  for m, name in enumerate(data.objectives)},
        "root_value": {name: _stats(data.value[roots, m])
                       for m, name in enumerate(data.objectives)},
        "lpr": {"leaves": _stats(data.lpr[leaves]), "roots": _stats(data.lpr[roots])},
        "meta": dict(data.meta),
    }


def inspect_trees(path: str | Path) -> dict[str, Any]:
    """`summarize` of the tree file at `path`."""
    return summarize(read_trees(path))


def _fmt(stats: dict[str, float | None], digits: int = 3) -> str:
    if stats["mean"] is None:
        return "-"
    return (f"mean {stats['mean']:.{digits}g}  std {stats['std']:.{digits}g}  "
            f"[{stats['min']:.{digits}g}, {stats['max']:.{digits}g}]")


def format_summary(summary: dict[str, Any]) -> str:
    """A human-readable report of `summarize`'s result."""
    s = summary
    per_depth = ", ".join(f"{d}: {c}" for d, c in s["nodes_per_depth"].items())
    leaf_depth = ", ".join(f"{d}: {c}" for d, c in s["leaves_per_depth"].items())
    eos = "-" if s["eos_fraction"] is None else f"{s['eos_fraction']:.1%}"
    lines = [
        f"{s['file']}",
        f"  prompts (trees)   {s['prompts']}",
        f"  nodes             {s['nodes']}  (per depth: {per_depth})",
        f"  leaves            {s['leaves']}  (per depth: {leaf_depth}); ended with EOS: {eos}",
        f"  tree depth        {_fmt(s['tree_depth'])}",
        f"  children          root: {_fmt(s['children']['root'])}; "
        f"inner: {_fmt(s['children']['inner'])}",
        f"  tokens            {s['tokens']} generated; segment {_fmt(s['segment_tokens'])}",
        f"  response length   {_fmt(s['response_tokens'])}",
        f"  prompt length     {_fmt(s['prompt_tokens'])}",
    ]
    for name in s["objectives"]:
        lines.append(f"  {name:<17} reward at leaves {_fmt(s['reward'][name])}")
        lines.append(f"  {'':<17} value below root {_fmt(s['value'][name])}")
    lines.append(f"  LPR               leaves {_fmt(s['lpr']['leaves'])}; "
                 f"roots {_fmt(s['lpr']['roots'])}")
    lines.append("  meta")
    for key, value in sorted(s["meta"].items()):
        lines.append(f"    {key:<20} {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines)
