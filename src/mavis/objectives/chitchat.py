"""`witty`, `upbeat`, `interesting`: ridge heads on MiniLM embeddings, fitted to human ratings.

The Chit Chat Challenge conversations (`chitchat-dataset`) carry 1-10 human ratings of how
witty, upbeat and interesting each conversation was (5,988 rated conversations). A conversation
becomes text as its turns joined by newlines (the messages of one turn joined by spaces); the
text is embedded with MiniLM (see `embeddings.py`) and one ridge regression per rating maps the
embedding to the rating. At scoring time "prompt + response" is the two-turn conversation
`prompt\\nresponse`, embedded the same way.

Fitting: the rated conversations are split 80/20 (seed 0); a `RidgeCV` (one alpha per rating,
chosen by cross-validation on the 80%) is fitted on the 80%, and Spearman and R^2 are measured on
the held-out 20%. The head that scores is exactly the one those figures describe. Embedding
every rated conversation takes a few minutes on a laptop CPU, so the embeddings, the heads and
the figures are cached under `cache_dir("objectives", "chitchat", "<version>-all")` and reused.

A fit on fewer conversations (quick trials, tests) is asked for with `limit=` or the
environment variable `MAVIS_CHITCHAT_LIMIT`; it draws a fixed random subset (seed 0) and caches
under its own key (`<version>-limit<N>`), so it never stands in for the full fit.

Scores are the predicted rating, clipped to the rating scale [1, 10]; the ratings cluster
around 5-7, so differences of a few tenths are meaningful.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import chitchat_dataset
import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from mavis.errors import MavisError
from mavis.objectives.base import Objective
from mavis.objectives.embeddings import get_embedder
from mavis.paths import atomic_path, cache_dir, write_text_atomic

RATINGS = ("witty", "upbeat", "interesting")
# Bump when the text format, the embedder, the split or the fit changes: old caches are ignored.
VERSION = "v1"
LIMIT_ENV = "MAVIS_CHITCHAT_LIMIT"
SEED = 0
TEST_FRACTION = 0.2
ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))
RATING_RANGE = (1.0, 10.0)


def conversation_text(turns: Sequence[str]) -> str:
    """The text a conversation is embedded as: one line per turn."""
    return "\n".join(t.strip() for t in turns)


def pair_text(prompt: str, response: str) -> str:
    """A (prompt, response) pair as a two-turn conversation, formatted like the training text."""
    return conversation_text([prompt, response])


def rated_conversations(limit: int | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """Ids, texts and ratings (n, 3; columns in `RATINGS` order) of the rated conversations.

    All of them, sorted by id; with `limit`, a fixed random subset (seed 0) of that size.
    """
    data = chitchat_dataset.Dataset()
    ids = sorted(k for k, v in data.items() if v.get("ratings"))
    if limit is not None and limit < len(ids):
        pick = np.random.default_rng(SEED).permutation(len(ids))[:limit]
        ids = [ids[i] for i in sorted(pick)]
    texts = [
        conversation_text([" ".join(m["text"] for m in turn) for turn in data[i]["messages"]])
        for i in ids
    ]
    ratings = np.array([[data[i]["ratings"][r] for r in RATINGS] for i in ids], dtype=np.float32)
    return ids, texts, ratings


@dataclass(frozen=True)
class ChitchatHeads:
    """Three linear heads (embedding -> rating) and how well they fit held-out conversations."""

    coef: np.ndarray  # (3, dim), rows in RATINGS order
    intercept: np.ndarray  # (3,)
    metrics: dict  # rating -> {"spearman", "r2", "alpha"}; plus counts and version
    folder: Path

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted ratings, (n, 3), clipped to the 1-10 scale."""
        return np.clip(embeddings @ self.coef.T + self.intercept, *RATING_RANGE)


def resolve_limit(limit: int | None = None) -> int | None:
    """`limit`, else `MAVIS_CHITCHAT_LIMIT`, else None (every rated conversation)."""
    if limit is None:
        raw = os.environ.get(LIMIT_ENV, "").strip()
        if not raw:
            return None
        try:
            limit = int(raw)
        except ValueError:
            raise MavisError(f"{LIMIT_ENV}={raw!r} is not a whole number") from None
    if limit < 20:
        raise MavisError(f"chitchat fit needs at least 20 conversations, got limit={limit}")
    return limit


def cache_key(limit: int | None) -> str:
    return f"{VERSION}-all" if limit is None else f"{VERSION}-limit{limit}"


