"""`hf:<model>`: any Hugging Face sequence-classification model as a reward function.

The model is a hub id (on a machine that reaches the hub) or a local folder saved with
`save_pretrained`. How a (prompt, response) pair becomes model input, and which output is the
score, are options, given in the name as a query string or as keyword arguments:

    hf:Ray2333/gpt2-large-harmless-reward_model
        text = prompt + response, score = logits[:, 0] (a single-output reward model)
    hf:./my-rm?template=hh
        text = "\\n\\nHuman: {prompt}\\n\\nAssistant: {response}" (Anthropic HH format)
    hf:CogComp/bart-faithful-summary-detector?pair=1&label=FAITHFUL
        tokenizer(prompt, response) as a text pair; score = softmax probability of that label

Options (`HFReward` keyword arguments of the same names):
- `template`: how the pair becomes one text; `{prompt}` and `{response}` are replaced, nothing
  else is (other braces stay as they are). Presets: `plain` = "{prompt}{response}" (default,
  right for prompts that already end in "Assistant:"), `hh` (above). In a name, the value is
  percent-decoded (`%26` for `&`, `%2C` for a comma) and `\\n` stands for a newline.
- `pair`: `1` to encode `tokenizer(prompt, response)` instead of a template.
- `label`: which output is the score: an index or a label name from the model's config.
  Needed when the model has several outputs; defaults to 0 for single-output models.
- `output`: `logit` (raw) or `prob` (softmax over the labels; sigmoid for a single output).
  Default: `logit` for single-output models, `prob` otherwise.
- `max_length`: truncate longer inputs, keeping the end of the text (the response).
- `batch_size` (default 8) and `device` (default: cuda when available, else cpu).

Tokenizers without a pad token (GPT-2 style) pad with their end-of-text token, padding on the
right; the model reads the last non-pad position, so batched scores equal unbatched ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from mavis.errors import MavisError
from mavis.objectives.base import Objective

TEMPLATES = {
    "plain": "{prompt}{response}",
    "hh": "\n\nHuman: {prompt}\n\nAssistant: {response}",
}
OPTIONS = ("template", "pair", "label", "output", "max_length", "batch_size", "device")
_FIELD = re.compile(r"\{(prompt|response)\}")
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split "model?key=value&..." (the part after `hf:`) into the model and its options."""
    model, _, query = spec.partition("?")
    if not model:
        raise MavisError(
            "hf: objective needs a model, e.g. hf:Ray2333/gpt2-large-harmless-reward_model"
        )
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq:
            raise MavisError(f"hf:{spec}: option {key!r} has no value (write {key}=...)")
        if key not in OPTIONS:
            raise MavisError(f"hf:{spec}: unknown option {key!r}; options: {', '.join(OPTIONS)}")
        value = unquote(value)
        options[key] = value.replace("\\n", "\n") if key == "template" else value
    return model, options


