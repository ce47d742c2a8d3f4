"""The `hh-rlhf` prompt sets: first human turns of Anthropic HH-RLHF (Bai et al., 2022).

Preprocessing follows the paper (appendix F.1): the prompt is the first human turn, the text
of a dialogue up to the first ``"\\n\\nAssistant:"`` with the leading ``"\\n\\nHuman: "``
removed; prompts of more than `MAX_TOKENS` tokens are dropped; duplicates are removed.
Lengths count the reference tokenizer's tokens of the turn (whitespace words without a
tokenizer); the paper counted Llama-2 tokens.

`Prompt.text` is the human turn alone: a chat model gets it as the user turn of its chat
template. `Prompt.base_text` is the paper's frame for base models,
``"\\n\\nHuman: <turn>\\n\\nAssistant:"``, which `format_prompts` uses for tokenizers without a
chat template.

Names: ``hh-rlhf`` (all of ``Anthropic/hh-rlhf`` on the hub), ``hh-rlhf:<subset>`` (one data
folder on the hub: harmless-base, helpful-base, helpful-online, helpful-rejection-sampled,
red-team-attempts) and ``hh-rlhf:<path>``: a local ``.jsonl``/``.jsonl.gz``/``.json``/
``.parquet`` file, or a folder of them (e.g. a clone of the data set repository), in the hub
format: records with a ``chosen`` (or ``rejected``; ``transcript`` for red-team-attempts)
dialogue. Splits are assigned by prompt, ignoring the data set's own train/test files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mavis.prompts.base import PromptSet, RawPrompt
from mavis.prompts.hub import check_columns, hub_records, local_records

REPO = "Anthropic/hh-rlhf"
SUBSETS: tuple[str, ...] = ("harmless-base", "helpful-base", "helpful-online",
                            "helpful-rejection-sampled", "red-team-attempts")
MAX_TOKENS = 200
HUMAN = "Human:"
ASSISTANT = "\n\nAssistant:"
DIALOGUE_COLUMNS: tuple[str, ...] = ("chosen", "rejected", "transcript")
LOCAL_HINT = "hh-rlhf:/path/to/train.jsonl.gz (or a folder of such files)"


def first_human_turn(dialogue: str) -> str | None:
    """The first human turn of an HH-RLHF dialogue, or None when it has no
    ``Human: ... \\n\\nAssistant:`` exchange."""
    start = dialogue.find(HUMAN)
    if start < 0:
        return None
    start += len(HUMAN)
    end = dialogue.find(ASSISTANT, start)
    if end < 0:
        return None
    return dialogue[start:end].strip()


def base_frame(turn: str) -> str:
    """The paper's prompt for base models: the human turn and the assistant's cue."""
    return f"\n\nHuman: {turn}{ASSISTANT}"


def to_prompts(records: Iterable[tuple[str, dict[str, Any]]], where: str) -> list[RawPrompt]:
    """Turn (category, record) pairs in the hub format into raw prompts."""
    prompts: list[RawPrompt] = []
    found_any = False
    columns_seen: set[str] = set()
    for category, record in records:
        dialogue = next((record[c] for c in DIALOGUE_COLUMNS if record.get(c)), None)
        if dialogue is None:
            columns_seen.update(record)
            continue
        found_any = True
        turn = first_human_turn(str(dialogue))
        if turn:
            prompts.append(RawPrompt(turn, "hh-rlhf", category, base_frame(turn)))
    check_columns(found_any, columns_seen, "'chosen' (or 'rejected') dialogue column", where)
    return prompts


def _local_category(root: Path, file: Path) -> str:
    if root.is_dir():
        parts = file.relative_to(root).parts
        return parts[0] if len(parts) > 1 else ""
    return file.parent.name if file.parent.name in SUBSETS else ""


def load(argument: str | None = None) -> list[RawPrompt]:
    """Load HH-RLHF first turns: the whole hub data set, one hub subset, or local files."""
    if argument is None or argument in SUBSETS:
        records = hub_records(REPO, DIALOGUE_COLUMNS, data_dir=argument, local_hint=LOCAL_HINT)
        return to_prompts(((argument or "", r) for r in records), REPO)
    root = Path(argument).expanduser()
    pairs = ((_local_category(root, file), r) for file, r in local_records(root))
    return to_prompts(pairs, str(root))


HH_RLHF = PromptSet(
    name="hh-rlhf",
    description="Anthropic HH-RLHF first human turns (paper F.1; hub, or hh-rlhf:PATH)",
    load=load,
    max_tokens=MAX_TOKENS,
    takes_argument=True,
    needs_hub=True,
)
HH_RLHF_HARMLESS = PromptSet(
    name="hh-rlhf:harmless-base",
    description="HH-RLHF harmless-base first human turns (hub)",
    load=lambda _argument=None: load("harmless-base"),
    max_tokens=MAX_TOKENS,
    needs_hub=True,
)
HH_RLHF_HELPFUL = PromptSet(
    name="hh-rlhf:helpful-base",
    description="HH-RLHF helpful-base first human turns (hub)",
    load=lambda _argument=None: load("helpful-base"),
    max_tokens=MAX_TOKENS,
    needs_hub=True,
)
