"""`mavis serve` end to end: the real server on a loopback port, tiny models made here, called
with the official `openai` client and with raw HTTP."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving_support import OBJECTIVES, build_serving_models, library_answer

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import DEFAULT_BETA, DEFAULT_KL_BUDGET
from mavis.objectives import score_all
from mavis.serving.app import create_app
from mavis.serving.launch import BackgroundServer, listening_socket
from mavis.serving.spec import ServerLimits, ServerSpec
from mavis.serving.text import safe_delta

NAME = "tiny"
LIMITS = ServerLimits(max_batch=16, max_queue=32, max_tokens=256, default_max_tokens=16,
                      max_prompt_chars=8000)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return build_serving_models(tmp_path_factory.mktemp("serving-models"))


@pytest.fixture(scope="module")
def decoder(models) -> MavisDecoder:
    reference, value_model = models
    return MavisDecoder.load(str(reference), [str(value_model)])


def spec_for(models, limits: ServerLimits = LIMITS, api_key: str | None = None) -> ServerSpec:
    reference, value_model = models
    return ServerSpec(model=str(reference), value_model_folders=(str(value_model),),
                      limits=limits, served_name=NAME, api_key=api_key)


@pytest.fixture(scope="module")
def server(models, decoder):
    with BackgroundServer(create_app(decoder, spec_for(models))) as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def metric(server, name: str, **labels: str) -> float:
    """The value of one sample of the server's /metrics (0 when absent)."""
    text = httpx.get(server.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# -- the openai client, both endpoints ------------------------------------------------------
def test_openai_client_completions_and_chat(client):
    weights = {"harmless": 0.7, "positive": 0.3}
    completion = client.completions.create(
        model=NAME, prompt="hello there", max_tokens=12, seed=1,
        extra_body={"objective_weights": weights, "beta": 4})
    choice = completion.choices[0]
    assert completion.object == "text_completion" and completion.model == NAME
    assert choice.text and choice.finish_reason in ("stop", "length")
    assert choice.weights == weights and choice.beta == 4
    assert isinstance(choice.kl, float) and math.isfinite(choice.kl)
    assert completion.usage.completion_tokens >= 1 and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)

    chat = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "how are you?"}], max_tokens=12,
        seed=2, n=2, extra_body={"objective_weights": {"positive": 1}})
    assert chat.object == "chat.completion" and len(chat.choices) == 2
    for index, answer in enumerate(chat.choices):
        assert answer.index == index and answer.message.role == "assistant"
        assert answer.message.content and math.isfinite(answer.kl)
        assert answer.weights == {"positive": 1.0}
    assert chat.usage.completion_tokens >= 2


def test_streaming_gives_the_same_answer_on_both_endpoints(client):
    request = {"model": NAME, "max_tokens": 20, "seed": 7,
               "extra_body": {"objective_weights": {"harmless": 0.5, "positive": 0.5},
                              "ignore_eos": True}}  # 20 tokens, whatever the tiny model says
    whole = client.completions.create(prompt="tell me a joke", **request).choices[0]
    chunks = list(client.completions.create(prompt="tell me a joke", stream=True, **request))
    assert "".join(c.choices[0].text for c in chunks) == whole.text
    assert len(chunks) > 3  # it did stream
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason
    assert chunks[-1].choices[0].kl == pytest.approx(whole.kl)

    messages = [{"role": "user", "content": "tell me a joke"}]
    response = client.chat.completions.create(messages=messages, **request)
    whole = response.choices[0]
    chunks = list(client.chat.completions.create(messages=messages, stream=True,
                                                 stream_options={"include_usage": True},
                                                 **request))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content
    last = [c for c in chunks if c.choices][-1].choices[0]
    assert last.finish_reason == whole.finish_reason and last.kl == pytest.approx(whole.kl)
    assert chunks[-1].usage == response.usage  # the last chunk, with include_usage


