"""Scoring a tree file with more objectives: `mavis data score TREES --objectives a,b`.

Trees sampled from pi_ref do not depend on the objectives (paper section 4.5): the same leaves
serve any reward function. `score_trees` decodes every leaf's response exactly as collection
does (`mavis.trees.group.assemble`: the root-to-leaf segments, decoded with the reference
model's tokenizer, skipping special tokens), scores the leaves with the new objectives,
recomputes every node's value (the mean of its children's) and adds the columns:

    score_trees("runs/x/trees.h5", "witty,upbeat", out="runs/x/trees-more.h5")

The result equals what `mavis collect` would have written had the objectives been collected
from the start. An objective already in the file is refused unless `replace=True`, which
recomputes its columns in place. The names added go into the meta as `scored_later`.

Resuming: the leaves are scored in chunks; after each chunk the scores so far are saved in a
side file beside the output (`.<name>.score-<hash>.npz`, written atomically), so a run that is
stopped (Ctrl-C, `kill -9`) continues where it stopped when started again with the same
arguments. The output is written under a temporary name and renamed, so it appears whole or
not at all (in place: the original stays as it was until then); the side file is removed at
the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mavis.errors import MavisError
from mavis.models.loading import load_tokenizer
from mavis.objectives import get_objective, parse_objective_names, score_all
from mavis.paths import atomic_path, check_writable
from mavis.trees.store import read_trees, write_trees
from mavis.trees.table import TreeTable
from mavis.trees.tree_shape import propagate_means

CHUNK_LEAVES = 1024
"""Leaves scored per chunk, the unit of resuming (below the embedder's memory of 8192 texts,
so that objectives sharing an embedding embed each chunk once)."""

META_KEY = "scored_later"


@dataclass
class ScoringPlan:
    """What `score_trees` will do, checked before any scoring."""

    table: TreeTable
    out: Path
    names: list[str]  # the objectives to score, in the order given
    tokenizer: Any  # a loaded tokenizer, or the name to load one by
    side: Path  # the side file of finished chunks
    key: str  # what the side file must belong to

    @property
    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.table.is_leaf)


def score_trees(path: str | Path, objectives: str | Sequence[str], *,
                out: str | Path | None = None, replace: bool = False, tokenizer: Any = None,
                progress: bool = True, chunk_leaves: int = CHUNK_LEAVES) -> Path:
    """Score the leaves of the tree file `path` with `objectives` and add their columns.

    Args:
        objectives: names (or "a,b") of the objectives to add (see `mavis objectives list`).
        out: where to write the result (default: `path` itself, replaced atomically); an
            existing file other than `path` is refused.
        replace: recompute objectives the file already has (otherwise they are refused).
        tokenizer: a tokenizer, or the model name or folder to load it from (default: the
            file's reference model, `meta["reference"]`).
        chunk_leaves: leaves scored at once and saved before the next chunk (resuming).

    Returns the path written. Every check (names, file, output, objectives present) runs
    before any scoring; a stopped run resumes when started again with the same arguments.
    """
    plan = plan_scoring(path, objectives, out=out, replace=replace, tokenizer=tokenizer,
                        chunk_leaves=chunk_leaves)
    for name in plan.names:
        get_objective(name)  # build them all (load models, fit heads) before scoring
    if plan.tokenizer is None or isinstance(plan.tokenizer, str):
        plan.tokenizer = load_tokenizer(plan.tokenizer or plan.table.meta["reference"])
    check_tokenizer(plan.table, plan.tokenizer)
    scores = score_leaves(plan, chunk_leaves, progress=progress)
    write_trees(plan.out, with_scores(plan.table, plan.names, scores))
    plan.side.unlink(missing_ok=True)
    return plan.out


def plan_scoring(path: str | Path, objectives: str | Sequence[str], *,
                 out: str | Path | None, replace: bool, tokenizer: Any,
                 chunk_leaves: int) -> ScoringPlan:
    """Check the names, the file, the output and the objectives already present; nothing is
    loaded but the tree file."""
    names = parse_objective_names(objectives)  # an unknown name fails here, before any reading
    if chunk_leaves < 1:
        raise MavisError(f"chunk_leaves must be >= 1, got {chunk_leaves}")
    source = Path(path).expanduser()
    target = source if out is None else Path(out).expanduser()
    table = read_trees(source)
    present = [name for name in names if name in table.objectives]
    if present and not replace:
        listed = ", ".join(map(repr, present))
        raise MavisError(
            f"objective(s) {listed} already in {str(source)!r} (it has "
            f"{', '.join(table.objectives)}); leave them out of --objectives, or give "
            "--replace (replace=True) to score them again")
    if target.exists() and target.resolve() != source.resolve():
        raise MavisError(f"--out {str(target)!r} exists; choose a new name, or delete it")
    check_writable(target, what="--out")
    if tokenizer is None and not table.meta.get("reference"):
        raise MavisError(f"{str(source)!r} names no reference model in its meta; give the "
                         "tokenizer that generated it (--tokenizer MODEL)")
    key = scoring_key(table, names, tokenizer)
    side = target.with_name(f".{target.name}.score-{key[:16]}.npz")
    return ScoringPlan(table, target, names, tokenizer, side, key)


def scoring_key(table: TreeTable, names: Sequence[str], tokenizer: Any) -> str:
    """A digest of what decides the scores: the leaves' tokens and prompts, the tokenizer and
    the objectives. A side file of another key is not resumed from."""
    if tokenizer is None or isinstance(tokenizer, str):
        tokenizer_name = tokenizer or table.meta.get("reference", "")
    else:
        tokenizer_name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    digest = hashlib.sha256(json.dumps([list(names), tokenizer_name]).encode())
    for name in ("nodes/parent", "nodes/is_leaf", "nodes/token_count", "tokens/id"):
        digest.update(np.ascontiguousarray(table[name]).tobytes())
    digest.update(json.dumps(table["prompts/text"].tolist()).encode())
    return digest.hexdigest()


def check_tokenizer(table: TreeTable, tokenizer: Any) -> None:
    """The file's token ids must exist in the tokenizer's vocabulary."""
    if table.num_tokens and int(table.tokens.max()) >= len(tokenizer):
        raise MavisError(
            f"{table.source} holds token id {int(table.tokens.max())}, beyond the vocabulary "
            f"of the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} ({len(tokenizer)} "
            "tokens); give the tokenizer of the model that generated the trees")


def leaf_texts(table: TreeTable, leaves: np.ndarray, tokenizer: Any
               ) -> tuple[list[str], list[str]]:
    """(prompt text, decoded response) of each leaf, decoded as `assemble` decodes them."""
    texts = table["prompts/text"]
    prompts = [str(texts[int(table.prompt[leaf])]) for leaf in leaves]
    responses = [tokenizer.decode(table.response_tokens(leaf).tolist(),
                                  skip_special_tokens=True) for leaf in leaves]
    return prompts, responses


def score_leaves(plan: ScoringPlan, chunk_leaves: int, *, progress: bool = True) -> np.ndarray:
    """[leaves, objectives] float64 scores, chunk by chunk, resuming from the side file."""
    leaves = plan.leaves
    scores, done = load_side(plan, len(leaves))
    if done:
        print(f"resuming: {done} of {len(leaves)} leaves already scored in {plan.side}",
              file=sys.stderr)
    bar = tqdm(total=len(leaves), initial=done, desc=f"scoring {', '.join(plan.names)}",
               unit="leaf", dynamic_ncols=True, file=sys.stderr, disable=not progress)
    with bar:
        for start in range(done, len(leaves), chunk_leaves):
            chunk = leaves[start:start + chunk_leaves]
            prompts, responses = leaf_texts(plan.table, chunk, plan.tokenizer)
            result = score_all(plan.names, prompts, responses)
            for column, name in enumerate(plan.names):
                values = np.asarray(result.get(name, []), dtype=np.float64)
                if len(values) != len(chunk) or not np.isfinite(values).all():
                    raise MavisError(f"objective {name!r} returned a missing or non-finite score")
                scores[start:start + len(chunk), column] = values
            save_side(plan, scores, start + len(chunk))
            bar.update(len(chunk))
    return scores


def load_side(plan: ScoringPlan, count: int) -> tuple[np.ndarray, int]:
    """(scores, leaves done) from the side file of this plan, or a fresh start."""
    remove_debris(plan.side)
    remove_debris(plan.out)
    fresh = np.full((count, len(plan.names)), np.nan), 0
    if not plan.side.exists():
        return fresh
    try:
        with np.load(plan.side) as saved:
            key, scores, done = str(saved["key"]), saved["scores"], int(saved["done"])
    except (OSError, ValueError, KeyError) as exc:
        print(f"ignoring the unreadable side file {plan.side} ({exc})", file=sys.stderr)
        return fresh
    if key != plan.key or scores.shape != fresh[0].shape or not 0 <= done <= count:
        return fresh
    return scores.astype(np.float64), done


def save_side(plan: ScoringPlan, scores: np.ndarray, done: int) -> None:
    """Save the scores of the first `done` leaves (atomically: temporary name, rename)."""
    with atomic_path(plan.side) as temp, open(temp, "wb") as handle:
        np.savez(handle, key=np.array(plan.key), scores=scores, done=np.array(done))


_TEMP = re.compile(r"\.tmp-(\d+)$")


def remove_debris(path: Path) -> None:
    """Remove the temporary files of `atomic_path(path)` left by processes that are gone."""
    for entry in path.parent.glob(f".{path.name}.tmp-*"):
        match = _TEMP.search(entry.name)
        if match and not _alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_scores(table: TreeTable, names: Sequence[str], scores: np.ndarray) -> TreeTable:
    """`table` with the leaves' `scores` [leaves, len(names)] as the columns of `names`:
    rewards at the leaves (NaN elsewhere), values propagated as means of children, computed
    as `assemble` computes them. Existing columns of a name are replaced, new ones appended."""
    is_leaf = table.is_leaf
    reward = np.full((table.num_nodes, len(names)), np.nan)
    reward[np.flatnonzero(is_leaf)] = scores
    value = propagate_means(table.parent, is_leaf, np.where(is_leaf[:, None], reward, 0.0))
    objectives = list(table.objectives)
    rewards, values = [table.reward[:, m] for m in range(len(objectives))], [
        table.value[:, m] for m in range(len(objectives))]
    for column, name in enumerate(names):
        if name not in objectives:
            objectives.append(name)
            rewards.append(None)
            values.append(None)
        index = objectives.index(name)
        rewards[index] = reward[:, column].astype(np.float32)
        values[index] = value[:, column].astype(np.float32)
    meta = dict(table.meta)
    meta[META_KEY] = list(dict.fromkeys([*meta.get(META_KEY, []), *names]))
    data = {**table.data,
            "nodes/reward": np.stack(rewards, axis=1).astype(np.float32),
            "nodes/value": np.stack(values, axis=1).astype(np.float32)}
    return TreeTable(objectives, meta, data, source=table.source)
