"""The API's description, published at `/openapi.json` (and as a page at `/docs`).

The request bodies are the models of `schemas.py`, the one source of their fields, types and
descriptions: the generation routes read and parse their bodies themselves (within the size
cap, strictly, with OpenAI-shaped errors), so FastAPI does not see them, and `publish` adds
them to the schema it generates. The response bodies are described by the models below:
`responses.py` and `app.py` build them as plain dicts, and the fuzz test
(tests/test_serving_openapi.py) checks every answer against these descriptions. Every error,
whatever the route, has OpenAI's shape (`ErrorResponse`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from mavis.serving.auth import is_public
from mavis.serving.schemas import REQUEST_MODELS

REF = "#/components/schemas/{model}"


class _Body(BaseModel):
    """A response body: no fields beyond those described."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Body):
    message: str = Field(description="what is wrong, and how to fix it")
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error")
    param: str | None = Field(description="the request field at fault")
    code: str | None = Field(description="a short machine-readable code")


class ErrorResponse(_Body):
    """Every error of this server, as OpenAI's API has them."""

    error: ErrorDetail


class Usage(_Body):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class _MavisChoice(_Body):
    finish_reason: Literal["stop", "length"]
    kl: float = Field(description="mavis: the answer's KL to the reference (equation 7), nats")
    weights: dict[str, float] = Field(description="mavis: the normalised objective weights it "
                                      "was decoded with ({} when unguided)")
    beta: float = Field(description="mavis: the guidance strength (0: unguided)")
    kl_budget: float | None = Field(description="mavis: the KL budget per answer, when one "
                                    "chose each step's beta")
    top_k: int = Field(description="mavis: candidates per step")
    value: float | None = Field(description="mavis: the weighted value of the finished answer "
                                "(null when unguided); `best_of` ranks by it")
    scores: dict[str, float] | None = Field(None, description="mavis, with `score`: every "
                                            "loaded objective's reward of the answer")


class CompletionLogprobs(_Body):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: None
    text_offset: list[int]


class CompletionChoice(_MavisChoice):
    index: int
    text: str
    logprobs: CompletionLogprobs | None


class TextCompletion(_Body):
    """The whole answer of POST /v1/completions (with `stream`: server-sent events of
    `text_completion` chunks, ending with `data: [DONE]`)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TokenLogprob(_Body):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[Any] = Field(description="always empty: mavis returns no alternatives")


class ChatLogprobs(_Body):
    content: list[TokenLogprob]


class AssistantMessage(_Body):
    role: Literal["assistant"]
    content: str


class ChatChoice(_MavisChoice):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None


class ChatCompletion(_Body):
    """The whole answer of POST /v1/chat/completions (with `stream`: server-sent events of
    `chat.completion.chunk` chunks, ending with `data: [DONE]`)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class _MavisLastChunk(_Body):
    """mavis's fields of a choice, on the last chunk of its stream."""

    kl: float | None = None
    weights: dict[str, float] | None = None
    beta: float | None = None
    kl_budget: float | None = None
    top_k: int | None = None
    value: float | None = None
    scores: dict[str, float] | None = None


class CompletionChunkChoice(_MavisLastChunk):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: CompletionLogprobs | None


class TextCompletionChunk(_Body):
    """One event of a streamed /v1/completions answer (`data: {chunk}`)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChunkChoice]
    usage: Usage | None = Field(None, description="on the last chunk, with "
                                "stream_options.include_usage")


class ChatDelta(_Body):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_MavisLastChunk):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None
    logprobs: ChatLogprobs | None


class ChatCompletionChunk(_Body):
    """One event of a streamed /v1/chat/completions answer (`data: {chunk}`)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(None, description="on the last chunk, with "
                                "stream_options.include_usage")


class ModelCard(_Body):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    root: str = Field(description="the reference model the server loaded")


class ModelList(_Body):
    object: Literal["list"]
    data: list[ModelCard]


class ValueModelCard(_Body):
    objectives: list[str] = Field(description="every objective this value model guides")
    path: str | None = Field(None, description="its folder")
    base: str | None = Field(None, description="the model it was trained on")
    num_layers: int | None = None


class Objective(_Body):
    name: str
    description: str = Field(description="what its reward measures")
    scorable: bool = Field(description="whether `score` can give its reward")
    value_model: ValueModelCard


class ObjectiveList(_Body):
    object: Literal["list"]
    data: list[Objective]
    default_beta: float
    default_kl_budget: float
    default_top_k: int
    max_top_k: int
    max_tokens: int
    default_max_tokens: int


class Health(_Body):
    status: Literal["ok"]
    model: str
    running_rows: int = Field(description="rows in the running batch")
    queued_rows: int = Field(description="rows waiting to join it")
    replica: str = Field(description="host:pid of the replica that answered")


ANY_ERROR = {"default": {"model": ErrorResponse, "description": "an error, in OpenAI's shape"}}
# The models FastAPI does not see, added to its schema by `publish`: what the generation routes
# read themselves, and the events of their streams.
ADDED = [*((model, "validation") for model in REQUEST_MODELS),
         (TextCompletionChunk, "serialization"), (ChatCompletionChunk, "serialization")]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def stream_of(chunk: type[BaseModel]) -> dict[str, Any]:
    """A server-sent event stream of `chunk`s (an error, should the answer fail on the way),
    ending with `data: [DONE]`: as Open API 3.1 has it, `schema` describes each event."""
    data = {"type": "string", "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [_ref(chunk), _ref(ErrorResponse)]}}
    return {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"anyOf": [{"const": "[DONE]"}, data]}}}}}


def answers(model: type[BaseModel]) -> dict[str, Any]:
    """The documentation of a route that answers `model` (keywords of `add_api_route`)."""
    return {"response_model": None, "responses": {200: {"model": model}}}


def documented(request: type[BaseModel], response: type[BaseModel], chunk: type[BaseModel]
               ) -> dict[str, Any]:
    """The documentation of a generation route (keywords of `add_api_route`): it takes
    `request` (read by the route itself) and answers `response`, or a stream of `chunk`s."""
    body = {"required": True, "content": {"application/json": {"schema": _ref(request)}}}
    error = {"model": ErrorResponse}
    return {"openapi_extra": {"requestBody": body},
            "responses": {200: {"model": response, "content": stream_of(chunk),
                                "description": "the answer; with `stream`, server-sent events"},
                          400: error | {"description": "a field at fault, named by `param`"},
                          404: error | {"description": "the model is not the one served"},
                          413: error | {"description": "the body is over the size cap"},
                          429: error | {"description": "the queue is full; try again later"}}}


def publish(app: FastAPI, secured: bool) -> None:
    """Make `app.openapi()` (what /openapi.json serves) add the models of `ADDED` to FastAPI's
    schema, and, when the server has an API key (`secured`), the bearer scheme every route
    outside the public ones needs."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's, kept as app.openapi_schema
            _, definitions = models_json_schema(ADDED, ref_template=REF)
            known = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in definitions["$defs"].items():  # (a model FastAPI saw
                known.setdefault(name, definition)  # too, such as Usage, stays as it wrote it)
            if secured:
                _require_the_key(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _require_the_key(schema: dict[str, Any]) -> None:
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "the server's API key (MAVIS_API_KEY)"}}
    for path, operations in schema["paths"].items():
        if not is_public(path):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
                operation["responses"]["401"] = {
                    "description": "no API key, or not this server's",
                    "content": {"application/json": {"schema": _ref(ErrorResponse)}}}
