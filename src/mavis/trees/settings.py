"""`CollectionSettings`: everything that decides the content of a tree file (GET_DATA,
Algorithm 3), besides the models and the prompts. It is the `collection:` section of a recipe,
the options of `mavis collect`, and what `collect_trees` takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mavis import checks
from mavis.decoding.sampling import (
    SamplingSettings,
    SettingsError,
    reproducible,
    sampling_fields,
    unnamed_defaults,
)
from mavis.errors import MavisError
from mavis.trees.tree_shape import Shape

# The sampling fields a collection may set in its flat form, by their flat names (T is
# max_new_tokens); stop strings, greedy decoding and ignore_eos would make no trees worth
# training on.
NOT_FOR_TREES = ("max_new_tokens", "stop", "greedy", "ignore_eos")
SAMPLING_KEYS = {"T": "max_new_tokens", **{name: name for name in sampling_fields()
                                           if name not in NOT_FOR_TREES}}
# The sampling fields every tree file's meta names (files made before the others existed name
# these only; the others are named when they differ from their defaults).
META_KEYS = ("top_k", "temperature", "beta", "weights")


@dataclass(frozen=True)
class CollectionSettings:
    r"""Settings of a tree collection.

    Sampling policy
        sampling (`SamplingSettings`, default: 48 tokens, seed 0, the default guidance): how
            every segment is sampled. Its max_new_tokens is T, the longest response. Without
            value models (or with beta 0) the trees are sampled from the reference model alone
            (iteration 0); with them from MAVIS (later iterations; no weights: each of their
            objectives the same weight). The file's meta records what was done. Its seed, with
            the group index, seeds every group's random streams, so a group gives the same
            trees whichever process collects it.

    Tree shape (Algorithm 3)
        L (`int`, default `4`): layers of every tree below the root.
        K_root (`int`, default `4`): children of the root (the paper: 4 in iteration 0, 2
            later).
        K (`int`, default `2`): children of every other inner node.

    Later iterations (appendix C)
        two_layer_guarantee (`bool`, default `False`): split a first-layer answer that hit EOS
            into a parent and a child, so that every tree is at least two layers deep.
        extra_children (`int | None`, default `None`): children grown under a split node
            (None: K - 1, so that it has K children like any other inner node).

    Run (these do not change the trees)
        batch_prompts (`int`, default `8`): prompts decoded together; a group is the unit of
            resuming and of sharding, so it is part of the collection's identity.
        workers (`int`, default `1`): processes on a local Ray cluster (1: this process).

    A recipe's `collection:` section is flat (`from_dict`): T, top_k, temperature, seed (the
    sampling's) beside the fields above.
    """

    sampling: SamplingSettings = field(default_factory=reproducible)
    L: int = 4
    K_root: int = 4
    K: int = 2
    two_layer_guarantee: bool = False
    extra_children: int | None = None
    batch_prompts: int = 8
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("L", "K_root", "K", "batch_prompts", "workers"):
            checks.whole(name, getattr(self, name), low=1)
        checks.optional_whole("extra_children", self.extra_children, low=1, none="K - 1")
        checks.flag("two_layer_guarantee", self.two_layer_guarantee)
        sampling = self.sampling
        if not isinstance(sampling, SamplingSettings):
            raise MavisError("collection setting sampling must be a SamplingSettings")
        if sampling.seed is None:
            raise MavisError("collection setting seed must be a whole number >= 0 (it seeds "
                             "every group's random streams)")
        if sampling.stop or sampling.greedy or sampling.ignore_eos:
            raise MavisError("tree collection samples whole segments: stop strings, greedy "
                             "decoding and ignore_eos do not apply; leave them out")
        if self.two_layer_guarantee and (self.L < 2 or self.T < 2):
            raise MavisError("the two-layer guarantee needs L >= 2 and T >= 2 (trees of at "
                             "least two layers); raise them or turn the guarantee off")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectionSettings:
        """From the flat form (a recipe's section, the options of `mavis collect`)."""
        own = {f.name for f in fields(cls)} - {"sampling"}
        unknown = sorted(set(data) - own - set(SAMPLING_KEYS))
        if unknown:
            raise MavisError(f"unknown collection setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(own | set(SAMPLING_KEYS)))}")
        try:
            sampling = reproducible(**{SAMPLING_KEYS[k]: v for k, v in data.items()
                                       if k in SAMPLING_KEYS})
        except SettingsError as exc:  # named as the flat form names it (T, not max_new_tokens)
            key = {v: k for k, v in SAMPLING_KEYS.items()}.get(exc.field, exc.field)
            raise MavisError(f"{key} {exc.problem}") from None
        return cls(sampling, **{k: v for k, v in data.items() if k in own})

    @property
    def T(self) -> int:  # noqa: N802 (the paper's name)
        """The longest response, in tokens (the sampling's max_new_tokens)."""
        return self.sampling.max_new_tokens

    @property
    def seed(self) -> int:
        return int(self.sampling.seed or 0)

    @property
    def shape(self) -> Shape:
        return Shape(T=self.T, L=self.L, K_root=self.K_root, K=self.K)

    @property
    def split_children(self) -> int:
        """Extra children grown under a split first-layer node."""
        return self.extra_children if self.extra_children is not None else max(self.K - 1, 1)

    def to_dict(self) -> dict[str, Any]:
        """What decides the trees (the file's meta), flat: every field but `workers`. Sampling
        fields are named where they differ from `unnamed_defaults` (so a default changed since
        is named at its new value); trees sampled from the reference alone (no weights, after
        `guided_sampling`) leave out certain_p, which decides nothing there."""
        sampling, default = self.sampling.to_dict(), unnamed_defaults()
        if sampling["weights"] is None:
            default["certain_p"] = sampling["certain_p"]
        data: dict[str, Any] = {
            "T": self.T, "L": self.L, "K_root": self.K_root, "K": self.K, "seed": self.seed,
            **{name: sampling[name] for name in META_KEYS},
            "two_layer_guarantee": self.two_layer_guarantee,
            "extra_children": self.split_children if self.two_layer_guarantee else None,
            "batch_prompts": self.batch_prompts}
        if sampling["kl_budget"] is not None:  # files collected without one keep their identity
            data["kl_budget"] = sampling["kl_budget"]
        data.update({name: sampling[name] for name in set(SAMPLING_KEYS.values()) - {
            "max_new_tokens", "seed", "kl_budget", *META_KEYS} if sampling[name] != default[name]})
        return data
