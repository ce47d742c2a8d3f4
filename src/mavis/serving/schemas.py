"""The request bodies the server accepts: OpenAI's fields for /v1/completions and
/v1/chat/completions, and mavis's own (sent by the `openai` client as `extra_body`).

Types are strict (a number given as a string, a boolean as a number, an unknown field are
errors, as OpenAI's API has them); ranges and what the loaded models allow are checked in
`planner.py`, where the model is known. `read_json` reads a body within the size cap, and
`parse` turns a validation error into a 400 naming the field at fault (a lone surrogate in any
text, which JSON can spell but Unicode does not have, too). These models are also the request
bodies of the published OpenAPI schema (`openapi.py`): their fields' descriptions are the API's.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request

from mavis.decoding.sampling import DEFAULT_BETA, DEFAULT_KL_BUDGET, SamplingSettings
from mavis.serving.errors import APIError, bad_request, client_gone

Model = TypeVar("Model", bound=BaseModel)
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class SamplingRequest(_Strict):
    """The fields both endpoints share."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # mavis's fields
    objective_weights: dict[str, float] | None = Field(None, description=(
        "mavis: a weight per objective, e.g. {\"harmless\": 0.7, \"positive\": 0.3}, "
        "relative (normalised to sum 1). Default: every loaded objective the same weight. "
        "GET /v1/objectives names them."))
    beta: float | None = Field(None, description=(
        "mavis: guidance strength; 0 is plain top-k sampling from the reference. Neither beta "
        f"nor kl_budget: beta up to {DEFAULT_BETA:g} under {DEFAULT_KL_BUDGET:g} nats of KL per "
        "answer; a beta alone is a fixed beta."))
    top_k: int | None = Field(None, description=(
        "mavis: candidates per step, the most likely under the reference (default "
        f"{SamplingSettings().top_k}, at most the vocabulary)."))
    min_p: float | None = Field(None, description=(
        "vLLM's: keep the candidates at least min_p times as likely as the most likely one "
        "(0 to 1)."))
    certain_p: float | None = Field(None, description=(
        "mavis: a step whose most likely candidate has at least this probability is sampled "
        "from plain top-k, the value models reading only the drawn token (0 to 1; default "
        f"{SamplingSettings().certain_p:g}; 1: every step is guided)."))
    value_min_p: float | None = Field(None, description=(
        "mavis: the value models score only the candidates at least this times as likely as "
        "the most likely one; the others stay candidates, tilted by the scored ones' mean "
        "value (0 to 1; default 0: all top_k)."))
    kl_budget: float | None = Field(None, description=(
        "mavis: nats of KL per answer that steering may add over plain top-k sampling."))
    score: bool = Field(False, description=(
        "mavis: each choice also carries `scores`, every loaded objective's reward of it."))
    ignore_eos: bool = Field(False, description=(
        "mavis: keep going past the end-of-sequence token (fixed-length answers)."))


class CompletionRequest(SamplingRequest):
    """POST /v1/completions: OpenAI's fields, and mavis's."""

    prompt: str | list[str]
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = Field(None, description=(
        "mavis: MAVIS + value rerank: this many candidates per prompt, the n of highest value "
        "(the value models' own value of the finished answer) returned; needs guidance, not "
        "streamed"))
    suffix: str | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(SamplingRequest):
    """POST /v1/chat/completions: OpenAI's fields, and mavis's."""

    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


REQUEST_MODELS = (CompletionRequest, ChatRequest)  # what the generation routes read


def parse(model: type[Model], data: Any) -> Model:
    """`data` (decoded JSON) as a `model`; a 400 naming the first field at fault otherwise."""
    _refuse_lone_surrogates(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = [str(part) for part in error["loc"] if not _is_type_tag(part)]
        param = where[0] if where else None
        path = ".".join(where) or "the request body"
        got = repr(error.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        message = {"missing": f"{path} is required",
                   "extra_forbidden": f"unknown field {path!r}; this server takes OpenAI's "
                   "fields and objective_weights, beta, top_k, min_p, certain_p, value_min_p, "
                   "kl_budget, score, ignore_eos"
                   }.get(error["type"], f"{path}: {error['msg']} (got {got})")
        if param is None and error["type"] == "model_type":
            message = "the request body must be a JSON object"
        raise bad_request(message, param, error["type"]) from None


def _is_type_tag(part: Any) -> bool:
    """Whether a location part names a member of a union ('str', 'list[str]') rather than a
    field or key."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"}
                                       or part.startswith(("list[", "dict[", "function-")))


def _refuse_lone_surrogates(data: Any) -> None:
    """A 400 naming the field of a text (a value or a key, at any depth) with a lone surrogate
    (JSON's "\\ud800" decodes to one): it is not Unicode text, and no tokenizer reads it."""
    stack: list[tuple[Any, list[str]]] = [(data, [])]
    while stack:  # not recursive: the depth of a body is the client's to choose
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, where, "a key of ")
                stack.append((item, [*where, key]))
        elif isinstance(value, list):
            stack.extend((item, [*where, str(i)]) for i, item in enumerate(value))
        else:
            _check_text(value, where)


def _check_text(value: Any, where: list[str], what: str = "") -> None:
    found = LONE_SURROGATE.search(value) if isinstance(value, str) else None
    if found:
        path = ".".join(where) or "the request body"
        raise bad_request(f"{what}{path} holds a lone surrogate ({found.group()!r} at character "
                          f"{found.start()}), which is not Unicode text; send valid UTF-8",
                          where[0] if where else None, "invalid_unicode")


async def read_json(request: Request, limit: int) -> Any:
    """The request's body decoded as JSON: 413 when it is over `limit` bytes (checked before
    and while reading), 400 when it is not JSON, 499 when the client went away while sending
    it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    try:
        async for piece in request.stream():
            body += piece
            if len(body) > limit:
                raise _too_large(len(body), limit)
    except ClientDisconnect:
        raise client_gone() from None
    try:
        return json.loads(body)
    except RecursionError:
        raise bad_request("the request body is nested too deeply", None, "invalid_json") from None
    except ValueError as exc:  # not UTF-8, not JSON, or a number of more than 4300 digits
        raise bad_request(f"the request body is not valid JSON ({exc})", None,
                          "invalid_json") from None


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"the request body has {size} bytes or more; this server takes at most "
                    f"{limit}", code="body_too_large")
