"""`CollectionSettings`: everything that decides the content of a tree file (GET_DATA,
Algorithm 3), besides the models and the prompts. It is the `collection:` section of a recipe,
the options of `mavis collect`, and what `collect_trees` takes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mavis.errors import MavisError
from mavis.trees.tree_shape import Shape


@dataclass(frozen=True)
class CollectionSettings:
    r"""Settings of a tree collection.

    Tree shape (Algorithm 3)
        T (`int`, default `48`): the longest response, in tokens.
        L (`int`, default `4`): layers of every tree below the root.
        K_root (`int`, default `4`): children of the root (the paper: 4 in iteration 0, 2
            later).
        K (`int`, default `2`): children of every other inner node.

    Sampling policy
        top_k (`int`, default `40`): candidates of the reference model per step.
        temperature (`float`, default `1.0`): of the reference's next-token distribution.
        beta (`float`, default `0.0`): guidance strength; 0 samples from the reference model
            alone (iteration 0), > 0 from MAVIS with the decoder's value models (later
            iterations).
        weights (`dict[str, float] | None`, default `None`): objective weights of the guided
            policy (None: equal weights over the value models' objectives).
        kl_budget (`float | None`, default `None`): nats per answer that the guided policy
            may add over plain top-k sampling; each step's beta is then the largest up to
            `beta` within budget / T (see `StepSettings.kl_budget`).
        seed (`int`, default `0`): with the group index, seeds every group's random streams,
            so a group gives the same trees whichever process collects it.

    Later iterations (appendix C)
        two_layer_guarantee (`bool`, default `False`): split a first-layer answer that hit EOS
            into a parent and a child, so that every tree is at least two layers deep.
        extra_children (`int | None`, default `None`): children grown under a split node
            (None: K - 1, so that it has K children like any other inner node).

    Run (these do not change the trees)
        batch_prompts (`int`, default `8`): prompts decoded together; a group is the unit of
            resuming and of sharding, so it is part of the collection's identity.
        workers (`int`, default `1`): processes on a local Ray cluster (1: this process).
    """

    T: int = 48
    L: int = 4
    K_root: int = 4
    K: int = 2
    top_k: int = 40
    temperature: float = 1.0
    beta: float = 0.0
    weights: dict[str, float] | None = None
    kl_budget: float | None = None
    seed: int = 0
    two_layer_guarantee: bool = False
    extra_children: int | None = None
    batch_prompts: int = 8
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("T", "L", "K_root", "K", "batch_prompts", "top_k", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MavisError(f"collection setting {name}={value!r} must be a whole "
                                 "number >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise MavisError(f"collection setting seed={self.seed!r} must be a whole number "
                             ">= 0")
        if self.two_layer_guarantee and (self.L < 2 or self.T < 2):
            raise MavisError("the two-layer guarantee needs L >= 2 and T >= 2 (trees of at "
                             "least two layers); raise them or turn the guarantee off")
        if self.extra_children is not None and self.extra_children < 1:
            raise MavisError(f"extra_children={self.extra_children} must be >= 1")
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta)
                and self.beta >= 0):
            raise MavisError(f"collection setting beta={self.beta!r} must be >= 0")
        if self.kl_budget is not None and not (isinstance(self.kl_budget, int | float)
                                                and math.isfinite(self.kl_budget)
                                                and self.kl_budget >= 0):
            raise MavisError(f"collection setting kl_budget={self.kl_budget!r} must be >= 0")
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature)
                and self.temperature > 0):
            raise MavisError(f"collection setting temperature={self.temperature!r} must be "
                             "> 0")

    @property
    def shape(self) -> Shape:
        return Shape(T=self.T, L=self.L, K_root=self.K_root, K=self.K)

    @property
    def split_children(self) -> int:
        """Extra children grown under a split first-layer node."""
        return self.extra_children if self.extra_children is not None else max(self.K - 1, 1)

    def to_dict(self) -> dict[str, Any]:
        """What decides the trees (the file's meta): every field but `workers`."""
        data = asdict(self)
        del data["workers"]
        data["beta"] = float(self.beta)
        data["temperature"] = float(self.temperature)
        data["extra_children"] = self.split_children if self.two_layer_guarantee else None
        if self.kl_budget is None:
            del data["kl_budget"]  # files collected without one keep their identity
        return data
