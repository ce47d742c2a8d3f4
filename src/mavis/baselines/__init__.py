"""Fine-tuned baselines of paper section 4, evaluated beside MAVIS.

- MORLHF: one LoRA policy per weight vector lambda, trained by KL-regularised RL on
  sum_m lambda_m R_m (`train_morlhf`, settings in `MorlhfSettings`).
- Rewarded Soups: the weights of two single-objective policies interpolated by lambda
  (`soup`).
- `load_policy`: any policy folder as one plain causal LM (adapter merged), for evaluation.

    from mavis.baselines import MorlhfSettings, train_morlhf, soup, load_policy
    settings = MorlhfSettings(objectives=["harmless", "relevant"])
    train_morlhf(settings, {"harmless": 1.0}, "runs/morlhf/harmless")
    train_morlhf(settings, {"relevant": 1.0}, "runs/morlhf/relevant")
    model, tokenizer = soup("runs/morlhf/harmless", "runs/morlhf/relevant", 0.4)

"""

from mavis.baselines.config import MorlhfSettings
from mavis.baselines.morlhf import train_morlhf
from mavis.baselines.policy import load_policy
from mavis.baselines.soups import soup

__all__ = ["MorlhfSettings", "load_policy", "soup", "train_morlhf"]
