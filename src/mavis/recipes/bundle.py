"""`mavis bundle RUN NAME`: copy a trained value model into the package, with its provenance.

RUN is a `mavis iterate` run folder (the value model of one iteration is taken: the last by
default) or a `mavis train` output folder. The model's files land in the package's
`assets/value_models/NAME/` (or `--into FOLDER`) beside a PROVENANCE.md that records the
command, the recipe, the training data, the validation figures and the held-out evaluation, and
a model card (README.md) with the run's figures, ready for `hf upload`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.models.bundled import BUNDLED_DIR
from mavis.models.model_card import model_card
from mavis.models.value_folder import (
    CARD_NAME,
    TRAINING_REPORT_NAME,
    copy_value_model,
    find_value_model,
    read_value_config,
)
from mavis.paths import check_writable
from mavis.recipes.iterate import RESULTS, read_results
from mavis.training.checkpoint import read_report

PROVENANCE = "PROVENANCE.md"


def bundle_run(run: str | Path, name: str, *, iteration: int | None = None,
               into: str | Path = BUNDLED_DIR) -> Path:
    """Copy the value model of `run` to `into/name` with a PROVENANCE.md; return the folder."""
    run = Path(run).expanduser()
    if not re.fullmatch(r"[\w.-]+", name):
        raise MavisError(f"bundle name {name!r} must be letters, digits, '.', '-' or '_'")
    if iteration is not None and (isinstance(iteration, bool) or iteration < 0):
        raise MavisError(f"--iteration is {iteration}; give a whole number >= 0 (an iteration "
                         "of the run), or leave it out for the last trained")
    recipe, train_dir, iteration = _locate(run, iteration)
    report = read_report(train_dir)
    if report is None:
        raise MavisError(f"{str(train_dir)!r} holds no finished training (no report.json)")
    if "models" in report:
        raise MavisError(f"{str(train_dir)!r} holds one value model per objective "
                         f"({', '.join(report['models'])}); bundle each run folder on its own")
    source = find_value_model(train_dir, report["objectives"])
    folder = Path(into).expanduser() / name
    check_writable(folder, folder=True, what="the bundle folder")
    results = [r for r in read_results(run / RESULTS) if r.get("iteration") == iteration]
    command = (f"mavis bundle {run} {name}"
               + (f" --iteration {iteration}" if iteration is not None else "")
               + (f" --into {into}" if Path(into) != BUNDLED_DIR else ""))
    text = provenance(name, command, recipe, report, results)
    card = model_card(read_value_config(source), report)
    return copy_value_model(source, folder, {PROVENANCE: text, CARD_NAME: card,
                                             TRAINING_REPORT_NAME: json.dumps(report, indent=2)})


def _locate(run: Path, iteration: int | None) -> tuple[dict[str, Any] | None, Path, int | None]:
    """(recipe, training folder, iteration) of a recipe run or a plain training folder."""
    if not run.is_dir():
        raise MavisError(f"{str(run)!r} " + ("is a file, not" if run.exists() else "is not")
                         + " a run folder; give a `mavis iterate` or `mavis train` output "
                         "folder")
    recipe_path = run / "recipe.json"
    if not recipe_path.exists():
        if iteration is not None:
            raise MavisError(f"--iteration needs a `mavis iterate` run; {str(run)!r} has no "
                             "recipe.json")
        return None, run, None
    recipe = json.loads(recipe_path.read_text())
    done = sorted(int(p.name[4:]) for p in run.glob("iter*")
                  if p.name[4:].isdigit() and (p / "value_models").is_dir())
    if not done:
        raise MavisError(f"{str(run)!r} has no trained iteration yet")
    iteration = done[-1] if iteration is None else iteration
    if iteration not in done:
        raise MavisError(f"{str(run)!r} has no value models for iteration {iteration} "
                         f"(it has {', '.join(map(str, done))})")
    return recipe, run / f"iter{iteration}" / "value_models", iteration


def provenance(name: str, command: str, recipe: dict[str, Any] | None,
               report: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The PROVENANCE.md of a bundled value model."""
    lines = [f"# Value model `{name}`", "", f"Bundled with `{command}`."]
    if recipe is not None:
        lines += ["", f"Trained by `mavis iterate {recipe.get('path', '')}`.", "", "## Recipe",
                  "```json", json.dumps(recipe.get("recipe", recipe), indent=2), "```"]
    else:
        teachers = report.get("teachers")
        how = ("Distilled by `mavis distill` from the teachers " + ", ".join(
            f"`{name}`={path}" for name, path in teachers.items()) if teachers
            else "Trained by `mavis train`")
        lines += ["", f"{how} on `{report.get('data_file', '?')}` "
                  f"({report.get('steps', '?')} steps, {report.get('seconds', 0) / 60:.0f} "
                  "minutes).", "", "## Training settings", "```json",
                  json.dumps(report.get("config", {}), indent=2), "```"]
    lines += ["", "## Training data", "```json", json.dumps(report.get("data", {}), indent=2),
              "```",
              "## Validation (held-out prompts' tree nodes, best checkpoint)", "```json",
              json.dumps(report.get("best", {}), indent=2), "```",
              "## Value scale and range per objective", "```json",
              json.dumps({"scale": report.get("value_scale", {}),
                          "range": report.get("value_range", {})}, indent=2), "```"]
    if results:
        lines += ["## Held-out evaluation (test prompts; pi_ref vs MAVIS, KL of equation 7)",
                  "", "| iteration | objective | beta | pi_ref reward | MAVIS reward | KL |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['iteration']} | {r['objective']} | {r['beta']:g} | "
                  f"{r['reference_reward']:.3f} ± {r['reference_reward_se']:.3f} | "
                  f"{r['mavis_reward']:.3f} ± {r['mavis_reward_se']:.3f} | "
                  f"{r['mavis_kl']:.2f} ± {r['mavis_kl_se']:.2f} |" for r in results]
    return "\n".join(lines) + "\n"
