"""A parsed request, checked against the loaded models and limits, becomes a `Job`.

Every check names the field at fault (`param`) and says what would work. What OpenAI's API has
and mavis cannot do (top_p, penalties, logit_bias, echo, suffix, best_of > 1) is refused rather
than ignored, so that a client never gets an answer made differently from what it asked.

Sampling: `temperature: 0` is greedy decoding; a request with neither `beta` nor `kl_budget`
gets the server's defaults (beta up to 16 under a KL budget of 10 nats per answer), a `beta`
alone is a fixed beta, and `top_k` defaults to 40 (or the vocabulary, when smaller);
`kl_budget` is nats per answer, kept as `kl_budget / max_tokens` per token (see
`StepSettings.kl_budget`). Without
`objective_weights`, every loaded objective gets the same weight. With a `seed`, choice i
samples from its own generator seeded with `numpy.random.SeedSequence([seed mod 2**64, i])`,
so it gets the same tokens alone or beside any other requests; without one, from a generator
seeded at random.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mavis.decoding.decoder import MavisDecoder, RowRequest
from mavis.decoding.guide import resolve_weights
from mavis.decoding.settings import StepSettings
from mavis.errors import MavisError
from mavis.serving.errors import APIError, bad_request
from mavis.serving.jobs import Job
from mavis.serving.schemas import ChatRequest, CompletionRequest, SamplingRequest
from mavis.serving.spec import ServerSpec

MAX_TEMPERATURE = 2.0


class Planner:
    """Turns requests into jobs for one decoder. Tokenising happens under `lock`, which the
    engine also holds while it decodes text (a fast tokenizer must not be used from two threads
    while one of them changes its padding settings)."""

    def __init__(self, decoder: MavisDecoder, spec: ServerSpec, lock: threading.Lock) -> None:
        self.decoder = decoder
        self.spec = spec
        self.limits = spec.limits
        self.lock = lock
        self.tokenizer = decoder.tokenizer
        self.context = getattr(decoder.reference.config, "max_position_embeddings", None)
        self.vocab = int(decoder.reference.config.vocab_size)

    # -- the two endpoints ------------------------------------------------------------------
    def completion(self, request: CompletionRequest) -> Job:
        self._check_unsupported(request)
        if request.echo or request.suffix is not None or (request.best_of or 1) > 1:
            field = "echo" if request.echo else "suffix" if request.suffix is not None else (
                "best_of")
            raise bad_request(f"{field} is not supported by mavis; leave it out", field,
                              "unsupported_parameter")
        if request.logprobs is not None and not 0 <= request.logprobs <= 5:
            raise bad_request(f"logprobs is {request.logprobs}; give a number from 0 to 5",
                              "logprobs")
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if not prompts or len(prompts) > self.limits.max_prompts:
            raise bad_request(f"give 1 to {self.limits.max_prompts} prompts (got "
                              f"{len(prompts)})", "prompt")
        framed = [(text, text, True) for text in prompts]
        return self._job(request, request.max_tokens, framed, request.logprobs is not None,
                         "prompt")

    def chat(self, request: ChatRequest) -> Job:
        self._check_unsupported(request)
        if request.top_logprobs is not None and not 0 <= request.top_logprobs <= 20:
            raise bad_request(f"top_logprobs is {request.top_logprobs}; give 0 to 20",
                              "top_logprobs")
        framed = [self._frame_chat(request)]
        limit = request.max_completion_tokens if request.max_completion_tokens is not None \
            else request.max_tokens
        param = "max_completion_tokens" if request.max_completion_tokens is not None \
            else "max_tokens"
        return self._job(request, limit, framed, request.logprobs, "messages", param)

    # -- checks -----------------------------------------------------------------------------
    def _job(self, request: SamplingRequest, max_tokens: int | None,
             framed: list[tuple[str, str, bool]], logprobs: bool, prompt_param: str,
             tokens_param: str = "max_tokens") -> Job:
        """The checks both endpoints share, then the job: `framed` holds, per prompt, (the
        user's words, the text the model reads, whether the tokenizer adds special tokens)."""
        if request.model != self.spec.name:
            raise APIError(404, f"the model {request.model!r} does not exist on this server; "
                           f"it serves {self.spec.name!r} (see GET /v1/models)", param="model",
                           code="model_not_found")
        max_tokens = self._max_tokens(max_tokens, tokens_param)
        rows_wanted = self._choices(request.n, len(framed))
        settings = self._settings(request, max_tokens)
        weights = self._weights(request.objective_weights, settings.beta)
        stop = self._stops(request.stop)
        ids = [self._tokenize(words, text, special, max_tokens, prompt_param)
               for words, text, special in framed]
        generators = self._generators(request.seed, rows_wanted)
        rows = [RowRequest(settings, weights, generator) for generator in generators]
        return Job(prompts=[words for words, _, _ in framed], prompt_ids=ids, rows=rows,
                   n=request.n, max_tokens=max_tokens, stop=stop, weights=weights or {},
                   ignore_eos=request.ignore_eos, stream=request.stream, logprobs=logprobs)

    def _check_unsupported(self, request: SamplingRequest) -> None:
        if request.top_p is not None and request.top_p != 1:
            raise bad_request("top_p is not supported: mavis samples from the top_k most likely "
                              "tokens; leave top_p out (or 1) and set top_k", "top_p",
                              "unsupported_parameter")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(request, name) not in (None, 0):
                raise bad_request(f"{name} is not supported by mavis; leave it out (or 0)", name,
                                  "unsupported_parameter")
        if request.logit_bias:
            raise bad_request("logit_bias is not supported by mavis; steer with "
                              "objective_weights instead", "logit_bias", "unsupported_parameter")

    def _max_tokens(self, value: int | None, param: str) -> int:
        cap = self.limits.max_tokens
        if value is None:
            return self.limits.default_max_tokens
        if not 1 <= value <= cap:
            raise bad_request(f"{param} is {value}; this server allows 1 to {cap} tokens per "
                              "answer", param, "max_tokens_out_of_range")
        return value

    def _choices(self, n: int, prompts: int) -> int:
        cap = self.limits.choices_cap
        if not 1 <= n <= cap:
            raise bad_request(f"n is {n}; this server gives 1 to {cap} choices per request", "n",
                              "n_out_of_range")
        if n * prompts > self.limits.max_batch:
            raise bad_request(f"{prompts} prompts x n={n} make {n * prompts} answers; this "
                              f"server decodes at most {self.limits.max_batch} at once", "n",
                              "n_out_of_range")
        return n * prompts

    def _settings(self, request: SamplingRequest, max_tokens: int) -> StepSettings:
        temperature = 1.0 if request.temperature is None else request.temperature
        if not (math.isfinite(temperature) and 0 <= temperature <= MAX_TEMPERATURE):
            raise bad_request(f"temperature is {temperature}; give a number from 0 (greedy) to "
                              f"{MAX_TEMPERATURE:g}", "temperature")
        beta, budget = request.beta, request.kl_budget
        if beta is None and budget is None:  # the defaults; a beta alone is a fixed beta
            budget = self.limits.default_kl_budget
        beta = self.limits.default_beta if beta is None else beta
        if not (math.isfinite(beta) and beta >= 0):
            raise bad_request(f"beta is {beta}; give a finite number >= 0 (0: plain top-k "
                              "sampling from the reference model)", "beta")
        top_k = min(self.limits.default_top_k, self.vocab) if request.top_k is None \
            else request.top_k
        if not 1 <= top_k <= self.vocab:
            raise bad_request(f"top_k is {top_k}; give a whole number from 1 to the "
                              f"vocabulary size ({self.vocab})", "top_k")
        if budget is not None and not (math.isfinite(budget) and budget >= 0):
            raise bad_request(f"kl_budget is {budget}; give the nats of KL per answer, a "
                              "number >= 0", "kl_budget")
        try:
            return self.decoder.settings(
                beta=beta, top_k=top_k, temperature=temperature or 1.0,
                greedy=temperature == 0, kl_budget=None if budget is None else budget / max_tokens)
        except MavisError as exc:
            raise bad_request(str(exc)) from None

    def _weights(self, given: Mapping[str, float] | None, beta: float) -> dict[str, float] | None:
        """The request's weights, checked and normalised to sum 1 (None: plain sampling)."""
        objectives = self.decoder.guide.objectives
        if given is None:
            if beta == 0 or not objectives:
                return None
            given = {name: 1.0 for name in objectives}
        try:
            resolved = resolve_weights(normalised(given), objectives)
        except MavisError as exc:
            raise bad_request(str(exc), "objective_weights", "invalid_objective_weights") from None
        return resolved if beta > 0 else None

    def _stops(self, stop: str | list[str] | None) -> list[str]:
        stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        if len(stops) > self.limits.max_stop:
            raise bad_request(f"stop has {len(stops)} strings; give at most "
                              f"{self.limits.max_stop}", "stop")
        if any(not s for s in stops):
            raise bad_request("stop holds an empty string, which would stop at once; give "
                              "non-empty stop strings", "stop")
        return stops

    def _frame_chat(self, request: ChatRequest) -> tuple[str, str, bool]:
        """(the last user message, the conversation as the model reads it, special tokens)."""
        messages = request.messages
        if not messages or messages[-1].role != "user":
            raise bad_request("messages must end with a user message", "messages")
        words = messages[-1].text
        turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text}
                 for m in messages]
        if not getattr(self.tokenizer, "chat_template", None):
            if len(messages) > 1:
                raise bad_request("this model has no chat template, so it reads one user "
                                  "message only; send one, or use /v1/completions", "messages")
            return words, words, True
        with self.lock:
            text = self.tokenizer.apply_chat_template(turns, tokenize=False,
                                                      add_generation_prompt=True)
        return words, text, False

    def _tokenize(self, words: str, text: str, special: bool, max_tokens: int,
                  param: str) -> list[int]:
        if not words.strip():
            raise bad_request(f"the prompt is empty; give some text to answer ({param})", param,
                              "empty_prompt")
        if len(text) > self.limits.max_prompt_chars:
            raise bad_request(f"the prompt has {len(text)} characters; this server takes at "
                              f"most {self.limits.max_prompt_chars}", param, "prompt_too_long")
        with self.lock:
            ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        if self.context and len(ids) + max_tokens > self.context:
            raise bad_request(
                f"this model's context is {self.context} tokens; the prompt has {len(ids)} "
                f"and max_tokens asks for {max_tokens} more; shorten the prompt or lower "
                "max_tokens", param, "context_length_exceeded")
        return list(ids)

    def _generators(self, seed: int | None, count: int) -> list[torch.Generator]:
        device = self.decoder.device
        return [torch.Generator(device=device).manual_seed(
            row_seed(seed, i) if seed is not None else secrets.randbits(63))
            for i in range(count)]


def row_seed(seed: int, row: int) -> int:
    """The seed of choice `row` of a request with `seed` (any integer)."""
    sequence = np.random.SeedSequence([seed % 2**64, row])
    return int(sequence.generate_state(1, np.uint64)[0])


def normalised(weights: Mapping[str, Any]) -> Mapping[str, Any]:
    """Weights scaled to sum 1 when they are all finite numbers >= 0 with a positive sum (the
    server's clients see the weights used in each choice); otherwise as given, for
    `resolve_weights` to name what is wrong."""
    values = list(weights.values())
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               and v >= 0 for v in values):
        return weights
    total = sum(values)
    return {name: value / total for name, value in weights.items()} if total > 0 else weights
