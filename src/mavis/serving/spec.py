"""What a server loads and the caps it enforces. No torch here: the command line checks these
before loading anything, and a Ray replica receives them pickled."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mavis.decoding.settings import DEFAULT_BETA, DEFAULT_KL_BUDGET
from mavis.errors import MavisError

API_KEY_VARIABLE = "MAVIS_API_KEY"


@dataclass(frozen=True)
class ServerLimits:
    """The caps and defaults of one server.

    max_batch: rows decoded together at most (a request with n choices takes n rows).
    max_queue: rows that may wait to join the batch; a request that would exceed it gets 429.
    max_tokens: the most tokens a request may ask for per choice.
    default_max_tokens: what a request that names no max_tokens gets.
    max_n: choices per request at most (never more than max_batch).
    max_prompts: prompts in one /v1/completions request at most.
    max_prompt_chars: characters of prompt text per request at most (before tokenising).
    max_body_bytes: size of a request body at most (413 beyond).
    max_stop: stop strings per request at most (OpenAI's cap).
    default_beta: guidance strength when a request gives none (the most, under a KL budget).
    default_kl_budget: nats of KL per answer steering may add when a request gives no
        kl_budget (None: a fixed beta).
    default_top_k: candidates per step when a request gives none.
    """

    max_batch: int = 16
    max_queue: int = 64
    max_tokens: int = 512
    default_max_tokens: int = 64
    max_n: int = 16
    max_prompts: int = 16
    max_prompt_chars: int = 32_000
    max_body_bytes: int = 1_000_000
    max_stop: int = 4
    default_beta: float = DEFAULT_BETA
    default_kl_budget: float | None = DEFAULT_KL_BUDGET
    default_top_k: int = 40

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_tokens", "default_max_tokens", "max_n",
                     "max_prompts", "max_prompt_chars", "max_body_bytes", "max_stop",
                     "default_top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MavisError(f"{name.replace('_', '-')} is {value!r}; it must be a whole "
                                 "number >= 1")
        if self.default_max_tokens > self.max_tokens:
            raise MavisError(f"default max tokens ({self.default_max_tokens}) exceeds the cap "
                             f"({self.max_tokens})")
        if not self.default_beta >= 0:
            raise MavisError(f"default beta {self.default_beta} must be >= 0")

    @property
    def choices_cap(self) -> int:
        """The most choices one request may ask for: all of them must fit in one batch."""
        return min(self.max_n, self.max_batch)


@dataclass(frozen=True)
class ServerSpec:
    """What a server (or each Ray replica) loads: the reference model (packaged name, folder or
    hub id), the value-model folders (each may cover several objectives), the limits, the name
    clients pass as `model` (default: the reference's name) and the API key (None: open)."""

    model: str
    value_model_folders: tuple[str, ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)
    served_name: str = ""
    api_key: str | None = None

    @property
    def name(self) -> str:
        return self.served_name or self.model


def api_key_from_environment() -> str | None:
    """The key every request must carry (`Authorization: Bearer <key>`), from MAVIS_API_KEY;
    unset or empty: no key needed."""
    return os.environ.get(API_KEY_VARIABLE) or None
