"""`mavis serve --ray`: the same app as Ray Serve replicas on a local Ray instance. Both of two
replicas answer, and an answer equals the single-process server's for the same seed."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serving_support import build_serving_models

from mavis.decoding.decoder import MavisDecoder
from mavis.serving.app import create_app
from mavis.serving.launch import BackgroundServer
from mavis.serving.spec import ServerSpec

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 20, "seed": 21, "objective_weights": {"harmless": 0.3, "positive": 0.7},
        "score": True}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ray_serve_replicas_both_answer_like_the_single_process_server(tmp_path_factory,
                                                                           monkeypatch):
    from mavis.serving.ray_serve import RayOptions, start, stop

    reference, value_model = build_serving_models(tmp_path_factory.mktemp("ray-models"))
    spec = ServerSpec(model=str(reference), value_model_folders=(str(value_model),),
                      served_name="tiny")
    decoder = MavisDecoder.load(str(reference), [str(value_model)])
    with BackgroundServer(create_app(decoder, spec)) as single:
        expected = httpx.post(single.url + "/v1/chat/completions", json=BODY, timeout=60).json()

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    options = RayOptions(replicas=2, port=free_port(), cpus_per_replica=1)
    try:
        url = start(spec, options, ray_init={"num_cpus": 2, "include_dashboard": False,
                                             "object_store_memory": 100 * 2**20,
                                             "runtime_env": {"env_vars": {
                                                 "PYTHONPATH": os.environ.get("PYTHONPATH", "")}}})
        replicas, answers = set(), []
        with ThreadPoolExecutor(4) as pool:
            for _ in range(10):  # Ray Serve spreads concurrent requests over the replicas
                for response in pool.map(lambda _: httpx.post(
                        url + "/v1/chat/completions", json=BODY, timeout=120), range(4)):
                    assert response.status_code == 200, response.text
                    replicas.add(response.headers["x-mavis-replica"])
                    answers.append(response.json()["choices"][0])
                if len(replicas) == 2:
                    break
        assert len(replicas) == 2  # both replicas answered
        for answer in answers:
            assert answer["message"] == expected["choices"][0]["message"]
            assert answer["kl"] == pytest.approx(expected["choices"][0]["kl"], abs=1e-4)
            assert answer["scores"] == pytest.approx(expected["choices"][0]["scores"])
        bad = httpx.post(url + "/v1/chat/completions", json={**BODY, "beta": -1}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "beta"
    finally:
        stop()
    assert not ray.is_initialized()
