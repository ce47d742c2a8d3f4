"""`mavis bundle RUN NAME`: ship a trained value model inside the package, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle)


def bundle(
    run: Annotated[Path, typer.Argument(help="A `mavis iterate` run folder or a `mavis train` "
                                              "output folder.")],
    name: Annotated[str, typer.Argument(help="Name of the bundled model folder.")],
    iteration: Annotated[int | None, typer.Option(
        help="Which iteration of a recipe run (default: the last trained).")] = None,
    into: Annotated[Path | None, typer.Option(
        help="Folder to bundle into (default: the package's assets/value_models).")] = None,
) -> None:
    """Copy a trained value model into the package with a PROVENANCE.md saying how it was
    made (recipe, data, validation figures, held-out evaluation, this command)."""
    from mavis.models.bundled import BUNDLED_DIR
    from mavis.recipes.bundle import bundle_run

    target = bundle_run(run, name, iteration=iteration, into=into or BUNDLED_DIR)
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    typer.echo(f"bundled {run} -> {target} ({size:.1f} MB)")