# -- the same tokens as the library ---------------------------------------------------------
@pytest.mark.parametrize("weights", [{"harmless": 1.0}, {"positive": 1.0},
                                     {"harmless": 0.5, "positive": 0.5}])
def test_greedy_answers_equal_mavis_decoder_generate(client, decoder, weights):
    served = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "what is up"}], max_tokens=24,
        temperature=0, extra_body={"objective_weights": weights})
    # the same defaults as the library's: beta up to 16 under 18 nats per answer
    local = decoder.generate(["what is up"], weights=weights, top_k=36, max_new_tokens=24,
                             temperature=0)[0]
    assert (local.beta, local.kl_budget) == (DEFAULT_BETA, DEFAULT_KL_BUDGET)
    assert served.choices[0].message.content == local.text
    assert served.choices[0].kl == pytest.approx(local.kl, abs=1e-4)


def test_objective_weights_change_the_answer_as_the_library_does(client, decoder):
    answers = {}
    for name in OBJECTIVES:
        served = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hello friend"}], max_tokens=24,
            seed=11, extra_body={"objective_weights": {name: 1.0}, "beta": 8})
        ids = library_answer(decoder, "hello friend", {name: 1.0}, seed=11, max_tokens=24)
        text = served.choices[0].message.content
        assert text == decoder.tokenizer.decode(ids, skip_special_tokens=True)
        answers[name] = text
    plain = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "hello friend"}], max_tokens=24,
        seed=11, extra_body={"beta": 0})
    assert len({answers["harmless"], answers["positive"], plain.choices[0].message.content}) == 3


def test_choice_i_of_a_seeded_request_has_its_own_generator(client):
    messages = [{"role": "user", "content": "abc"}]
    three = client.chat.completions.create(model=NAME, messages=messages, max_tokens=16, n=3,
                                           seed=5)
    one = client.chat.completions.create(model=NAME, messages=messages, max_tokens=16, seed=5)
    assert three.choices[0].message.content == one.choices[0].message.content
    assert len({c.message.content for c in three.choices}) == 3


def test_temperature_zero_is_greedy_and_kl_budget_zero_is_plain_sampling(client):
    def answer(**options):
        return client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "good morning"}], max_tokens=24,
            **options).choices[0]

    greedy = [answer(seed=s, temperature=0).message.content for s in (1, 2)]
    assert greedy[0] == greedy[1]
    budget = answer(seed=3, extra_body={"kl_budget": 0.0})
    plain = answer(seed=3, extra_body={"beta": 0})
    guided = answer(seed=3)
    assert budget.message.content == plain.message.content
    assert budget.kl == pytest.approx(plain.kl, abs=1e-4)
    assert guided.message.content != plain.message.content


def test_stop_strings_cut_the_answer_streamed_or_not(client):
    request = {"model": NAME, "prompt": "once upon a time", "max_tokens": 40, "seed": 9,
               "extra_body": {"ignore_eos": True}}
    full = client.completions.create(**request).choices[0].text
    stop = full[12:15]
    assert len(full) > 20 and stop.strip()
    cut = client.completions.create(stop=[stop, "never there"], **request).choices[0]
    assert cut.text == full[:full.index(stop)] and cut.finish_reason == "stop"
    chunks = list(client.completions.create(stop=stop, stream=True, **request))
    assert "".join(c.choices[0].text for c in chunks) == cut.text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_score_gives_every_objectives_reward(client):
    chat = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "say something nice"}], max_tokens=16,
        seed=3, n=2, extra_body={"score": True})
    for answer in chat.choices:
        expected = score_all(OBJECTIVES, ["say something nice"], [answer.message.content])
        assert answer.scores == pytest.approx({k: v[0] for k, v in expected.items()})
    stream = list(client.completions.create(model=NAME, prompt="hi", max_tokens=8, seed=3,
                                            stream=True, extra_body={"score": True}))
    assert set(stream[-1].choices[0].scores) == set(OBJECTIVES)


