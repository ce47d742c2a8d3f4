"""Progress display shared by long jobs: rich progress bars (rate and ETA) and status spinners."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from tqdm.auto import tqdm

T = TypeVar("T")


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """Show a spinner with `message` on stderr while the block runs."""
    console = Console(stderr=True)
    if not console.is_terminal:
        print(message + " ...", file=sys.stderr, flush=True)
        yield
        return
    with console.status(message):
        yield


def track(items: Iterable[T], description: str, total: int | None = None,
          unit: str = "it", disable: bool = False) -> Iterator[T]:
    """Iterate with a progress bar showing count, rate and ETA (tqdm, on stderr)."""
    yield from tqdm(items, desc=description, total=total, unit=unit, disable=disable,
                    dynamic_ncols=True, file=sys.stderr)
