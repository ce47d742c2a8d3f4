"""Every method of paper section 4 in one sweep: the pipeline of `mavis pareto`.

    points = comparison_points(["relevant", "harmless"], [0, 0.5, 1], ["mavis", "bon"],
                               best_of=[4])
    comparison = run_comparison("runs/front.png", reference=..., value_models=...,
                                prompts=prompts, points=points, settings=settings,
                                identity={...})

The methods are registered by name (`mavis.evaluation.methods`: mavis, pi_ref, bon, beam;
`mavis.baselines.methods`: morlhf, rsoup, mod); `comparison_points` asks each named method for
its points, `run_comparison` trains the fine-tuned policies its pending points need, evaluates
every point not saved yet (resumable, `SweepStore`) and writes the fronts' summary, CSV and
plot. Every fine-tuned policy is sampled on MAVIS's footing: the same prompts, top-k,
temperature, answer length and seed, through the same decoding state (the policies are its
proposal models), and every answer's log pi_ref is read from the same reference model, so every
method's KL is against the same pi_ref (equation 7).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mavis.baselines import methods as _methods  # registers morlhf, rsoup and mod
from mavis.baselines.config import MorlhfSettings
from mavis.baselines.morlhf import train_morlhf
from mavis.baselines.policy import POLICY_FILE, policy_on
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.search import BeamSettings
from mavis.errors import MavisError
from mavis.evaluation.methods import METHODS, SweepPlan, SweepRun
from mavis.evaluation.plots import check_plot_path, plot_comparison
from mavis.evaluation.points import SweepPoint
from mavis.evaluation.policy import PolicyEvaluation, evaluate_policy
from mavis.evaluation.settings import EvaluationSettings
from mavis.evaluation.summary import FrontSummary, summarise_fronts, write_points_csv
from mavis.evaluation.sweep import SweepStore, by_method, run_sweep
from mavis.models.names import DEFAULT_VALUE_DTYPE

MORLHF, RSOUP, MOD = _methods.MORLHF, _methods.RSOUP, _methods.MOD


def check_methods(methods: Sequence[str], objectives: Sequence[str]) -> list[str]:
    """The methods named, checked: registered, and able to compare `objectives`."""
    known = [name for name in METHODS.in_order() if name != "pi_ref"]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise MavisError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(known)} (pi_ref is always included)")
    for name in methods:
        METHODS.get(name).check(objectives)
    return list(methods)


def comparison_points(objectives: Sequence[str], lambdas: Sequence[float],
                      methods: Sequence[str], *, betas: float | Mapping[float, float] = 8.0,
                      best_of: Sequence[int] = (), beams: Sequence[int] = (),
                      kl_budget: float | None = None,
                      morlhf_lambdas: Sequence[float] | None = None,
                      vectors: Sequence[Mapping[str, float]] | None = None
                      ) -> list[SweepPoint]:
    """The points of a comparison: pi_ref's and every named method's (in the order the
    methods were registered), each point once. `beam` adds best-of-N at each beam count N too
    (the paper's Fig. 4 pairs them). MORLHF trains one policy per weight vector, so it may take
    a coarser grid of its own (`morlhf_lambdas`; default `lambdas`). `vectors`: the weight
    vectors themselves instead of a grid (e.g. the paper's six of Table 1)."""
    methods = check_methods(methods, objectives)
    beams = list(beams) if "beam" in methods else []
    sizes = list(dict.fromkeys([*best_of, *beams]))
    plan = SweepPlan(objectives, lambdas, betas, kl_budget, sizes, beams, morlhf_lambdas,
                     vectors)
    wanted = {"pi_ref", *methods, *(["bon"] if sizes else [])}
    points: dict[str, SweepPoint] = {}
    for name in METHODS.in_order():
        if name in wanted:
            for point in METHODS.get(name).points(plan):
                points.setdefault(point.key, point)
    return list(points.values())


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
        """The single-objective weight vectors (the corners: weight 1 on one objective)."""
        return [{name: 1.0} for name in self.objectives]

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

    def pool(self, reference: torch.nn.Module) -> _PolicyPool:
        """The policies built on `reference`, the two most recently used kept in memory."""
        if getattr(self, "_pool", None) is None or self._pool.base is not reference:
            self._pool = _PolicyPool(reference)
        return self._pool

    def sample(self, run: SweepRun, point: SweepPoint,
               proposals: list[tuple[torch.nn.Module, float]],
               on_rows: Callable[[int], None]) -> PolicyEvaluation:
        """Plain top-k sampling of a policy (the weighted combination of `proposals`) on the
        run's prompts, through its decoder, so log pi_ref comes from the same reference."""
        result = evaluate_policy(run.decoder.with_proposals(proposals), run.prompts,
                                 run.objectives, point.settings(run.settings),
                                 label=point.label, on_rows=on_rows)
        result.weights = dict(point.weights)
        return result

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


def _positive(weights: Mapping[str, float]) -> dict[str, float]:
    """The positive weights, rounded (1 - 0.7 is 0.3 here, as in the folder's name)."""
    return {name: round(float(w), 12) for name, w in weights.items() if w > 0}


def _say(message: str) -> None:
    print(f"[mavis pareto] {message}", file=sys.stderr, flush=True)


@dataclass
class Comparison:
    """What `run_comparison` wrote: every point's evaluation, the fronts' summary, and the
    files (`out` the plot, its .json the points, its .csv the table)."""

    results: list[tuple[SweepPoint, PolicyEvaluation]]
    summary: FrontSummary
    plot: Path
    points_file: Path
    table: Path


def run_comparison(out: str | Path, *, reference: str, value_models: Mapping[str, str],
                   prompts: Sequence[Any], points: Sequence[SweepPoint],
                   settings: EvaluationSettings, identity: Mapping[str, Any],
                   beam: BeamSettings = BeamSettings(), baselines: Baselines | None = None,
                   hv_reference: Mapping[str, float] | None = None,
                   command: str | None = None, title: str = "",
                   value_dtype: str = DEFAULT_VALUE_DTYPE) -> Comparison:
    """Train what is missing, evaluate what is not saved yet in `out`'s .json (whose
    `identity` must match), write the fronts' summary (hypervolumes against pi_ref, or
    `hv_reference`), the .csv and the plot `out`. `value_models`: label -> folder of the value
    models MAVIS and beam search are guided by (in `value_dtype`); `command` is kept in the
    file's notes."""
    out = check_plot_path(out, "the comparison's plot")
    objectives = list(identity["objectives"])
    methods: dict[str, Any] = {"beam": {"expand": beam.expand, "prune_every": beam.prune_every}}
    if baselines is not None:
        methods.update(baselines.method_settings())
    store = SweepStore(out.with_suffix(".json"), identity, methods, value_models=value_models)
    if baselines is not None:
        baselines.train_missing([p for p in points if store.done(p) is None])
    decoder = MavisDecoder.load(reference, list(dict.fromkeys(value_models.values())),
                                value_dtype=value_dtype)
    if command is not None:  # written once the models load: a failed start leaves no file
        commands = store.notes.get("commands", [])
        store.note("commands", [*[c for c in commands if c != command], command])
    results = run_sweep(decoder, prompts, objectives, points, settings, store,
                        baselines=baselines, beam=beam)
    summary = summarise_fronts(results, objectives, hv_reference)
    store.note("fronts", summary.to_dict())
    table = write_points_csv(out.with_suffix(".csv"), results, objectives, summary)
    series = by_method(results)
    flags = {m: [summary.dominated_in_method[p.key] for p, _ in results if p.method == m]
             for m in series}
    plot = plot_comparison(series, objectives, out, summary.hypervolume, flags,
                           title=title or " vs ".join(objectives))
    return Comparison(results, summary, plot, store.path, table)

