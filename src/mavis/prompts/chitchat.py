"""The `chitchat` prompt sets, from the Chit Chat Challenge conversations (`chitchat-dataset`).

- ``chitchat``: the opening turn of each human conversation (the first speaker's consecutive
  messages, one per line), skipping trivial openers of fewer than `MIN_WORDS` words ("hi",
  "hello?", "anyone there?"). Many openers are greetings or answers to the topic the site
  suggested; duplicates collapse in de-duplication.
- ``chitchat:starters``: the conversation starters the site suggested to its users (34 topics).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from mavis.prompts.base import PromptSet, RawPrompt
from mavis.prompts.packages import package_dir

MIN_WORDS = 4
"""Openers with fewer whitespace-separated words are skipped as trivial."""

INSTALL_HINT = "pip install chitchat-dataset==0.9.0"


@functools.cache
def _conversations() -> dict[str, Any]:
    folder = package_dir("chitchat_dataset", INSTALL_HINT, "the chitchat prompt sets")
    with open(folder / "dataset.json", encoding="utf-8") as handle:
        return json.load(handle)


def opening_turn(conversation: dict[str, Any]) -> str:
    """The first message group of a conversation, its utterances joined by newlines."""
    messages = conversation.get("messages") or []
    if not messages:
        return ""
    return "\n".join(u["text"].strip() for u in messages[0] if u.get("text", "").strip())


@functools.cache
def load_openers(argument: str | None = None) -> tuple[RawPrompt, ...]:
    """Opening turns with at least `MIN_WORDS` words."""
    openers = (opening_turn(conv) for conv in _conversations().values())
    return tuple(RawPrompt(text, "chitchat") for text in openers
                 if len(text.split()) >= MIN_WORDS)


@functools.cache
def load_starters(argument: str | None = None) -> tuple[RawPrompt, ...]:
    """The distinct conversation starters suggested by the Chit Chat Challenge."""
    starters = {(conv.get("prompt") or "").strip() for conv in _conversations().values()}
    return tuple(RawPrompt(text, "chitchat-starters") for text in sorted(starters) if text)


CHITCHAT = PromptSet(
    name="chitchat",
    description="opening turns of human chit-chat conversations (chitchat-dataset)",
    load=load_openers,
)
CHITCHAT_STARTERS = PromptSet(
    name="chitchat:starters",
    description="the 34 conversation starters of the Chit Chat Challenge",
    load=load_starters,
)
