"""The `summarize` prompt set: Reddit posts of OpenAI's Summarize from Feedback (Stiennon et
al., 2020), preprocessed as in the paper (appendix F.1).

Posts of fewer than `MIN_POST_CHARS` or more than `MAX_POST_CHARS` characters (after stripping
surrounding whitespace) are dropped; the rest are put in the template
``"### Instruction: Generate a one-sentence summary of this post. ### Input: <post> ###
Response: "``; prompts of fewer than 8 or more than 512 tokens are dropped; duplicates (the
same post in many comparisons) are removed. Comparisons without a Reddit post (the CNN/DM
articles) are skipped. The category is the subreddit.

The templated text is the prompt. The paper gave it to base Llama-2 as is; `format_prompts`
does the same for tokenizers without a chat template, and with a chat model the whole
templated text becomes the user turn. Note that `load_prompts`' default
``max_prompt_tokens=256`` is stricter than the paper's 512: pass ``max_prompt_tokens=512`` (or
None) to keep the paper's bound.

Names: ``summarize`` (``openai/summarize_from_feedback``, config ``comparisons``, on the hub)
and ``summarize:<path>``: a local file or folder in the same format (records with an ``info``
object holding ``post`` and ``subreddit``; records with a top-level ``post`` work too).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mavis.prompts.base import PromptSet, RawPrompt
from mavis.prompts.hub import check_columns, hub_records, local_records

REPO = "openai/summarize_from_feedback"
CONFIG = "comparisons"
MIN_POST_CHARS = 101
MAX_POST_CHARS = 1199
MIN_TOKENS = 8
MAX_TOKENS = 512
TEMPLATE_PREFIX = "### Instruction: Generate a one-sentence summary of this post. ### Input: "
TEMPLATE_SUFFIX = " ### Response: "
LOCAL_HINT = "summarize:/path/to/comparisons.jsonl (or a folder of such files)"


def summarize_prompt(post: str) -> str:
    """The paper's summarisation prompt for one post."""
    return TEMPLATE_PREFIX + post + TEMPLATE_SUFFIX


def _post_and_subreddit(record: dict[str, Any]) -> tuple[str | None, str] | None:
    info = record.get("info")
    holder = info if isinstance(info, dict) else record
    if "post" not in holder:
        return None
    return holder.get("post"), str(holder.get("subreddit") or "")


def to_prompts(records: Iterable[dict[str, Any]], where: str) -> list[RawPrompt]:
    """Turn summarize-from-feedback records into templated raw prompts."""
    prompts: list[RawPrompt] = []
    found_any = False
    columns_seen: set[str] = set()
    for record in records:
        found = _post_and_subreddit(record)
        if found is None:
            columns_seen.update(record)
            continue
        found_any = True
        post, subreddit = found
        if not post:
            continue
        post = post.strip()
        if MIN_POST_CHARS <= len(post) <= MAX_POST_CHARS:
            prompts.append(RawPrompt(summarize_prompt(post), "summarize", subreddit))
    check_columns(found_any, columns_seen, "'info' column with a 'post' (nor a 'post' column)",
                  where)
    return prompts


def load(argument: str | None = None) -> list[RawPrompt]:
    """Load templated posts from the hub, or from a local file or folder."""
    if argument is None:
        records = hub_records(REPO, ("info",), config=CONFIG, local_hint=LOCAL_HINT)
        return to_prompts(records, REPO)
    root = Path(argument).expanduser()
    return to_prompts((record for _, record in local_records(root)), str(root))


SUMMARIZE = PromptSet(
    name="summarize",
    description="Summarize-from-Feedback Reddit posts in the paper's template (hub, or "
    "summarize:PATH)",
    load=load,
    min_tokens=MIN_TOKENS,
    max_tokens=MAX_TOKENS,
    takes_argument=True,
    needs_hub=True,
)
