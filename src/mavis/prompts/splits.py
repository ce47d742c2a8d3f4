"""Deterministic, order-independent de-duplication and train/validation/test assignment.

A prompt's split depends only on its normalised text and the seed (a sha256 hash), never on
file order, on which other prompts exist, or on `limit`: the same prompt lands in the same split
on every run and machine, and in every prompt set that contains it.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from mavis.errors import MavisError
from mavis.prompts.base import SPLITS, RawPrompt

_SCALE = float(2**64)


def normalize(text: str) -> str:
    """The de-duplication key: Unicode NFKC, case-folded, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(normalized: str) -> str:
    """Hex sha256 of a normalised text (the stable part of a prompt id)."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def split_position(normalized: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the text and the seed; it picks the split and the
    order within the split."""
    digest = hashlib.sha256(f"mavis-prompt-split:{seed}:{normalized}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, validation, test) fractions: three non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not math.isfinite(f) or f < 0 for f in values):
        raise MavisError(
            f"fractions must be three non-negative numbers (train, validation, test), got "
            f"{tuple(fractions)!r}"
        )
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise MavisError(f"fractions must sum to 1, got {values!r} (sum {sum(values):g})")
    return values  # type: ignore[return-value]


def split_of(position: float, fractions: tuple[float, float, float]) -> str:
    """Map a position in [0, 1) to its split."""
    bound = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        bound += fraction
        if position < bound:
            return name
    last = max(i for i, fraction in enumerate(fractions) if fraction > 0)  # rounding at 1.0
    return SPLITS[last]


def deduplicate(raw: Iterable[RawPrompt]) -> dict[str, RawPrompt]:
    """Drop empty prompts and keep one prompt per normalised text.

    Among duplicates the representative is the most frequent variant, ties going to the
    smallest (text, source, category), so the result does not depend on the input's order.
    """
    variants: dict[str, Counter[RawPrompt]] = {}
    for item in raw:
        if item.text.strip():
            variants.setdefault(normalize(item.text), Counter())[item] += 1
    return {
        key: min(counts, key=lambda p: (-counts[p], p.text, p.source, p.category, p.base_text))
        for key, counts in variants.items()
    }
