"""The `mavis` command line. Each command group lives in its own module and registers itself.

Errors a user can fix (`MavisError`) print as one line, `error: ...`, with exit code 2
(`mavis --verbose ...`: after the traceback of what caused it, when something did).
"""

from __future__ import annotations

import contextlib
import sys
import traceback

import typer

from mavis.cli.quiet import loud, quiet
from mavis.errors import MavisError

app = typer.Typer(
    name="mavis",
    help="MAVIS: multi-objective alignment via value-guided inference-time search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# What the callback was told and where it keeps what it changed, for `main` (which prints the
# errors and undoes the changes) to read.
_RUN: dict = {"verbose": False, "stack": None}


@app.callback()
def _options(verbose: bool = typer.Option(
        False, "--verbose", help="Show the libraries' own logs, warnings and loading bars, and "
        "the traceback behind an error.")) -> None:
    """Keep the libraries' noise (weight-loading bars, deprecation warnings, info logs) out of
    the terminal unless --verbose asks for it; mavis's own progress bars and notes stay."""
    _RUN["verbose"] = verbose
    # outside `main` (typer's test runner) nothing closes a fresh stack: the setting stays
    (loud if verbose else quiet)(_RUN["stack"] or contextlib.ExitStack())


# Command modules: each defines `register(app)`. Imported here, so adding a command is one
# module and one line.
from mavis.cli import bundle as _bundle  # noqa: E402
from mavis.cli import data as _data  # noqa: E402
from mavis.cli import demo as _demo  # noqa: E402
from mavis.cli import evaluate as _evaluate  # noqa: E402
from mavis.cli import generate as _generate  # noqa: E402
from mavis.cli import iterate as _iterate  # noqa: E402
from mavis.cli import judge as _judge  # noqa: E402
from mavis.cli import objectives as _objectives  # noqa: E402
from mavis.cli import prompts as _prompts  # noqa: E402
from mavis.cli import report as _report  # noqa: E402
from mavis.cli import serve as _serve  # noqa: E402
from mavis.cli import train as _train  # noqa: E402

for _module in (_demo, _generate, _objectives, _prompts, _data, _train, _iterate, _evaluate,
                _judge, _report, _bundle, _serve):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code when called in-process.

    The app runs in the command-line framework's standalone mode, so usage errors (an unknown
    command or option, a missing argument, a value of the wrong type) print its usual usage
    message and exit with code 2, whichever click the installed typer uses. Errors a user can
    fix (`MavisError`) print one line, `error: ...`, and exit with code 2 too. What the command
    changed to quiet the libraries is undone before this returns.
    """
    _RUN["verbose"] = False
    with contextlib.ExitStack() as stack:
        _RUN["stack"] = stack
        try:
            return _run(argv)
        finally:
            _RUN["stack"] = None


def _run(argv: list[str] | None) -> int:
    try:
        app(args=argv, prog_name="mavis")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except MavisError as exc:
        if _RUN["verbose"] and exc.__cause__ is not None:  # e.g. a user objective's own error
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (disk full, a file removed meanwhile)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    return 0


def entry_point() -> None:
    sys.exit(main())
