"""What a server loads and the caps it enforces. No torch here: the command line checks these
before loading anything, and a Ray replica receives them pickled."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mavis import checks
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_VALUE_DTYPE

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

    What a request leaves out (beta, kl_budget, top_k, ...) takes `SamplingSettings`' defaults,
    the same as the library's and the command line's.
    """

    max_batch: int = 16
    max_queue: int = 64
    max_tokens: int = 512
    default_max_tokens: int = SamplingSettings().max_new_tokens
    max_n: int = 16
    max_prompts: int = 16
    max_prompt_chars: int = 32_000
    max_body_bytes: int = 1_000_000
    max_stop: int = 4

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_tokens", "default_max_tokens", "max_n",
                     "max_prompts", "max_prompt_chars", "max_body_bytes", "max_stop"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MavisError(f"{name.replace('_', '-')} is {value!r}; it must be a whole "
                                 "number >= 1")
        if self.default_max_tokens > self.max_tokens:
            raise MavisError(f"default max tokens ({self.default_max_tokens}) exceeds the cap "
                             f"({self.max_tokens})")

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
    device: str | None = None  # where the models run (None: cpu)
    value_dtype: str = DEFAULT_VALUE_DTYPE  # the value models' ("auto": the hardware's fastest)

    @property
    def name(self) -> str:
        return self.served_name or self.model


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide Ray Serve runs (`mavis serve --ray`): `address` of a running cluster
    (None: start a local one), replicas, CPUs per replica (also its torch threads), and where
    Ray Serve's HTTP proxy listens. Checked here, before Ray or any model starts."""

    replicas: int = 1
    address: str | None = None
    cpus_per_replica: float = 1.0
    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self) -> None:
        checks.whole("replicas", self.replicas, low=1)
        checks.number("cpus_per_replica", self.cpus_per_replica, low=0.0, low_open=True)
        checks.whole("port", self.port, low=0, high=65535)


def api_key_from_environment() -> str | None:
    """The key every request must carry (`Authorization: Bearer <key>`), from MAVIS_API_KEY;
    unset or empty: no key needed."""
    return os.environ.get(API_KEY_VARIABLE) or None
