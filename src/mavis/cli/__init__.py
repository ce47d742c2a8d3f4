"""The `mavis` command line. Each command group lives in its own module and registers itself.

Errors a user can fix (`MavisError`) print as one line, `error: ...`, with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from mavis.errors import MavisError

app = typer.Typer(
    name="mavis",
    help="MAVIS: multi-objective alignment via value-guided inference-time search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command modules: each defines `register(app)`. Imported here, so adding a command is one
# module and one line.
from mavis.cli import data as _data  # noqa: E402
from mavis.cli import demo as _demo  # noqa: E402
from mavis.cli import evaluate as _evaluate  # noqa: E402
from mavis.cli import generate as _generate  # noqa: E402
from mavis.cli import iterate as _iterate  # noqa: E402
from mavis.cli import objectives as _objectives  # noqa: E402
from mavis.cli import prompts as _prompts  # noqa: E402
from mavis.cli import train as _train  # noqa: E402

for _module in (_demo, _generate, _objectives, _prompts, _data, _train, _iterate, _evaluate):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code when called in-process."""
    try:
        app(args=argv, standalone_mode=False)
    except MavisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry_point() -> None:
    sys.exit(main())
