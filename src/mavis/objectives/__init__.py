"""Objectives: reward functions over (prompt, response) pairs, looked up by name.

    >>> from mavis.objectives import get_objective, score_all
    >>> get_objective("positive").score(["How was it?"], ["I loved it!"])  # doctest: +SKIP
    [0.636]
    >>> score_all("harmless,relevant", prompts, responses)  # doctest: +SKIP
    {"harmless": [...], "relevant": [...]}

Every objective returns one float per pair, higher is better. Built-ins (all offline):

- `harmless`   1 - P(offensive) of the response (alt-profanity-check), 0..1
- `positive`   VADER compound sentiment of the response, -1..1
- `relevant`   cosine similarity of MiniLM embeddings of prompt and response
- `witty`, `upbeat`, `interesting`   predicted 1-10 human rating (ridge heads on MiniLM,
  fitted once on the chitchat-dataset ratings and cached; see `chitchat.py`)

Parametric names:

- `hf:<model-id-or-folder>[?template=..&pair=1&label=..&output=..]`  a Hugging Face
  sequence-classification reward model (see `hf.py`)
- `python:<module-or-file.py>:<function>`  your own batched `f(prompts, responses)`
  (see `pyfunc.py`)

Add an objective of your own with one decorated class (or a lazy "module:object" entry):

    @register_objective("brevity", "1 / (1 + words in the response)")
    class Brevity(Objective):
        def _score(self, prompts, responses):
            return [1 / (1 + len(r.split())) for r in responses]

Objects are built once per name and reused; `clear_objective_cache()` forgets them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from mavis.errors import MavisError
from mavis.objectives.base import Objective, check_batch
from mavis.registry import Registry

__all__ = [
    "OBJECTIVES",
    "Objective",
    "clear_objective_cache",
    "get_objective",
    "list_objectives",
    "parse_objective_names",
    "register_objective",
    "score_all",
]

OBJECTIVES: Registry[Callable[[], Objective]] = Registry("objective")
PARAMETRIC = {
    "hf": ("mavis.objectives.hf", "hf:<model-id-or-folder>[?template=..&pair=1&label=..]",
           "any Hugging Face sequence-classification reward model"),
    "python": ("mavis.objectives.pyfunc", "python:<module-or-file.py>:<function>",
               "your own batched function f(prompts, responses) -> list[float]"),
}

OBJECTIVES.register_lazy(
    "harmless",
    "mavis.objectives.harmless:Harmless",
    "1 - P(offensive) of the response (alt-profanity-check); 0..1, higher is cleaner",
)
OBJECTIVES.register_lazy(
    "positive",
    "mavis.objectives.positive:Positive",
    "VADER compound sentiment of the response; -1 (negative) .. 1 (positive)",
)
OBJECTIVES.register_lazy(
    "relevant",
    "mavis.objectives.relevant:Relevant",
    "cosine similarity of prompt and response (MiniLM embeddings); a helpfulness proxy",
)
for _rating in ("witty", "upbeat", "interesting"):
    OBJECTIVES.register_lazy(
        _rating,
        f"mavis.objectives.chitchat:{_rating}",
        f"predicted human '{_rating}' rating 1..10 (ridge on MiniLM, chitchat-dataset ratings)",
    )

_INSTANCES: dict[str, Objective] = {}


def register_objective(name: str, description: str = "") -> Callable:
    """Decorator: register an `Objective` subclass (or a zero-argument factory) under `name`."""
    return OBJECTIVES.register(name, description)


def _check_name(name: str) -> None:
    """Raise MavisError if `name` is neither registered nor a well-formed parametric name."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PARAMETRIC:
        if not rest:
            raise MavisError(f"objective {name!r} is incomplete; write {PARAMETRIC[prefix][1]}")
        return
    if name not in OBJECTIVES:
        try:
            OBJECTIVES.get(name)
        except MavisError as exc:
            forms = ", ".join(form for _, form, _ in PARAMETRIC.values())
            raise MavisError(f"{exc}; or {forms}") from None


def get_objective(name: str) -> Objective:
    """The objective called `name`, built on first use and reused afterwards."""
    name = name.strip()
    if name in _INSTANCES:
        return _INSTANCES[name]
    _check_name(name)
    prefix, _, rest = name.partition(":")
    if prefix in PARAMETRIC and rest:
        objective = importlib.import_module(PARAMETRIC[prefix][0]).from_spec(rest)
    else:
        objective = OBJECTIVES.get(name)()
        if not objective.description:
            objective.description = OBJECTIVES.describe(name)
    objective.name = name
    _INSTANCES[name] = objective
    return objective


def clear_objective_cache() -> None:
    """Forget the objects built so far (the next `get_objective` builds afresh)."""
    _INSTANCES.clear()


def list_objectives() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered objective, sorted by name.

    The parametric forms (`hf:...`, `python:...`) are not listed; see `PARAMETRIC`.
    """
    return [(name, OBJECTIVES.describe(name)) for name in OBJECTIVES.names()]


def parse_objective_names(names: str | Sequence[str]) -> list[str]:
    """"a,b" (or a list) -> ["a", "b"], checked without loading anything. A name given twice
    is refused (it would be merged, or scored and counted twice)."""
    items = names.split(",") if isinstance(names, str) else list(names)
    parsed = [n.strip() for n in items if n.strip()]
    if not parsed:
        known = ", ".join(OBJECTIVES.names())
        raise MavisError(f"no objective given; known objectives: {known}")
    repeated = sorted({n for n in parsed if parsed.count(n) > 1})
    if repeated:
        raise MavisError(f"the objectives name {', '.join(map(repr, repeated))} more than once; "
                         "give each objective once")
    for name in parsed:
        _check_name(name)
    return parsed


def score_all(
    names: str | Sequence[str], prompts: Sequence[str], responses: Sequence[str]
) -> dict[str, list[float]]:
    """Score the pairs with each named objective: {name: [one float per pair]}."""
    parsed = parse_objective_names(names)
    prompts, responses = check_batch(prompts, responses, "score_all")
    return {name: get_objective(name).score(prompts, responses) for name in parsed}
