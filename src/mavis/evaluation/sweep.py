"""Weight sweeps (Pareto fronts), resumable: every point is saved the moment it is finished,
and a rerun with the same settings evaluates only the points not saved yet.

    points = sweep_points(("relevant", "harmless"), [0, 0.5, 1], betas={0: 8, 0.5: 12, 1: 8},
                          best_of=[4], beams=[4])
    store = SweepStore("runs/pareto.json", identity)
    results = run_sweep(decoder, prompts, ["relevant", "harmless"], points, settings, store)

A point is a method at one weight setting (`mavis.evaluation.points`); each is evaluated by
the registered method of its family (`mavis.evaluation.methods`: MAVIS, pi_ref, best-of-N,
beam search, and the fine-tuned baselines of `mavis.baselines`). Two objectives sweep
(lambda, 1 - lambda); more sweep a simplex grid (`weight_grid`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.search import BeamSettings
from mavis.errors import MavisError
from mavis.evaluation.methods import METHODS, Method, SweepPlan, SweepRun, method_for
from mavis.evaluation.points import MAVIS, REFERENCE, SweepPoint, weight_grid
from mavis.evaluation.policy import PolicyEvaluation
from mavis.evaluation.settings import EvaluationSettings
from mavis.models.value_folder import value_model_fingerprint
from mavis.paths import write_text_atomic
from mavis.prompts.base import Prompt

__all__ = ["MAVIS", "REFERENCE", "SweepPoint", "SweepStore", "by_method", "run_sweep",
           "sweep_points", "weight_grid"]

# Format 2 keeps KL budgets in nats per answer (format 1: per token; read and upgraded).
STORE_FORMAT = 2


def sweep_points(objectives: Sequence[str], lambdas: Sequence[float], *,
                 betas: float | Mapping[float, float] = 8.0,
                 best_of: Sequence[int] = (), reference: bool = True,
                 kl_budget: float | None = None, beams: Sequence[int] = (),
                 mavis: bool = True) -> list[SweepPoint]:
    """MAVIS at every weight vector of `weight_grid(objectives, lambdas)` (beta per lambda of
    the first objective when `betas` maps lambdas to betas, the paper's table 9), pi_ref,
    best-of-N for every N in `best_of` and beam search for every N in `beams`."""
    plan = SweepPlan(objectives, lambdas, betas, kl_budget, best_of, beams)
    chosen = [name for name, wanted in (("mavis", mavis), ("pi_ref", reference),
                                        ("bon", True), ("beam", True)) if wanted]
    return [point for name in chosen for point in METHODS.get(name).points(plan)]


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
                          if k not in ("format", "identity", "methods", "points",
                                       "value_models")}
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
        if saved.get("format", 1) < STORE_FORMAT:
            tokens = (saved.get("identity") or {}).get("settings", {}).get("max_new_tokens")
            saved["points"] = upgraded_points(saved.get("points", {}), tokens)
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
        data = {"format": STORE_FORMAT, "identity": self.identity,
                "methods": self.saved_methods,
                "value_models": self.value_models, **self.notes, "points": self.points}
        write_text_atomic(self.path, json.dumps(data, indent=2))


def upgraded_points(points: dict[str, Any], max_new_tokens: int | None) -> dict[str, Any]:
    """Points of a file of format 1, whose KL budgets were nats per token, with budgets in nats
    per answer (in their keys too), as format 2 keeps them."""
    upgraded = {}
    for key, record in points.items():
        budget = record.get("kl_budget")
        if budget is not None and max_new_tokens:
            per_answer = float(f"{budget * max_new_tokens:.9g}")
            record = {**record, "kl_budget": per_answer}
            key = re.sub(r"kl_budget=\S+", f"kl_budget={per_answer:g}", key)
        upgraded[key] = record
    return upgraded


def _plain(value: Any) -> Any:
    """`value` as JSON would read it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def run_sweep(decoder: MavisDecoder, prompts: Sequence[str | Prompt], objectives: Sequence[str],
              points: Sequence[SweepPoint], settings: EvaluationSettings,
              store: SweepStore | None = None, progress: bool = True, *,
              baselines: Any = None, beam: BeamSettings = BeamSettings(),
              methods: Mapping[str, Method] | None = None
              ) -> list[tuple[SweepPoint, PolicyEvaluation]]:
    """Evaluate every point not already in `store` (saving each as it finishes) with the
    method of its family (`methods`: family -> method, default the registered ones); return
    all, in the order of `points`. One progress bar counts the answers of every pending
    point. `baselines`: the fine-tuned policies the baselines' points need."""
    run = SweepRun(decoder, prompts, objectives, settings, beam, baselines)
    results = {p.key: store.done(p) if store else None for p in points}
    pending = [p for p in points if results[p.key] is None]
    chosen = {p.key: method_for(p, methods) for p in [*pending, *(
        p.same_as for p in pending if p.same_as is not None)]}
    for point in pending:  # twins already evaluated (saved, or in this sweep)
        if point.same_as is not None and store is not None and point.same_as.key not in results:
            results[point.same_as.key] = store.done(point.same_as)
    sampled = {(p.same_as or p).key: p.same_as or p for p in pending
               if p.same_as is None or results.get(p.same_as.key) is None}
    rows, counted = len(prompts) * settings.num_samples, set()
    total = sum(chosen[p.key].answers(p, rows, counted) for p in sampled.values())
    bar = tqdm(total=total, desc="sweep", unit="answer", disable=not progress or not total,
               dynamic_ncols=True)

    def evaluate(point: SweepPoint) -> PolicyEvaluation:
        bar.set_postfix_str(point.key, refresh=True)
        return chosen[point.key].evaluate(point, run, bar.update)

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


def by_method(results: Sequence[tuple[SweepPoint, PolicyEvaluation]]
              ) -> dict[str, list[PolicyEvaluation]]:
    """The evaluations grouped by method, in the order of the points (for `plot_pareto`)."""
    series: dict[str, list[PolicyEvaluation]] = {}
    for point, result in results:
        series.setdefault(point.method, []).append(result)
    return series
