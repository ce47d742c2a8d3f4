"""Shared fixtures: tiny models and tokenizers built by the tests themselves (nothing is
downloaded), and an isolated mavis cache."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread for the tests and the subprocesses they start: several tests assert that a
# run equals another bit for bit (same seed, kill-and-resume, Ray shards vs one process), and
# with two threads some CPU kernels sum in a different order from run to run (seen as 1e-6
# differences in log-probabilities on a 2-core machine). Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def build_char_tokenizer(alphabet: str = string.ascii_lowercase + " .,!?"):
    """A character-level fast tokenizer with eos/pad/unk and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "</s>", "<pad>", "<user>", "<assistant>"]
    vocab = {tok: i for i, tok in enumerate(specials + list(dict.fromkeys(alphabet)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=["<user>", "<assistant>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny_llama(path: Path, *, alphabet: str = string.ascii_lowercase + " .,!?",
                     layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_char_tokenizer(alphabet)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Larger logits than the default init, so that distributions are not nearly uniform.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and lose a lot on a busy machine (use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session uses its own mavis cache unless MAVIS_CACHE is set outside."""
    if "MAVIS_TEST_CACHE" not in os.environ:
        os.environ["MAVIS_TEST_CACHE"] = str(tmp_path_factory.getbasetemp() / "mavis-cache")
    monkeypatch.setenv("MAVIS_CACHE", os.environ.get("MAVIS_CACHE_FOR_TESTS",
                                                     os.environ["MAVIS_TEST_CACHE"]))


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A 2-layer Llama with a 36-token character vocabulary, saved as a local model folder."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_lm_4layers(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-lm4"), layers=4, seed=1)


@pytest.fixture(scope="session")
def other_tokenizer_lm(tmp_path_factory) -> Path:
    """A tiny Llama whose vocabulary differs from `tiny_lm`'s."""
    return build_tiny_llama(tmp_path_factory.mktemp("other-lm"), alphabet="abcdefgh ")
