"""Attention masks and positions for batched, left-padded decoding with a KV cache."""

from __future__ import annotations

import torch


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def candidate_mask(prefix_mask: torch.Tensor, num_candidates: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive 4D mask for scoring `num_candidates` tokens side by side after a cached prefix.

    Each candidate sees the real (unpadded) prefix tokens and itself, never another
    candidate. prefix_mask: [B, P] (1 = real token). Returns [B, 1, k, P + k] with 0 where
    attention is allowed and the dtype's minimum elsewhere. An additive float mask is right for
    both sdpa and eager attention (eager silently mis-handles a boolean 4D mask).
    """
    batch, prefix = prefix_mask.shape
    device = prefix_mask.device
    seen_prefix = prefix_mask.bool()[:, None, None, :].expand(batch, 1, num_candidates, prefix)
    itself = torch.eye(num_candidates, dtype=torch.bool, device=device)
    itself = itself[None, None].expand(batch, 1, num_candidates, num_candidates)
    allowed = torch.cat([seen_prefix, itself], dim=-1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)
