"""`MavisDecoder`: value-guided sampling (Algorithm 2) over batches of prompts.

    decoder = MavisDecoder.load("smollm2-135m-instruct", ["path/to/vm", ...])
    out = decoder.generate(["How do I ..."], weights={"harmless": 0.4, "relevant": 0.6},
                           max_new_tokens=64, seed=0)
    out[0].text, out[0].kl

How an answer is decoded is one `SamplingSettings` (`mavis.decoding.sampling`: weights, beta,
KL budget, top-k, temperature, stop strings, seed, ...), given whole or as keywords; with no
other argument, `generate` decodes exactly as `mavis generate` with no other option does.
`resolve` turns it into what this decoder will do (weights checked against its value models,
top-k at most the vocabulary, beta 0 when nothing guides), and every row of the decoding state
carries its resolved settings.

Every returned sequence carries its token ids and, per token, log pi(a_t|s_t) under the
distribution it was sampled from and log pi_ref(a_t|s_t) under the reference model
(temperature 1, full vocabulary), so the KL of equation 7 is available for every call.

Other policies on the same footing: `proposals` are causal LMs (sharing the reference's
vocabulary) whose weighted log-probabilities replace pi_ref as the distribution sampled from,
while log pi_ref is still read from the reference:

    policy = decoder.with_proposals([(fine_tuned, 1.0)])          # a fine-tuned policy
    mod = decoder.with_proposals([(policy_a, 0.3), (policy_b, 0.7)])  # MOD at lambda = 0.3
    mod.generate(prompts, beta=0.0)    # plain top-k sampling of the combination

On a GPU, `MavisDecoder.load(..., compile=True)` (the default on CUDA) decodes `generate`'s
batches with static caches and compiled forwards (`mavis.models.layout.StaticLayout`): the
same tokens as the default growing caches, without the per-step kernel-launch cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mavis.decoding.batch import Batch
from mavis.decoding.guide import ValueGuide, resolve_guidance
from mavis.decoding.sampling import SamplingSettings, build_sampling
from mavis.decoding.state import DecodingState
from mavis.errors import MavisError
from mavis.models.devices import check_device
from mavis.models.dtypes import resolve_dtype
from mavis.models.layout import DynamicLayout, StaticLayout
from mavis.models.loading import load_causal_lm, tokenizer_fingerprint
from mavis.models.names import DEFAULT_VALUE_DTYPE
from mavis.models.value_folder import value_model_files
from mavis.models.value_model import ValueModel
from mavis.progress import track
from mavis.prompts.base import Prompt
from mavis.prompts.formatting import frame_prompt, prompt_text


@dataclass
class GeneratedSequence:
    """One answer. Per token: `logprobs` under the policy that chose it (0 for greedy: a point
    mass), `ref_logprobs` under pi_ref (temperature 1, full vocabulary), `topk_logprobs` under
    plain top-k sampling from pi_ref, or from the proposal models when the decoder has them
    (what the same settings with beta 0 would do), and `tv`, the total-variation distance
    between plain top-k sampling and the policy at that step."""

    prompt: str
    text: str
    token_ids: list[int]
    logprobs: list[float]
    ref_logprobs: list[float]
    finish_reason: str  # "eos", "length" or "stop"
    weights: dict[str, float] = field(default_factory=dict)  # normalised; {}: unguided
    beta: float = 0.0  # 0: plain top-k sampling from the reference (or the proposals)
    top_k: int = 0
    kl_budget: float | None = None  # nats per answer, when a budget chose each step's beta
    value: float | None = None  # weighted value of the final state, when guided
    topk_logprobs: list[float] = field(default_factory=list)
    tv: list[float] = field(default_factory=list)
    betas: list[float] = field(default_factory=list)  # the beta of each step (see kl_budget)
    # per step, the tokens the value models read for this answer (candidates x value models)
    value_tokens: list[float] = field(default_factory=list)

    @property
    def kl(self) -> float:
        """sum_t log pi(a_t|s_t) / pi_ref(a_t|s_t): this sample's term of equation 7."""
        return float(sum(self.logprobs) - sum(self.ref_logprobs))

    @property
    def kl_topk(self) -> float:
        """sum_t log pi(a_t|s_t) / pi_topk(a_t|s_t): the part of the KL that steering added
        over plain top-k sampling (whose own truncation already costs `kl` at beta 0)."""
        return float(sum(self.logprobs) - sum(self.topk_logprobs))

    @property
    def mean_tv(self) -> float:
        return float(sum(self.tv) / len(self.tv)) if self.tv else 0.0

    @property
    def mean_beta(self) -> float:
        """The beta used, averaged over steps (the setting itself unless a KL budget chose)."""
        return float(sum(self.betas) / len(self.betas)) if self.betas else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(kl=self.kl, kl_topk=self.kl_topk, mean_tv=self.mean_tv,
                    mean_beta=self.mean_beta)
        return data


