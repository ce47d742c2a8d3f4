"""Settings of a MORLHF run (`mavis.baselines.train_morlhf`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mavis import checks
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_MODEL
from mavis.models.value_folder import DEFAULT_LORA_TARGETS


@dataclass
class MorlhfSettings:
    r"""Everything that decides one MORLHF fine-tuning run, except the objective weights
    (those are the argument of `train_morlhf`: one run, one policy, per weight vector).

    Defaults are sized for a CPU: SmolLM2-135M, 64 prompts per set, 2 prompts x 4 answers of
    up to 32 tokens per step, one epoch (32 optimiser steps per prompt set; about 25 s a step
    on one busy core of a 2-core machine, so 15 minutes per set and policy). The paper
    (appendix F.3) fine-tuned Llama-2 7B with PPO on 10,000 prompts, LoRA r=64,
    alpha=128, dropout 0.05, lr 7e-6, batch 64, two epochs, an initial KL coefficient of 0.1
    and max_grad_norm 0.5.

    In a recipe, the `baselines:` section holds these fields (`mavis pareto --recipe FILE`
    reads it); fields it leaves out take the recipe's reference, objectives, prompt sets,
    prompt seed and prompt length limit, then the defaults below.

    Model
        reference (`str`, default `"smollm2-135m-instruct"`):
            pi_ref: a packaged model name, a local folder or a hub id. The policy is a LoRA
            adapter on it; the KL penalty is measured against it (the adapter switched off).
            `mavis pareto` requires it to be its --model (the evaluation's pi_ref).
        lora_r, lora_alpha, lora_dropout (default `16`, `32`, `0.0`):
            LoRA adapter on `lora_target_modules`. Dropout is off by default: the KL penalty
            compares the policy's log-probabilities with the reference's, and dropout noise in
            the policy's would show up as KL.
        lora_target_modules (`list[str]`): the linear layers that get an adapter (all of a
            Llama block by default).

    Objectives and prompts
        objectives (`list[str]`, default `["harmless", "relevant"]`):
            Every objective scored on each sampled answer and logged (see `mavis.objectives`).
            The weights passed to `train_morlhf` name a subset; objectives without a weight
            count with weight 0 (scored and logged, not optimised). `mavis pareto` trains
            each policy on the objectives its weights name (it sets this list per policy).
        prompt_sets (`list[str]`, default `["chitchat"]`): prompt sets (`mavis.prompts`)
            whose `train` split is used.
        prompt_limit (`int | None`, default `64`): prompts per set, the first ones of the
            split's fixed order (None: all).
        max_prompt_tokens (`int | None`, default `128`): drop longer prompts.
        prompt_seed (`int`, default `0`): the split seed of `load_prompts` (keep it equal to
            the one the evaluation uses, so the test prompts stay unseen).

    RL (KL-regularised: maximise E[sum_m lambda_m R_m(y|x)] - kl_coef * KL(pi || pi_ref))
        kl_coef (`float`, default `0.1`):
            beta of the KL penalty, subtracted from each answer's reward as
            kl_coef * sum_t log pi(y_t|s_t) / pi_ref(y_t|s_t) (the paper's initial PPO beta).
            Must be > 0: without it the policy drifts away from pi_ref unchecked.
        num_generations (`int`, default `4`): answers sampled per prompt; each answer's
            baseline is the mean reward of the other answers to the same prompt (RLOO), so
            at least 2.
        prompts_per_step (`int`, default `2`): prompts per optimiser step; a step trains on
            prompts_per_step * num_generations answers.
        max_new_tokens (`int`, default `32`): longest answer (the evaluation's default).
        normalize_advantages (`bool`, default `False`): scale advantages to unit variance
            per step (steadier step sizes; changes the effective weight of the KL penalty
            step by step, so off to keep the objective above exact).

    Optimisation
        learning_rate (`float`, default `1e-4`): AdamW peak learning rate, linear decay to 0.
            LoRA on a short CPU run needs more than the paper's 7e-6 for full-size PPO.
        warmup_steps (`int`, default `0`).
        weight_decay (`float`, default `0.0`).
        max_grad_norm (`float`, default `0.5`): gradient clipping (the paper's value).
        epochs (`int`, default `1`): passes over the prompts.
        max_steps (`int | None`, default `None`): stop after this many optimiser steps in all,
            overriding `epochs` (smoke runs, or a budget).
        bf16 (`bool`, default `False`): bfloat16 mixed precision (GPUs with bf16 support);
            fp32 otherwise.

    Run
        save_every (`int`, default `10`): write a resumable checkpoint (adapter, optimiser,
            scheduler, RNG states, step) every this many steps; rerunning the same call
            continues from the latest one.
        keep_checkpoints (`int`, default `2`): checkpoints kept on disk (the oldest go).
        seed (`int`, default `0`): seeds the adapter init, the prompt order and sampling.
        progress (`bool`, default `True`): show a progress bar with the running reward and
            KL on stderr.
    """

    reference: str = DEFAULT_MODEL
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))

    objectives: list[str] = field(default_factory=lambda: ["harmless", "relevant"])
    prompt_sets: list[str] = field(default_factory=lambda: ["chitchat"])
    prompt_limit: int | None = 64
    max_prompt_tokens: int | None = 128
    prompt_seed: int = 0

    kl_coef: float = 0.1
    num_generations: int = 4
    prompts_per_step: int = 2
    max_new_tokens: int = 32
    normalize_advantages: bool = False

    learning_rate: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 0.5
    epochs: int = 1
    max_steps: int | None = None
    bf16: bool = False

    save_every: int = 10
    keep_checkpoints: int = 2
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `SettingsError` (a `MavisError`) naming the first field whose value cannot
        work: numbers are checked for type, NaN, infinity and range, names for duplicates."""
        checks.text("reference", self.reference)
        checks.whole("lora_r", self.lora_r, low=1)  # the policy is a LoRA adapter
        checks.number("lora_alpha", self.lora_alpha, low=0.0, low_open=True)
        checks.fraction("lora_dropout", self.lora_dropout, high_open=True)
        checks.names("lora_target_modules", self.lora_target_modules)
        checks.names("objectives", self.objectives)
        checks.names("prompt_sets", self.prompt_sets)
        checks.optional_whole("prompt_limit", self.prompt_limit, low=1, none="all")
        checks.optional_whole("max_prompt_tokens", self.max_prompt_tokens, low=1,
                              none="no bound")
        checks.whole("prompt_seed", self.prompt_seed, low=0)
        # MORLHF is KL-regularised RL: without the penalty the policy drifts off pi_ref
        checks.number("kl_coef", self.kl_coef, low=0.0, low_open=True)
        # an answer's baseline is the mean of its siblings' rewards (RLOO)
        checks.whole("num_generations", self.num_generations, low=2)
        checks.whole("prompts_per_step", self.prompts_per_step, low=1)
        checks.whole("max_new_tokens", self.max_new_tokens, low=1)
        checks.number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        checks.whole("warmup_steps", self.warmup_steps, low=0)
        checks.number("weight_decay", self.weight_decay, low=0.0)
        checks.number("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True)
        checks.whole("epochs", self.epochs, low=1)
        checks.optional_whole("max_steps", self.max_steps, low=1, none="every epoch")
        checks.whole("save_every", self.save_every, low=1)
        checks.whole("keep_checkpoints", self.keep_checkpoints, low=1)
        checks.whole("seed", self.seed, low=0, high=2**64 - 1)
        for name in ("normalize_advantages", "bf16", "progress"):
            checks.flag(name, getattr(self, name))

    def check_weights(self, weights: dict[str, float]) -> dict[str, float]:
        """The weight of every objective (0 where none is given), checked: known names,
        finite and >= 0, summing to 1 (the paper's lambda on the simplex)."""
        unknown = [name for name in weights if name not in self.objectives]
        if unknown:
            raise MavisError(f"weights name objective(s) {', '.join(map(repr, unknown))} that "
                             f"are not in settings.objectives ({', '.join(self.objectives)})")
        for name, value in weights.items():
            if not math.isfinite(value) or value < 0:
                raise MavisError(f"weight for {name!r} is {value}; weights must be >= 0")
        total = sum(weights.values())
        if abs(total - 1.0) > 1e-6:
            raise MavisError(f"objective weights sum to {total:g}; give weights that sum to 1 "
                             "(lambda on the simplex), e.g. "
                             + ",".join(f"{n}={1 / len(self.objectives):g}"
                                        for n in self.objectives))
        return {name: float(weights.get(name, 0.0)) for name in self.objectives}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MorlhfSettings:
        """Build from a dict, refusing unknown keys (a typo should not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MavisError(f"unknown MORLHF setting(s): {', '.join(unknown)}")
        return cls(**data)
