"""`load_prompts`: one split of a prompt set, de-duplicated and filtered by length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mavis.errors import MavisError
from mavis.models.loading import load_tokenizer
from mavis.prompts.base import SPLITS, Prompt, RawPrompt
from mavis.prompts.lengths import length_counter
from mavis.prompts.sets import resolve
from mavis.prompts.splits import (
    check_fractions,
    deduplicate,
    split_of,
    split_position,
    text_hash,
)

_BATCH = 512


def _check_split(split: str) -> None:
    if split not in (*SPLITS, "all"):
        raise MavisError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}, all")


def _resolve_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, str):
        return load_tokenizer(tokenizer)
    return tokenizer


def load_prompts(
    name_or_path: str,
    split: str = "train",
    *,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = 256,
    min_prompt_tokens: int = 1,
    limit: int | None = None,
    skip: int = 0,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> list[Prompt]:
    """Load one split of a prompt set.

    Args:
        name_or_path: a prompt set name (see `list_prompt_sets`), ``hh-rlhf:PATH`` /
            ``summarize:PATH`` for local copies of the hub data sets, or a ``.jsonl``,
            ``.json`` or ``.csv`` file with a ``prompt`` column.
        split: ``train``, ``validation``, ``test`` or ``all``.
        tokenizer: a Hugging Face tokenizer (or a model name for `load_tokenizer`) to count
            prompt lengths in tokens; None counts whitespace-separated words.
        max_prompt_tokens: drop longer prompts (None: no bound). The set's own bound (the
            paper's, e.g. 200 for hh-rlhf) applies too.
        min_prompt_tokens: drop shorter prompts; the set's own bound applies too.
        limit: return at most this many prompts: the first ones in the split's fixed order.
        skip: leave out the first `skip` prompts that pass the length bounds, so that
            ``skip=400, limit=800`` gives the 800 that follow ``limit=400``'s.
        seed: changes the split assignment and the order.
        fractions: (train, validation, test) shares, summing to 1.

    Prompts are de-duplicated on normalised text (case, whitespace, Unicode form); empty ones
    are skipped. Each prompt's split and position follow from sha256(seed, normalised text):
    the same on every run and machine, independent of file order and of `limit`, and the splits
    are disjoint. Lengths count the prompt text alone, without the chat template.
    """
    _check_split(split)
    shares = check_fractions(fractions)
    if limit is not None and limit < 0:
        raise MavisError(f"limit must be >= 0, got {limit}")
    if skip < 0:
        raise MavisError(f"skip must be >= 0, got {skip}")
    prompt_set, argument = resolve(name_or_path)
    lowest = max(min_prompt_tokens, prompt_set.min_tokens)
    bounds = [b for b in (max_prompt_tokens, prompt_set.max_tokens) if b is not None]
    highest = min(bounds) if bounds else None
    tokenizer = _resolve_tokenizer(tokenizer)

    candidates: list[tuple[float, str, str, RawPrompt]] = []
    for key, raw in deduplicate(prompt_set.load(argument)).items():
        position = split_position(key, seed)
        assigned = split_of(position, shares)
        if split in ("all", assigned):
            candidates.append((position, key, assigned, raw))
    candidates.sort(key=lambda c: (c[0], c[1]))

    count = length_counter(tokenizer)
    prompts: list[Prompt] = []
    if limit == 0:
        return prompts
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start:start + _BATCH]
        for (_, key, assigned, raw), length in zip(
            batch, count([c[3].text for c in batch]), strict=True
        ):
            if length < lowest or (highest is not None and length > highest):
                continue
            if skip:
                skip -= 1
                continue
            prompts.append(Prompt(
                id=f"{raw.source}-{text_hash(key)[:16]}",
                text=raw.text,
                source=raw.source,
                split=assigned,
                category=raw.category,
                base_text=raw.base_text,
            ))
            if limit is not None and len(prompts) >= limit:
                return prompts
    return prompts


def split_counts(prompts: Sequence[Prompt]) -> dict[str, int]:
    """How many of `prompts` fall in each split (all three splits listed)."""
    counts = dict.fromkeys(SPLITS, 0)
    for prompt in prompts:
        counts[prompt.split] = counts.get(prompt.split, 0) + 1
    return counts
