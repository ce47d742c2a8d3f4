"""Every method of paper section 4 in one sweep (`mavis pareto --methods ...`).

    mavis    MAVIS at every weight vector (value models tilt pi_ref)
    morlhf   one MORLHF policy per weight vector, trained here when missing
    rsoup    Rewarded Soups of the two single-objective policies (the lambda = 1 and 0 ends
             of MORLHF), their LoRA deltas interpolated by lambda
    mod      MOD: the two single-objective policies' next-token log-probabilities combined by
             lambda and 1 - lambda at every step, plain top-k sampling of the combination
    bon      best-of-N from pi_ref by the weighted reward (N from --best-of)
    beam     MAVIS beam search with N beams, beside best-of-N at the same N (N from --beams)
    pi_ref   always: the reference policy (plain top-k sampling)

Rewarded Soups and MOD at lambda = 1 and 0 are the single-objective policies themselves: those
points reuse MORLHF's evaluation of the same policy rather than sample it again.

Every fine-tuned policy is sampled on MAVIS's footing: the same prompts, top-k, temperature,
answer length and seed, through the same decoding state (the policies are its proposal models),
and every answer's log pi_ref is read from the same reference model, so every method's KL is
against the same pi_ref (equation 7).

Policies live in one folder (`baselines_dir`): `morlhf/<weights>/` per weight vector, e.g.
`morlhf/relevant=1/` (a single-objective policy, shared by every comparison that uses that
objective) or `morlhf/relevant=0.25,harmless=0.75/`. A policy is trained on the objectives its
weights name, with the recipe's `baselines:` settings (`MorlhfSettings`); a folder holding a
policy trained with other settings is refused, not reused. Policies are loaded on the decoder's
reference (a copy with the LoRA merged), at most two at a time.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mavis.baselines.config import MorlhfSettings
from mavis.baselines.morlhf import train_morlhf
from mavis.baselines.policy import POLICY_FILE, policy_on
from mavis.baselines.soups import soup
from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.evaluation.policy import PolicyEvaluation, evaluate_policy
from mavis.evaluation.settings import EvaluationSettings
from mavis.evaluation.sweep import PointEvaluator, SweepPoint, sweep_points, weight_grid
from mavis.prompts.base import Prompt

METHODS = ("mavis", "morlhf", "rsoup", "mod", "bon", "beam")
MORLHF, RSOUP, MOD = "MORLHF", "RSoup", "MOD"
_TRAINED = {"morlhf": MORLHF, "rsoup": RSOUP, "mod": MOD}


def check_methods(methods: Sequence[str], objectives: Sequence[str]) -> list[str]:
    """The methods named, checked: known, and Rewarded Soups / MOD only for two objectives."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MavisError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(METHODS)} (pi_ref is always included)")
    if len(objectives) != 2 and {"rsoup", "mod"} & set(methods):
        raise MavisError("rsoup and mod combine two single-objective policies: give exactly two "
                         f"objectives, not {len(objectives)}")
    return list(methods)


def comparison_points(objectives: Sequence[str], lambdas: Sequence[float],
                      methods: Sequence[str], *, betas: float | Mapping[float, float] = 8.0,
                      best_of: Sequence[int] = (), beams: Sequence[int] = (),
                      kl_budget: float | None = None,
                      morlhf_lambdas: Sequence[float] | None = None) -> list[SweepPoint]:
    """The points of a comparison: those of `sweep_points` (MAVIS, pi_ref, best-of-N, beam
    search) for the methods named, then MORLHF, Rewarded Soups and MOD at every weight vector.
    `beam` adds best-of-N at each beam count N too (the paper's Fig. 4 pairs them).

    MORLHF trains one policy per weight vector, so it may take a coarser grid of its own
    (`morlhf_lambdas`; default `lambdas`); Rewarded Soups and MOD only need the two ends."""
    methods = check_methods(methods, objectives)
    sizes = list(dict.fromkeys([*best_of, *(beams if "beam" in methods else ())]))
    points = sweep_points(objectives, lambdas, betas=betas, kl_budget=kl_budget,
                          best_of=sizes, beams=beams if "beam" in methods else (),
                          mavis="mavis" in methods)
    for method in ("morlhf", "rsoup", "mod"):
        if method in methods:
            own = method == "morlhf" and morlhf_lambdas is not None
            grid = weight_grid(objectives, morlhf_lambdas if own else lambdas)
            points += [SweepPoint(_TRAINED[method], weights, same_as=_single_policy(
                method, weights)) for weights in grid]
    return points


