"""Fine-tuned baselines of paper section 4, evaluated beside MAVIS.

- MORLHF: one LoRA policy per weight vector lambda, trained by KL-regularised RL on
  sum_m lambda_m R_m (`train_morlhf`, settings in `MorlhfSettings`).
- Rewarded Soups: the weights of two single-objective policies interpolated by lambda
  (`soup`).
- MOD: the two single-objective policies' next-token log-probabilities combined by lambda at
  every step (proposal models of the decoding state, see `mavis.baselines.compare`).
- `load_policy`: any policy folder as one plain causal LM (adapter merged), for evaluation.
- `mavis.baselines.compare`: every method of `mavis pareto --methods ...` wired to the sweep.

    from mavis.baselines import MorlhfSettings, train_morlhf, soup, load_policy
    settings = MorlhfSettings(objectives=["harmless", "relevant"])
    train_morlhf(settings, {"harmless": 1.0}, "runs/morlhf/harmless")
    train_morlhf(settings, {"relevant": 1.0}, "runs/morlhf/relevant")
    model, tokenizer = soup(["runs/morlhf/harmless", "runs/morlhf/relevant"], [0.4, 0.6])

Names are imported lazily, so that `mavis.baselines.config` (a recipe's `baselines:` section)
loads without torch and TRL.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MorlhfSettings": "mavis.baselines.config",
    "load_policy": "mavis.baselines.policy",
    "soup": "mavis.baselines.soups",
    "train_morlhf": "mavis.baselines.morlhf",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mavis.baselines' has no attribute {name!r}")
