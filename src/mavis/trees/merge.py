"""Merging tree files collected alike into one training set (`mavis data merge`).

More trees are the lever the value model's learning curve points to, and collection runs in
parts: a recipe's file for the first prompts, then `mavis collect --skip N` for the next ones.
`merge_tree_files` puts such files together, in the order given, and refuses what would make a
training set of mixed trees: other tree settings (shape, sampling, reference, generator), other
objectives, or a prompt that two files both hold.

`merged_meta` is the pure part: which meta keys may differ between the files (where the prompts
came from, and the provenance) and what the merged file says about its parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.trees.store import merge_parts, read_attrs, read_prompt_ids

# Keys that describe one file's prompts or provenance, not how its trees were grown: they may
# differ between merged files (each file's are kept under "merged_from").
PER_FILE = ("num_prompts", "prompts_sha256", "prompt_set", "prompt_sets", "split", "skip",
            "recipe", "mavis_version", "scored_later", "seed", "batch_prompts", "objectives",
            "value_model_paths", "merged_from")


def merged_meta(metas: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The meta of the files `names` (with metas `metas`) merged in that order.

    Every key outside `PER_FILE` must be equal in all of them (else a `MavisError` names the
    key, both values and how to proceed). The result keeps those keys, counts the prompts,
    lists the prompt sets and the objectives scored later of all parts (first seen first), and
    records each part under "merged_from".
    """
    if len(metas) != len(names) or not metas:
        raise ValueError("one meta per file, at least one")
    first = metas[0]
    for meta, name in zip(metas[1:], names[1:], strict=True):
        for key in sorted((set(first) | set(meta)) - set(PER_FILE)):
            if first.get(key) != meta.get(key):
                raise MavisError(
                    f"{name} was collected with {key} = {json.dumps(meta.get(key))}, {names[0]} "
                    f"with {json.dumps(first.get(key))}: only trees grown alike merge into one "
                    f"training set (collect the missing prompts again with {names[0]}'s "
                    "settings)")
    merged = {k: v for k, v in first.items() if k not in PER_FILE}
    parts = []
    for meta, name in zip(metas, names, strict=True):
        sets = meta.get("prompt_sets") or ([meta["prompt_set"]] if "prompt_set" in meta else [])
        parts.append({"file": name, "num_prompts": meta.get("num_prompts"),
                      "prompts_sha256": meta.get("prompts_sha256"), "prompt_sets": list(sets),
                      "split": meta.get("split"), "skip": meta.get("skip", 0),
                      "seed": meta.get("seed"), "recipe": meta.get("recipe")})
    merged["num_prompts"] = sum(int(p["num_prompts"] or 0) for p in parts)
    merged["prompt_sets"] = list(dict.fromkeys(s for p in parts for s in p["prompt_sets"]))
    later = list(dict.fromkeys(n for meta in metas for n in meta.get("scored_later") or []))
    if later:
        merged["scored_later"] = later
    digests = "".join(str(p["prompts_sha256"]) for p in parts)
    merged["prompts_sha256"] = hashlib.sha256(digests.encode()).hexdigest()
    merged["merged_from"] = parts
    return merged


def merge_tree_files(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Concatenate the tree files `paths` (in order) into `out`, atomically.

    Refused, naming the files: fewer than two, `out` among them, other objectives, trees grown
    with other settings (`merged_meta`), or a prompt (by id) in more than one file.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise MavisError("give at least two tree files to merge")
    target = Path(out).resolve()
    if any(p.resolve() == target for p in paths):
        raise MavisError(f"--out {str(out)!r} is one of the files to merge; write a new file")
    seen: dict[str, str] = {}
    metas = []
    for path in paths:
        metas.append(read_attrs(path)[1])
        for prompt_id in read_prompt_ids(path):
            if prompt_id in seen:
                raise MavisError(f"prompt {prompt_id} is in both {seen[prompt_id]} and {path}; "
                                 "merge files of different prompts (`mavis collect --skip N` "
                                 "leaves out the first N)")
            seen[prompt_id] = str(path)
    meta = merged_meta(metas, [str(p) for p in paths])
    return merge_parts(paths, out, meta=meta)  # it refuses other objectives
