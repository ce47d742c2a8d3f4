"""Silence the libraries the baselines drive (transformers, TRL, peft, accelerate, datasets):
their deprecation warnings, info logs and per-file progress bars say nothing a user can act
on, and would bury our own progress bar."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_LOGGERS = ("trl", "accelerate", "peft", "datasets")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """For the block: warnings ignored, library loggers at ERROR, transformers' progress bars
    off; everything restored afterwards."""
    from transformers.utils import logging as hf_logging

    from mavis.models.loading import quiet_transformers

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
