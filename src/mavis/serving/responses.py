"""Response bodies and stream chunks in OpenAI's format, for both endpoints.

Each choice also carries mavis's own fields: `kl` (its KL to pi_ref, equation 7: the sum over
its tokens of log pi - log pi_ref), the `weights` and `beta` it was decoded with, and, when
the request asked for `score`, `scores` (every loaded objective's reward). Finish reasons are
OpenAI's: "stop" (an end-of-sequence token or a stop string) or "length".
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mavis.decoding.decoder import GeneratedSequence
from mavis.serving.jobs import Delta

FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}


@dataclass
class Envelope:
    """What every body and chunk of one response shares."""

    chat: bool
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex

    def body(self, choices: list[dict[str, Any]], usage: dict[str, int] | None,
             chunk: bool = False) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat \
            else "text_completion"
        body: dict[str, Any] = {"id": self.id, "object": kind, "created": self.created,
                                "model": self.model, "choices": choices}
        if usage is not None or not chunk:
            body["usage"] = usage
        return body


def usage(prompt_ids: Sequence[Sequence[int]], sequences: Sequence[GeneratedSequence]
          ) -> dict[str, int]:
    prompt = sum(len(ids) for ids in prompt_ids)
    completion = sum(len(seq.token_ids) for seq in sequences)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def mavis_fields(sequence: GeneratedSequence, scores: dict[str, float] | None
                 ) -> dict[str, Any]:
    fields: dict[str, Any] = {"kl": sequence.kl, "weights": sequence.weights,
                              "beta": sequence.beta, "kl_budget": sequence.kl_budget,
                              "top_k": sequence.top_k, "value": sequence.value}
    if scores is not None:
        fields["scores"] = scores
    return fields


def logprobs_body(chat: bool, tokens: list[str], logprobs: list[float], offset: int = 0
                  ) -> dict[str, Any]:
    """Each chosen token's log-probability under the MAVIS policy (alternatives are not
    returned: `top_logprobs` is empty / null)."""
    if chat:
        return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()),
                             "top_logprobs": []} for t, lp in zip(tokens, logprobs, strict=True)]}
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": None,
            "text_offset": offsets}


def choice(chat: bool, index: int, sequence: GeneratedSequence, tokens: list[str] | None,
           scores: dict[str, float] | None) -> dict[str, Any]:
    """One choice of a whole (not streamed) response."""
    body: dict[str, Any] = {"index": index}
    if chat:
        body["message"] = {"role": "assistant", "content": sequence.text}
    else:
        body["text"] = sequence.text
    body["finish_reason"] = FINISH_REASONS[sequence.finish_reason]
    body["logprobs"] = None if tokens is None else logprobs_body(chat, tokens, sequence.logprobs)
    return body | mavis_fields(sequence, scores)


def chunk_choice(chat: bool, delta: Delta, first: bool, offset: int = 0) -> dict[str, Any]:
    """One choice's piece of a stream chunk (finish_reason still null)."""
    body: dict[str, Any] = {"index": delta.index}
    if chat:
        body["delta"] = ({"role": "assistant"} if first else {}) | (
            {"content": delta.text} if delta.text or first else {})
    else:
        body["text"] = delta.text
    body["finish_reason"] = None
    body["logprobs"] = None if delta.tokens is None else logprobs_body(
        chat, delta.tokens, delta.logprobs, offset)
    return body


def final_chunk_choice(chat: bool, delta: Delta, first: bool, sequence: GeneratedSequence,
                       scores: dict[str, float] | None, offset: int = 0) -> dict[str, Any]:
    """The last piece of a choice's stream: its rest, finish reason, KL (and scores)."""
    body = chunk_choice(chat, delta, first, offset)
    body["finish_reason"] = FINISH_REASONS[sequence.finish_reason]
    return body | mavis_fields(sequence, scores)


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