def fit_chitchat_heads(
    limit: int | None = None, *, progress: bool = True, refit: bool = False
) -> ChitchatHeads:
    """Load the cached heads, or embed the rated conversations and fit them (then cache).

    `limit`: fit on that many conversations (default: `MAVIS_CHITCHAT_LIMIT`, else all).
    `refit`: ignore the cached heads (the cached embeddings are still reused).
    """
    limit = resolve_limit(limit)
    folder = cache_dir("objectives", "chitchat", cache_key(limit))
    if not refit and (folder / "heads.npz").exists() and (folder / "fit.json").exists():
        return _load(folder)

    embeddings_file = folder / "embeddings.npz"
    ids, texts, ratings = rated_conversations(limit)
    x = None
    if embeddings_file.exists():
        cached = np.load(embeddings_file)
        if list(cached["ids"]) == ids:
            x = cached["x"]
    if x is None:
        desc = f"embedding {len(texts)} chitchat conversations (once)"
        x = get_embedder().encode(texts, progress=desc if progress else False)
        _save_npz(embeddings_file, ids=np.array(ids), x=x)

    coef, intercept, metrics = _fit(x, ratings)
    metrics["conversations"] = len(ids)
    metrics["version"] = cache_key(limit)
    _save_npz(folder / "heads.npz", coef=coef, intercept=intercept)
    write_text_atomic(folder / "fit.json", json.dumps(metrics, indent=2))
    return ChitchatHeads(coef, intercept, metrics, folder)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED
    )
    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x_train, y_train)
    pred = np.clip(model.predict(x_test), *RATING_RANGE)
    metrics: dict = {"train": len(x_train), "held_out": len(x_test)}
    for j, rating in enumerate(RATINGS):
        rho = spearmanr(y_test[:, j], pred[:, j]).statistic
        metrics[rating] = {
            "spearman": float(rho) if np.isfinite(rho) else 0.0,
            "r2": float(r2_score(y_test[:, j], pred[:, j])),
            "alpha": float(np.atleast_1d(model.alpha_)[j]),
        }
    coef = np.asarray(model.coef_, dtype=np.float32).reshape(len(RATINGS), -1)
    intercept = np.asarray(model.intercept_, dtype=np.float32).reshape(len(RATINGS))
    return coef, intercept, metrics


def _load(folder: Path) -> ChitchatHeads:
    heads = np.load(folder / "heads.npz")
    metrics = json.loads((folder / "fit.json").read_text())
    return ChitchatHeads(heads["coef"], heads["intercept"], metrics, folder)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as temp, temp.open("wb") as handle:
        np.savez(handle, **arrays)


class ChitchatRating(Objective):
    """Predicted human rating (1-10) of a two-turn conversation prompt -> response."""

    source = (
        "ridge head on all-MiniLM-L6-v2 embeddings, fitted to the human ratings of the "
        "chitchat-dataset conversations (80/20 split, seed 0)"
    )

    def __init__(self, rating: str, limit: int | None = None) -> None:
        if rating not in RATINGS:
            raise MavisError(f"unknown chitchat rating {rating!r}; known: {', '.join(RATINGS)}")
        self.rating = rating
        self.limit = resolve_limit(limit)
        self.description = (
            f"Predicted human '{rating}' rating (1-10) of prompt -> response as a chat "
            "(ridge on MiniLM, chitchat-dataset)"
        )
        self._column = RATINGS.index(rating)
        self._embedder = get_embedder()
        self._heads: ChitchatHeads | None = None

    @property
    def heads(self) -> ChitchatHeads:
        """The fitted heads (loaded from the cache, or fitted and cached, on first use)."""
        if self._heads is None:
            self._heads = fit_chitchat_heads(self.limit)
        return self._heads

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        heads = self.heads
        texts = [pair_text(p, r) for p, r in zip(prompts, responses, strict=True)]
        x = self._embedder.encode(texts)
        return heads.predict(x)[:, self._column].tolist()

    def info(self) -> dict[str, str]:
        m = self.heads.metrics
        fit = m[self.rating]
        counts = f"{m['conversations']} ({m['train']} fitted, {m['held_out']} held out)"
        return {
            "held-out Spearman": f"{fit['spearman']:.3f}",
            "held-out R^2": f"{fit['r2']:.3f}",
            "conversations": counts,
            "ridge alpha": f"{fit['alpha']:g}",
            "scale": "predicted rating, clipped to 1..10",
            "note": "fitted on whole conversations, applied to two turns (prompt, response): "
            "compare scores with each other rather than with the raw ratings",
            "cache": str(self.heads.folder),
        }


def witty() -> ChitchatRating:
    return ChitchatRating("witty")


def upbeat() -> ChitchatRating:
    return ChitchatRating("upbeat")


def interesting() -> ChitchatRating:
    return ChitchatRating("interesting")
