"""The few KV-cache operations mavis relies on, written once against the public cache API of
transformers 5.x, so that a rename in a minor release is fixed here and nowhere else.

- model forward takes the cache as `cache=` since 5.20-ish (`past_key_values=` before; it is
  deprecated and goes in 5.40): `model_forward` passes whichever the model's signature has;
- `DynamicCache.crop(-n)` removes the last n positions (a positive argument is refused in
  current releases and meant "keep n" in older ones);
- `batch_select_indices` keeps some rows.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache

_CACHE_KWARG: dict[type, str] = {}  # a plain dict: torch.compile traces through it quietly


def _cache_kwarg(forward_owner: type) -> str:
    if forward_owner not in _CACHE_KWARG:
        params = inspect.signature(forward_owner.forward).parameters
        _CACHE_KWARG[forward_owner] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KWARG[forward_owner]


def _unwrap(model: Any) -> Any:
    # peft wraps the base model; the signature that matters is the base model's.
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


def model_forward(model: Any, *, cache: Any = None, use_cache: bool = False,
                  return_logits: bool = False, logits_to_keep: int | None = None,
                  **inputs: Any) -> tuple[torch.Tensor, Any]:
    """Run `model` with a KV cache; return (last hidden state or logits, updated cache)."""
    kwarg = _cache_kwarg(type(_unwrap(model)))
    if logits_to_keep is not None:
        inputs["logits_to_keep"] = logits_to_keep
    out = model(**inputs, **{kwarg: cache}, use_cache=use_cache)
    # ModelOutput is a dict: .get() avoids the deprecated `past_key_values` attribute.
    new_cache = out.get("cache")
    if new_cache is None:
        new_cache = out.get("past_key_values")
    tensor = out.logits if return_logits else out.last_hidden_state
    return tensor, new_cache


def new_cache(model: Any) -> Any:
    return DynamicCache(config=_unwrap(model).config)


def crop_last(cache: Any, n: int) -> None:
    """Remove the last `n` positions from every layer of `cache`."""
    if n > 0:
        cache.crop(-n)


def keep_rows(cache: Any, rows: torch.Tensor) -> None:
    """Keep only `rows` (a 1-D index tensor) of the batch, in that order."""
    cache.batch_select_indices(rows)


def replace_tail_with_choice(cache: Any, num_candidates: int, choice: torch.Tensor) -> None:
    """The last `num_candidates` cache positions hold k candidate tokens scored side by side;
    keep only the chosen one per row (`choice`: [B] index in 0..k-1) as the newest position.

    Each candidate attended to the prefix and itself only, so its keys and values are exactly
    what appending that token alone would have produced: no second forward is needed.
    """
    rows = torch.arange(choice.shape[0], device=choice.device)
    kept = []
    for layer in cache.layers:
        keys = layer.keys[:, :, -num_candidates:, :]
        values = layer.values[:, :, -num_candidates:, :]
        kept.append((keys[rows, :, choice].unsqueeze(2), values[rows, :, choice].unsqueeze(2)))
    crop_last(cache, num_candidates)
    for index, (keys, values) in enumerate(kept):
        cache.update(keys, values, index)


def left_padded(cache: Any, count: int) -> Any:
    """A cache like `cache` with `count` empty positions before every row's cached ones (the
    attention mask marks them as padding), so that it can join a cache of a longer sequence."""
    if count <= 0:
        return cache
    layers = []
    for layer in cache.layers:
        pad = layer.keys.new_zeros(*layer.keys.shape[:2], count, layer.keys.shape[3])
        layers.append((torch.cat([pad, layer.keys], dim=2),
                       torch.cat([layer.values.new_zeros(pad.shape), layer.values], dim=2)))
    return DynamicCache(layers)


def stacked(first: Any, second: Any) -> Any:
    """One cache holding the rows of `first`, then those of `second` (same length)."""
    return DynamicCache([(torch.cat([a.keys, b.keys]), torch.cat([a.values, b.values]))
                         for a, b in zip(first.layers, second.layers, strict=True)])


def rows_copy(cache: Any, rows: torch.Tensor) -> Any:
    """A new cache holding only `rows` of `cache` (a copy: `cache` is left as it is)."""
    return DynamicCache([(layer.keys[rows], layer.values[rows]) for layer in cache.layers])


def tail(cache: Any, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's keys and values of the last `count` positions, [B, H, count, D] each."""
    return [(layer.keys[:, :, -count:], layer.values[:, :, -count:]) for layer in cache.layers]


def append(cache: Any, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Add positions after every row's cached ones: `layers` holds each layer's keys and
    values, [B, H, n, D]."""
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
