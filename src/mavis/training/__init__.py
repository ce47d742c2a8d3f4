"""Value-model training (Algorithm 1, equation 6) and distillation (appendix E).

    from mavis.training import TrainConfig, train, distill
    report = train(TrainConfig(objectives=["relevant"], epochs=1), "trees.h5", "runs/vm")

Names are imported lazily, so that `mavis.training.config` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "mavis.training.config",
    "distill": "mavis.training.distillation",
    "train": "mavis.training.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mavis.training' has no attribute {name!r}")
