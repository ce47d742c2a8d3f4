"""`positive`: VADER compound sentiment of the response, in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from mavis.objectives.base import Objective


class Positive(Objective):
    """VADER compound sentiment of the response; -1 (negative) .. 1 (positive)."""

    description = "VADER compound sentiment of the response; -1 (negative) .. 1 (positive)"
    source = "vaderSentiment 3.3.2: rule-based lexicon (offline)"

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        return [self._analyzer.polarity_scores(r)["compound"] for r in responses]
