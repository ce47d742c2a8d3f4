"""The libraries' noise (weight-loading bars, deprecation warnings and logs, info logs) kept out
of the terminal for one command, unless `mavis --verbose` asks for it.

Two ways in, because the libraries read their switches at different times:

- the environment (`HF_HUB_DISABLE_PROGRESS_BARS`, `TRANSFORMERS_VERBOSITY`, ...), which
  transformers and the hub read once, when first imported: enough for the console script,
  which imports them only inside the command;
- their switches themselves, for a library imported before the command ran (a host process
  that calls `mavis.cli.main`, a notebook, the tests): transformers' progress bars and
  verbosity, the hub's bars and the loggers of the others.

Everything set here is undone when the command ends (`stack` closes), so a host process gets
its own settings back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' weight-loading and saving bars too
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
NOISY_MODULES = r"(torch|transformers|peft|accelerate|trl|datasets|huggingface_hub|h5py)(\.|$)"
VERBOSE = "MAVIS_VERBOSE"  # as `mavis.models.loading.VERBOSE` (not imported: it loads torch)
LOGGERS = ("transformers", "trl", "accelerate", "peft", "datasets", "torch", "huggingface_hub")


def loud(stack: contextlib.ExitStack) -> None:
    """Let the libraries speak until `stack` closes, in mavis's own quiet blocks too
    (`mavis.models.loading.quiet_libraries` reads this variable)."""
    before = os.environ.get(VERBOSE)
    os.environ[VERBOSE] = "1"
    stack.callback(lambda: os.environ.pop(VERBOSE, None) if before is None
                   else os.environ.__setitem__(VERBOSE, before))


def quiet(stack: contextlib.ExitStack) -> None:
    """Quiet the libraries until `stack` closes."""
    added = [name for name in ENVIRONMENT if name not in os.environ]
    os.environ.update({name: ENVIRONMENT[name] for name in added})
    stack.callback(lambda: [os.environ.pop(name, None) for name in added])
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module=NOISY_MODULES)
    _quiet_loaded(stack)


def _quiet_loaded(stack: contextlib.ExitStack) -> None:
    """The switches of the libraries already imported (they read the environment before it
    was set); not importing any that is not."""
    hf = sys.modules.get("transformers.utils.logging")
    if hf is not None:
        bars, verbosity = hf.is_progress_bar_enabled(), hf.get_verbosity()
        hf.disable_progress_bar()
        hf.set_verbosity_error()
        stack.callback(hf.set_verbosity, verbosity)
        if bars:
            stack.callback(hf.enable_progress_bar)
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and not hub.are_progress_bars_disabled():
        hub.disable_progress_bars()
        stack.callback(hub.enable_progress_bars)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(max(logger.level, logging.ERROR))
