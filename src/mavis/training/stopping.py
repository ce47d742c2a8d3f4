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

With several processes (`torchrun`, `accelerate launch`) every process installs them, and the
trainer makes the processes agree on the step to stop at (`parallel.agree_on_stop`: a request
seen by any process at the end of a step stops them all there). A launcher forwards the signal
it gets to its workers, which a scheduler may have signalled already: a repeat that soon after
the first (`repeat_after` seconds) is the same request, not a second one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_NAMES = tuple(number.name for number in _SIGNALS)


class TrainingStopped(KeyboardInterrupt):
    """Raised once a stopped run has saved its checkpoint; its message says at which step and
    where. A KeyboardInterrupt, so that whatever runs the training stops as on Ctrl-C."""


@dataclass
class StopRequest:
    """Set by the first Ctrl-C or SIGTERM: the signal's name, or None."""

    signal_name: str | None = None
    at: float = 0.0  # time.monotonic() of the first signal

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def stop_requests(enabled: bool = True, repeat_after: float = 0.0) -> Iterator[StopRequest]:
    """Within the block, the first Ctrl-C or SIGTERM only sets the yielded request; the
    second one interrupts at once (one within `repeat_after` seconds of the first is taken for
    the same one, delivered twice). Disabled (or off the main thread): the request is never
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
            if time.monotonic() - request.at < repeat_after:
                return
            raise KeyboardInterrupt
        request.signal_name, request.at = signal.Signals(number).name, time.monotonic()
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
    e.g. "continue with --resume") on stderr, then let it stop the command (exit code 130).
    With several processes, the first (RANK 0, as torchrun and accelerate number them) says
    it; every process exits with 130."""
    try:
        yield
    except TrainingStopped as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"{exc}: {hint}", file=sys.stderr)
        raise
