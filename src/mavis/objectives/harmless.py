"""`harmless`: 1 - P(offensive) of the response, from `alt-profanity-check`.

A bag-of-words linear SVM calibrated to a probability (scikit-learn, shipped with the package):
fast and offline, but it judges words, not intent. Range [0, 1]; 1 is clean.
"""

from __future__ import annotations

from collections.abc import Sequence

from profanity_check import predict_prob

from mavis.objectives.base import Objective


class Harmless(Objective):
    """1 - P(offensive) of the response (alt-profanity-check); in [0, 1], higher is cleaner."""

    description = "1 - P(offensive) of the response (alt-profanity-check); 0..1, higher is cleaner"
    source = "alt-profanity-check 1.9.1: calibrated linear SVM on bag-of-words (offline)"

    def __init__(self) -> None:
        self._predict_prob = predict_prob

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        return (1.0 - self._predict_prob(responses)).tolist()
