"""The engine: a queue of jobs and one background thread that decodes them, continuously
batched.

Each turn of the loop, between two decoding steps:
  1. rows whose client went away leave the batch (`DecodingState.select`);
  2. queued jobs join while the batch has room: their prompts are prefilled together as a
     fresh state whose rows `merge` into the running one (a job joins whole, in arrival order);
  3. one step: `choose` a token for every row; rows that hit an end-of-sequence token, a stop
     string or their max_tokens finish and leave; streaming rows send their new text;
  4. `advance` runs the reference model on the chosen tokens.
Every row carries its own settings, weights and random generator, so a request gets the same
tokens whatever else shares its batch (the decoding state guarantees it; the tests check it
through the HTTP API).

A job that would make the queue longer than `max_queue` rows is refused (429). A step that
fails fails the jobs in the batch (500) and the engine goes on with the next ones.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import torch

from mavis.decoding.batch import Batch
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.state import DecodingState
from mavis.serving.errors import APIError, client_gone
from mavis.serving.jobs import Delta, Done, Failed, Job
from mavis.serving.metrics import Metrics
from mavis.serving.spec import ServerLimits
from mavis.serving.text import safe_delta

log = logging.getLogger("mavis.serving")
IDLE_WAIT_S = 1.0


@dataclass
class Slot:
    """The engine's bookkeeping for one row of the batch: which job and choice it answers, and
    how much of its text and tokens were streamed."""

    job: Job
    index: int
    sent_chars: int = 0
    sent_tokens: int = 0

    @property
    def prompt(self) -> str:
        return self.job.prompts[self.index // self.job.per_prompt]


class Engine:
    """Decodes the jobs submitted to it, in a thread of its own (`start` / `stop`)."""

    def __init__(self, decoder: MavisDecoder, limits: ServerLimits,
                 metrics: Metrics | None = None) -> None:
        self.decoder = decoder
        self.limits = limits
        self.metrics = metrics or Metrics()
        self.tokenizer_lock = threading.Lock()
        self._pending: deque[Job] = deque()
        self._pending_rows = 0
        self._wake = threading.Condition()
        self._state: DecodingState | None = None
        self._slots: list[Slot] = []
        self._joining: list[Job] = []  # taken from the queue, not yet in the batch
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- the HTTP side ----------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mavis-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current step, fail what is left (503) and end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> None:
        """Queue `job`; a 429 when the queue has no room for its rows, a 503 when stopping."""
        with self._wake:
            if self._stopping or self._thread is None:
                raise APIError(503, "the server is shutting down; try again later",
                               code="shutting_down")
            if self._pending_rows + job.size > self.limits.max_queue:
                raise APIError(429, f"the queue is full ({self._pending_rows} answers waiting, "
                               f"at most {self.limits.max_queue}); retry shortly",
                               code="queue_full")
            self._pending.append(job)
            self._pending_rows += job.size
            self.metrics.queue_length.set(self._pending_rows)
            self._wake.notify_all()

    @property
    def running_rows(self) -> int:
        return len(self._slots)

    @property
    def queued_rows(self) -> int:
        return self._pending_rows

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while self._wait_for_work():
                try:
                    self._drop_cancelled()
                    self._admit()
                    if self._state is not None:
                        self._step()
                except Exception as exc:  # a bug or an out-of-memory: fail the batch, go on
                    log.exception("decoding step failed")
                    self._fail_running(exc)
                self.metrics.batch_size.set(len(self._slots))
        self._fail_everything()

    def _wait_for_work(self) -> bool:
        """Block while there is nothing to do; False once stopping."""
        with self._wake:
            while not self._stopping and self._state is None and not self._pending:
                self._wake.wait(IDLE_WAIT_S)
            return not self._stopping

    def _drop_cancelled(self) -> None:
        """Rows whose client went away leave; their handler is told (it may still wait)."""
        keep = [r for r, slot in enumerate(self._slots) if not slot.job.cancelled]
        if len(keep) < len(self._slots):
            gone = {id(s.job): s.job for s in self._slots if s.job.cancelled}
            for job in gone.values():
                job.send(Failed(client_gone()))
            self.metrics.cancelled_rows.inc(len(self._slots) - len(keep))
            self._keep(keep)

    def _admit(self) -> None:
        """Queued jobs that fit join the batch, in arrival order (cancelled ones are dropped)."""
        jobs = self._joining = []
        room = self.limits.max_batch - len(self._slots)
        with self._wake:
            while self._pending and (self._pending[0].size <= room or self._pending[0].cancelled):
                job = self._pending.popleft()
                self._pending_rows -= job.size
                if job.cancelled:
                    job.send(Failed(client_gone()))
                else:
                    jobs.append(job)
                    room -= job.size
            self.metrics.queue_length.set(self._pending_rows)
        if not jobs:
            return
        state = self.decoder.start_rows(self._prompt_batch(jobs),
                                        [row for job in jobs for row in job.rows])
        self.metrics.prompt_tokens.inc(sum(len(ids) for job in jobs for ids in job.prompt_ids))
        if self._state is None:
            self._state = state
        else:
            self._state.merge(state)
        self._slots += [Slot(job, index) for job in jobs for index in range(job.size)]
        self._joining = []

    def _prompt_batch(self, jobs: list[Job]) -> Batch:
        """Every row's prompt tokens, left-padded into one batch."""
        rows = [(job.prompt_ids[index // job.per_prompt], job.prompts[index // job.per_prompt])
                for job in jobs for index in range(job.size)]
        pad = self.decoder.tokenizer.pad_token_id
        return Batch.from_token_lists([ids for ids, _ in rows], 0 if pad is None else int(pad),
                                      self.decoder.device, [prompt for _, prompt in rows])

    def _step(self) -> None:
        state = self._state
        tokens = state.choose().tolist()
        self.metrics.generated_tokens.inc(len(tokens))
        self.metrics.step_batch.observe(len(tokens))
        keep: list[int] = []
        with self.tokenizer_lock:
            for row, (slot, token) in enumerate(zip(self._slots, tokens, strict=True)):
                reason = self.decoder.finish_reason(state, row, token)
                if reason is None:
                    keep.append(row)
                    if slot.job.stream:
                        self._stream(slot, row)
                else:
                    self._finish(slot, row, reason)
        self._keep(keep)
        if self._state is not None:
            self._state.advance()

    def _stream(self, slot: Slot, row: int) -> None:
        """Send the row's new text, when some of it is safe to send."""
        ids = self._state.generated(row)
        text = self.decoder.tokenizer.decode(ids, skip_special_tokens=True)
        piece, slot.sent_chars = safe_delta(text, slot.sent_chars, slot.job.stop)
        if piece:
            slot.job.send(self._delta(slot, row, piece, ids))

    def _delta(self, slot: Slot, row: int, text: str, ids: list[int]) -> Delta:
        """A delta of `text` carrying the row's tokens not yet sent."""
        new = ids[slot.sent_tokens:]
        logprobs = self._state.generated(row, "logprobs")[slot.sent_tokens:]
        slot.sent_tokens = len(ids)
        return Delta(slot.index, text, new, logprobs, self._token_texts(slot.job, new))

    def _finish(self, slot: Slot, row: int, reason: str) -> None:
        job = slot.job
        sequence = self.decoder.sequence_from(slot.prompt, self._state, row, reason)
        delta = self._delta(slot, row, sequence.text[slot.sent_chars:], sequence.token_ids)
        job.send(Done(slot.index, sequence, delta, self._token_texts(job, sequence.token_ids)))

    def _token_texts(self, job: Job, ids: list[int]) -> list[str] | None:
        if not job.logprobs:
            return None
        return [self.decoder.tokenizer.decode([i]) for i in ids]

    def _keep(self, rows: list[int]) -> None:
        """Keep only `rows` of the batch (all gone: no batch)."""
        if len(rows) == len(self._slots):
            return
        self._slots = [self._slots[r] for r in rows]
        if not rows:
            self._state = None
        else:
            self._state.select(torch.tensor(rows))

    # -- failures ---------------------------------------------------------------------------
    def _fail_running(self, exc: Exception) -> None:
        """Fail every job in the batch or joining it (500); the queue goes on."""
        error = APIError(500, f"decoding failed ({type(exc).__name__}: {exc}); the request "
                         "can be retried", code="decoding_failed")
        jobs = {id(s.job): s.job for s in self._slots} | {id(j): j for j in self._joining}
        for job in jobs.values():
            job.send(Failed(error))
        self._state, self._slots, self._joining = None, [], []

    def _fail_everything(self) -> None:
        error = APIError(503, "the server is shutting down; try again later",
                         code="shutting_down")
        with self._wake:
            jobs = [s.job for s in self._slots] + list(self._pending)
            self._pending.clear()
            self._pending_rows = 0
        for job in {id(j): j for j in jobs}.values():
            job.send(Failed(error))
        self._state, self._slots = None, []
