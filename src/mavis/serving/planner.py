"""A parsed request, checked against the loaded models and limits, becomes a `Job`.

Every check names the field at fault (`param`) and says what would work. What OpenAI's API has
and mavis cannot do (the sampling fields `SamplingSettings` does not have, such as penalties
and logit_bias; echo, suffix) is refused rather than ignored, so that a client never gets an
answer made differently from what it asked. A completion's `best_of` is MAVIS + value rerank:
best_of candidates per prompt, the n of highest value (the value models' own weighted value of
the finished answer) returned, best first; it needs guidance and cannot be streamed.

Sampling: the request's fields become one `SamplingSettings` (`mavis.decoding.sampling`), with
its defaults and rules, the same as the library's and the command line's: `temperature: 0` is
greedy decoding; neither `beta` nor `kl_budget` gives beta up to 16 under a KL budget of 18
nats per answer, a `beta` alone is a fixed beta; `top_k` defaults to 40 (at most the
vocabulary); `objective_weights` are relative (normalised to sum 1), and without them every
loaded objective gets the same weight. Its errors name the field, which is mapped to the
request's `param`. With a `seed` (0 to 2**64 - 1), choice i samples from its own generator
seeded with `numpy.random.SeedSequence([seed, i])`, so it gets the same tokens alone or beside
any other requests; without one, from a generator seeded at random.
"""

from __future__ import annotations

import secrets
import threading

import numpy as np
import torch

from mavis.decoding.decoder import MavisDecoder, RowRequest
from mavis.decoding.sampling import SamplingSettings, SettingsError, sampling_fields
from mavis.serving.errors import APIError, bad_request
from mavis.serving.jobs import Job
from mavis.serving.schemas import ChatRequest, CompletionRequest, SamplingRequest
from mavis.serving.spec import ServerSpec

MAX_TEMPERATURE = 2.0
# OpenAI's sampling fields that mavis does not have (those that `SamplingSettings` has are
# taken, under the same name); a request that sets one is refused.
OPENAI_SAMPLING = {"top_p": 1, "presence_penalty": 0, "frequency_penalty": 0}
# The request's names of settings it calls otherwise (the rest share their names).
REQUEST_NAMES = {"weights": "objective_weights"}


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
        if request.echo or request.suffix is not None:
            field = "echo" if request.echo else "suffix"
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
        best_of = self._best_of(request)
        rows_wanted = self._choices(request.n, len(framed), best_of)
        settings = self._settings(request, max_tokens, tokens_param)
        if best_of and settings.beta == 0:
            raise bad_request("best_of ranks the answers by the value models' value: it needs "
                              "guidance (beta > 0, and a loaded value model)", "best_of")
        ids = [self._tokenize(words, text, special, max_tokens, prompt_param)
               for words, text, special in framed]
        generators = self._generators(settings.seed, rows_wanted)
        rows = [RowRequest(settings, generator) for generator in generators]
        return Job(prompts=[words for words, _, _ in framed], prompt_ids=ids, rows=rows,
                   n=request.n, best_of=best_of, stream=request.stream, logprobs=logprobs)

    def _best_of(self, request: SamplingRequest) -> int:
        """Candidates per prompt of a completion's `best_of` (0: none beyond the n choices):
        MAVIS + value rerank, the n of highest value returned."""
        best_of = getattr(request, "best_of", None)
        if best_of is None or best_of == 1:
            return 0
        if best_of < request.n:
            raise bad_request(f"best_of is {best_of}; it must be at least n ({request.n})",
                              "best_of")
        if request.stream:
            raise bad_request("best_of answers cannot be streamed (the best is known at the "
                              "end); leave out stream or best_of", "best_of")
        return best_of

    def _check_unsupported(self, request: SamplingRequest) -> None:
        for name, neutral in OPENAI_SAMPLING.items():
            if name not in sampling_fields() and getattr(request, name) not in (None, neutral):
                raise bad_request(f"{name} is not supported by mavis; leave it out (or "
                                  f"{neutral}); mavis samples from the top_k most likely "
                                  "tokens", name, "unsupported_parameter")
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

    def _choices(self, n: int, prompts: int, best_of: int = 0) -> int:
        cap = self.limits.choices_cap
        if not 1 <= n <= cap:
            raise bad_request(f"n is {n}; this server gives 1 to {cap} choices per request", "n",
                              "n_out_of_range")
        if best_of * prompts > self.limits.max_batch:
            raise bad_request(f"{prompts} prompts x best_of={best_of} make {best_of * prompts} "
                              f"answers; this server decodes at most {self.limits.max_batch} at "
                              "once", "best_of", "n_out_of_range")
        if best_of:
            return best_of * prompts
        if n * prompts > self.limits.max_batch:
            raise bad_request(f"{prompts} prompts x n={n} make {n * prompts} answers; this "
                              f"server decodes at most {self.limits.max_batch} at once", "n",
                              "n_out_of_range")
        return n * prompts

    def _settings(self, request: SamplingRequest, max_tokens: int, tokens_param: str
                  ) -> SamplingSettings:
        """The request's sampling fields as one `SamplingSettings`, resolved against the loaded
        models; its errors become 400s naming the request's field."""
        if request.temperature is not None and request.temperature > MAX_TEMPERATURE:
            raise bad_request(f"temperature is {request.temperature}; give a number from 0 "
                              f"(greedy) to {MAX_TEMPERATURE:g}", "temperature")
        stops = [] if request.stop is None else [request.stop] if isinstance(
            request.stop, str) else list(request.stop)
        if len(stops) > self.limits.max_stop:
            raise bad_request(f"stop has {len(stops)} strings; give at most "
                              f"{self.limits.max_stop}", "stop")
        names = {name: REQUEST_NAMES.get(name, name) for name in sampling_fields()}
        given = {name: getattr(request, field) for name, field in names.items()
                 if field in type(request).model_fields and getattr(request, field) is not None}
        given.update(max_new_tokens=max_tokens, stop=stops)
        try:
            return self.decoder.resolve(SamplingSettings(**given))
        except SettingsError as exc:
            param = tokens_param if exc.field == "max_new_tokens" else names[exc.field]
            code = "invalid_objective_weights" if exc.field == "weights" else None
            raise bad_request(f"{param} {exc.problem}", param, code) from None

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
        """One generator per choice: seeded from the request's seed (`row_seed`), or at
        random."""
        device = self.decoder.device
        return [torch.Generator(device=device).manual_seed(
            row_seed(seed, i) if seed is not None else secrets.randbits(63))
            for i in range(count)]


def row_seed(seed: int, row: int) -> int:
    """The seed of choice `row` of a request with `seed` (0 to 2**64 - 1)."""
    sequence = np.random.SeedSequence([seed, row])
    return int(sequence.generate_state(1, np.uint64)[0])
