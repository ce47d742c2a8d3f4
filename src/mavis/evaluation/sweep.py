"""Weight sweeps (Pareto fronts), resumable: every point is saved the moment it is finished,
and a rerun with the same settings evaluates only the points not saved yet.

    points = sweep_points(("relevant", "harmless"), [0, 0.5, 1], betas={0: 8, 0.5: 12, 1: 8},
                          best_of=[4], beams=[4])
    store = SweepStore("runs/pareto.json", identity)
    results = run_sweep(decoder, prompts, ["relevant", "harmless"], points, settings, store)

A point is a method at one weight setting: MAVIS (weights and beta), pi_ref, best-of-N
(which samples its N answers per prompt once for all weights, see `best_of_n`), beam search
with N beams (`beam`), or any method a caller adds through `evaluators` (the fine-tuned
baselines of `mavis.baselines.compare`). Two objectives sweep (lambda, 1 - lambda); more sweep
a simplex grid (`weight_grid`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.evaluation.beam import BeamSettings, evaluate_beam
from mavis.evaluation.best_of_n import BestOfNSamples, pick_best, sample_best_of_n
from mavis.evaluation.policy import PolicyEvaluation, evaluate_policy
from mavis.evaluation.settings import EvaluationSettings
from mavis.models.value_folder import value_model_fingerprint
from mavis.prompts.base import Prompt

REFERENCE = "pi_ref"
MAVIS = "MAVIS"
# A method the caller evaluates: (point, on_rows) -> its evaluation; on_rows(count) is called
# as answers finish (the sweep's progress bar counts answers).
PointEvaluator = Callable[["SweepPoint", Callable[[int], None]], PolicyEvaluation]


@dataclass
class SweepPoint:
    """One policy to evaluate: `method` is "MAVIS", "pi_ref", "best-of-N", "beam-N" (MAVIS
    beam search with N beams), or a method of the `evaluators` given to `run_sweep`."""

    method: str
    weights: dict[str, float] = field(default_factory=dict)
    beta: float = 0.0
    n: int = 0  # best-of-N's N
    kl_budget: float | None = None  # nats per token; beta is then the largest allowed
    beams: int = 0  # beam search's N
    # another point that is the very same policy (Rewarded Soups and MOD at lambda = 1 or 0
    # are MORLHF's single-objective ends): its evaluation is reused, not sampled again
    same_as: SweepPoint | None = field(default=None, compare=False)

    @property
    def family(self) -> str:
        """The method without its N ("best-of", "beam"): the key of its settings."""
        if self.n:
            return "best-of"
        return "beam" if self.beams else self.method

    @property
    def label(self) -> str:
        """The weights, e.g. "relevant=0.25,harmless=0.75" (empty for pi_ref)."""
        return ",".join(f"{name}={w:g}" for name, w in self.weights.items())

    @property
    def key(self) -> str:
        """What identifies the point in the store."""
        beta = f" beta={self.beta:g}" if self.method == MAVIS or self.beams else ""
        if self.method == MAVIS and self.kl_budget is not None:
            beta += f" kl_budget={self.kl_budget:g}"
        return f"{self.method} {self.label}{beta}".strip()


def weight_grid(objectives: Sequence[str], lambdas: Sequence[float]) -> list[dict[str, float]]:
    """The weight vectors of a sweep: for two objectives (lambda, 1 - lambda) for every lambda;
    for more, every vector whose coordinates are all among `lambdas` and sum to 1 (a simplex
    grid: lambdas 0,0.5,1 over three objectives give the 3 corners and 3 edge midpoints)."""
    names = list(objectives)
    if len(names) < 2:
        raise MavisError(f"a weight sweep needs at least two objectives, got {len(names)}")
    if len(names) == 2:
        return [{names[0]: lam, names[1]: 1.0 - lam} for lam in lambdas]
    levels = sorted({round(float(x), 12) for x in lambdas}, reverse=True)
    grid = []
    for head in itertools.product(levels, repeat=len(names) - 1):
        last = round(1.0 - sum(head), 12)
        if any(abs(last - level) < 1e-9 for level in levels):
            grid.append(dict(zip(names, [*head, max(last, 0.0)], strict=True)))
    if not grid:
        raise MavisError(f"no weight vector over {len(names)} objectives has coordinates "
                         f"among {', '.join(f'{x:g}' for x in levels)} summing to 1; use "
                         "e.g. --lambdas 0,0.25,0.5,0.75,1")
    return grid


def sweep_points(objectives: Sequence[str], lambdas: Sequence[float], *,
                 betas: float | Mapping[float, float] = 8.0,
                 best_of: Sequence[int] = (), reference: bool = True,
                 kl_budget: float | None = None, beams: Sequence[int] = (),
                 mavis: bool = True) -> list[SweepPoint]:
    """MAVIS at every weight vector of `weight_grid(objectives, lambdas)` (beta per lambda of
    the first objective when `betas` maps lambdas to betas, the paper's table 9), pi_ref,
    best-of-N for every N in `best_of` and beam search for every N in `beams`."""
    grid = weight_grid(objectives, lambdas)
    first = objectives[0]

    def beta_of(weights: dict[str, float]) -> float:
        if not isinstance(betas, Mapping):
            return float(betas)
        match = [b for lam, b in betas.items() if abs(lam - weights[first]) < 1e-9]
        if not match:
            raise MavisError(f"no beta for {first}={weights[first]:g}; give LAMBDA:BETA for "
                             "every weight the first objective takes")
        return float(match[0])

    points = [SweepPoint(MAVIS, w, beta_of(w), kl_budget=kl_budget) for w in grid] if mavis \
        else []
    if reference:
        points.append(SweepPoint(REFERENCE))
    for n in best_of:
        points += [SweepPoint(f"best-of-{n}", w, n=n) for w in grid]
    for n in beams:
        points += [SweepPoint(f"beam-{n}", w, beta_of(w), beams=n) for w in grid]
    return points


class SweepStore:
    """The JSON file of a sweep: what it evaluated (`identity`: prompts, objectives, models,
    settings shared by every point), the settings of each method that has its own (`methods`:
    e.g. how MORLHF policies were trained, how beam search pruned), every finished point, and
    notes (the commands that ran it, the fronts' summary); rewritten whole after each point.

    A file holding another identity is refused; a saved point of a method whose settings have
    changed since is refused too (with the method named), so that no stale point is reused.
    Methods can be added to a sweep later: their points join the same file.

    `value_models` (label -> folder) are the value models the points are guided by: their
    contents' fingerprints are kept, and a file whose models have changed since (trained again
    into the same folder, a newer bundled model) is refused, naming them."""

    def __init__(self, path: str | Path, identity: Mapping[str, Any],
                 methods: Mapping[str, Any] | None = None,
                 value_models: Mapping[str, str | Path] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.identity = _plain(identity)
        self.methods: dict[str, Any] = _plain(methods or {})
        self.value_models = {str(label): value_model_fingerprint(folder)
                             for label, folder in (value_models or {}).items()}
        self.saved_methods: dict[str, Any] = {}
        self.points: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, Any] = {}
        if self.path.is_dir():
            raise MavisError(f"{str(self.path)!r} is a folder; give a file name for the results")
        if self.path.exists():
            saved = self._read()
            if saved.get("identity") != self.identity:
                raise MavisError(f"{self.path} holds a sweep with other settings; choose another "
                                 "--out, or delete it to start again")
            changed = sorted(label for label, fingerprint in
                             saved.get("value_models", {}).items()
                             if self.value_models.get(label, fingerprint) != fingerprint)
            if changed:
                raise MavisError(f"{self.path} holds points guided by other versions of the "
                                 f"value model(s) {', '.join(changed)} (they have changed "
                                 "since); choose another --out, or delete it to start again")
            self.value_models = {**saved.get("value_models", {}), **self.value_models}
            self.points = saved.get("points", {})
            self.saved_methods = saved.get("methods", {})
            self.notes = {k: v for k, v in saved.items()
                          if k not in ("identity", "methods", "points", "value_models")}
            if self.value_models != saved.get("value_models", {}):
                self._write()  # the models the saved points are now known to go with

    def _read(self) -> dict[str, Any]:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MavisError(f"{self.path} is not a sweep results file ({exc}); choose another "
                             "--out") from None
        if not isinstance(saved, dict):
            raise MavisError(f"{self.path} is not a sweep results file; choose another --out")
        return saved

    def done(self, point: SweepPoint) -> PolicyEvaluation | None:
        saved = self.points.get(point.key)
        if saved is None:
            return None
        family = point.family
        if family in self.saved_methods and self.saved_methods[family] != self.methods.get(
                family, self.saved_methods[family]):
            raise MavisError(f"{self.path} holds {family} points made with other {family} "
                             "settings; choose another --out, or delete the file to start "
                             "again")
        return PolicyEvaluation.from_dict(saved)

    def save(self, point: SweepPoint, result: PolicyEvaluation) -> None:
        self.points[point.key] = {**result.to_dict(), "method": point.method}
        if point.family in self.methods:
            self.saved_methods[point.family] = self.methods[point.family]
        self._write()

    def note(self, key: str, value: Any) -> None:
        """Keep `value` under `key` in the file (beside the points)."""
        self.notes[key] = _plain(value)
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        data = {"identity": self.identity, "methods": self.saved_methods,
                "value_models": self.value_models, **self.notes, "points": self.points}
        temp.write_text(json.dumps(data, indent=2))
        os.replace(temp, self.path)


def _plain(value: Any) -> Any:
    """`value` as JSON would read it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def run_sweep(decoder: MavisDecoder, prompts: Sequence[str | Prompt], objectives: Sequence[str],
              points: Sequence[SweepPoint], settings: EvaluationSettings,
              store: SweepStore | None = None, progress: bool = True, *,
              evaluators: Mapping[str, PointEvaluator] | None = None,
              beam: BeamSettings = BeamSettings()
              ) -> list[tuple[SweepPoint, PolicyEvaluation]]:
    """Evaluate every point not already in `store` (saving each as it finishes); return all,
    in the order of `points`. One progress bar counts the answers of every pending point.
    `evaluators` evaluate the methods this module does not know (by method name)."""
    evaluators = evaluators or {}
    results = {p.key: store.done(p) if store else None for p in points}
    pending = [p for p in points if results[p.key] is None]
    unknown = sorted({p.method for p in pending if not (p.n or p.beams) and p.method not in
                      (MAVIS, REFERENCE, *evaluators)})
    if unknown:
        raise MavisError(f"no way to evaluate method(s) {', '.join(unknown)}")
    for point in pending:  # twins already evaluated (saved, or in this sweep)
        if point.same_as is not None and store is not None and point.same_as.key not in results:
            results[point.same_as.key] = store.done(point.same_as)
    sampled = {(p.same_as or p).key: p.same_as or p for p in pending
               if p.same_as is None or results.get(p.same_as.key) is None}
    rows = len(prompts) * settings.num_samples
    total = sum(rows for p in sampled.values() if p.n == 0)
    total += sum(rows * n for n in {p.n for p in sampled.values() if p.n})
    bar = tqdm(total=total, desc="sweep", unit="answer", disable=not progress or not total,
               dynamic_ncols=True)
    drawn: dict[int, BestOfNSamples] = {}

    def evaluate(point: SweepPoint) -> PolicyEvaluation:
        bar.set_postfix_str(point.key, refresh=True)
        if point.n and point.n not in drawn:
            drawn[point.n] = sample_best_of_n(decoder, prompts, objectives, point.n,
                                              settings, on_rows=bar.update)
        if point.n:
            return pick_best(drawn[point.n], point.weights, label=point.label)
        if point.beams:
            return evaluate_beam(decoder, prompts, objectives, point.weights, point.beta,
                                 point.beams, settings, beam, point.label, bar.update)
        if point.method in evaluators:
            return evaluators[point.method](point, bar.update)
        return evaluate_point(decoder, prompts, objectives, point, settings, bar.update)

    try:
        for point in pending:
            twin = point.same_as
            if twin is None:
                result = evaluate(point)
            else:
                if results.get(twin.key) is None:
                    results[twin.key] = evaluate(twin)
                result = PolicyEvaluation.from_dict(results[twin.key].to_dict())
                result.label = point.label
            results[point.key] = result
            if store is not None:
                store.save(point, result)
    finally:
        bar.close()
    return [(p, results[p.key]) for p in points]  # type: ignore[misc]


def evaluate_point(decoder: MavisDecoder, prompts: Sequence[str | Prompt],
                   objectives: Sequence[str], point: SweepPoint, settings: EvaluationSettings,
                   on_rows: Any = None) -> PolicyEvaluation:
    """pi_ref or MAVIS at the point's weights and beta."""
    guided = point.method != REFERENCE
    return evaluate_policy(decoder, prompts, objectives,
                           weights=point.weights if guided else None,
                           beta=point.beta if guided else 0.0,
                           kl_budget=point.kl_budget if guided else None, settings=settings,
                           label=point.label or REFERENCE, on_rows=on_rows)


def by_method(results: Sequence[tuple[SweepPoint, PolicyEvaluation]]
              ) -> dict[str, list[PolicyEvaluation]]:
    """The evaluations grouped by method, in the order of the points (for `plot_pareto`)."""
    series: dict[str, list[PolicyEvaluation]] = {}
    for point, result in results:
        series.setdefault(point.method, []).append(result)
    return series
