"""Where a decoding state keeps its keys and values, and the attention masks that go with them.

Two layouts, one interface, so that `DecodingState` is written once:

- `DynamicLayout`: transformers' `DynamicCache`, which grows by the tokens each forward adds.
  The k candidates of a step are appended after the prefix and all but the chosen one are
  cropped away. Rows can leave, repeat and join (beam search, the server's continuous
  batching). The default, and the only choice on CPU unless asked.
- `StaticLayout`: caches allocated once at a fixed size (`SlotCache`): the prompt, room for
  every new token, and k candidate slots after the newest token. A forward writes at the
  layout's `cursor`, the candidates of a step at the k slots after the prefix, each attending
  the prefix and itself only (an explicit 4D mask over the whole cache), and the chosen one's
  keys and values are then copied into place. Every decoding forward has the same shapes at
  every step, which is what CUDA graphs (`torch.compile(mode="reduce-overhead")`) need;
  `StaticLayout(compile=...)` compiles them. The batch is fixed: finished rows keep being
  decoded (and ignored) until the last one ends, so `select`/`merge` are refused.

The dynamic path's masks are the 2D padding mask (the model adds causality) and
`masks.candidate_mask`; the static path's are 4D additive masks over every slot of the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from transformers.cache_utils import Cache, StaticLayer

from mavis.errors import MavisError
from mavis.models.cache import new_cache, replace_tail_with_choice
from mavis.models.masks import candidate_mask

# Static caches are sized in steps of this many positions, so that batches of slightly
# different prompt lengths reuse one cache and one compiled graph.
CAPACITY_STEP = 64


class DynamicLayout:
    """Caches that grow as tokens are added (see the module docstring)."""

    static = False

    def start(self, batch: int, prompt_length: int, max_new_tokens: int, width: int) -> None:
        """Nothing to allocate ahead."""

    def new_cache(self, model: Any) -> Any:
        return new_cache(model)

    def prefill_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return attention_mask

    def step_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The mask of a forward of one new token (already in `attention_mask`)."""
        return attention_mask

    def candidate_mask(self, attention_mask: torch.Tensor, width: int,
                       dtype: torch.dtype, unread: int = 0) -> torch.Tensor:
        """The mask of a forward of `width` candidates after the prefix `attention_mask`,
        whose last `unread` tokens are fed first (`masks.candidate_mask`)."""
        return candidate_mask(attention_mask, width, dtype, unread)

    def keep_choice(self, cache: Any, width: int, choice: torch.Tensor) -> None:
        """Keep each row's chosen candidate (`choice` [B]) as the newest cached position."""
        replace_tail_with_choice(cache, width, choice)

    def forward(self, model: Any, call: Callable[..., torch.Tensor], **inputs: Any
                ) -> torch.Tensor:
        """`call(model, **inputs)`: a decoding forward (eager here)."""
        return call(model, **inputs)


class SlotLayer(StaticLayer):
    """A static cache layer that writes at its layout's cursor (a 0-d tensor shared by all
    the caches of a layout) rather than after what it holds, so that candidates can be written
    past the prefix and the chosen one moved into place."""

    def __init__(self, max_cache_len: int, cursor: torch.Tensor) -> None:
        super().__init__(max_cache_len=max_cache_len)
        self.cursor = cursor

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        slots = self.cursor + torch.arange(key_states.shape[-2], device=key_states.device)
        self.keys.index_copy_(2, slots, key_states)
        self.values.index_copy_(2, slots, value_states)
        return self.keys, self.values

    def get_seq_length(self) -> Any:
        return self.cursor


def slot_cache(capacity: int, cursor: torch.Tensor) -> Cache:
    """A cache of `SlotLayer`s (one per model layer, made as the model first writes)."""
    return Cache(layer_class_to_replicate=partial(SlotLayer, capacity, cursor))


