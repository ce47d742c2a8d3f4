"""MAVIS: multi-objective alignment via value-guided inference-time search.

One reference language model, one small value model per objective, and per-request weights
chosen at inference time. See the README for the command line; the library's main entry points
are re-exported here lazily so that `import mavis` stays fast:

    from mavis import MavisDecoder, SamplingSettings
    decoder = MavisDecoder.load("smollm2-135m-instruct", ["path/to/value-model"])
    decoder.generate(["How do I ..."], weights={"relevant": 0.7, "harmless": 0.3}, seed=0)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MavisDecoder": "mavis.decoding.decoder",
    "SamplingSettings": "mavis.decoding.sampling",
    "beam_search": "mavis.decoding.search",
    "BeamSettings": "mavis.decoding.search",
    "MavisError": "mavis.errors",
    "load_causal_lm": "mavis.models.loading",
    "ValueModel": "mavis.models.value_model",
    "get_objective": "mavis.objectives",
    "list_objectives": "mavis.objectives",
    "load_prompts": "mavis.prompts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mavis' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
