"""The table of a value model's heads (`mavis report heads MODEL`): for every objective it has
a head for, how well it ranks sibling continuations on its validation trees, and what MAVIS
with that head alone at weight 1 does on held-out prompts against pi_ref and best-of-N from
pi_ref, with the KL each spends (the README's bundled-model table).

Resumable: every finished evaluation is kept in `out`/heads.json (`SweepStore`) and not run
again; writes heads.md, heads.csv and heads.png beside it.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.evaluation.plots import save_figure
from mavis.evaluation.policy import PolicyEvaluation
from mavis.evaluation.settings import EvaluationSettings
from mavis.evaluation.sweep import MAVIS, REFERENCE, SweepPoint, SweepStore, run_sweep
from mavis.models.dtypes import dtype_identity
from mavis.models.names import DEFAULT_VALUE_DTYPE
from mavis.models.value_folder import (
    TRAINING_REPORT_NAME,
    find_value_model,
    read_value_config,
)
from mavis.paths import atomic_path, write_text_atomic
from mavis.prompts.base import Prompt
from mavis.training.checkpoint import read_report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The candidate-set settings the header names when they differ from the defaults.
CANDIDATE_KNOBS = ("top_p", "min_p", "certain_p", "value_min_p", "temperature")
COLUMNS = ["objective", "sibling_accuracy", "reference_reward", "reference_reward_se",
           "mavis_reward", "mavis_reward_se", "gain", "gain_se", "beyond_2se", "mavis_kl",
           "mavis_kl_topk", "mean_beta", "best_of_n", "best_of_reward", "best_of_reward_se",
           "best_of_gain", "best_of_kl"]


def heads_points(objectives: Sequence[str], settings: EvaluationSettings, best_of: int
                 ) -> list[SweepPoint]:
    """pi_ref; MAVIS with each head alone (weight 1, the settings' guidance); best-of-N from
    pi_ref by each objective's reward (one sampling pass for all)."""
    sampling = settings.sampling
    points = [SweepPoint(REFERENCE)]
    points += [SweepPoint(MAVIS, {name: 1.0}, sampling.beta, kl_budget=sampling.kl_budget)
               for name in objectives]
    if best_of:
        points += [SweepPoint(f"best-of-{best_of}", {name: 1.0}, n=best_of)
                   for name in objectives]
    return points


def heads_report(model: str | Path, prompts: Sequence[str | Prompt], out: str | Path, *,
                 reference: str, settings: EvaluationSettings = EvaluationSettings(),
                 best_of: int = 4, identity: Mapping[str, Any] | None = None,
                 value_dtype: str = DEFAULT_VALUE_DTYPE,
                 objectives: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Evaluate what is not saved yet and write the table (one row per head: every head of
    the model, or those of `objectives`); the value model in `value_dtype` ("auto": the
    hardware's fastest)."""
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise MavisError(f"{str(out)!r} is a file; give a folder for the report")
    find_value_model(model, list(objectives or ()))  # a head it lacks is refused, named
    objectives = list(objectives or read_value_config(model).objectives)
    points = heads_points(objectives, settings, best_of)
    shared = {**(identity or {}), "reference": reference, "objectives": objectives,
              "best_of": best_of, "settings": settings.to_dict()}
    shared.update(dtype_identity(value_dtype))  # files made in float32 keep theirs
    store = SweepStore(folder / "heads.json", shared, value_models={"model": str(model)})
    if not all(store.done(p) for p in points):
        print(f"[mavis report] {len(prompts)} prompts: pi_ref, MAVIS with each of "
              f"{len(objectives)} heads, best-of-{best_of}", file=sys.stderr, flush=True)
        decoder = MavisDecoder.load(reference, [str(model)], value_dtype=value_dtype)
        results = dict((p.key, r) for p, r in run_sweep(decoder, prompts, objectives, points,
                                                         settings, store))
    else:
        results = {p.key: store.done(p) for p in points}
    table = head_rows(objectives, points, results, sibling_accuracy(model), best_of)
    _write(folder, table, model, settings, len(prompts))
    return table


def sibling_accuracy(model: str | Path) -> dict[str, float]:
    """Each head's within-sibling ranking accuracy on the validation trees, from the best
    checkpoint's training report (beside it in a run folder, or a bundle's copy in it; empty
    when there is none)."""
    for place in (Path(model), Path(model).parent):
        report = read_report(place)
        if report is not None:
            break
    else:
        copy = Path(model) / TRAINING_REPORT_NAME
        report = json.loads(copy.read_text()) if copy.is_file() else {}
    return dict((report.get("best") or {}).get("sibling_accuracy") or {})


def head_rows(objectives: Sequence[str], points: Sequence[SweepPoint],
              results: Mapping[str, PolicyEvaluation], accuracy: Mapping[str, float],
              best_of: int) -> list[dict[str, Any]]:
    """One row per objective: its head's validation accuracy, pi_ref's, MAVIS's and
    best-of-N's reward, the gains (with the standard error of MAVIS's), and the KLs."""
    reference = results[points[0].key]
    by = {(p.method, next(iter(p.weights), None)): results[p.key] for p in points[1:]}
    rows = []
    for name in objectives:
        mavis = by[(MAVIS, name)]
        gain = mavis.reward[name] - reference.reward[name]
        se = math.hypot(mavis.reward_se[name], reference.reward_se[name])
        row = {"objective": name, "sibling_accuracy": accuracy.get(name),
               "reference_reward": reference.reward[name],
               "reference_reward_se": reference.reward_se[name],
               "mavis_reward": mavis.reward[name], "mavis_reward_se": mavis.reward_se[name],
               "gain": gain, "gain_se": se, "beyond_2se": gain > 2 * se, "mavis_kl": mavis.kl,
               "mavis_kl_topk": mavis.kl_topk, "mean_beta": mavis.mean_beta}
        bon = by.get((f"best-of-{best_of}", name))
        if bon is not None:
            row.update(best_of_n=best_of, best_of_reward=bon.reward[name],
                       best_of_reward_se=bon.reward_se[name],
                       best_of_gain=bon.reward[name] - reference.reward[name],
                       best_of_kl=bon.kl)
        rows.append(row)
    return rows


def _write(folder: Path, table: list[dict[str, Any]], model: str | Path,
           settings: EvaluationSettings, prompts: int) -> None:
    with atomic_path(folder / "heads.csv") as temp, temp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    write_text_atomic(folder / "heads.md", _markdown(table, model, settings, prompts))
    _plot(table, folder / "heads.png")


def _markdown(table: list[dict[str, Any]], model: str | Path, settings: EvaluationSettings,
              prompts: int) -> str:
    sampling = settings.sampling
    guidance = (f"beta up to {sampling.beta:g} under {sampling.kl_budget:g} nats per answer"
                if sampling.kl_budget is not None else f"beta {sampling.beta:g}")
    bon = next((r["best_of_n"] for r in table if r.get("best_of_n")), None)
    defaults = SamplingSettings()
    changed = "".join(f", {name} {getattr(sampling, name):g}" for name in CANDIDATE_KNOBS
                      if getattr(sampling, name) != getattr(defaults, name))
    lines = [f"Each head of `{model}` alone (weight 1) on {prompts} held-out prompts, "
             f"{sampling.max_new_tokens} new tokens, top-{sampling.top_k}{changed}, seed "
             f"{sampling.seed}, {guidance}. Gain: over pi_ref, ± the standard error of the "
             "difference; KL: equation 7, nats per answer (over top-k: what steering added). "
             "Sibling accuracy: the head's within-sibling ranking accuracy on its validation "
             "trees.", "",
             "| objective | sibling acc. | pi_ref | MAVIS | gain | > 2 SE | KL (over top-k) |"
             + (f" best-of-{bon} | its gain | its KL |" if bon else ""),
             "| --- | ---: | ---: | ---: | ---: | :---: | ---: |"
             + (" ---: | ---: | ---: |" if bon else "")]
    for r in table:
        lines.append(
            f"| {r['objective']} | {_num(r['sibling_accuracy'])} | "
            f"{r['reference_reward']:.3f} | {r['mavis_reward']:.3f} ± {r['mavis_reward_se']:.3f}"
            f" | {r['gain']:+.3f} ± {r['gain_se']:.3f} | {'yes' if r['beyond_2se'] else 'no'} "
            f"| {r['mavis_kl']:.1f} ({r['mavis_kl_topk']:.1f}) |"
            + (f" {_num(r.get('best_of_reward'))} | {_num(r.get('best_of_gain'), '+.3f')} | "
               f"{_num(r.get('best_of_kl'), '.1f')} |" if bon else ""))
    return "\n".join(lines) + "\n"


def _plot(table: list[dict[str, Any]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(table)), 3.6))
    positions = range(len(table))
    ax.bar([p - 0.2 for p in positions], [r["gain"] for r in table], width=0.4,
           yerr=[2 * r["gain_se"] for r in table], capsize=3, label="MAVIS (± 2 SE)")
    if all(r.get("best_of_gain") is not None for r in table):
        ax.bar([p + 0.2 for p in positions], [r["best_of_gain"] for r in table], width=0.4,
               label=f"best-of-{table[0]['best_of_n']}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(positions), [r["objective"] for r in table])
    ax.set_ylabel("reward gain over pi_ref")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    save_figure(fig, out)


def _num(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)
