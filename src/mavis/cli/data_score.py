"""`mavis data score TREES --objectives a,b`: add objectives to an existing tree file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mavis.errors import MavisError


def register(data_app: typer.Typer) -> None:
    """Add `score` to the `data` command group."""
    data_app.command("score")(score_command)


def score_command(
    trees: Annotated[Path, typer.Argument(help="A tree file written by `mavis collect`.")],
    objectives: Annotated[str, typer.Option(
        help="Comma-separated objectives to add (see `mavis objectives list`), e.g. "
        "witty,upbeat,interesting.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the result here (.h5) instead of replacing TREES.")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Score objectives the file already has again, replacing their "
        "columns (otherwise they are refused).")] = False,
    tokenizer: Annotated[str | None, typer.Option(
        help="Model whose tokenizer decodes the leaves (default: the file's reference "
        "model).")] = None,
    chunk_leaves: Annotated[int, typer.Option(
        help="Leaves scored at once and saved before the next (the unit of resuming).")]
    = 1024,  # mavis.trees.rescore.CHUNK_LEAVES (not imported here: it loads torch)
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Score the leaves of a tree file with more objectives and add their rewards and values.

    The trees are reused (paper section 4.5): as if collected with these objectives.

    TREES is replaced atomically, or --out written; a stopped run resumes when run again.
    """
    from mavis.trees.rescore import score_trees
    from mavis.trees.store import read_trees

    if chunk_leaves < 1:
        raise MavisError(f"--chunk-leaves is {chunk_leaves}; give a whole number >= 1")
    if out is not None and out.suffix not in (".h5", ".hdf5"):
        raise MavisError(f"--out {str(out)!r} should end in .h5 (an HDF5 tree file)")
    path = score_trees(trees, objectives, out=out, replace=replace, tokenizer=tokenizer,
                       progress=progress, chunk_leaves=chunk_leaves)
    table = read_trees(path)
    names = ", ".join(name.strip() for name in objectives.split(",") if name.strip())
    typer.echo(f"wrote {path}: scored {int(table.is_leaf.sum())} leaves with {names}; "
               f"objectives now: {', '.join(table.objectives)}")
