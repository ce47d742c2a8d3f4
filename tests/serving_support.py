"""What the serving tests share: tiny models made here (a character-level Llama with a long
context, and a value model with heads for two real reward functions), and the library's own
answer to a request, to compare the server's with."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import build_tiny_llama

from mavis.decoding.decoder import MavisDecoder, RowRequest
from mavis.decoding.sampling import SamplingSettings
from mavis.models.value_model import ValueModel
from mavis.serving.planner import row_seed

OBJECTIVES = ["harmless", "positive"]
CONTEXT = 4096


def build_serving_models(root: Path) -> tuple[Path, Path]:
    """(reference folder, value-model folder) under `root`."""
    reference = build_tiny_llama(root / "reference")
    config_path = reference / "config.json"
    config = json.loads(config_path.read_text())
    config["max_position_embeddings"] = CONTEXT  # long answers for the disconnect tests
    config_path.write_text(json.dumps(config))
    torch.manual_seed(3)
    value_model = ValueModel.build(str(reference), OBJECTIVES, num_layers=1, lora=None)
    with torch.no_grad():
        value_model.head.weight.normal_(std=2.0)
    value_model.save(root / "value-model")
    return reference, root / "value-model"


@torch.inference_mode()
def library_answer(decoder: MavisDecoder, prompt: str, weights: dict[str, float] | None,
                   seed: int, max_tokens: int, *, beta: float = 8.0, top_k: int = 36,
                   temperature: float = 1.0, row: int = 0) -> list[int]:
    """The tokens the decoding library gives one chat prompt decoded alone, with the
    generator a server request with `seed` gives its choice `row`."""
    settings = decoder.resolve(SamplingSettings(weights=weights, beta=beta, top_k=top_k,
                                                temperature=temperature,
                                                max_new_tokens=max_tokens))
    generator = torch.Generator().manual_seed(row_seed(seed, row))
    state = decoder.start_rows(decoder.encode([prompt]), [RowRequest(settings, generator)])
    while decoder.finish_reason(state, 0, int(state.choose()[0])) is None:
        state.advance()
    return state.generated(0)
