"""Value-model training (Algorithm 1, equation 6) and distillation (appendix E).

    from mavis.training import TrainConfig, train, distill
    report = train(TrainConfig(objectives=["relevant"], epochs=1), "trees.h5", "runs/vm")
"""

from mavis.training.config import TrainConfig
from mavis.training.distill import distill
from mavis.training.trainer import train

__all__ = ["TrainConfig", "distill", "train"]
