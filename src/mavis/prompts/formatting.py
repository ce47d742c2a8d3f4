"""How a model reads a prompt: `frame_prompt`, the one framing function that collection,
generation and evaluation all use (so a value model sees at evaluation exactly the prompt
tokens it was trained on)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mavis.models.loading import apply_chat_template, load_tokenizer
from mavis.prompts.base import Prompt


def frame_prompt(prompt: Prompt | Any, tokenizer: Any) -> str:
    """The text the model reads for `prompt`, ready for the answer.

    With a chat template: the prompt's `text` as one user turn. Tokenizers without one (base
    models) and ``tokenizer=None`` get the prompt's `plain_text`: the paper's "Human: ...
    Assistant:" frame for HH-RLHF, the bare sentence start for RealToxicityPrompts, the text
    itself otherwise. `prompt` is a `Prompt`, any object with `text` and `plain_text`, or a
    plain string (framed as its own plain text).
    """
    text = prompt if isinstance(prompt, str) else prompt.text
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return prompt if isinstance(prompt, str) else prompt.plain_text
    return apply_chat_template(tokenizer, text)


def prompt_text(prompt: Prompt | Any) -> str:
    """The user's words of a prompt (what the objectives score an answer against)."""
    return prompt if isinstance(prompt, str) else prompt.text


def format_prompts(prompts: Sequence[Prompt | Any], tokenizer: Any) -> list[str]:
    """`frame_prompt` for every prompt; a string `tokenizer` is loaded by name first."""
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    return [frame_prompt(p, tokenizer) for p in prompts]
