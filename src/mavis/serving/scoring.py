"""Rewards of finished answers (`score: true`): every loaded objective that is also a reward
function mavis knows (`mavis.objectives`) scores each answer against its prompt.

Scoring runs in one worker thread of its own, off the event loop and off the decoding thread,
one call at a time (reward models need not be thread-safe), so a slow reward never stalls the
batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from mavis.errors import MavisError
from mavis.objectives import OBJECTIVES, parse_objective_names, score_all
from mavis.serving.errors import APIError


def is_reward(name: str) -> bool:
    """Whether `name` is a reward function mavis can compute (checked without loading it)."""
    try:
        parse_objective_names([name])
    except MavisError:
        return False
    return True


def describe(name: str) -> str:
    return OBJECTIVES.describe(name) if name in OBJECTIVES else ""


class Scorer:
    """Scores answers under the loaded objectives that are known reward functions."""

    def __init__(self, objectives: Sequence[str]) -> None:
        self.objectives = [name for name in objectives if is_reward(name)]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mavis-score")

    async def score(self, prompts: Sequence[str], responses: Sequence[str]
                    ) -> list[dict[str, float]]:
        """One {objective: reward} per (prompt, response) pair."""
        if not self.objectives or not responses:
            return [{} for _ in responses]
        loop = asyncio.get_running_loop()
        try:
            table = await loop.run_in_executor(self._executor, score_all, self.objectives,
                                               list(prompts), list(responses))
        except MavisError as exc:
            raise APIError(500, f"scoring failed: {exc}", code="scoring_failed") from None
        return [{name: float(values[i]) for name, values in table.items()}
                for i in range(len(responses))]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
