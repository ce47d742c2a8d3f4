"""Rewarded Soups (Rame et al., 2023; paper section 4): interpolate the weights of policies
fine-tuned from the same reference, one per objective, by the objective weights.

For LoRA policies the interpolation is done on the weight deltas, exactly: each adapted linear
layer of policy i changes W by delta_i = scaling_i * B_i @ A_i, and the soup's weight is

    W_soup = W + sum_i w_i * delta_i          (two policies: lambda and 1 - lambda)

(interpolating A and B separately would give a different, bilinear mix, and needs equal ranks).
peft's `add_weighted_adapter(..., combination_type="cat")` builds exactly this as one adapter:
it stacks [w_1 * scaling_1 * A_1; w_2 * scaling_2 * A_2; ...] and [B_1, B_2, ...] into an
adapter of rank r_1 + r_2 + ... with scaling 1, so B_cat @ A_cat = sum_i w_i * delta_i; the
tests check the merged weights against the formula. The soup is thus small on disk and `soup`
returns it merged into a plain model for inference.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mavis.baselines.policy import read_policy_info, save_policy
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm, quiet_libraries


def soup(policies: Sequence[str | Path], weights: Sequence[float],
         out_dir: str | Path | None = None, *, base: PreTrainedModel | None = None
         ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """The Rewarded Soup sum_i weights[i] * policies[i] (on the weight deltas; weights >= 0,
    summing to 1), merged into one causal LM in eval mode, and its tokenizer. With `out_dir`,
    the soup is also saved as a policy folder (`load_policy` reads it). `base`: the policies'
    reference model already loaded (copied, not changed; the tokenizer returned is then None),
    to save loading it again for every weight vector."""
    if len(policies) != len(weights) or not policies:
        raise MavisError("give one weight per policy, and at least one policy")
    if not all(math.isfinite(w) and 0.0 <= w <= 1.0 for w in weights) \
            or abs(sum(weights) - 1.0) > 1e-6:
        raise MavisError(f"soup weights {list(weights)} must be in [0, 1] and sum to 1")
    infos = [read_policy_info(folder) for folder in policies]
    if len({info["reference"] for info in infos}) > 1:
        raise MavisError(f"the policies were trained on different reference models "
                         f"({', '.join(sorted({repr(i['reference']) for i in infos}))}); a "
                         "soup interpolates deltas of one base model")
    for folder in policies:
        config = json.loads((Path(folder).expanduser() / "adapter_config.json").read_text())
        if config.get("use_dora") or config.get("use_rslora"):
            raise MavisError(f"{folder}: DoRA / rsLoRA adapters are not supported by soups (their "
                             "deltas are not scaling * B @ A with the scaling the soup uses)")
    if base is None:
        model, tokenizer = load_causal_lm(infos[0]["reference"])
    else:
        model, tokenizer = copy.deepcopy(base), None
    peft_model = _combined(model, policies, weights)
    if out_dir is not None:
        save_policy(peft_model, out_dir, {
            "kind": "rewarded-soup", "reference": infos[0]["reference"],
            "soup_weights": list(weights),
            "parents": [str(Path(p).expanduser().resolve()) for p in policies],
            "weights": _mixed_weights([i.get("weights") for i in infos], weights)})
    with quiet_libraries():
        merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, tokenizer


def _combined(model: PreTrainedModel, policies: Sequence[str | Path],
              weights: Sequence[float]) -> PeftModel:
    """`model` with one adapter: the weighted concatenation of the policies' adapters."""
    names = [f"p{i}" for i in range(len(policies))]
    with quiet_libraries():
        peft_model = PeftModel.from_pretrained(model, str(Path(policies[0]).expanduser()),
                                               adapter_name=names[0])
        for name, folder in zip(names[1:], policies[1:], strict=True):
            peft_model.load_adapter(str(Path(folder).expanduser()), adapter_name=name)
        peft_model.add_weighted_adapter(names, list(weights), adapter_name="default",
                                        combination_type="cat")
        peft_model.set_adapter("default")
        for name in names:
            peft_model.delete_adapter(name)
    return peft_model


def _mixed_weights(parents: Sequence[Any], weights: Sequence[float]) -> dict[str, float] | None:
    """The objective weights the soup stands for: sum_i weights[i] * parents[i]'s weights."""
    if not all(isinstance(p, dict) for p in parents):
        return None
    names = list(dict.fromkeys(n for p in parents for n in p))
    return {n: sum(w * p.get(n, 0.0) for p, w in zip(parents, weights, strict=True))
            for n in names}
