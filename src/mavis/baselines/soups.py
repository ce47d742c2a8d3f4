"""Rewarded Soups (Rame et al., 2023; paper section 4): interpolate the weights of two policies
fine-tuned from the same reference, one per objective, by lambda.

For LoRA policies the interpolation is done on the weight deltas, exactly: each adapted linear
layer of policy i changes W by delta_i = scaling_i * B_i @ A_i, and the soup's weight is

    W_soup = W + lambda * delta_1 + (1 - lambda) * delta_2

(interpolating A and B separately would give a different, bilinear mix, and needs equal ranks).
peft's `add_weighted_adapter(..., combination_type="cat")` builds exactly this as one adapter:
it stacks [w_1 * scaling_1 * A_1; w_2 * scaling_2 * A_2] and [B_1, B_2] into an adapter of rank
r_1 + r_2 with scaling 1, so B_cat @ A_cat = sum_i w_i * delta_i; the tests check the merged
weights against the formula. The soup is thus small on disk (an adapter of rank r_1 + r_2) and
`soup` returns it merged into a plain model for inference.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mavis.baselines.policy import read_policy_info, save_policy
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm, quiet_libraries


def soup(policy_a: str | Path, policy_b: str | Path, lam: float,
         out_dir: str | Path | None = None, *, base: PreTrainedModel | None = None
         ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """The Rewarded Soup lam * policy_a + (1 - lam) * policy_b (on the weight deltas), merged
    into one causal LM in eval mode, and its tokenizer. With `out_dir`, the soup is also saved
    as a policy folder (`load_policy` reads it). `base`: the policies' reference model already
    loaded (copied, not changed; the tokenizer returned is then None), to save loading it
    again for every lambda."""
    if not (math.isfinite(lam) and 0.0 <= lam <= 1.0):
        raise MavisError(f"lambda={lam} must be in [0, 1]")
    infos = [read_policy_info(policy_a), read_policy_info(policy_b)]
    if infos[0]["reference"] != infos[1]["reference"]:
        raise MavisError(f"the two policies were trained on different reference models "
                         f"({infos[0]['reference']!r} and {infos[1]['reference']!r}); a soup "
                         "interpolates deltas of one base model")
    for folder in (policy_a, policy_b):
        config = json.loads((Path(folder).expanduser() / "adapter_config.json").read_text())
        if config.get("use_dora") or config.get("use_rslora"):
            raise MavisError(f"{folder}: DoRA / rsLoRA adapters are not supported by soups (their "
                             "deltas are not scaling * B @ A with the scaling the soup uses)")

    if base is None:
        model, tokenizer = load_causal_lm(infos[0]["reference"])
    else:
        model, tokenizer = copy.deepcopy(base), None
    with quiet_libraries():
        peft_model = PeftModel.from_pretrained(model, str(Path(policy_a).expanduser()),
                                               adapter_name="a")
        peft_model.load_adapter(str(Path(policy_b).expanduser()), adapter_name="b")
        peft_model.add_weighted_adapter(["a", "b"], [lam, 1.0 - lam], adapter_name="default",
                                        combination_type="cat")
        peft_model.set_adapter("default")
        peft_model.delete_adapter("a")
        peft_model.delete_adapter("b")
    if out_dir is not None:
        save_policy(peft_model, out_dir, {
            "kind": "rewarded-soup",
            "reference": infos[0]["reference"],
            "lambda": lam,
            "parents": [str(Path(policy_a).expanduser().resolve()),
                        str(Path(policy_b).expanduser().resolve())],
            "weights": _mixed_weights(infos[0].get("weights"), infos[1].get("weights"), lam),
        })
    with quiet_libraries():
        merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, tokenizer


def _mixed_weights(first: Any, second: Any, lam: float) -> dict[str, float] | None:
    """The objective weights the soup stands for: lam * weights_a + (1 - lam) * weights_b."""
    if not isinstance(first, dict) or not isinstance(second, dict):
        return None
    names = list(dict.fromkeys([*first, *second]))
    return {n: lam * first.get(n, 0.0) + (1.0 - lam) * second.get(n, 0.0) for n in names}
