"""Tables of finished runs, as Markdown, CSV and PNG (`mavis report ...`).

- `iteration_report(run)`: reward and KL per iteration of Algorithm 1 on the held-out test
  prompts, read from a `mavis iterate` run's results.jsonl (paper Fig. 6 / Theorem 1: each
  iteration should improve the reward at a similar KL).
- `distill_report(student, ...)`: MAVIS guided by the per-objective teachers vs by the
  distilled multi-head student (`mavis distill`), per objective: reward, KL and decoding
  speed (paper Table 3). The evaluations run here (resumable: every finished one is kept in
  the report's JSON files); the teachers are read from the student's run report unless given.

Every report writes `<name>.md`, `<name>.csv`, `<name>.json` and `<name>.png` into one folder.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.evaluation.plots import plot_iterations, save_figure
from mavis.evaluation.policy import PolicyEvaluation
from mavis.evaluation.settings import EvaluationSettings
from mavis.evaluation.sweep import MAVIS, SweepPoint, SweepStore, run_sweep
from mavis.models.value_folder import find_value_model
from mavis.models.value_hub import value_model_folder
from mavis.paths import atomic_path
from mavis.prompts.base import Prompt
from mavis.recipes.iterate import RESULTS, read_results
from mavis.training.checkpoint import read_report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ITERATION_COLUMNS = ["iteration", "objective", "beta", "zeta", "reference_reward",
                     "reference_reward_se", "mavis_reward", "mavis_reward_se", "gain",
                     "change", "mavis_kl", "mavis_kl_se", "val_sibling_accuracy",
                     "val_within_prompt_spearman", "test_prompts", "samples"]


def iteration_report(run: str | Path, out: str | Path) -> list[dict[str, Any]]:
    """Reward and KL per iteration and objective from `run`/results.jsonl, with the gain
    over pi_ref and the change from the iteration before; written to `out`/iterations.*."""
    path = Path(run).expanduser() / RESULTS
    if Path(run).expanduser().is_file():
        raise MavisError(f"{str(run)!r} is a file; give the folder `mavis iterate` wrote (the "
                         "recipe's `out`, holding results.jsonl)")
    if not path.is_file():
        raise MavisError(f"no {RESULTS} in {str(run)!r}; run `mavis iterate RECIPE` first "
                         "(its output folder is the recipe's `out`)")
    rows = sorted(_checked_rows(read_results(path), path),
                  key=lambda r: (r["objective"], r["iteration"]))
    if not rows:
        raise MavisError(f"{path} holds no evaluated iteration yet")
    table = []
    for row in rows:
        before = [r for r in table if r["objective"] == row["objective"]]
        entry = {key: row.get(key) for key in ITERATION_COLUMNS}
        entry["gain"] = row["mavis_reward"] - row["reference_reward"]
        entry["change"] = row["mavis_reward"] - before[-1]["mavis_reward"] if before else None
        table.append(entry)
    folder = _folder(out)
    _write_csv(folder / "iterations.csv", table, ITERATION_COLUMNS)
    plot_iterations(rows, folder / "iterations.png")
    (folder / "iterations.md").write_text(_iteration_markdown(table, path))
    return table


# What a row of results.jsonl holds (`mavis iterate` writes them): required, and optional.
_ROW_NUMBERS = ("beta", "zeta", "reference_reward", "mavis_reward", "mavis_kl")
_ROW_OPTIONAL = ("reference_reward_se", "mavis_reward_se", "mavis_kl_se",
                 "val_sibling_accuracy", "val_within_prompt_spearman")


def _checked_rows(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """The rows, each checked to be what `mavis iterate` writes (a MavisError names the row
    and the key that is not)."""
    def real(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    for number, row in enumerate(rows, start=1):
        wrong = [key for key in _ROW_NUMBERS if not real(row.get(key))]
        wrong += [key for key in _ROW_OPTIONAL if row.get(key) is not None
                  and not real(row[key])]
        if not isinstance(row.get("objective"), str):
            wrong.append("objective")
        if not isinstance(row.get("iteration"), int) or isinstance(row.get("iteration"), bool):
            wrong.append("iteration")
        if wrong:
            raise MavisError(f"{path}: row {number} is not a result of `mavis iterate` (its "
                             f"{', '.join(wrong)} missing or of the wrong type); run the recipe "
                             "again to rewrite it")
    return rows


def _iteration_markdown(table: list[dict[str, Any]], source: Path) -> str:
    lines = [f"Reward and KL per iteration on held-out test prompts (from `{source}`). "
             "Gain: over pi_ref; change: over the iteration before. KL: equation 7, "
             "nats per answer, against pi_ref. Sibling accuracy: how often the value model "
             "ranks two sibling continuations as their returns do, on the validation part of "
             "that iteration's own trees (iteration 0: sampled from pi_ref; later ones: from "
             "MAVIS), so it is not comparable across iterations.", "",
             "| objective | iteration | beta | zeta | pi_ref reward | MAVIS reward | gain | "
             "change | KL | sibling acc. (val) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        lines.append(
            f"| {r['objective']} | {r['iteration']} | {r['beta']:g} | {r['zeta']:g} | "
            f"{_pm(r['reference_reward'], r['reference_reward_se'])} | "
            f"{_pm(r['mavis_reward'], r['mavis_reward_se'])} | {r['gain']:+.3f} | "
            f"{'' if r['change'] is None else format(r['change'], '+.3f')} | "
            f"{_pm(r['mavis_kl'], r['mavis_kl_se'], 2)} | {_number(r['val_sibling_accuracy'])} |")
    return "\n".join(lines) + "\n"


# -- distillation ---------------------------------------------------------------------------
TEACHERS, STUDENT = "teachers", "student"


def distill_report(student: str | Path, prompts: Sequence[str | Prompt], out: str | Path, *,
                   reference: str, betas: Mapping[str, float],
                   settings: EvaluationSettings = EvaluationSettings(),
                   teachers: Mapping[str, str | Path] | None = None,
                   identity: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """MAVIS with the teachers vs with the distilled student on `prompts`: for every
    objective alone (weight 1, beta from `betas`), and for all objectives with equal weights
    (beta: their mean), reward, KL and decoding speed; written to `out`/distill.*.

    `student`: the `mavis distill` output folder (or its `best` model). Teachers (folders or
    hub ids): `teachers`, else the ones its run report names. Resumable: every finished
    evaluation is kept in `out`/distill-teachers.json and distill-student.json and not run
    again."""
    model, run = student_folders(student)
    teachers = {k: str(v) for k, v in (teachers or teachers_of(run)).items()}
    names = list(teachers)
    model = find_value_model(model, names)
    missing = [n for n in names if n not in betas]
    if missing:
        raise MavisError(f"no beta for {', '.join(missing)}; give one per objective")
    folder = _folder(out)
    cases = [({n: 1.0}, float(betas[n])) for n in names]
    if len(names) > 1:
        cases.append(({n: 1.0 / len(names) for n in names},
                      sum(float(betas[n]) for n in names) / len(names)))
    shared = {**(identity or {}), "reference": reference, "objectives": names,
              "betas": dict(betas), "settings": settings.to_dict()}
    results = {}
    for method, given in ((TEACHERS, teachers), (STUDENT, {n: str(model) for n in names})):
        folders = {name: value_model_folder(path) for name, path in given.items()}  # hub ids
        store = SweepStore(folder / f"distill-{method}.json", {**shared, method: given},
                           value_models={STUDENT: model} if method == STUDENT else folders)
        points = [SweepPoint(MAVIS, w, beta) for w, beta in cases]
        if all(store.done(p) for p in points):
            results[method] = [store.done(p) for p in points]
            continue
        _say(f"MAVIS with the {method}: {len(points)} evaluations")
        decoder = MavisDecoder.load(reference, folders)
        results[method] = [r for _, r in run_sweep(decoder, prompts, names, points, settings,
                                                   store)]
    table = _distill_rows(names, cases, results)
    _write_csv(folder / "distill.csv", table, list(table[0]))
    _plot_distill(table, folder / "distill.png")
    (folder / "distill.md").write_text(_distill_markdown(table, teachers, model))
    return table


def student_folders(student: str | Path) -> tuple[Path, Path]:
    """(the student's model folder, its run folder) from either."""
    path = Path(student).expanduser()
    run = path if read_report(path) is not None else path.parent
    if read_report(run) is None:
        raise MavisError(f"{str(student)!r} is not a `mavis distill` output folder (no "
                         "report.json in it or above it)")
    return path, run


def teachers_of(run: Path) -> dict[str, str]:
    teachers = (read_report(run) or {}).get("teachers")
    if not teachers:
        raise MavisError(f"the run report in {run} names no teachers; give them with "
                         "--teacher OBJECTIVE=PATH")
    return dict(teachers)


def _distill_rows(names: list[str], cases: list[tuple[dict[str, float], float]],
                  results: dict[str, list[PolicyEvaluation]]) -> list[dict[str, Any]]:
    """One row per case: the reward it is judged by (its objective's, or the equal-weights
    mean), KL and speed of teachers and student."""
    table = []
    for index, (weights, beta) in enumerate(cases):
        row: dict[str, Any] = {"case": ",".join(weights) if len(weights) == 1 else
                               "all (equal weights)", "beta": beta}
        for method in (TEACHERS, STUDENT):
            result = results[method][index]
            reward = result.weighted_reward(weights)
            se = max(result.reward_se[n] for n in weights) if len(weights) > 1 else \
                result.reward_se[next(iter(weights))]
            row.update({f"{method}_reward": reward, f"{method}_reward_se": se,
                        f"{method}_kl": result.kl, f"{method}_kl_se": result.kl_se,
                        f"{method}_tokens_per_second": result.tokens_per_second})
        row["reward_loss"] = row["teachers_reward"] - row["student_reward"]
        row["speedup"] = (row["student_tokens_per_second"] / row["teachers_tokens_per_second"]
                          if row["teachers_tokens_per_second"] else None)
        table.append(row)
    return table


def _distill_markdown(table: list[dict[str, Any]], teachers: Mapping[str, str],
                      student: Path) -> str:
    named = ", ".join(f"{k}: `{v}`" for k, v in teachers.items())
    lines = [f"MAVIS guided by the teachers ({named}) vs by the distilled student "
             f"(`{student}`), same prompts, seed and beta. Reward: "
             "the case's objective (all: the mean over objectives, SE: the largest); KL: "
             "equation 7 against pi_ref; speed: answer tokens decoded per second (wall clock, "
             "on this machine while it ran).", "",
             "| case | beta | teachers reward | student reward | loss | teachers KL | "
             "student KL | teachers tok/s | student tok/s | speed-up |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        lines.append(
            f"| {r['case']} | {r['beta']:g} | "
            f"{_pm(r['teachers_reward'], r['teachers_reward_se'])} | "
            f"{_pm(r['student_reward'], r['student_reward_se'])} | {r['reward_loss']:+.3f} | "
            f"{_pm(r['teachers_kl'], r['teachers_kl_se'], 2)} | "
            f"{_pm(r['student_kl'], r['student_kl_se'], 2)} | "
            f"{r['teachers_tokens_per_second']:.1f} | {r['student_tokens_per_second']:.1f} | "
            f"{_number(r['speedup'], '.2f')}x |")
    return "\n".join(lines) + "\n"


def _plot_distill(table: list[dict[str, Any]], out: Path) -> Path:
    """Reward (left), KL (middle) and decoding speed (right) of teachers and student, per
    case."""
    fig, (reward_ax, kl_ax, speed_ax) = plt.subplots(1, 3, figsize=(14, 3.8))
    positions = range(len(table))
    for offset, method in ((-0.2, TEACHERS), (0.2, STUDENT)):
        xs = [p + offset for p in positions]
        reward_ax.bar(xs, [r[f"{method}_reward"] for r in table], width=0.4, label=method,
                      yerr=[r[f"{method}_reward_se"] for r in table], capsize=3)
        kl_ax.bar(xs, [r[f"{method}_kl"] for r in table], width=0.4, label=method,
                  yerr=[r[f"{method}_kl_se"] for r in table], capsize=3)
        speed_ax.bar(xs, [r[f"{method}_tokens_per_second"] for r in table], width=0.4,
                     label=method)
    for ax, label in ((reward_ax, "mean reward (held-out prompts)"),
                      (kl_ax, "KL to pi_ref per answer (nats)"),
                      (speed_ax, "answer tokens per second")):
        ax.set_xticks(list(positions), [r["case"] for r in table], fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    save_figure(fig, out)
    return out


# -- shared ---------------------------------------------------------------------------------
def _folder(out: str | Path) -> Path:
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise MavisError(f"{str(out)!r} is a file; give a folder for the report")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with atomic_path(path) as temp, temp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _pm(value: float | None, se: float | None, digits: int = 3) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f} ± {se:.{digits}f}" if se is not None else f"{value:.{digits}f}"


def _number(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def _say(message: str) -> None:
    print(f"[mavis report] {message}", file=sys.stderr, flush=True)
