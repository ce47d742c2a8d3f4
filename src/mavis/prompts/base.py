"""The records a prompt set is made of: raw prompts from a source, and the final `Prompt`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The three disjoint splits; `load_prompts` also accepts "all"."""


@dataclass(frozen=True, slots=True)
class RawPrompt:
    """One prompt as a source yields it, before de-duplication, splitting and filtering.

    `text` is the user turn. `base_text`, when set, is how a base model without a chat template
    should see the same prompt (the paper's "Human: ... Assistant:" frame for HH-RLHF, the bare
    sentence start for RealToxicityPrompts); empty means `text` itself.
    """

    text: str
    source: str
    category: str = ""
    base_text: str = ""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt of a prompt set, assigned to a split.

    Attributes:
        id: stable identifier, ``<source>-<16 hex digits of sha256(normalised text)>``; the same
            prompt gets the same id on every run and machine, whatever the file order.
        text: the raw user prompt (no chat template applied).
        source: where it comes from (``chitchat``, ``donotanswer``, ``hh-rlhf``, a file's stem).
        split: ``train``, ``validation`` or ``test``.
        category: finer origin when the source has one (Do-Not-Answer file, RealToxicityPrompts
            challenge, HH-RLHF subset, subreddit), else "".
        base_text: the prompt as a base model without a chat template sees it; "" means `text`.
    """

    id: str
    text: str
    source: str
    split: str = ""
    category: str = ""
    base_text: str = ""

    @property
    def plain_text(self) -> str:
        """The text to feed a model that has no chat template."""
        return self.base_text or self.text

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready dict of all fields."""
        return asdict(self)


@dataclass(frozen=True)
class PromptSet:
    """A named prompt set: how to read its raw prompts, and the set's own token-length bounds.

    `load(argument)` returns the raw prompts; `argument` is the part after ``name:`` for sets
    that take one (a local path for the hub sets), else None. `min_tokens`/`max_tokens` are the
    set's own preprocessing bounds (the paper's), applied together with the caller's bounds.
    """

    name: str
    description: str
    load: Callable[[str | None], Sequence[RawPrompt]]
    min_tokens: int = 1
    max_tokens: int | None = None
    takes_argument: bool = False
    needs_hub: bool = False
