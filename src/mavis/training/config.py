"""Settings of a value-model training run (`mavis train`, `mavis.training.train`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mavis import checks
from mavis.errors import MavisError
from mavis.models.value_folder import DEFAULT_LORA_TARGETS, LoraSettings


@dataclass
class TrainConfig:
    r"""Everything that decides a value-model training run. Defaults follow the paper
    (appendix F.4/F.5) where it gives a value; the notes say what to change on a CPU.

    Model
        base (`str | None`, default `None`):
            Backbone: a packaged model name, a local folder or a hub id. It must share the
            reference model's tokenizer. None: the packaged default SmolLM2-135M-Instruct (in
            a recipe: the recipe's reference model). The paper used TinyLlama v1.1 (1.1B).
        num_layers (`int | None`, default `6`):
            Keep only the first `num_layers` decoder layers of `base` (None: all). Six of
            SmolLM2-135M's 30 layers keep a forward+backward near 130 MFLOP per token on a CPU.
        objectives (`list[str] | None`, default `None`):
            Objectives to train, by the names in the tree file (None: every objective there).
        shared (`bool`, default `False`):
            True: one backbone with one head per objective, all trained in one pass over the
            trees (every tree carries all rewards), halving training and decoding cost at
            M = 2. False: one model per objective, as in the paper (which distils them into one
            afterwards, see `distill`).
        init_from (`str | None`, default `None`):
            Start from a previous iteration's value model (Algorithm 1: V^i <- V^{i-1}): a
            value-model folder or the output folder of an earlier run. Its backbone recipe
            (base, layers, LoRA) is used; `base`, `num_layers` and `lora_*` are then ignored.
        lora_r, lora_alpha, lora_dropout (default `128`, `256`, `0.2`):
            LoRA adapter on every linear layer of the backbone (the paper's values). `lora_r=0`
            trains the whole backbone instead. On a CPU, r=16..32 trains as well on small data.
        lora_target_modules (`list[str]`): the linear layers that get an adapter.

    Targets and data (equation 6, appendix F.5)
        zeta (`float`, default `0.0`):
            KL multiplier of equation 6: targets are value - zeta * LPR. 0 in iteration 0
            (the sampling policy is the reference); the paper raises it in later iterations.
        leaf_fraction (`float`, default `0.5`):
            Fraction of bottom-level (leaf) nodes kept, seeded; the paper keeps half.
        include_root (`bool`, default `True`):
            Train on the root too (the bare prompt; its target is the tree's mean). See
            `targets` for why.
        validation_fraction (`float`, default `0.1`):
            Fraction of prompts (whole trees) held out for validation; the paper held out
            5-8 %. 0 disables validation (the last checkpoint is then also the best).
        train_prompts (`int | None`, default `None`):
            Train on this many of the training prompts' trees only (a seeded subset, nested:
            the first 200 are among the first 400), the validation prompts unchanged: the
            points of a learning curve. None: all.
        validation_without_leaves (`bool`, default `False`):
            Validate on incomplete sequences only (the paper did so "sometimes").
        max_length (`int | None`, default `None`):
            Longest prompt + response sequence. Longer prompts lose their beginning; nodes
            whose response alone is longer are dropped (and counted in the report).

        sibling_weight (`float`, default `0.0`):
            Weight of a second loss term beside equation 6's: the squared error of the
            predicted difference between two siblings (continuations of one prefix) against
            their observed difference (`loss.sibling_difference_mse`). An extension of the
            paper, for objectives whose values differ far more between prompts than between
            the continuations of one prompt; 0 trains on equation 6 alone, as the paper.
        balance_objectives (`bool`, default `True`):
            With several objectives in one model, weigh each objective's squared errors by
            the mean target variance over its own (`Samples.objective_weights`), so that every
            head counts as much in the loss (and in choosing the best checkpoint) whatever the
            scale of its reward: unbalanced, a reward on a 1-10 scale swamps one on 0-1. One
            objective: no change.

    Optimisation (appendix F.4)
        lr (`float`, default `2e-5`):
            Peak learning rate of Adafactor (no relative step, no parameter scaling). Tiny
            models and short CPU runs need far more (1e-4 to 1e-3).
        weight_decay (`float`, default `0.002`).
        warmup_steps (`int`, default `100`):
            Linear warm-up in optimiser steps (the paper: 100 batches in iteration 0, none
            later), then linear decay to 0 at the end of `epochs`.
        batch_size (`int`, default `16`):
            Samples (nodes) per optimiser step, at most; the paper used 16 and 32. Packed, a
            tree with more selected nodes is split into packs of up to this many (each
            repeating the prompt and the ancestors it needs), and packs of one or more trees
            fill a step up to this many nodes. With several processes (`torchrun`,
            `accelerate launch`) this is the global batch, shared out among them (see
            `parallel`), and every count of steps here is of global steps: a run's results do
            not depend on the process count.
        epochs (`int`, default `2`): the paper trained "up to 2 epochs".
        max_steps (`int | None`, default `None`):
            Stop after this many optimiser steps in all (the schedule is still planned for
            `epochs`): for smoke runs, and to split a long run into resumable pieces.
        max_grad_norm (`float | None`, default `1.0`): gradient clipping (None: off).

    Efficiency
        device (`str`, default `"auto"`): "auto" (a GPU when there is one), "cpu" or "cuda".
        mixed_precision (`str`, default `"auto"`): "auto" (bf16 autocast on a GPU that has
            it, none on a CPU), "no" or "bf16" (the forward passes run under bf16 autocast;
            weights, gradients and the optimiser stay in fp32).
        gradient_checkpointing (`bool`, default `False`): recompute the backbone's activations
            in the backward pass instead of keeping them: less memory for long packs or many
            layers on a GPU, about a third more compute.
        packed (`bool`, default `True`):
            Pack each tree (prompt + every node's segment) into one sequence with a tree
            attention mask, so one forward yields every node's value; False: one sequence per
            node (prompt + its path), the naive way. Same values, far fewer tokens packed.
        max_pack_tokens (`int`, default `2048`):
            Split a tree whose packed sequence would be longer into several packs (each
            repeats the prompt and the needed ancestors). Attention memory grows with its
            square.
        attn_implementation (`str`, default `"sdpa"`): "sdpa" or "eager" (both take the 4D
            tree mask; flash attention ignores it and is refused).

    Run
        select_best_by (`str`, default `"val_loss"`):
            Which evaluation's model is kept in `best/`: "val_loss" (the lowest validation
            loss, as the paper) or "sibling_accuracy" (the highest within-sibling ranking
            accuracy, averaged over objectives: how well the model orders continuations of one
            prefix, which is all the tilt uses).
        eval_every (`int | None`, default `200`):
            Evaluate (validation loss, Spearman) every this many steps, and at each epoch's
            end. None: at epoch ends only.
        save_every (`int`, default `100`): save the resumable `last` checkpoint this often (and
            at every evaluation).
        seed (`int`, default `0`): seeds the split, the leaf choice, batch order and init.
        progress (`bool`, default `True`): show progress bars and evaluation lines on stderr.
    """

    base: str | None = None
    num_layers: int | None = 6
    objectives: list[str] | None = None
    shared: bool = False
    init_from: str | None = None
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.2
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))

    zeta: float = 0.0
    leaf_fraction: float = 0.5
    include_root: bool = True
    validation_fraction: float = 0.1
    train_prompts: int | None = None
    validation_without_leaves: bool = False
    max_length: int | None = None
    sibling_weight: float = 0.0
    balance_objectives: bool = True

    lr: float = 2e-5
    weight_decay: float = 0.002
    warmup_steps: int = 100
    batch_size: int = 16
    epochs: int = 2
    max_steps: int | None = None
    max_grad_norm: float | None = 1.0

    device: str = "auto"
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    packed: bool = True
    max_pack_tokens: int = 2048
    attn_implementation: str = "sdpa"

    select_best_by: str = "val_loss"
    eval_every: int | None = 200
    save_every: int = 100
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `SettingsError` (a `MavisError`) naming the first field whose value cannot
        work: numbers are checked for type, NaN, infinity and range, names for duplicates."""
        checks.text("base", self.base, optional=True)
        checks.optional_whole("num_layers", self.num_layers, low=1, none="all layers")
        checks.names("objectives", self.objectives, optional=True)
        checks.text("init_from", self.init_from, optional=True)
        checks.whole("lora_r", self.lora_r, low=0)  # 0: no LoRA, train the whole backbone
        checks.whole("lora_alpha", self.lora_alpha, low=1)
        checks.fraction("lora_dropout", self.lora_dropout, high_open=True)
        checks.names("lora_target_modules", self.lora_target_modules)
        checks.number("zeta", self.zeta, low=0.0)
        checks.fraction("leaf_fraction", self.leaf_fraction)
        checks.fraction("validation_fraction", self.validation_fraction, high_open=True)
        checks.optional_whole("train_prompts", self.train_prompts, low=1, none="all")
        checks.optional_whole("max_length", self.max_length, low=2, none="no bound")
        checks.number("sibling_weight", self.sibling_weight, low=0.0)
        checks.number("lr", self.lr, low=0.0, low_open=True)
        checks.number("weight_decay", self.weight_decay, low=0.0)
        checks.whole("warmup_steps", self.warmup_steps, low=0)
        checks.whole("batch_size", self.batch_size, low=1)
        checks.whole("epochs", self.epochs, low=1)
        checks.optional_whole("max_steps", self.max_steps, low=1, none="every epoch")
        if self.max_grad_norm is not None:
            checks.number("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True)
        self._validate_run()

    def _validate_run(self) -> None:
        checks.choice("device", self.device, ("auto", "cpu", "cuda"))
        checks.choice("mixed_precision", self.mixed_precision, ("auto", "no", "bf16"))
        checks.choice("attn_implementation", self.attn_implementation, ("sdpa", "eager"))
        checks.choice("select_best_by", self.select_best_by, ("val_loss", "sibling_accuracy"))
        checks.whole("max_pack_tokens", self.max_pack_tokens, low=2)
        checks.optional_whole("eval_every", self.eval_every, low=1, none="at epoch ends")
        checks.whole("save_every", self.save_every, low=1)
        checks.whole("seed", self.seed, low=0, high=2**64 - 1)
        for name in ("shared", "include_root", "validation_without_leaves", "balance_objectives",
                     "gradient_checkpointing", "packed", "progress"):
            checks.flag(name, getattr(self, name))

    def lora(self) -> LoraSettings | None:
        """The LoRA settings for `ValueModel.build` (None when `lora_r == 0`)."""
        if self.lora_r == 0:
            return None
        return LoraSettings(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                            target_modules=list(self.lora_target_modules))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, refusing unknown keys (a typo should not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MavisError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)