def _flag(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise MavisError(f"pair={value!r}: expected 1 or 0")


def _int(key: str, value: str | int) -> int:
    try:
        return int(value)
    except ValueError:
        raise MavisError(f"{key}={value!r} is not a whole number") from None


class HFReward(Objective):
    """Score pairs with a Hugging Face `AutoModelForSequenceClassification`."""

    def __init__(
        self,
        model: str,
        *,
        template: str = "plain",
        pair: bool | str = False,
        label: int | str | None = None,
        output: str | None = None,
        max_length: int | str | None = None,
        batch_size: int | str = 8,
        device: str | None = None,
    ) -> None:
        self.model_name = model
        location = _locate(model)
        try:
            config = AutoConfig.from_pretrained(location)
        except (OSError, ValueError) as exc:
            raise MavisError(f"cannot load reward model {model!r}: {_first_line(exc)}") from None
        archs = config.architectures or []
        if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
            raise MavisError(
                f"{model!r} is a {', '.join(archs)} model, not a sequence-classification reward "
                "model (its architecture should end in ForSequenceClassification)"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            self.model = AutoModelForSequenceClassification.from_pretrained(location)
        except (OSError, ValueError) as exc:
            raise MavisError(f"cannot load reward model {model!r}: {_first_line(exc)}") from None

        self.pair = _flag(pair)
        self.template = TEMPLATES.get(template, template)
        if not self.pair and "{response}" not in self.template:
            raise MavisError(
                f"template {template!r} has no {{response}} field; presets: {', '.join(TEMPLATES)}"
            )
        self.label = self._label_index(label)
        n = self.model.config.num_labels
        self.output = output or ("logit" if n == 1 else "prob")
        if self.output not in ("logit", "prob"):
            raise MavisError(f"output={self.output!r}: expected logit or prob")
        self.batch_size = max(1, _int("batch_size", batch_size))
        self.max_length = _int("max_length", max_length) if max_length else _default_length(
            self.tokenizer, self.model.config
        )
        self._setup_padding()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self._torch = torch

        label_name = (self.model.config.id2label or {}).get(self.label, str(self.label))
        self.description = f"Hugging Face reward model {model} ({self.output} of {label_name})"
        self.source = f"{location} ({', '.join(archs) or 'sequence classifier'})"

    def info(self) -> dict[str, str]:
        config = self.model.config
        labels = ", ".join(f"{k}={v}" for k, v in sorted((config.id2label or {}).items()))
        return {
            "outputs": labels,
            "score": f"{self.output} of output {self.label}",
            "input": "tokenizer(prompt, response)" if self.pair else repr(self.template),
            "max_length": f"{self.max_length} tokens (longer inputs lose their start)"
            if not self.pair
            else f"{self.max_length} tokens",
        }

    def _label_index(self, label: int | str | None) -> int:
        config = self.model.config
        n = config.num_labels
        names = {str(v).lower(): int(k) for k, v in (config.id2label or {}).items()}
        if label is None:
            if n == 1:
                return 0
            listing = ", ".join(f"{k}={v}" for k, v in sorted(config.id2label.items()))
            raise MavisError(
                f"{self.model_name!r} has {n} outputs ({listing}); choose the score with "
                f"label=<index or name>, e.g. hf:{self.model_name}?label=1"
            )
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            if label.lower() not in names:
                known = sorted(config.id2label.values())
                raise MavisError(f"label {label!r} is not one of {known}")
            return names[label.lower()]
        index = int(label)
        if not 0 <= index < n:
            raise MavisError(f"label={index} is out of range: the model has {n} outputs")
        return index

    def _setup_padding(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is None:
            fallback = tok.eos_token or tok.unk_token
            if fallback is None:
                raise MavisError(
                    f"the tokenizer of {self.model_name!r} has no pad, eos or unk token to pad with"
                )
            tok.pad_token = fallback
        tok.padding_side = "right"
        if not self.pair:
            tok.truncation_side = "left"  # keep the response, drop the start of a long prompt
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = tok.pad_token_id

    def format(self, prompt: str, response: str) -> str:
        """The text the model reads for one pair (template mode)."""
        values = {"prompt": prompt, "response": response}
        return _FIELD.sub(lambda m: values[m.group(1)], self.template)

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        torch = self._torch
        scores = [math.nan] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                if self.pair:
                    args: tuple = ([prompts[i] for i in idx], [responses[i] for i in idx])
                else:
                    args = ([self.format(prompts[i], responses[i]) for i in idx],)
                batch = self.tokenizer(
                    *args,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch).logits.float()
                if self.output == "logit":
                    values = logits[:, self.label]
                elif logits.shape[-1] == 1:
                    values = torch.sigmoid(logits[:, 0])
                else:
                    values = torch.softmax(logits, dim=-1)[:, self.label]
                for i, v in zip(idx, values.tolist(), strict=True):
                    scores[i] = v
        return scores


def _locate(model: str) -> str:
    """A local model folder, or a hub id; MavisError for a path that cannot be a model."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise MavisError(f"reward model {model!r} is a file; give the folder that holds it")
        if not (path / "config.json").exists():
            raise MavisError(
                f"{model!r} is not a Hugging Face model folder (no config.json); save one with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
            )
        return str(path)
    if model.startswith(("/", ".", "~")) or not _HUB_ID.match(model):
        raise MavisError(f"reward model folder {model!r} does not exist")
    return model  # a hub id such as "Ray2333/gpt2-large-harmless-reward_model"


def _default_length(tokenizer, config) -> int:
    """The shortest of the limits the tokenizer and the model state (1024 if none is stated)."""
    limits = (
        tokenizer.model_max_length,
        getattr(config, "max_position_embeddings", None),
        getattr(config, "n_positions", None),
    )
    known = [x for x in limits if isinstance(x, int) and 0 < x < 10**6]
    return min(known) if known else 1024


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def from_spec(spec: str) -> HFReward:
    """Build from the part of an objective name after `hf:` ("model?key=value&...")."""
    model, options = parse_spec(spec)
    return HFReward(model, **options)
