"""Evaluate a decoding policy: mean reward per objective and the KL of equation 7.

    KL(pi || pi_ref) ≈ mean over sampled sequences y of sum_t log pi(a_t|s_t) / pi_ref(a_t|s_t)

Every sequence the decoder returns carries both log-probabilities, so the KL costs nothing
extra. Rewards come from the objectives (reward functions) themselves.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.evaluation.cost import mean_decoding_flops, prompt_lengths
from mavis.evaluation.settings import EvaluationSettings
from mavis.objectives import score_all
from mavis.paths import write_text_atomic
from mavis.prompts.base import Prompt

# What a PolicyEvaluation's `kl` is (every kind is against the same pi_ref, equation 7):
KL_ESTIMATE = "estimate"  # mean over sampled answers of sum_t log pi/pi_ref: an unbiased estimate
KL_WITH_BOUND = "estimate + bound"  # best-of-N: its sampler's estimate + log N - (N-1)/N
KL_PATH = "path log-ratio"  # beam search, no sampling policy: the chosen answers' log-ratio


@dataclass
class PolicyEvaluation:
    """Mean reward per objective (with standard errors) and KL of one policy over the
    answers it gave; `kl_kind` says what `kl` is (`KL_ESTIMATE`, `KL_WITH_BOUND`, `KL_PATH`)."""

    label: str
    weights: dict[str, float]
    beta: float
    prompts: int
    samples: int
    reward: dict[str, float] = field(default_factory=dict)
    reward_se: dict[str, float] = field(default_factory=dict)
    kl: float = 0.0  # against the full pi_ref (equation 7)
    kl_se: float = 0.0
    kl_topk: float = 0.0  # against plain top-k sampling from pi_ref: what steering added
    kl_topk_se: float = 0.0
    tv: float = 0.0  # mean per-step total variation between plain top-k sampling and the policy
    kl_is_bound: bool = False  # best-of-N: measured part + the analytic log N - (N-1)/N bound
    kl_budget: float | None = None  # nats per answer, when a KL budget chose each step's beta
    mean_beta: float = 0.0  # the beta used, averaged over steps and answers
    mean_tokens: float = 0.0
    kl_kind: str = KL_ESTIMATE
    seconds: float = 0.0  # wall-clock time of the decoding (not the scoring)
    scoring_seconds: float = 0.0  # of the reward calls inference needs (best-of-N), if any
    flops: float = 0.0  # model FLOPs per answer at inference (`mavis.evaluation.cost`)

    @property
    def seconds_per_answer(self) -> float:
        """Wall-clock seconds per answer at inference: decoding plus the reward calls it
        needs (0 when not timed)."""
        return (self.seconds + self.scoring_seconds) / self.samples if self.samples else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Answer tokens decoded per second of `seconds` (0 when not timed)."""
        return self.samples * self.mean_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyEvaluation:
        known = {f.name for f in fields(cls)}
        result = cls(**{k: v for k, v in data.items() if k in known})
        if "kl_kind" not in data and result.kl_is_bound:  # saved before kl_kind existed
            result.kl_kind = KL_WITH_BOUND
        return result

    def weighted_reward(self, weights: Mapping[str, float]) -> float:
        return sum(w * self.reward[name] for name, w in weights.items())


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def evaluate_policy(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                    objectives: Sequence[str], settings: EvaluationSettings = EvaluationSettings(),
                    *, label: str = "", progress: bool = False,
                    on_rows: Callable[[int], None] | None = None,
                    answers: str | Path | None = None) -> PolicyEvaluation:
    """Sample answers as `settings.sampling` says (its weights, beta and KL budget are the
    policy's; beta 0: the reference policy) and score them with `objectives`; with `answers`,
    keep every answer there too (JSON Lines, `write_answers`).

    Prompts are framed as collection frames them (`frame_prompt`); the objectives score each
    answer against the prompt's own words."""
    started = time.perf_counter()
    outputs = decoder.generate(list(prompts), settings.sampling,
                               num_samples=settings.num_samples,
                               batch_size=settings.batch_size, progress=progress,
                               on_rows=on_rows)
    seconds = time.perf_counter() - started
    rewards = score_all(list(objectives), [o.prompt for o in outputs], [o.text for o in outputs])
    first = outputs[0] if outputs else None
    weights = dict(first.weights) if first else {}
    beta = first.beta if first else 0.0
    result = PolicyEvaluation(
        label=label or (f"beta={beta:g} " + ",".join(f"{k}={v:g}" for k, v in
                                                      weights.items())).strip(),
        weights=weights, beta=beta, prompts=len(prompts), samples=len(outputs),
        kl_budget=first.kl_budget if first else None,
        mean_tokens=sum(len(o.token_ids) for o in outputs) / max(len(outputs), 1),
        seconds=seconds)
    summarise_answers(result, outputs, objectives, rewards)
    result.flops = mean_decoding_flops(decoder, outputs, prompt_lengths(decoder, prompts),
                                       settings.num_samples)
    if answers is not None:
        write_answers(answers, prompts, outputs, rewards, settings.num_samples)
    return result


def write_answers(path: str | Path, prompts: Sequence[str | Prompt],
                  outputs: Sequence[GeneratedSequence], rewards: Mapping[str, Sequence[float]],
                  num_samples: int) -> Path:
    """Every answer as one JSON object per line (written whole or not at all): the prompt's id
    and words, the answer's text, its sample index, the weights, beta and KL budget it was
    decoded with, its KL (equation 7) and each objective's reward. What `mavis judge` reads."""
    lines = []
    for index, output in enumerate(outputs):
        prompt = prompts[index // num_samples]
        lines.append(json.dumps({
            "prompt_id": getattr(prompt, "id", None), "prompt": output.prompt,
            "sample": index % num_samples, "text": output.text, "weights": output.weights,
            "beta": output.beta, "kl_budget": output.kl_budget, "kl": output.kl,
            "rewards": {name: float(values[index]) for name, values in rewards.items()}}))
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def summarise_answers(result: PolicyEvaluation, answers: Sequence[Any],
                      objectives: Sequence[str], rewards: Mapping[str, Sequence[float]]) -> None:
    """Fill `result`'s rewards (mean and standard error per objective), KL figures, total
    variation and mean beta from the answers it kept and their rewards."""
    for name in objectives:
        result.reward[name], result.reward_se[name] = mean_and_se(list(rewards[name]))
    result.kl, result.kl_se = mean_and_se([a.kl for a in answers])
    result.kl_topk, result.kl_topk_se = mean_and_se([a.kl_topk for a in answers])
    result.tv = mean_and_se([a.mean_tv for a in answers])[0]
    result.mean_beta = mean_and_se([a.mean_beta for a in answers])[0]
