"""A recipe names everything of an experiment in one readable YAML file (torchtune style):
the reference model, the objectives, the prompts, the tree shape, the guidance strength and KL
multiplier of every iteration, the value-model training settings, the evaluation, and how the
fine-tuned baselines of `mavis pareto --recipe` are trained (`baselines:`, `MorlhfSettings`).

`mavis iterate RECIPE` runs it (Algorithm 1); see `recipes/*.yaml` for annotated examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from mavis.baselines.config import MorlhfSettings
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.evaluation.settings import EvaluationSettings
from mavis.models.names import DEFAULT_MODEL
from mavis.training.config import TrainConfig
from mavis.trees.settings import CollectionSettings


@dataclass
class PromptSettings:
    """The `prompts:` section.

    sets (`list[str]`, default `["chitchat"]`): prompt sets (see `mavis prompts list`) or files.
    train (`int`, default `64`): prompts per set for tree collection (train split).
    test (`int`, default `16`): held-out prompts per set for evaluation (test split).
    max_prompt_tokens (`int`, default `128`): longer prompts are left out.
    seed (`int`, default `0`): which prompts of a set are taken.
    """

    sets: list[str] = field(default_factory=lambda: ["chitchat"])
    train: int = 64
    test: int = 16
    max_prompt_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sets, str):
            self.sets = [self.sets]
        if not self.sets or not all(isinstance(name, str) and name for name in self.sets):
            raise MavisError("recipe section 'prompts': 'sets' must list prompt set names")
        for name in ("train", "test", "max_prompt_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MavisError(f"recipe section 'prompts': {name}={value!r} must be a whole "
                                 "number >= 1")


@dataclass
class IterationSettings:
    """One entry of the `iterations:` list.

    beta (`float | dict[str, float] | None`): guidance for evaluating V^i and for collecting
        the trees of iteration i+1 (one number, or one per objective). With kl_budget it is
        read as `SamplingSettings` reads them everywhere: neither gives the default guidance
        (beta up to 16 under 18 nats per answer), a beta alone is a fixed beta.
    zeta (`float`, default `0.0`): KL multiplier of equation 6 when training V^i.
    kl_budget (`float | None`): nats per answer the guided policy may add over plain top-k
        sampling, for evaluating V^i and collecting iteration i+1; beta is then the largest
        allowed at each step.
    K_root (`int | None`): overrides collection.K_root (the paper: 2 after iteration 0).
    two_layer_guarantee (`bool | None`): default on after iteration 0 (appendix C).
    """

    beta: float | dict[str, float] | None = None
    zeta: float = 0.0
    kl_budget: float | None = None
    K_root: int | None = None
    two_layer_guarantee: bool | None = None

    def __post_init__(self) -> None:
        betas = self.beta.values() if isinstance(self.beta, dict) else [self.beta]
        for beta in betas:  # checked by the one rule, objective by objective
            SamplingSettings(beta=beta, kl_budget=self.kl_budget)
        if not isinstance(self.zeta, int | float) or isinstance(self.zeta, bool) \
                or not math.isfinite(self.zeta) or self.zeta < 0:
            raise MavisError(f"iteration zeta={self.zeta!r} must be a number >= 0")
        if self.K_root is not None and (not isinstance(self.K_root, int) or self.K_root < 1):
            raise MavisError(f"iteration K_root={self.K_root!r} must be a whole number >= 1")

    def beta_for(self, objective: str) -> float | None:
        if isinstance(self.beta, dict):
            if objective not in self.beta:
                raise MavisError(f"iteration beta has no entry for objective {objective!r}")
            return self.beta[objective]
        return self.beta

    def guidance(self, objective: str, base: SamplingSettings) -> SamplingSettings:
        """`base` steered by this iteration's value model of `objective` alone (weight 1), with
        its beta and KL budget."""
        return replace(base, weights={objective: 1.0}, beta=self.beta_for(objective),
                       kl_budget=self.kl_budget)


@dataclass
class Recipe:
    name: str
    out: str
    reference: str = DEFAULT_MODEL
    objectives: list[str] = field(default_factory=lambda: ["positive"])
    prompts: PromptSettings = field(default_factory=PromptSettings)
    collection: CollectionSettings = field(default_factory=CollectionSettings)
    iterations: list[IterationSettings] = field(default_factory=lambda: [IterationSettings()])
    training: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    baselines: MorlhfSettings = field(default_factory=MorlhfSettings)
    path: str = ""

    @property
    def out_dir(self) -> Path:
        return Path(self.out).expanduser()


# Keys a recipe may not set, because `mavis iterate` sets them itself: (section, key) -> what
# sets it. A recipe that sets one fails before any work, naming it.
SET_BY_THE_PIPELINE = {
    ("collection", "beta"): "iterations[i-1].beta (the policy that collects iteration i)",
    ("collection", "kl_budget"): "iterations[i-1].kl_budget",
    ("collection", "weights"): "the iteration (weight 1 on the objective whose V^{i-1} steers)",
    ("collection", "two_layer_guarantee"): "iterations[i].two_layer_guarantee (default: on "
    "after iteration 0)",
    ("training", "zeta"): "iterations[i].zeta",
    ("training", "objectives"): "the recipe's objectives (or --objective)",
    ("training", "init_from"): "the previous iteration's value model",
    ("evaluation", "beta"): "iterations[i].beta",
    ("evaluation", "kl_budget"): "iterations[i].kl_budget",
    ("evaluation", "weights"): "the iteration (weight 1 on the objective evaluated)",
}


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise MavisError(f"recipe section {where!r} must be a mapping, got {type(data).__name__}")
    for key in data:
        if (where, key) in SET_BY_THE_PIPELINE:
            raise MavisError(f"recipe key {where}.{key} is set by {SET_BY_THE_PIPELINE[where, key]}"
                             f"; remove it from the {where!r} section")
    flat = cls in (CollectionSettings, EvaluationSettings)  # flat in YAML, nested in Python
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown and not flat:
        raise MavisError(f"unknown key(s) in recipe section {where!r}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    try:
        return cls.from_dict(data) if flat else cls(**data)
    except MavisError as exc:
        raise MavisError(f"recipe section {where!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MavisError(f"recipe section {where!r} has a value of the wrong type ({exc})") \
            from None


def _baselines(data: dict[str, Any]) -> MorlhfSettings:
    """The `baselines:` section (`MorlhfSettings`: how `mavis pareto` trains the fine-tuned
    baselines); what it leaves out comes from the recipe: its reference model, objectives,
    prompt sets, prompt seed and prompt length limit."""
    section = data.get("baselines") or {}
    if not isinstance(section, dict):
        raise MavisError("recipe section 'baselines' must be a mapping of MORLHF settings")
    prompts = data["prompts"]
    defaults = {"reference": data.get("reference", Recipe.reference),
                "objectives": data.get("objectives") or ["positive"],
                "prompt_sets": prompts.sets, "prompt_seed": prompts.seed,
                "max_prompt_tokens": prompts.max_prompt_tokens}
    if isinstance(defaults["objectives"], str):
        defaults["objectives"] = [o.strip() for o in defaults["objectives"].split(",")
                                  if o.strip()]
    return _build(MorlhfSettings, {**defaults, **section}, "baselines")


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file; errors name the key that is wrong. Every section is
    checked here, before anything runs or is written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise MavisError(f"recipe {str(path)!r} is a folder; give the recipe's YAML file "
                         "(see recipes/ for examples)")
    if not path.is_file():
        raise MavisError(f"recipe {str(path)!r} does not exist (see recipes/ for examples)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MavisError(f"recipe {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MavisError(f"recipe {str(path)!r} must be a YAML mapping")
    data = dict(data)
    sections = {"prompts": PromptSettings, "collection": CollectionSettings,
                "training": TrainConfig, "evaluation": EvaluationSettings}
    for key, cls in sections.items():
        data[key] = _build(cls, data.get(key), key)
    data["baselines"] = _baselines(data)
    iterations = data.get("iterations") or [{}]
    if not isinstance(iterations, list):
        raise MavisError("recipe key 'iterations' must be a list, one entry per iteration")
    data["iterations"] = [_build(IterationSettings, it, f"iterations[{i}]")
                          for i, it in enumerate(iterations)]
    data.setdefault("name", path.stem)
    data.setdefault("out", f"runs/{data['name']}")
    recipe = _build(Recipe, data, "top level")
    recipe.path = str(path)
    if isinstance(recipe.objectives, str):
        recipe.objectives = [o.strip() for o in recipe.objectives.split(",") if o.strip()]
    if not recipe.objectives:
        raise MavisError("recipe key 'objectives' lists no objective")
    return recipe
