"""Attention masks and positions for batched, left-padded decoding with a KV cache."""

from __future__ import annotations

import torch


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def candidate_mask(prefix_mask: torch.Tensor, num_candidates: int,
                   dtype: torch.dtype = torch.float32, unread: int = 0) -> torch.Tensor:
    """Additive 4D mask for scoring `num_candidates` tokens side by side after a cached prefix.

    Each candidate sees the real (unpadded) prefix tokens and itself, never another
    candidate. prefix_mask: [B, P] (1 = real token). With `unread` = U > 0, the last U tokens
    of the prefix are not in the cache yet: they are fed first, each seeing the cached prefix
    and the unread tokens up to itself (causal), and the candidates see all of them. Returns
    [B, 1, U + k, P + k] (the keys: the P - U cached positions, the U unread, the k
    candidates) with 0 where attention is allowed and the dtype's minimum elsewhere. An
    additive float mask is right for both sdpa and eager attention (eager silently
    mis-handles a boolean 4D mask).
    """
    batch, prefix = prefix_mask.shape
    device = prefix_mask.device
    real = prefix_mask.bool()[:, None, None, :]
    seen_prefix = real.expand(batch, 1, num_candidates, prefix)
    itself = torch.eye(num_candidates, dtype=torch.bool, device=device)
    itself = itself[None, None].expand(batch, 1, num_candidates, num_candidates)
    allowed = torch.cat([seen_prefix, itself], dim=-1)
    if unread:
        key = torch.arange(prefix + num_candidates, device=device)
        query = prefix - unread + torch.arange(unread, device=device)
        causal = (key[None, :] <= query[:, None])[None, None]  # [1, 1, U, P + k]
        padded = torch.cat([real, real.new_zeros(batch, 1, 1, num_candidates)], dim=-1)
        allowed = torch.cat([causal & padded, allowed], dim=2)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)
