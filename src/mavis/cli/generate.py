"""`mavis generate` commands (placeholder until the module lands)."""

import typer


def register(app: typer.Typer) -> None:
    pass