@dataclass
class RowRequest:
    """One row of a batch whose rows differ (the server's way): its settings, already
    resolved by `MavisDecoder.resolve`, and its random generator (None: the batch's)."""

    settings: SamplingSettings
    generator: torch.Generator | None = None
    proposal_weights: Sequence[float] | None = None  # None: the decoder's


class MavisDecoder:
    """A reference model, its tokenizer, and the value models that can guide it; optionally
    proposal models (`(causal LM, weight)` pairs) that the candidates come from instead of the
    reference (see `with_proposals`)."""

    def __init__(self, reference: torch.nn.Module, tokenizer: Any,
                 value_models: Sequence[ValueModel] = (), *, check_tokenizers: bool = True,
                 proposals: Sequence[tuple[torch.nn.Module, float]] = (),
                 compile: bool | str | None = False) -> None:
        """`compile`: decode `generate`'s batches with static caches and compiled forwards
        (True; or a torch.compile backend name), with static caches only ("static"), or with
        growing caches (False); None: True on CUDA, False elsewhere."""
        self.reference = reference.eval()
        self.tokenizer = tokenizer
        self.eos = eos_ids(tokenizer, reference)
        self.guide = ValueGuide([vm.eval() for vm in value_models])
        self.device = next(reference.parameters()).device
        if check_tokenizers and self.guide.value_models:
            fingerprint = tokenizer_fingerprint(tokenizer)
            for vm in self.guide.value_models:
                vm.check_tokenizer(fingerprint, "the reference model's",
                                   "MAVIS value models must share the reference model's "
                                   "vocabulary; train one on a backbone with the same tokenizer")
        self.guide.to(self.device)
        self.proposals, self.proposal_weights = self._checked_proposals(proposals)
        self.compile = (self.device.type == "cuda") if compile is None else compile
        self.static_layout = None
        if self.compile and not self.proposals:
            self.static_layout = StaticLayout(
                self.device, compile=False if self.compile == "static" else self.compile)

    def _checked_proposals(self, proposals: Sequence[tuple[torch.nn.Module, float]]
                           ) -> tuple[list[torch.nn.Module], list[float]]:
        """The proposal models (in eval mode, on the reference's device) and their weights:
        finite, >= 0, not all zero, each model with the reference's vocabulary."""
        models, weights = [], []
        vocab = self.reference.config.vocab_size
        for index, (model, weight) in enumerate(proposals):
            if not (math.isfinite(weight) and weight >= 0):
                raise MavisError(f"proposal {index} has weight {weight}; proposal weights must "
                                 "be finite numbers >= 0")
            if model.config.vocab_size != vocab:
                raise MavisError(f"proposal {index} has a vocabulary of "
                                 f"{model.config.vocab_size} tokens, the reference {vocab}; "
                                 "proposal models must share the reference's tokenizer")
            models.append(model.eval().to(self.device))
            weights.append(float(weight))
        if models and not any(weights):
            raise MavisError("every proposal weight is zero; give one a positive weight")
        return models, weights

    def with_proposals(self, proposals: Sequence[tuple[torch.nn.Module, float]]
                       ) -> MavisDecoder:
        """A decoder that shares this one's reference, tokenizer and value models, whose
        candidates come from the weighted combination of `proposals` (`(causal LM, weight)`
        pairs): one fine-tuned policy with weight 1, or MOD's single-objective policies with
        weights lambda and 1 - lambda. log pi_ref is still the reference's."""
        return MavisDecoder(self.reference, self.tokenizer, self.guide.value_models,
                            check_tokenizers=False, proposals=proposals)

    def _proposal_matrix(self, rows: Sequence[Sequence[float] | None]) -> torch.Tensor | None:
        """Each row's proposal weights ([B, P]; None rows take the decoder's), or None
        without proposal models."""
        if not self.proposals:
            if any(row is not None for row in rows):
                raise MavisError("proposal weights given, but this decoder has no proposal "
                                 "models; build one with with_proposals(...)")
            return None
        matrix = torch.tensor([list(self.proposal_weights if row is None else row)
                               for row in rows], dtype=torch.float32).reshape(len(rows), -1)
        if matrix.shape[1] != len(self.proposals) or not bool(torch.isfinite(matrix).all()) \
                or bool((matrix < 0).any()) or bool((matrix.sum(-1) <= 0).any()):
            raise MavisError(f"proposal weights must be {len(self.proposals)} finite numbers "
                             ">= 0 per row, not all zero")
        return matrix

    @classmethod
    def load(cls, reference: str,
             value_models: Mapping[str, str | Path] | Sequence[str | Path] = (), *,
             device: str | None = None, dtype: torch.dtype | None = None,
             value_dtype: torch.dtype | str | None = None,
             attn_implementation: str = "sdpa",
             compile: bool | str | None = None) -> MavisDecoder:
        """Load a reference model by name/path/hub id and value models from their folders.

        `value_dtype` (default: `dtype`, else `DEFAULT_VALUE_DTYPE`; "auto":
        `fastest_value_dtype`, bfloat16 on hardware that computes in it natively) lets the
        value models run in bfloat16 beside an fp32 reference. `compile` (default: on for
        CUDA): static caches and compiled forwards for `generate` (see the class)."""
        check_device(device)
        value_dtype = resolve_dtype(value_dtype if value_dtype is not None else (
            dtype or DEFAULT_VALUE_DTYPE), device or "cpu")
        paths = value_models.values() if isinstance(value_models, Mapping) else value_models
        folders = list(dict.fromkeys(str(p) for p in paths))  # a shared model loads once
        for folder in folders:  # a missing or damaged file fails before any model loads
            value_model_files(folder)
        model, tokenizer = load_causal_lm(reference, dtype=dtype, device=device,
                                          attn_implementation=attn_implementation)
        loaded = {folder: ValueModel.load(folder, attn_implementation=attn_implementation,
                                          dtype=value_dtype)
                  for folder in folders}
        if isinstance(value_models, Mapping):
            for name, path in value_models.items():
                if name not in loaded[str(path)].objectives:
                    raise MavisError(f"value model {str(path)!r} was trained for "
                                     f"{', '.join(loaded[str(path)].objectives)}, not {name!r}")
        return cls(model, tokenizer, list(loaded.values()), compile=compile)

    @property
    def objectives(self) -> list[str]:
        return self.guide.objectives

    # -- prompts --------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str | Prompt], *, chat_template: bool = True,
               max_new_tokens: int = 0) -> Batch:
        """Tokenise and left-pad prompts, each framed by `frame_prompt` (the chat template, or
        a base model's plain text); `chat_template=False` takes the strings as they are."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise MavisError("no prompts given")
        texts = [prompt_text(p) for p in prompts]
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise MavisError(f"prompt {i} is a {type(text).__name__}, not text")
            if not text.strip():
                raise MavisError(f"prompt {i} is empty; give some text to answer")
        framed = [frame_prompt(p, self.tokenizer) if chat_template else prompt_text(p)
                  for p in prompts]
        has_template = chat_template and getattr(self.tokenizer, "chat_template", None)
        enc = self.tokenizer(framed, return_tensors="pt", padding=True,
                             add_special_tokens=not has_template)
        limit = getattr(self.reference.config, "max_position_embeddings", None)
        longest = int(enc["attention_mask"].sum(-1).max())
        if limit and longest + max_new_tokens > limit:
            raise MavisError(
                f"a prompt has {longest} tokens; with max_new_tokens={max_new_tokens} that "
                f"exceeds the model's context of {limit} tokens; shorten the prompt or lower "
                "max_new_tokens")
        return Batch(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device),
                     texts)

    # -- sampling -------------------------------------------------------------------------
    def resolve(self, settings: SamplingSettings) -> SamplingSettings:
        """`settings` as this decoder decodes them: top-k at most the vocabulary (as
        transformers' top-k does), and the guidance resolved against the loaded value models
        (`resolve_guidance`: None weights give each objective the same weight; beta 0 when
        nothing guides), so that every answer reports what was done."""
        resolved = resolve_guidance(settings, self.guide.objectives)
        return replace(resolved, top_k=min(settings.top_k,
                                           int(self.reference.config.vocab_size)))

    def weight_matrix(self, rows: Sequence[SamplingSettings]) -> torch.Tensor:
        """Each row's lambda over the guide's columns, [B, width] (zeros when unguided)."""
        if not rows:
            return torch.zeros(0, self.guide.width)
        return torch.stack([self.guide.weight_row(row.weights) for row in rows])

    def start(self, batch: Batch, settings: SamplingSettings,
              layout: DynamicLayout | StaticLayout | None = None) -> DecodingState:
        """A fresh decoding state for `batch`, every row with the same resolved `settings`
        (the building block of generation, beam search and tree collection); `layout`: its
        caches' layout (default: growing caches, which rows can leave and join)."""
        rows = [settings] * batch.input_ids.shape[0]
        return self._state(batch, rows, None, [None] * len(rows), layout)

    def start_rows(self, batch: Batch, rows: Sequence[RowRequest]) -> DecodingState:
        """A fresh decoding state whose rows each have their own resolved settings and random
        generator (the server's way)."""
        return self._state(batch, [row.settings for row in rows],
                           [row.generator for row in rows],
                           [row.proposal_weights for row in rows])

    def _state(self, batch: Batch, rows: Sequence[SamplingSettings],
               generators: Sequence[torch.Generator | None] | None,
               proposal_weights: Sequence[Sequence[float] | None],
               layout: DynamicLayout | StaticLayout | None = None) -> DecodingState:
        proposal = self._proposal_matrix(proposal_weights)
        with torch.inference_mode():
            return DecodingState(self.reference, self.guide, batch.input_ids,
                                 batch.attention_mask, rows, self.weight_matrix(rows),
                                 generators, proposals=self.proposals,
                                 proposal_weights=proposal, layout=layout)

    @torch.inference_mode()
    def generate(self, prompts: str | Sequence[str | Prompt],
                 settings: SamplingSettings | None = None, *, num_samples: int = 1,
                 batch_size: int = 16, chat_template: bool = True, progress: bool = False,
                 on_rows: Callable[[int], None] | None = None, **fields: Any
                 ) -> list[GeneratedSequence]:
        """Sample `num_samples` answers per prompt; results are grouped by prompt, in order.

        How: `settings`, or its fields as keywords (`weights=..., beta=..., seed=...`; see
        `SamplingSettings`, whose defaults are every command's). With `settings.seed` the whole
        call draws from one generator seeded with it. `progress` shows a bar; `on_rows(count)`
        is called as each batch of rows finishes.
        """
        settings = self.resolve(build_sampling(settings, fields))
        if isinstance(prompts, str):
            prompts = [prompts]
        if num_samples < 1 or batch_size < 1:
            raise MavisError("num_samples and batch_size must be >= 1")
        # Tokenised once, up front: bad prompts fail before any generation starts. The rows
        # (num_samples per prompt) are made batch by batch, so memory does not grow with them.
        encoded = self.encode(list(prompts), chat_template=chat_template,
                              max_new_tokens=settings.max_new_tokens)
        generator = None
        if settings.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        results: list[GeneratedSequence] = []
        rows = len(encoded.prompts) * num_samples
        chunks = range(0, rows, batch_size)
        if progress:
            chunks = track(chunks, "generating", total=math.ceil(rows / batch_size),
                           unit="batch")
        for start in chunks:
            batch = encoded.sample_rows(start, min(start + batch_size, rows), num_samples)
            results.extend(self._run(batch, settings, generator))
            if on_rows is not None:
                on_rows(len(batch.prompts))
        return results

    def _run(self, batch: Batch, settings: SamplingSettings,
             generator: torch.Generator | None) -> list[GeneratedSequence]:
        """Decode one batch to the end. With the static layout the batch keeps its rows
        (finished ones are decoded on and ignored); otherwise finished rows leave it."""
        layout = self.static_layout
        if layout is not None:
            layout.start(batch.input_ids.shape[0], batch.input_ids.shape[1],
                         settings.max_new_tokens, settings.top_k)
        state = self.start(batch, settings, layout)
        origin = torch.arange(state.batch_size)
        done: dict[int, GeneratedSequence] = {}
        while len(done) < len(batch.prompts):
            tokens = state.choose(generator).tolist()
            finished = [(row, reason) for row in range(state.batch_size)
                        if int(origin[row]) not in done
                        and (reason := self.finish_reason(state, row, tokens[row]))]
            for row, reason in finished:
                index = int(origin[row])
                done[index] = self.sequence_from(batch.prompts[index], state, row, reason)
            if len(done) == len(batch.prompts):
                break
            if finished and layout is None:
                gone = {row for row, _ in finished}
                keep = torch.tensor([r for r in range(state.batch_size) if r not in gone])
                state.select(keep)
                origin = origin[keep]
            state.advance()
        return [done[i] for i in range(len(batch.prompts))]

    def finish_reason(self, state: DecodingState, row: int, token: int) -> str | None:
        """Why row `row` of `state` ends with the `token` it just chose, by its own settings:
        "eos" (an end-of-sequence token, unless it ignores EOS), "stop" (its text holds a stop
        string) or "length" (max_new_tokens reached); None: it goes on. The one rule of
        generation, beam search and the server."""
        settings = state.settings[row]
        if token in self.eos and not settings.ignore_eos:
            return "eos"
        if settings.stop and hits_stop(self.tokenizer, state.generated(row), settings.stop):
            return "stop"
        if int(state.lengths[row]) >= settings.max_new_tokens:
            return "length"
        return None

    def sequence_from(self, prompt: str, state: DecodingState, row: int, reason: str
                      ) -> GeneratedSequence:
        """The finished row `row` of `state` as a returned sequence (text cut at a stop
        string when that is why it ended), with the settings it was decoded with."""
        settings = state.settings[row]
        ids = state.generated(row)
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if reason == "stop":
            cut = min((text.find(s) for s in settings.stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        state.catch_up()  # the value of the whole answer, its last tokens included
        value = float(state.value[row]) if state.active else None
        return GeneratedSequence(
            prompt=prompt, text=text, token_ids=ids, logprobs=state.generated(row, "logprobs"),
            ref_logprobs=state.generated(row, "ref_logprobs"), finish_reason=reason,
            weights=dict(settings.weights or {}), beta=settings.beta, top_k=settings.top_k,
            kl_budget=settings.kl_budget, value=value,
            topk_logprobs=state.generated(row, "topk_logprobs"),
            tv=state.generated(row, "tv"), betas=state.generated(row, "betas"),
            value_tokens=state.generated(row, "value_tokens"))


def eos_ids(tokenizer: Any, model: torch.nn.Module) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def hits_stop(tokenizer: Any, tokens: Sequence[int], stop_strings: Sequence[str]) -> bool:
    """Whether the text of the last tokens holds one of `stop_strings`."""
    text = tokenizer.decode(list(tokens[-32:]), skip_special_tokens=True)
    return any(s in text for s in stop_strings)
