"""How well a value model ranks what the tilt compares (pure functions, no model).

The tilt only ever compares continuations of the same prefix, so a value model is judged here
by how it orders those: children of one node (siblings), and nodes of one prompt's tree. The
all-node correlation mostly measures differences between prompts, which steering never uses.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def spearman(predicted: np.ndarray, target: np.ndarray) -> float | None:
    """Spearman correlation, None with fewer than 3 points or a constant side."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if len(target) < 3 or np.ptp(target) == 0 or np.ptp(predicted) == 0:
        return None
    rho = spearmanr(predicted, target).statistic
    return None if np.isnan(rho) else float(rho)
