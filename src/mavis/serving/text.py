"""Which part of a growing answer can be streamed now.

An answer is decoded from all its tokens at every step; what was sent can never be taken back,
so the end of the text is held back while it might still change:
- a trailing U+FFFD (a multi-byte character whose remaining bytes come with the next token);
- trailing white space (a tokenizer's clean-up may drop a space before punctuation that has
  not arrived yet);
- a tail that is the beginning of a stop string (if the stop string completes, the answer is
  cut before it, and the client must never have seen its beginning).
"""

from __future__ import annotations

from collections.abc import Sequence


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` may still change or be cut."""
    hold = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:length]):
                hold = length
                break
    end = len(text) - hold
    while end > 0 and (text[end - 1] == "\ufffd" or text[end - 1].isspace()):
        end -= 1
    return len(text) - end


def safe_delta(text: str, sent: int, stops: Sequence[str]) -> tuple[str, int]:
    """(the text to send now, the new count of characters sent) for an answer that is still
    growing, of which the first `sent` characters were sent."""
    end = len(text) - held_back(text, stops)
    if end <= sent:
        return "", sent
    return text[sent:end], end