def test_logprobs_are_the_policys(client):
    completion = client.completions.create(model=NAME, prompt="abc", max_tokens=10, seed=4,
                                           logprobs=0)
    logprobs = completion.choices[0].logprobs
    assert len(logprobs.tokens) == completion.usage.completion_tokens
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "x"}],
                                          max_tokens=6, seed=4, logprobs=True)
    assert len(chat.choices[0].logprobs.content) == chat.usage.completion_tokens


# -- sixteen at once ------------------------------------------------------------------------
def test_sixteen_concurrent_requests_each_equal_the_same_request_alone(server, client):
    def request(i: int) -> tuple[str, float]:
        weight = i / 15
        answer = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": f"prompt number {i}" + "!" * i}],
            max_tokens=24 + i, seed=100 + i, temperature=0.7 + 0.05 * (i % 4),
            extra_body={"objective_weights": {"harmless": weight, "positive": 1 - weight}
                        if 0 < i < 15 else {OBJECTIVES[i // 15]: 1.0},
                        "beta": 2.0 + i % 5, "top_k": 5 + i, "ignore_eos": True})
        return answer.choices[0].message.content, answer.choices[0].kl

    alone = [request(i) for i in range(16)]
    steps_before = metric(server, "mavis_step_batch_size_count")
    wide_before = steps_before - metric(server, "mavis_step_batch_size_bucket", le="4.0")
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(request, range(16)))
    for i in range(16):
        assert together[i][0] == alone[i][0], i
        assert together[i][1] == pytest.approx(alone[i][1], abs=1e-3), i
    wide = (metric(server, "mavis_step_batch_size_count")
            - metric(server, "mavis_step_batch_size_bucket", le="4.0"))
    assert wide - wide_before > 5  # they shared steps: batches of more than 4 rows
    assert len({text for text, _ in alone}) == 16


