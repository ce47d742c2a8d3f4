"""The contract every objective (reward function) implements.

An objective scores a batch of (prompt, response) pairs and returns one float per pair; higher
is better. Subclasses implement `_score` on lists that `score` has already checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from mavis.errors import MavisError


class Objective:
    """A reward function over (prompt, response) pairs, batched.

    Subclasses set `description` (one line first) and `source` (where the signal comes from),
    and implement `_score(prompts, responses)`. `name` is the name the objective was looked up
    by; `get_objective` sets it.

    Example:
        >>> class Length(Objective):
        ...     description = "Number of words in the response."
        ...     def _score(self, prompts, responses):
        ...         return [float(len(r.split())) for r in responses]
        >>> Length().score(["Hi"], ["Hello there"])
        [2.0]
    """

    name: str = ""
    description: str = ""
    source: str = ""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Score each (prompt, response) pair; returns one float per pair, higher is better."""
        prompts, responses = check_batch(prompts, responses, self.name or type(self).__name__)
        if not prompts:
            return []
        scores = [float(s) for s in self._score(prompts, responses)]
        if len(scores) != len(prompts):  # a bug in a subclass, not the caller's fault
            raise RuntimeError(
                f"{type(self).__name__} returned {len(scores)} scores for {len(prompts)} pairs"
            )
        return scores

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        raise NotImplementedError

    def model_parameters(self) -> int:
        """The weights of the neural model a call runs (0 for lexical and table rewards): what
        one call costs, at about 2 FLOPs per weight per token of prompt and response. Found on
        the objective's `model` or its embedder's (`_embedder.model`)."""
        model = getattr(self, "model", None)
        if model is None:
            model = getattr(getattr(self, "_embedder", None), "model", None)
        if model is None or not hasattr(model, "modules"):
            return 0
        return sum(m.weight.numel() for m in model.modules()
                   if type(m).__name__ == "Linear" and getattr(m, "weight", None) is not None)

    def info(self) -> dict[str, str]:
        """Extra facts for `mavis objectives show` (e.g. held-out fit figures); may be costly."""
        return {}

    def __repr__(self) -> str:
        return f"<objective {self.name or type(self).__name__}>"


def check_batch(
    prompts: Sequence[str], responses: Sequence[str], name: str = "objective"
) -> tuple[list[str], list[str]]:
    """Return prompts and responses as lists of str, or raise MavisError naming the problem."""
    for label, seq in (("prompts", prompts), ("responses", responses)):
        if isinstance(seq, str):
            raise MavisError(
                f"{name}: {label} must be a list of strings, not a single string; "
                f"wrap it in a list: [{seq[:30]!r}]"
            )
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise MavisError(
            f"{name}: got {len(prompts)} prompts and {len(responses)} responses; "
            "each response needs its prompt (the lengths must match)"
        )
    for label, seq in (("prompt", prompts), ("response", responses)):
        for i, item in enumerate(seq):
            if not isinstance(item, str):
                raise MavisError(f"{name}: {label} {i} is {type(item).__name__}, not str")
    return prompts, responses
