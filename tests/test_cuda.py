"""The pipeline on a CUDA GPU, on tiny models: collection, a training run, the server, and
decoding with static caches under CUDA graphs (in test_static_layout.py). Skipped without a
GPU; `benchmarks/gpu.sh` runs them (`pytest -m cuda`) before its measurements."""

from __future__ import annotations

import httpx
import pytest
import torch
from serving_support import build_serving_models
from test_training import fast_config, write_trees
from test_trees import SHAPE, check_tree_rules, collect, objective_file

from mavis.decoding.decoder import MavisDecoder
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel
from mavis.serving.app import create_app
from mavis.serving.launch import BackgroundServer
from mavis.serving.spec import ServerLimits, ServerSpec
from mavis.training.trainer import train
from mavis.trees.store import read_trees

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="needs a CUDA GPU")]


def test_collection_on_cuda(tiny_lm, tmp_path):
    model, tokenizer = load_causal_lm(str(tiny_lm), device="cuda")
    decoder = MavisDecoder(model, tokenizer)
    assert decoder.device.type == "cuda"
    out = tmp_path / "trees.h5"
    collect(decoder, ["abc", "hello world", "ok"], objective_file(tmp_path), out, **SHAPE,
            top_k=8, progress=False)
    data = read_trees(out)
    check_tree_rules(data, **SHAPE, eos=tokenizer.eos_token_id)


def test_training_on_cuda_in_bf16(tiny_lm, tmp_path):
    from transformers import AutoTokenizer

    trees = write_trees(tmp_path / "trees.h5", AutoTokenizer.from_pretrained(str(tiny_lm)), 12)
    config = fast_config(tiny_lm, device="cuda", mixed_precision="bf16", epochs=1,
                         gradient_checkpointing=True)
    report = train(config, trees, tmp_path / "vm")
    assert report["complete"]
    model = ValueModel.load(next((tmp_path / "vm").rglob("value_config.json")).parent)
    ids = torch.tensor([[3, 4, 5]])
    assert torch.isfinite(model.values(ids, torch.ones_like(ids))).all()


def test_server_on_cuda(tmp_path):
    reference, value_model = build_serving_models(tmp_path)
    decoder = MavisDecoder.load(str(reference), [str(value_model)], device="cuda")
    assert decoder.device.type == "cuda"
    spec = ServerSpec(model=str(reference), value_model_folders=(str(value_model),),
                      limits=ServerLimits(), served_name="tiny", api_key=None)
    with BackgroundServer(create_app(decoder, spec)) as server:
        body = {"model": "tiny", "prompt": "hello", "max_tokens": 8, "seed": 1,
                "objective_weights": {"harmless": 0.7, "positive": 0.3}}
        answer = httpx.post(server.url + "/v1/completions", json=body, timeout=120).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] in {"length", "stop"} and choice["text"]
    assert answer["usage"]["completion_tokens"] >= 1
