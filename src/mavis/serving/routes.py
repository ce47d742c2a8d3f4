"""POST /v1/completions and /v1/chat/completions: read and check the request, queue its job,
and answer with the whole response or a stream of server-sent events.

A client that goes away frees its rows at the engine's next step: a stream notices when
sending fails or the server sees the disconnect; a waiting (non-streamed) request watches for
the disconnect while it waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mavis.serving.engine import Engine
from mavis.serving.errors import APIError
from mavis.serving.jobs import Delta, Done, Failed, Job
from mavis.serving.planner import Planner
from mavis.serving.responses import (
    Envelope,
    choice,
    chunk_choice,
    final_chunk_choice,
    sse,
    usage,
)
from mavis.serving.schemas import ChatRequest, CompletionRequest, SamplingRequest, parse, read_json
from mavis.serving.scoring import Scorer
from mavis.serving.spec import ServerSpec

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Generation:
    """The two generation endpoints of one server."""

    def __init__(self, engine: Engine, planner: Planner, scorer: Scorer,
                 spec: ServerSpec) -> None:
        self.engine, self.planner, self.scorer, self.spec = engine, planner, scorer, spec

    async def completions(self, request: Request) -> Response:
        """OpenAI's text completions, each choice guided by the request's objective weights,
        with its KL to the reference (and, with `score`, every objective's reward)."""
        parsed = parse(CompletionRequest, await read_json(request, self.spec.limits.max_body_bytes))
        return await self._answer(request, parsed, self.planner.completion(parsed), chat=False)

    async def chat(self, request: Request) -> Response:
        """OpenAI's chat completions, each choice guided by the request's objective weights,
        with its KL to the reference (and, with `score`, every objective's reward)."""
        parsed = parse(ChatRequest, await read_json(request, self.spec.limits.max_body_bytes))
        return await self._answer(request, parsed, self.planner.chat(parsed), chat=True)

    async def _answer(self, request: Request, parsed: SamplingRequest, job: Job,
                      chat: bool) -> Response:
        envelope = Envelope(chat=chat, model=self.spec.name)
        self.engine.submit(job)
        if job.stream:
            usage_wanted = bool(parsed.stream_options and parsed.stream_options.include_usage)
            return StreamingResponse(self._stream(job, envelope, parsed.score, usage_wanted),
                                     media_type="text/event-stream", headers=STREAM_HEADERS)
        candidates = await self._collect(request, job)
        finished = best_by_value(candidates, job) if job.best_of else candidates
        sequences = [done.sequence for done in finished]
        scores = await self._scores(job, parsed.score, sequences)
        choices = [choice(chat, done.index, done.sequence, done.tokens, score)
                   for done, score in zip(finished, scores, strict=True)]
        return JSONResponse(envelope.body(choices, usage(
            job.prompt_ids, [done.sequence for done in candidates])))

    async def _collect(self, request: Request, job: Job) -> list[Done]:
        """Every choice of `job`, in order, watching for the client going away meanwhile."""
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        try:
            done: dict[int, Done] = {}
            while len(done) < job.size:
                event = await job.next_event()
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Done):
                    done[event.index] = event
            return [done[i] for i in range(job.size)]
        finally:
            watcher.cancel()
            job.cancel()  # nothing left to free when all finished; frees the rows otherwise

    async def _scores(self, job: Job, wanted: bool, sequences: list[Any]
                      ) -> list[dict[str, float] | None]:
        if not wanted:
            return [None] * len(sequences)
        prompts = [job.prompts[i // job.n] for i in range(len(sequences))]
        return await self.scorer.score(prompts, [seq.text for seq in sequences])

    async def _stream(self, job: Job, envelope: Envelope, score: bool,
                      usage_wanted: bool) -> AsyncIterator[str]:
        """The job's events as server-sent chunks, ending with `data: [DONE]`."""
        finished: dict[int, Any] = {}
        offsets = dict.fromkeys(range(job.size), 0)
        try:
            if envelope.chat:  # OpenAI opens each choice with the assistant's role
                yield sse(envelope.body([chunk_choice(True, Delta(i, "", [], []), True)
                                         for i in range(job.size)], None, chunk=True))
            while len(finished) < job.size:
                event = await job.next_event()
                if isinstance(event, Failed):
                    yield sse(event.error.body())
                    break
                try:
                    piece = await self._chunk(job, envelope, event, score, offsets)
                except APIError as error:  # scoring failed: say so in the stream, and end it
                    yield sse(error.body())
                    break
                if isinstance(event, Done):
                    finished[event.index] = event.sequence
                yield sse(envelope.body([piece], None, chunk=True))
            if usage_wanted and len(finished) == job.size:
                sequences = [finished[i] for i in range(job.size)]
                yield sse(envelope.body([], usage(job.prompt_ids, sequences), chunk=True))
            yield sse("[DONE]")
        finally:
            job.cancel()  # a client that went away frees its rows at the next step

    async def _chunk(self, job: Job, envelope: Envelope, event: Delta | Done, score: bool,
                     offsets: dict[int, int]) -> dict[str, Any]:
        delta = event if isinstance(event, Delta) else event.rest
        offset = offsets[delta.index]
        offsets[delta.index] += len(delta.text)
        if isinstance(event, Delta):
            return chunk_choice(envelope.chat, delta, False, offset)
        scores = None
        if score:
            prompt = job.prompts[event.index // job.n]
            scores = (await self.scorer.score([prompt], [event.sequence.text]))[0]
        return final_chunk_choice(envelope.chat, delta, False, event.sequence, scores, offset)


def best_by_value(candidates: list[Done], job: Job) -> list[Done]:
    """Of each prompt's `best_of` candidates, the `n` of highest value (the value models' own
    weighted value of the finished answer), best first, numbered as the response's choices."""
    chosen: list[Done] = []
    for start in range(0, len(candidates), job.best_of):
        group = candidates[start:start + job.best_of]
        group.sort(key=lambda done: done.sequence.value, reverse=True)
        chosen += group[:job.n]
    return [dataclasses.replace(done, index=i) for i, done in enumerate(chosen)]


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Cancel `job` when the client disconnects (runs until cancelled)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            return