class StaticLayout:
    """Fixed-size caches written at a cursor (see the module docstring). One per decoder: its
    caches (one per model and batch shape) and compiled forwards are reused across batches."""

    static = True

    def __init__(self, device: torch.device | str, compile: bool | str = False) -> None:
        """`compile`: False (eager), True (torch.compile: CUDA graphs on CUDA, inductor on
        CPU), or the name of a torch.compile backend (the tests use "aot_eager")."""
        self.device = torch.device(device)
        self.compile = compile
        self.cursor = torch.zeros((), dtype=torch.long, device=self.device)
        self.capacity = 0
        self.batch = 0
        self._caches: dict[tuple[int, int, int], Cache] = {}
        self._compiled: dict[tuple[int, Any], Callable[..., torch.Tensor]] = {}
        self._slots = torch.zeros(0, dtype=torch.long, device=self.device)

    def start(self, batch: int, prompt_length: int, max_new_tokens: int, width: int) -> None:
        """Size the caches for a batch: the prompt, the new tokens and `width` candidates."""
        need = prompt_length + max_new_tokens + width
        self.capacity = -(-need // CAPACITY_STEP) * CAPACITY_STEP
        self.batch = batch
        self._slots = torch.arange(self.capacity, device=self.device)
        if self.compile:
            torch._dynamo.mark_static_address(self.cursor)

    def new_cache(self, model: Any) -> Cache:
        """The cache of `model` for this batch shape (reused: stale slots are masked)."""
        key = (id(model), self.batch, self.capacity)
        if key not in self._caches:
            self._caches[key] = slot_cache(self.capacity, self.cursor)
        return self._caches[key]

    def _mask(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        zero = torch.zeros((), dtype=dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]

    def prefill_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, P, capacity]: causal over the real prompt tokens; the cursor goes to 0."""
        length = attention_mask.shape[1]
        self._check(length)
        self.cursor.fill_(0)
        slots = self._slots[None, :]
        real = torch.zeros(attention_mask.shape[0], self.capacity, dtype=torch.bool,
                           device=attention_mask.device)
        real[:, :length] = attention_mask.bool()
        causal = slots <= torch.arange(length, device=attention_mask.device)[:, None]
        return self._mask(real[:, None, :] & causal[None], dtype)

    def step_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, 1, capacity] for the newest token, written at slot P - 1."""
        return self.candidate_mask(attention_mask[:, :-1], 1, dtype)

    def candidate_mask(self, attention_mask: torch.Tensor, width: int,
                       dtype: torch.dtype, unread: int = 0) -> torch.Tensor:
        """[B, 1, width, capacity]: candidate j at slot P + j sees the real prefix and itself.
        (Static caches are written every step: no token is ever left unread.)"""
        if unread:
            raise MavisError("static caches read every token as it is chosen (unread = 0)")
        length = attention_mask.shape[1]
        self._check(length + width)
        self.cursor.fill_(length)
        prefix = torch.zeros(attention_mask.shape[0], self.capacity, dtype=torch.bool,
                             device=attention_mask.device)
        prefix[:, :length] = attention_mask.bool()
        itself = self._slots[None, :] == (length + torch.arange(width, device=self.device)[:, None])
        return self._mask(prefix[:, None, :] | itself[None], dtype)

    def keep_choice(self, cache: Cache, width: int, choice: torch.Tensor) -> None:
        """Copy each row's chosen candidate slot to the first candidate slot (the cursor)."""
        start = int(self.cursor)
        rows = torch.arange(choice.shape[0], device=choice.device)
        for layer in cache.layers:
            for tensor in (layer.keys, layer.values):
                tensor[:, :, start].copy_(tensor[rows, :, start + choice])

    def forward(self, model: Any, call: Callable[..., torch.Tensor], **inputs: Any
                ) -> torch.Tensor:
        """`call(model, **inputs)`, compiled once per model and kind of call when asked."""
        if not self.compile:
            return call(model, **inputs)
        key = (id(model), call)
        if key not in self._compiled:
            self._compiled[key] = self._compiled_call(model, call)
        # Standard strides: a slice of a longer tensor (the newest token of the sequence) has
        # the stride of the whole, which changes every step and would recompile every step.
        inputs = {name: value.clone(memory_format=torch.contiguous_format)
                  if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        return self._compiled[key](**inputs).clone()

    def _compiled_call(self, model: Any, call: Callable[..., torch.Tensor]
                       ) -> Callable[..., torch.Tensor]:
        def run(**inputs: Any) -> torch.Tensor:
            return call(model, **inputs)

        # One compiled function per model and kind of pass; each shape is one more variant.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        if isinstance(self.compile, str):
            return torch.compile(run, backend=self.compile, dynamic=False)
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        return torch.compile(run, mode=mode, dynamic=False)

    def _check(self, needed: int) -> None:
        if needed > self.capacity:
            raise MavisError(f"the static cache holds {self.capacity} positions but this "
                             f"step needs {needed}; call start() with the batch's sizes")
