"""`format_prompts`: prompts as the reference model reads them (its chat template)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mavis.models.loading import apply_chat_template, load_tokenizer
from mavis.prompts.base import Prompt


def format_prompts(prompts: Sequence[Prompt | str], tokenizer: Any) -> list[str]:
    """Wrap each prompt as one user turn in the tokenizer's chat template, ready for the answer.

    Tokenizers without a chat template (base models), and ``tokenizer=None``, get each
    prompt's `plain_text`: the paper's "Human: ... Assistant:" frame for HH-RLHF, the bare
    sentence start for RealToxicityPrompts, the text itself otherwise. Plain strings are
    accepted too. A string `tokenizer` is loaded with `mavis.models.loading.load_tokenizer`.
    """
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return [p.plain_text if isinstance(p, Prompt) else p for p in prompts]
    return [apply_chat_template(tokenizer, p.text if isinstance(p, Prompt) else p)
            for p in prompts]
