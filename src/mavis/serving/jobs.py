"""A `Job` is one HTTP request as the engine sees it: its tokenised prompts, one `RowRequest`
per choice, how each choice ends, and the channel its results go back through.

The engine runs in its own thread; the request handler waits in the server's event loop. The
engine hands results over with `Job.send`, which puts an event on the handler's asyncio queue
from the engine's thread. A handler whose client went away calls `cancel`; the engine drops
the job's rows at its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from mavis.decoding.decoder import GeneratedSequence, RowRequest
from mavis.serving.errors import APIError


@dataclass
class Delta:
    """New text of choice `index` (streaming), with the tokens it came from and their
    log-probabilities under the policy."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[float]
    tokens: list[str] | None = None  # each token's text, when the request asked for logprobs


@dataclass
class Done:
    """Choice `index` is finished: the whole answer, and the last piece of text not yet
    streamed (with its tokens)."""

    index: int
    sequence: GeneratedSequence
    rest: Delta
    tokens: list[str] | None = None  # every token's text, when the request asked for logprobs


@dataclass
class Failed:
    """The job cannot finish (the engine stopped, or a step failed)."""

    error: APIError


Event = Delta | Done | Failed


@dataclass
class Job:
    """One request: `prompts[i]` (the user's words, what objectives score against) tokenised
    as `prompt_ids[i]`; `rows` holds `per_prompt` rows per prompt, prompt-major (row r answers
    prompt r // per_prompt): the `n` choices of the response, or with `best_of` that many
    candidates, of which the `n` of highest value are the choices."""

    prompts: list[str]
    prompt_ids: list[list[int]]
    rows: list[RowRequest]  # how each choice is decoded and ends: its `settings`
    n: int
    best_of: int = 0  # candidates per prompt, ranked by value (0: the n rows are the choices)
    stream: bool = False
    logprobs: bool = False
    created: float = field(default_factory=time.time)
    _loop: asyncio.AbstractEventLoop | None = None
    _events: asyncio.Queue | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._events = asyncio.Queue()

    @property
    def stop(self) -> tuple[str, ...]:
        """The stop strings of the job's choices (one request: the same for all)."""
        return self.rows[0].settings.stop if self.rows else ()

    @property
    def per_prompt(self) -> int:
        """Rows per prompt in the batch."""
        return self.best_of or self.n

    @property
    def size(self) -> int:
        """Rows this job takes in the batch."""
        return len(self.rows)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """The client went away: the engine drops this job's rows at its next step."""
        self._cancelled.set()

    def send(self, event: Event) -> None:
        """Hand an event to the waiting handler (safe from any thread; dropped when the
        handler's event loop is gone)."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            self.cancel()

    async def next_event(self) -> Event:
        return await self._events.get()