# -- bad input ------------------------------------------------------------------------------
GOOD = {"model": NAME, "prompt": "hello", "max_tokens": 2}
CHAT = {"model": NAME, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
BAD = [  # (name, path, body (dict or raw bytes), status, param)
    ("unknown objective", "completions", {**GOOD, "objective_weights": {"witty": 1}}, 400,
     "objective_weights"),
    ("negative weight", "completions", {**GOOD, "objective_weights": {"harmless": -1}}, 400,
     "objective_weights"),
    ("NaN weight", "completions",
     b'{"model": "tiny", "prompt": "hi", "objective_weights": {"harmless": NaN}}', 400,
     "objective_weights"),
    ("non-numeric weight", "chat/completions",
     {**CHAT, "objective_weights": {"harmless": "a lot"}}, 400, "objective_weights"),
    ("weights all zero", "completions",
     {**GOOD, "objective_weights": {"harmless": 0, "positive": 0}}, 400, "objective_weights"),
    ("weights not an object", "completions", {**GOOD, "objective_weights": [1, 2]}, 400,
     "objective_weights"),
    ("beta < 0", "completions", {**GOOD, "beta": -1}, 400, "beta"),
    ("top_k 0", "completions", {**GOOD, "top_k": 0}, 400, "top_k"),
    ("max_tokens over the cap", "completions", {**GOOD, "max_tokens": 257}, 400, "max_tokens"),
    ("max_tokens 0", "chat/completions", {**CHAT, "max_tokens": 0}, 400, "max_tokens"),
    ("empty prompt", "completions", {**GOOD, "prompt": "  "}, 400, "prompt"),
    ("empty message", "chat/completions",
     {**CHAT, "messages": [{"role": "user", "content": ""}]}, 400, "messages"),
    ("no messages", "chat/completions", {**CHAT, "messages": []}, 400, "messages"),
    ("prompt longer than the context", "completions", {**GOOD, "prompt": "ab" * 2100}, 400,
     "prompt"),
    ("prompt over the character cap", "completions", {**GOOD, "prompt": "a" * 8001}, 400,
     "prompt"),
    ("malformed JSON", "completions", b'{"model": "tiny", "prompt": ', 400, None),
    ("body not an object", "completions", b"[1, 2]", 400, None),
    ("max_tokens as text", "completions", {**GOOD, "max_tokens": "ten"}, 400, "max_tokens"),
    ("stream as a number", "chat/completions", {**CHAT, "stream": 1}, 400, "stream"),
    ("messages as text", "chat/completions", {**CHAT, "messages": "hello"}, 400, "messages"),
    ("missing prompt", "completions", {"model": NAME}, 400, "prompt"),
    ("unknown field", "completions", {**GOOD, "objective_weight": {"harmless": 1}}, 400,
     "objective_weight"),
    ("unknown model", "completions", {**GOOD, "model": "gpt-4"}, 404, "model"),
    ("n over the cap", "completions", {**GOOD, "n": 17}, 400, "n"),
    ("n x prompts over the batch", "completions", {**GOOD, "prompt": ["a", "b"], "n": 9}, 400,
     "n"),
    ("temperature 3", "completions", {**GOOD, "temperature": 3}, 400, "temperature"),
    ("top_p 0", "completions", {**GOOD, "top_p": 0}, 400, "top_p"),
    ("min_p over 1", "completions", {**GOOD, "min_p": 2}, 400, "min_p"),
    ("value_min_p over 1", "completions", {**GOOD, "value_min_p": 1.5}, 400, "value_min_p"),
    ("presence_penalty", "completions", {**GOOD, "presence_penalty": 0.5}, 400,
     "presence_penalty"),
    ("empty stop string", "completions", {**GOOD, "stop": [""]}, 400, "stop"),
    ("kl_budget < 0", "completions", {**GOOD, "kl_budget": -2}, 400, "kl_budget"),
    ("best_of below n", "completions", {**GOOD, "best_of": 2, "n": 3}, 400, "best_of"),
    ("best_of streamed", "completions", {**GOOD, "best_of": 2, "stream": True}, 400,
     "best_of"),
    ("best_of unguided", "completions", {**GOOD, "best_of": 2, "beta": 0}, 400, "best_of"),
    ("best_of over the batch", "completions", {**GOOD, "best_of": 17}, 400, "best_of"),
    ("negative seed", "completions", {**GOOD, "seed": -1}, 400, "seed"),
    ("seed beyond 64 bits", "completions", {**GOOD, "seed": 2**64}, 400, "seed"),
    ("beta beyond the cap", "completions", {**GOOD, "beta": 1e308}, 400, "beta"),
    ("weights all zero", "completions", {**GOOD, "objective_weights": {"harmless": 0}}, 400,
     "objective_weights"),
    ("body over the cap", "completions", {**GOOD, "user": "x" * 1_000_001}, 413, None),
    # a lone surrogate (JSON's "\ud800") is no Unicode text: a 400 naming its field
    ("lone surrogate in a message", "chat/completions",
     b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}', 400,
     "messages"),
    ("lone surrogate in a text part", "chat/completions",
     b'{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", '
     b'"text": "ok \\udfff"}]}]}', 400, "messages"),
    ("lone surrogate in a prompt", "completions",
     b'{"model": "tiny", "prompt": ["fine", "a\\udc00b"]}', 400, "prompt"),
    ("lone surrogate in a stop string", "completions",
     b'{"model": "tiny", "prompt": "hi", "stop": "\\ud800"}', 400, "stop"),
    ("lone surrogate in user", "completions",
     b'{"model": "tiny", "prompt": "hi", "user": "\\udbff"}', 400, "user"),
    ("lone surrogate in an objective's name", "completions",
     b'{"model": "tiny", "prompt": "hi", "objective_weights": {"\\ud800": 1}}', 400,
     "objective_weights"),
    ("lone surrogate in an unknown field's name", "completions",
     b'{"model": "tiny", "prompt": "hi", "\\ud800": 1}', 400, None),
    ("JSON nested too deeply", "completions", b"[" * 100_000, 400, None),
    ("a number of 5000 digits", "completions",
     b'{"model": "tiny", "prompt": "hi", "seed": ' + b"9" * 5000 + b"}", 400, None),
]


