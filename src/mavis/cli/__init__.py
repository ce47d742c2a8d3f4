"""The `mavis` command line. Each command group lives in its own module and registers itself.

Errors a user can fix (`MavisError`) print as one line, `error: ...`, with exit code 2.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from mavis.errors import MavisError

app = typer.Typer(
    name="mavis",
    help="MAVIS: multi-objective alignment via value-guided inference-time search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' weight-loading and saving bars too
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_NOISY_MODULES = r"(torch|transformers|peft|accelerate|trl|datasets|huggingface_hub|h5py)(\.|$)"


@app.callback()
def _options(verbose: bool = typer.Option(
        False, "--verbose", help="Show the libraries' own logs, warnings and loading bars.")
        ) -> None:
    """Keep the libraries' noise (weight-loading bars, deprecation warnings, info logs) out of
    the terminal unless --verbose asks for it; mavis's own progress bars and notes stay."""
    if verbose:
        return
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module=_NOISY_MODULES)


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
    fix (`MavisError`) print one line, `error: ...`, and exit with code 2 too.
    """
    try:
        app(args=argv, prog_name="mavis")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except MavisError as exc:
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