class Baselines:
    """The fine-tuned policies of a comparison: where they live, how they are trained, and
    how their points are evaluated."""

    def __init__(self, folder: str | Path, settings: MorlhfSettings,
                 objectives: Sequence[str], progress: bool = True) -> None:
        self.folder = Path(folder).expanduser()
        self.settings = settings
        self.objectives = list(objectives)
        self.progress = progress

    def folder_for(self, weights: Mapping[str, float]) -> Path:
        """The MORLHF policy folder of a weight vector (objectives with weight 0 left out)."""
        named = ",".join(f"{name}={w:g}" for name, w in _positive(weights).items())
        return self.folder / "morlhf" / re.sub(r"[^\w.=,+-]", "_", named)

    def ends(self) -> list[dict[str, float]]:
        """The two single-objective weight vectors (lambda = 1 and 0)."""
        return [{self.objectives[0]: 1.0}, {self.objectives[1]: 1.0}]

    def needed(self, points: Sequence[SweepPoint]) -> list[dict[str, float]]:
        """The policies (as weight vectors) that `points` need, each once."""
        wanted: dict[Path, dict[str, float]] = {}
        for point in points:
            if point.method == MORLHF:
                wanted.setdefault(self.folder_for(point.weights), _positive(point.weights))
            elif point.method in (RSOUP, MOD):
                for weights in self.ends():
                    wanted.setdefault(self.folder_for(weights), weights)
        return list(wanted.values())

    def train_missing(self, points: Sequence[SweepPoint]) -> None:
        """Train (or finish) every policy the points need; a finished one is checked against
        the settings (a policy trained otherwise is refused) and reused."""
        needed = self.needed(points)
        missing = [w for w in needed if not (self.folder_for(w) / POLICY_FILE).exists()]
        for weights in needed:
            folder = self.folder_for(weights)
            if weights in missing:
                _say(f"MORLHF policy {missing.index(weights) + 1}/{len(missing)}: "
                     f"{folder.name} -> {folder}")
            settings = dataclasses.replace(self.settings, objectives=list(weights),
                                           progress=self.progress)
            train_morlhf(settings, weights, folder)

    def evaluators(self, decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                   objectives: Sequence[str], settings: EvaluationSettings
                   ) -> dict[str, PointEvaluator]:
        """How to evaluate MORLHF, Rewarded-Soup and MOD points with `decoder`'s reference."""
        pool = _PolicyPool(decoder.reference)

        def sample(point: SweepPoint, on_rows: Callable[[int], None],
                   proposals: list[tuple[torch.nn.Module, float]]) -> PolicyEvaluation:
            result = evaluate_policy(decoder.with_proposals(proposals), prompts, objectives,
                                     settings=settings, label=point.label, on_rows=on_rows)
            result.weights = dict(point.weights)
            return result

        def morlhf(point: SweepPoint, on_rows: Callable[[int], None]) -> PolicyEvaluation:
            folder = self.folder_for(point.weights)
            return sample(point, on_rows, [(pool.policy(folder), 1.0)])

        def rsoup(point: SweepPoint, on_rows: Callable[[int], None]) -> PolicyEvaluation:
            lam = point.weights[self.objectives[0]]
            first, second = (self.folder_for(w) for w in self.ends())
            model = pool.get(("soup", lam), lambda: soup(first, second, lam,
                                                         base=decoder.reference)[0])
            return sample(point, on_rows, [(model, 1.0)])

        def mod(point: SweepPoint, on_rows: Callable[[int], None]) -> PolicyEvaluation:
            lam = point.weights[self.objectives[0]]
            pairs = [(pool.policy(self.folder_for(w)), weight) for w, weight
                     in zip(self.ends(), (lam, 1.0 - lam), strict=True) if weight > 0]
            return sample(point, on_rows, pairs)

        return {MORLHF: morlhf, RSOUP: rsoup, MOD: mod}

    def method_settings(self) -> dict[str, Any]:
        """What decides the baselines' points (for `SweepStore`'s `methods`): the training
        settings, less those that only change how a run is shown or saved."""
        learned = {k: v for k, v in self.settings.to_dict().items()
                   if k not in ("progress", "save_every", "keep_checkpoints", "objectives")}
        return {method: {"morlhf": learned}
                for method in (MORLHF, RSOUP, MOD)}


class _PolicyPool:
    """Policies built on one reference model, the two most recently used kept in memory."""

    def __init__(self, base: torch.nn.Module, capacity: int = 2) -> None:
        self.base, self.capacity = base, capacity
        self.models: OrderedDict[Any, torch.nn.Module] = OrderedDict()

    def get(self, key: Any, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        while len(self.models) >= self.capacity:
            self.models.popitem(last=False)
        self.models[key] = build()
        return self.models[key]

    def policy(self, folder: Path) -> torch.nn.Module:
        if not (folder / POLICY_FILE).exists():
            raise MavisError(f"no finished policy in {folder}; rerun the command to train it")
        return self.get(folder, lambda: policy_on(folder, self.base))


def _single_policy(method: str, weights: Mapping[str, float]) -> SweepPoint | None:
    """For a Rewarded-Soup or MOD point at an end of lambda: MORLHF's point of the same
    single-objective policy (the soup of weight 1 is that policy's delta; MOD with weight 1
    samples that policy alone), whose evaluation it reuses."""
    if method == "morlhf" or sum(w > 0 for w in weights.values()) != 1:
        return None
    return SweepPoint(MORLHF, dict(weights))


def _positive(weights: Mapping[str, float]) -> dict[str, float]:
    """The positive weights, rounded (1 - 0.7 is 0.3 here, as in the folder's name)."""
    return {name: round(float(w), 12) for name, w in weights.items() if w > 0}


def _say(message: str) -> None:
    print(f"[mavis pareto] {message}", file=sys.stderr, flush=True)