@pytest.mark.parametrize("name, path, body, status, param", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_an_openai_error_and_the_server_keeps_serving(
        server, name, path, body, status, param):
    url = f"{server.url}/v1/{path}"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    else:
        response = httpx.post(url, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"] and isinstance(error["type"], str)
    assert httpx.post(f"{server.url}/v1/completions", json=GOOD).status_code == 200


def test_top_p_and_min_p_sample_as_the_library_does(client, decoder):
    for extra in ({"top_p": 0.3}, {"min_p": 0.4}, {"value_min_p": 0.3}):
        served = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "what is up"}], max_tokens=12,
            temperature=0, **({"top_p": extra["top_p"]} if "top_p" in extra else {}),
            extra_body={"objective_weights": {"harmless": 1.0}, **{
                k: v for k, v in extra.items() if k != "top_p"}})
        local = decoder.generate(["what is up"], weights={"harmless": 1.0}, top_k=36,
                                 max_new_tokens=12, temperature=0, **extra)[0]
        assert served.choices[0].message.content == local.text, extra


def test_best_of_returns_the_candidates_of_highest_value(client):
    """OpenAI's best_of is MAVIS + value rerank: the n of best_of candidates with the highest
    value, best first; the candidates are the rows a request with n = best_of would get."""
    common = dict(model=NAME, prompt="tell me", max_tokens=10, seed=21,
                  extra_body={"objective_weights": {"positive": 1.0}})
    plain = client.completions.create(n=4, **common)
    ranked = client.completions.create(n=4, best_of=4, **common)
    best = client.completions.create(n=1, best_of=4, **common)
    values = [c.value for c in ranked.choices]
    assert values == sorted(values, reverse=True) and len(set(values)) > 1
    assert sorted(c.text for c in ranked.choices) == sorted(c.text for c in plain.choices)
    assert best.choices[0].text == ranked.choices[0].text and best.choices[0].index == 0
    assert best.choices[0].kl == pytest.approx(ranked.choices[0].kl)
    assert best.usage.completion_tokens == plain.usage.completion_tokens  # all 4 were decoded


