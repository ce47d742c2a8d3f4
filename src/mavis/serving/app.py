"""The FastAPI app of `mavis serve`: OpenAI's generation endpoints, the server's own information
routes, the playground page, metrics, and errors in OpenAI's shape.

    POST /v1/completions, /v1/chat/completions   (routes.py)
    GET  /v1/models, /v1/models/{id}             the one model served
    GET  /v1/objectives                          names, descriptions, the value model of each
    GET  /health                                 liveness, and the batch and queue in rows
    GET  /metrics                                Prometheus text format
    GET  /                                       the playground page (assets/playground/)
    GET  /openapi.json, /docs                    the API's description, and its page

`build_app(spec)` loads the models a `ServerSpec` names; `create_app(decoder, spec)` serves an
already loaded decoder (the tests' way). The engine's thread starts and stops with the app.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mavis import __version__
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.models.value_folder import read_value_config
from mavis.serving.auth import APIKeyMiddleware
from mavis.serving.engine import Engine
from mavis.serving.errors import APIError
from mavis.serving.metrics import Metrics, RequestMetrics
from mavis.serving.openapi import (
    ANY_ERROR,
    ChatCompletion,
    ChatCompletionChunk,
    Health,
    ModelCard,
    ModelList,
    ObjectiveList,
    TextCompletion,
    TextCompletionChunk,
    answers,
    documented,
    publish,
)
from mavis.serving.planner import Planner
from mavis.serving.routes import Generation
from mavis.serving.schemas import ChatRequest, CompletionRequest
from mavis.serving.scoring import Scorer, describe, is_reward
from mavis.serving.spec import ServerSpec

PLAYGROUND = Path(__file__).resolve().parent.parent / "assets" / "playground"
DESCRIPTION = ("OpenAI's /v1/completions and /v1/chat/completions, guided by MAVIS value models: "
               "each request picks its objective weights (objective_weights, beta, kl_budget; "
               "GET /v1/objectives lists the objectives). Errors have OpenAI's shape.")
# the paths /metrics counts by name (the rest count as "other"): the app's routes
ROUTES = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/objectives",
                    "/health", "/metrics", "/", "/openapi.json", "/docs"})


def build_app(spec: ServerSpec) -> FastAPI:
    """Load the reference and value models of `spec` and serve them."""
    decoder = MavisDecoder.load(spec.model, list(spec.value_model_folders),
                                device=spec.device, value_dtype=spec.value_dtype)
    return create_app(decoder, spec)


def create_app(decoder: MavisDecoder, spec: ServerSpec) -> FastAPI:
    """The app serving `decoder` (whose value models came from `spec.value_model_folders`, in
    that order, when /v1/objectives is to name them)."""
    metrics = Metrics()
    engine = Engine(decoder, spec.limits, metrics)
    scorer = Scorer(decoder.guide.objectives)
    generation = Generation(engine, Planner(decoder, spec, engine.tokenizer_lock), scorer, spec)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()
            scorer.close()

    app = FastAPI(title="mavis", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, openapi_url="/openapi.json", docs_url="/docs",
                  redoc_url=None, swagger_ui_oauth2_redirect_url=None, responses=ANY_ERROR)
    app.state.engine, app.state.metrics, app.state.spec = engine, metrics, spec
    app.add_api_route("/v1/completions", generation.completions, methods=["POST"],
                      **documented(CompletionRequest, TextCompletion, TextCompletionChunk))
    app.add_api_route("/v1/chat/completions", generation.chat, methods=["POST"],
                      **documented(ChatRequest, ChatCompletion, ChatCompletionChunk))
    _information_routes(app, decoder, spec, engine, metrics)
    app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(APIKeyMiddleware, api_key=spec.api_key)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=ROUTES)
    app.add_middleware(ReplicaHeader)
    publish(app, secured=spec.api_key is not None)
    return app


def _information_routes(app: FastAPI, decoder: MavisDecoder, spec: ServerSpec, engine: Engine,
                        metrics: Metrics) -> None:
    started = int(time.time())
    model = {"id": spec.name, "object": "model", "created": started, "owned_by": "mavis",
             "root": spec.model}
    objectives = objective_table(decoder, spec)
    vocab = int(decoder.reference.config.vocab_size)

    @app.get("/v1/models", **answers(ModelList))
    async def models() -> dict[str, Any]:
        """The one model served (its `id` is what requests name as `model`)."""
        return {"object": "list", "data": [model]}

    @app.get("/v1/models/{name:path}", **answers(ModelCard))
    async def one_model(name: str) -> dict[str, Any]:
        """The model served, by its id (404 for any other)."""
        if name != spec.name:
            raise APIError(404, f"the model {name!r} does not exist on this server; it serves "
                           f"{spec.name!r}", param="model", code="model_not_found")
        return model

    @app.get("/v1/objectives", **answers(ObjectiveList))
    async def list_objectives() -> dict[str, Any]:
        """The objectives `objective_weights` may name, the value model behind each, and the
        server's defaults and caps."""
        limits, default = spec.limits, SamplingSettings()
        return {"object": "list", "data": objectives, "default_beta": default.beta,
                "default_kl_budget": default.kl_budget,
                "default_top_k": min(default.top_k, vocab), "max_top_k": vocab,
                "max_tokens": limits.max_tokens, "default_max_tokens": limits.default_max_tokens}

    @app.get("/health", **answers(Health))
    async def health() -> dict[str, Any]:
        """Liveness (no API key needed), and the rows running and waiting."""
        return {"status": "ok", "model": spec.name, "running_rows": engine.running_rows,
                "queued_rows": engine.queued_rows, "replica": REPLICA}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """The server's metrics in Prometheus's text format."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)  # a page, not the API
    async def playground() -> FileResponse:
        return FileResponse(PLAYGROUND / "index.html")


def objective_table(decoder: MavisDecoder, spec: ServerSpec) -> list[dict[str, Any]]:
    """Each loaded objective: its name, what its reward measures, whether the server can score
    answers with it, and the value model that guides it."""
    folders = list(spec.value_model_folders)
    table = []
    for name in decoder.guide.objectives:
        index = decoder.guide.owner[name][0]
        model: dict[str, Any] = {"objectives": decoder.guide.value_models[index].objectives}
        if index < len(folders):
            config = read_value_config(folders[index])
            model |= {"path": str(folders[index]), "base": config.base,
                      "num_layers": config.num_layers}
        table.append({"name": name, "description": describe(name),
                      "scorable": is_reward(name), "value_model": model})
    return table


REPLICA = f"{socket.gethostname()}:{os.getpid()}"


class ReplicaHeader:
    """Adds `X-Mavis-Replica: host:pid` to every response, so that a client behind a load
    balancer (Ray Serve) can tell which replica answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-mavis-replica", REPLICA.encode())]
            await send(message)

        await self.app(scope, receive, sending if scope["type"] == "http" else send)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route {request.url.path}; see GET /v1/models and the README",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    return APIError(exc.status_code, message).response()


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return APIError(500, f"internal error ({type(exc).__name__}); the server logged it",
                    code="internal_error").response()
