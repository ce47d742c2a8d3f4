"""`Batch`: prompts as the decoding state reads them, tokenised and left-padded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Tokenised, left-padded prompts ([B, T] ids and attention mask) and their texts."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompts: list[str]

    @classmethod
    def from_token_lists(cls, contexts: Sequence[Sequence[int]], pad_id: int,
                         device: torch.device | str = "cpu", prompts: Sequence[str] = ()
                         ) -> Batch:
        """Token lists left-padded with `pad_id` into one batch (texts: `prompts`, or empty)."""
        width = max((len(c) for c in contexts), default=0)
        ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for row, context in enumerate(contexts):
            if context:
                ids[row, width - len(context):] = torch.tensor(list(context), dtype=torch.long)
                mask[row, width - len(context):] = 1
        return cls(ids.to(device), mask.to(device), list(prompts) or [""] * len(contexts))

    def rows(self, start: int, stop: int) -> Batch:
        """Rows start..stop-1, without the left-padding columns none of them needs."""
        mask = self.attention_mask[start:stop]
        first = int(mask.any(0).long().argmax())
        return Batch(self.input_ids[start:stop, first:], mask[:, first:],
                     self.prompts[start:stop])

    def sample_rows(self, start: int, stop: int, samples: int) -> Batch:
        """Rows start..stop-1 of this batch with every row repeated `samples` times in a row
        (the samples of one prompt side by side), made without the others."""
        index = torch.arange(start, stop) // samples
        picked = Batch(self.input_ids[index.to(self.input_ids.device)],
                       self.attention_mask[index.to(self.input_ids.device)],
                       [self.prompts[int(i)] for i in index])
        return picked.rows(0, stop - start)