def test_top_k_is_at_most_the_vocabulary_and_every_choice_reports_its_settings(server):
    body = {**CHAT, "top_k": 1000, "max_tokens": 3, "beta": 4}
    choice = httpx.post(f"{server.url}/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["top_k"] == 36 and choice["beta"] == 4.0 and choice["kl_budget"] is None


def test_the_openai_client_raises_its_own_errors(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=NAME, prompt="hi", max_tokens=2,
                                  extra_body={"objective_weights": {"nope": 1}})
    assert "nope" in caught.value.message and caught.value.param == "objective_weights"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def test_unknown_routes_and_methods_answer_in_openai_shape(server):
    missing = httpx.get(server.url + "/v1/embeddings")
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    wrong = httpx.get(server.url + "/v1/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


# -- models, objectives, health, metrics, the page ------------------------------------------
def test_models_objectives_health_and_the_page(server, client, models):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    objectives = httpx.get(server.url + "/v1/objectives").json()
    assert [o["name"] for o in objectives["data"]] == OBJECTIVES
    for entry in objectives["data"]:
        assert entry["description"] and entry["scorable"]
        assert entry["value_model"]["path"] == str(models[1])
        assert entry["value_model"]["objectives"] == OBJECTIVES
    assert objectives["default_beta"] == DEFAULT_BETA
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == NAME
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "mavis playground" in page.text
    assert httpx.get(server.url + "/playground/playground.js").status_code == 200


def test_metrics_in_prometheus_format(server, client):
    before = metric(server, "mavis_generated_tokens_total")
    client.completions.create(model=NAME, prompt="abc", max_tokens=5, seed=1,
                              extra_body={"ignore_eos": True})
    assert metric(server, "mavis_generated_tokens_total") == before + 5
    assert metric(server, "mavis_requests_total", route="/v1/completions", status="200") >= 1
    assert metric(server, "mavis_request_latency_seconds_count", route="/v1/completions") >= 1
    assert metric(server, "mavis_prompt_tokens_total") > 0
    text = httpx.get(server.url + "/metrics").text
    for name in ("mavis_batch_size", "mavis_queue_length", "mavis_step_batch_size_bucket",
                 "mavis_cancelled_rows_total"):
        assert name in text


# -- queue, disconnects, the API key --------------------------------------------------------
def wait_for(condition, timeout: float = 10.0) -> float:
    """Seconds until `condition()` held (fails after `timeout`)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def test_full_queue_429_and_disconnects_free_their_rows(models, decoder):
    limits = ServerLimits(max_batch=1, max_queue=1, max_tokens=3000, default_max_tokens=16)
    long = {"model": NAME, "prompt": "hello", "max_tokens": 3000, "ignore_eos": True}
    with BackgroundServer(create_app(decoder, spec_for(models, limits))) as server:
        health = lambda: httpx.get(server.url + "/health").json()  # noqa: E731
        with httpx.Client(timeout=30) as http, http.stream(
                "POST", server.url + "/v1/completions", json={**long, "stream": True}) as stream:
            lines = stream.iter_lines()  # kept: closing this iterator would close the stream
            next(lines)  # the first chunk: the row is in the batch
            waiting = ThreadPoolExecutor(1).submit(
                httpx.post, server.url + "/v1/completions", json=GOOD, timeout=60)
            wait_for(lambda: health()["queued_rows"] == 1)
            refused = httpx.post(server.url + "/v1/completions", json=GOOD)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "queue_full"
            assert health()["running_rows"] == 1
        # the stream is closed: its row leaves at the next step, and the waiting one runs
        assert wait_for(lambda: metric(server, "mavis_cancelled_rows_total") == 1) < 5
        assert waiting.result().status_code == 200
        assert metric(server, "mavis_generated_tokens_total") < 1000  # not 3000 for the stream
        # a client waiting for a whole answer that gives up frees its row too
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/completions", json=long, timeout=0.5)
        wait_for(lambda: metric(server, "mavis_cancelled_rows_total") == 2)
        wait_for(lambda: health()["running_rows"] == 0)
        assert httpx.post(server.url + "/v1/completions", json=GOOD).status_code == 200


def test_a_failed_step_fails_its_requests_and_the_server_goes_on(models, decoder):
    app = create_app(decoder, spec_for(models))
    engine = app.state.engine
    real_step = engine._step
    failures = iter([RuntimeError("out of memory")])

    def failing_step() -> None:  # the first step fails, as an out-of-memory would
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_step()

    engine._step = failing_step
    with BackgroundServer(app) as server:
        failed = httpx.post(server.url + "/v1/completions", json=GOOD)
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "decoding_failed"
        assert "out of memory" in failed.json()["error"]["message"]
        assert httpx.post(server.url + "/v1/completions", json=GOOD).status_code == 200
        assert httpx.get(server.url + "/health").json()["running_rows"] == 0


def test_a_client_that_goes_away_while_sending_its_body_is_a_499_not_a_500(server):
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 1000\r\n\r\n{\"model\": ")
            time.sleep(0.2)  # the handler is reading the body
        wait_for(lambda: metric(server, "mavis_requests_total", route="/v1/completions",
                                status="499") == 1)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    assert metric(server, "mavis_requests_total", route="/v1/completions", status="500") == 0
    assert not errors, [record.getMessage() for record in errors]  # no traceback logged
    assert httpx.post(f"{server.url}/v1/completions", json=GOOD).status_code == 200


def test_api_key_is_enforced_when_set(models, decoder):
    spec = spec_for(models, api_key="s3cret-key")
    with BackgroundServer(create_app(decoder, spec)) as server:
        url = server.url + "/v1/completions"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            refused = httpx.post(url, json=GOOD, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert httpx.get(server.url + "/v1/models").status_code == 401
        # the scheme is case-insensitive (RFC 7235); the key is not
        for header in ("bearer s3cret-key", "BEARER s3cret-key", "Bearer  s3cret-key"):
            assert httpx.get(server.url + "/v1/models",
                             headers={"Authorization": header}).status_code == 200, header
        assert httpx.get(server.url + "/v1/models",
                         headers={"Authorization": "bearer S3CRET-KEY"}).status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200  # probes need no key
        assert httpx.get(server.url + "/").status_code == 200  # the page asks for the key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong",
                          max_retries=0).models.list()
        keyed = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret-key", max_retries=0)
        assert keyed.completions.create(model=NAME, prompt="hi", max_tokens=2).choices


def test_the_announced_address_accepts_connections_before_the_server_runs():
    # `mavis serve` prints its address once the models have loaded, a moment before uvicorn
    # runs: a client that connects at once must wait in the backlog, not be refused
    sock = listening_socket("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass
    finally:
        sock.close()


def test_mavis_serve_command_listens_on_loopback_with_the_key_from_the_environment(models):
    reference, value_model = models
    env = {**os.environ, "MAVIS_API_KEY": "from-env", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "mavis", "serve", "--port", "0", "--model", str(reference),
               "--value-model", f"harmless={value_model}", "--served-name", NAME]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        while not (found := re.search(r"on (http://127\.0\.0\.1:\d+)", seen)):
            line = process.stderr.readline()
            assert line, seen  # it ended before announcing itself
            seen += line
        url = found.group(1)
        assert httpx.get(url + "/v1/models").status_code == 401
        answer = httpx.post(url + "/v1/completions", json=GOOD,
                            headers={"Authorization": "Bearer from-env"})
        assert answer.status_code == 200, answer.text
        objectives = httpx.get(url + "/v1/objectives",
                               headers={"Authorization": "Bearer from-env"}).json()
        assert [o["name"] for o in objectives["data"]] == OBJECTIVES
    finally:
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0, rest
    assert "Traceback" not in rest


def test_mavis_serve_refuses_bad_options_before_loading(tmp_path):
    run = [sys.executable, "-m", "mavis", "serve"]
    for extra, words in ((["--max-batch", "0"], "max-batch"),
                         (["--value-model", "harmless"], "NAME=VALUE"),
                         (["--value-model", f"harmless={tmp_path}"], "not a mavis value model"),
                         (["--port", "70000"], "port")):
        done = subprocess.run(run + extra, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


# -- pure parts -----------------------------------------------------------------------------
def test_stream_holds_back_what_may_still_change():
    assert safe_delta("hello wor", 0, []) == ("hello wor", 9)
    assert safe_delta("hello ", 0, []) == ("hello", 5)  # a space may be cleaned up
    assert safe_delta("caf\ufffd", 0, []) == ("caf", 3)  # half a character
    assert safe_delta("the end. ST", 0, ["STOP"]) == ("the end.", 8)  # may become the stop
    assert safe_delta("the end. SX", 8, ["STOP"]) == (" SX", 11)
    assert safe_delta("abc", 3, ["STOP"]) == ("", 3)


def test_events_are_json_lines_of_openai_chunks(server):
    body = {**GOOD, "stream": True, "max_tokens": 4}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line.removeprefix("data: "))
        assert chunk["object"] == "text_completion" and chunk["choices"]


def test_requests_wait_in_order_behind_a_full_batch(models, decoder):
    limits = ServerLimits(max_batch=2, max_queue=8, max_tokens=64, default_max_tokens=16)
    with BackgroundServer(create_app(decoder, spec_for(models, limits))) as server:
        body = {**GOOD, "max_tokens": 20, "ignore_eos": True, "seed": 1}
        results: list[int] = []
        lock = threading.Lock()

        def call(_: int) -> None:
            status = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
            with lock:
                results.append(status.status_code)

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(call, range(6)))
        assert results == [200] * 6
        assert metric(server, "mavis_step_batch_size_bucket", le="2.0") == metric(
            server, "mavis_step_batch_size_count")  # never more than 2 rows at once
