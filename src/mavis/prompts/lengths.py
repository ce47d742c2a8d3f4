"""Counting prompt lengths: tokens of a tokenizer, or whitespace-separated words without one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

LengthCounter = Callable[[Sequence[str]], list[int]]


def length_counter(tokenizer: Any | None) -> LengthCounter:
    """Return a function mapping texts to their lengths.

    With a Hugging Face tokenizer: the number of tokens of the text alone (no special tokens, no
    chat template; a template adds a fixed number). Without one: whitespace-separated words.
    """
    if tokenizer is None:
        return lambda texts: [len(text.split()) for text in texts]

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if callable(tokenizer):
            encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)
            return [len(ids) for ids in encoded["input_ids"]]
        return [len(tokenizer.encode(text, add_special_tokens=False)) for text in texts]

    return count


def length_unit(tokenizer: Any | None) -> str:
    """What the lengths count, for messages: "tokens" or "whitespace words"."""
    return "whitespace words" if tokenizer is None else "tokens"
