"""The server's OpenAPI schema (`/openapi.json`, `/docs`), and a property-based fuzz of every
route it describes against a live server on the tiny models: no 5xx, every answer as the
schema describes it, every error in OpenAI's shape, and the server healthy after."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from serving_support import build_serving_models

from mavis.decoding.decoder import MavisDecoder
from mavis.serving.app import ROUTES, create_app
from mavis.serving.launch import BackgroundServer
from mavis.serving.spec import ServerLimits, ServerSpec

NAME = "tiny"
# small caps, so that what the fuzz sends that is valid decodes in milliseconds
LIMITS = ServerLimits(max_batch=4, max_queue=16, max_tokens=8, default_max_tokens=4, max_n=4,
                      max_prompts=4, max_prompt_chars=2000, max_body_bytes=20_000)
MAX_EXAMPLES = 50  # per route: the whole fuzz takes well under a minute on two CPU cores


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return build_serving_models(tmp_path_factory.mktemp("openapi-models"))


@pytest.fixture(scope="module")
def decoder(models) -> MavisDecoder:
    reference, value_model = models
    return MavisDecoder.load(str(reference), [str(value_model)])


def spec_for(models, api_key: str | None = None) -> ServerSpec:
    reference, value_model = models
    return ServerSpec(model=str(reference), value_model_folders=(str(value_model),),
                      limits=LIMITS, served_name=NAME, api_key=api_key)


@pytest.fixture(scope="module")
def server(models, decoder):
    with BackgroundServer(create_app(decoder, spec_for(models))) as running:
        yield running


# every operation of the schema ("METHOD path"); a test checks that these are all of them
OPERATIONS = ["POST /v1/completions", "POST /v1/chat/completions", "GET /v1/models",
              "GET /v1/models/{name}", "GET /v1/objectives", "GET /health", "GET /metrics"]


@pytest.fixture(scope="module")
def api_schema(server):
    loaded = schemathesis.openapi.from_url(server.url + "/openapi.json")
    loaded.config.update(base_url=server.url)
    return loaded


def is_openai_error(body: object) -> bool:
    return (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict)
            and set(body["error"]) == {"message", "type", "param", "code"}
            and isinstance(body["error"]["message"], str) and body["error"]["message"]
            and isinstance(body["error"]["type"], str))


def test_the_fuzz_covers_every_operation_of_the_schema(api_schema):
    found = [f"{result.ok().method.upper()} {result.ok().path}"
             for result in api_schema.get_all_operations()]
    assert sorted(found) == sorted(OPERATIONS)


def served(body: dict, drop: int) -> dict:
    """`body` naming the served model (past the 404, on to decoding), a conversation ending
    with its last message as the user's, and without the fields that bit i of `drop` picks
    (the i-th in name order): a random body sets many fields this server refuses (penalties,
    echo, ...), and one without them gets further."""
    names = sorted(set(body) - {"model", "prompt", "messages"})
    body = {"model": NAME} | {k: v for k, v in body.items()
                              if k != "model" and not (k in names and drop >> names.index(k) & 1)}
    if isinstance(body.get("messages"), list):
        last = (body["messages"] or [{"content": "hello"}])[-1]
        body["messages"] = [last | {"role": "user"}]
    return body


# answers that random bodies seldom reach, checked against the schema every run
HELLO = [{"role": "user", "content": "hello"}]
EXAMPLES = {
    "POST /v1/completions": [
        {"prompt": "hi", "n": 2, "stream": True, "stream_options": {"include_usage": True},
         "logprobs": 1, "score": True},
        {"prompt": ["a", "b"], "logprobs": 0, "score": True, "seed": 1}],
    "POST /v1/chat/completions": [
        {"messages": HELLO, "stream": True, "logprobs": True, "score": True},
        {"messages": HELLO, "n": 2, "logprobs": True, "score": True, "temperature": 0}]}

FUZZED = [pytest.param(operation, GenerationMode.POSITIVE, id=f"{operation} valid")
          for operation in OPERATIONS] + [
    pytest.param(operation, GenerationMode.NEGATIVE, id=f"{operation} invalid")
    for operation in OPERATIONS if operation.startswith("POST")]  # the GETs take no input


@pytest.mark.parametrize("operation, mode", FUZZED)
def test_every_route_survives_a_fuzz_of_its_schema(api_schema, operation, mode):
    method, path = operation.split()
    cases = api_schema[path][method].as_strategy(generation_mode=mode)
    examples = [api_schema[path][method].Case(body={"model": NAME} | body,
                                                media_type="application/json")
                for body in EXAMPLES.get(operation, []) if mode is GenerationMode.POSITIVE]

    @given(case=cases, serve=st.integers(0, 3).map(bool), drop=st.integers(0, 2**32))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows as found
              suppress_health_check=list(HealthCheck))
    def fuzz(case, serve: bool, drop: int) -> None:
        if serve and mode is GenerationMode.POSITIVE:
            if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
                case.body = served(case.body, drop)
            if case.path_parameters and "name" in case.path_parameters:
                case.path_parameters["name"] = NAME
        # the schema leaves ranges and the loaded objectives to the server: data of the
        # schema's types may still be refused (400), so valid data need not be accepted
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance],
                                          timeout=30)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert is_openai_error(response.json()), response.text

    for case in examples:
        fuzz = example(case=case, serve=False, drop=0)(fuzz)
    fuzz()


def test_the_server_is_healthy_after_the_fuzz(server):
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["running_rows"] == 0
    answer = httpx.post(server.url + "/v1/completions",
                        json={"model": NAME, "prompt": "hello", "max_tokens": 4}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["finish_reason"] in ("stop", "length")
    metrics = httpx.get(server.url + "/metrics").text
    assert 'status="5' not in metrics  # no request of the fuzz ended in a 5xx


# -- the schema itself ----------------------------------------------------------------------
def test_the_schema_describes_every_route_and_mavis_fields(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    paths = {path.replace("/{name}", "") for path in schema["paths"]}
    assert paths == ROUTES - {"/", "/openapi.json", "/docs"}  # the page and the description
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ChatRequest")
    assert {"200", "400", "404", "413", "429", "default"} <= set(chat["responses"])
    request = schema["components"]["schemas"]["ChatRequest"]
    assert request["additionalProperties"] is False and "messages" in request["required"]
    for field in ("objective_weights", "beta", "kl_budget", "top_k", "min_p", "value_min_p",
                  "score", "ignore_eos"):
        assert request["properties"][field]["description"], field
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert httpx.post(server.url + "/openapi.json").status_code == 405


def test_the_schema_and_its_page_need_no_key_and_name_the_bearer_scheme(models, decoder):
    with BackgroundServer(create_app(decoder, spec_for(models, api_key="k3y"))) as keyed:
        schema = httpx.get(keyed.url + "/openapi.json")
        assert schema.status_code == 200
        assert httpx.get(keyed.url + "/docs").status_code == 200
        assert httpx.get(keyed.url + "/v1/models").status_code == 401
        document = schema.json()
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        chat = document["paths"]["/v1/chat/completions"]["post"]
        assert chat["security"] == [{"bearer": []}] and "401" in chat["responses"]
        assert "security" not in document["paths"]["/health"]["get"]
