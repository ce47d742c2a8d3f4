"""A recipe names everything of an experiment in one readable YAML file (torchtune style):
the reference model, the objectives, the prompts, the tree shape, the guidance strength and KL
multiplier of every iteration, the value-model training settings and the evaluation.

`mavis iterate RECIPE` runs it (Algorithm 1); see `recipes/*.yaml` for annotated examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mavis.errors import MavisError


@dataclass
class PromptSettings:
    sets: list[str] = field(default_factory=lambda: ["chitchat"])
    train: int = 64  # prompts per set for tree collection (train split)
    test: int = 16  # held-out prompts per set for evaluation (test split)
    max_prompt_tokens: int = 128
    seed: int = 0


@dataclass
class CollectionSettings:
    T: int = 32
    L: int = 4
    K_root: int = 4
    K: int = 2
    top_k: int = 40
    temperature: float = 1.0
    batch_prompts: int = 8
    seed: int = 0
    workers: int = 1  # > 1: shard over a local Ray cluster


@dataclass
class IterationSettings:
    beta: float | dict[str, float] = 8.0  # guidance for evaluating V^i and collecting i+1
    zeta: float = 0.0  # KL multiplier of equation 6 when training V^i
    K_root: int | None = None  # overrides collection.K_root (the paper: 2 after iteration 0)
    two_layer_guarantee: bool | None = None  # default: on after iteration 0 (appendix C)

    def beta_for(self, objective: str) -> float:
        if isinstance(self.beta, dict):
            if objective not in self.beta:
                raise MavisError(f"iteration beta has no entry for objective {objective!r}")
            return float(self.beta[objective])
        return float(self.beta)


@dataclass
class EvaluationSettings:
    max_new_tokens: int = 32
    num_samples: int = 1
    top_k: int = 40
    seed: int = 0
    candidate_epsilon: float = 0.0


@dataclass
class Recipe:
    name: str
    out: str
    reference: str = "smollm2-135m-instruct"
    objectives: list[str] = field(default_factory=lambda: ["positive"])
    prompts: PromptSettings = field(default_factory=PromptSettings)
    collection: CollectionSettings = field(default_factory=CollectionSettings)
    iterations: list[IterationSettings] = field(default_factory=lambda: [IterationSettings()])
    training: dict[str, Any] = field(default_factory=dict)  # mavis.training.TrainConfig fields
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    path: str = ""

    @property
    def out_dir(self) -> Path:
        return Path(self.out).expanduser()


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise MavisError(f"recipe section {where!r} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MavisError(f"unknown key(s) in recipe section {where!r}: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    return cls(**data)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file; errors name the key that is wrong."""
    import yaml

    path = Path(path).expanduser()
    if not path.exists():
        raise MavisError(f"recipe {str(path)!r} does not exist (see recipes/ for examples)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MavisError(f"recipe {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise MavisError(f"recipe {str(path)!r} must be a YAML mapping")
    data = dict(data)
    sections = {"prompts": PromptSettings, "collection": CollectionSettings,
                "evaluation": EvaluationSettings}
    for key, cls in sections.items():
        data[key] = _build(cls, data.get(key), key)
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
    from mavis.training.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(recipe.training) - known)
    if unknown:
        raise MavisError(f"unknown key(s) in recipe section 'training': {', '.join(unknown)}; "
                         f"see mavis.training.TrainConfig for the settings")
    return recipe
