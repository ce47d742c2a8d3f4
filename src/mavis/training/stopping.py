"""Stop a training run cleanly on Ctrl-C or SIGTERM: the loop finishes the step it is in,
saves its resumable checkpoint and only then exits, so no step is lost.

    with stop_requests() as stop:
        for batch in batches:
            step(batch)
            if stop.requested:
                save(); raise TrainingStopped(...)

A second Ctrl-C (or SIGTERM) while the step or the saving runs stops at once, as usual; the
checkpoint saved before it is still there. The handlers are installed only in the main thread
(Python delivers signals there) and restored on exit.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(KeyboardInterrupt):
    """Raised once a stopped run has saved its checkpoint; its message says at which step and
    where. A KeyboardInterrupt, so that whatever runs the training stops as on Ctrl-C."""


@dataclass
class StopRequest:
    """Set by the first Ctrl-C or SIGTERM: the signal's name, or None."""

    signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def stop_requests(enabled: bool = True) -> Iterator[StopRequest]:
    """Within the block, the first Ctrl-C or SIGTERM only sets the yielded request; the
    second one interrupts at once. Disabled (or off the main thread): the request is never
    set and signals act as usual."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    # a signal the process ignores (SIGINT of a background job) stays ignored
    previous = {number: signal.getsignal(number) for number in _SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}

    def handle(number: int, frame: FrameType | None) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.signal_name = signal.Signals(number).name
        print(f"\n{request.signal_name}: stopping after this step, once its checkpoint is "
              "saved (Ctrl-C again stops at once)", file=sys.stderr, flush=True)

    for number in previous:
        signal.signal(number, handle)
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def resume_hint(hint: str) -> Iterator[None]:
    """Print where a run stopped inside the block saved its work and how to continue (`hint`,
    e.g. "continue with --resume") on stderr, then let it stop the command (exit code 130)."""
    try:
        yield
    except TrainingStopped as exc:
        print(f"{exc}: {hint}", file=sys.stderr)
        raise
