"""Checkpoints of a training run: the best model, the resumable last state, the metrics log.

Layout of a run folder:
    best/               the value model with the lowest validation loss (a value-model folder;
                        its README.md model card gets the run's figures when the run ends)
    last/               the latest value model plus `trainer_state.pt`: optimizer, scheduler,
                        step, epoch, batches done in that epoch, RNG states, best so far
    metrics.jsonl       one JSON line per evaluation
    report.json         the summary written at the end

Folders are written beside their target and renamed into place, so a run killed while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from mavis.errors import MavisError
from mavis.models.value_folder import BEST_DIR, replace_folder
from mavis.models.value_model import ValueModel
from mavis.paths import write_text_atomic

STATE_NAME = "trainer_state.pt"
LAST_DIR = "last"
REPORT_NAME = "report.json"
METRICS_NAME = "metrics.jsonl"


def save_model(model: ValueModel, folder: Path, extra_state: dict[str, Any] | None = None,
               training: dict[str, Any] | None = None) -> None:
    """Save `model` (and, for `last`, the trainer state) to `folder`, replacing it whole; its
    model card tells what `training` knows of the run (see `mavis.models.model_card`)."""
    staging = folder.with_name(folder.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.write_files(staging, training)
    if extra_state is not None:
        torch.save(extra_state, staging / STATE_NAME)
    replace_folder(staging, folder)


def find_last(run_dir: Path) -> Path | None:
    """The resumable checkpoint of a run (also one interrupted between two renames)."""
    candidates = [run_dir / LAST_DIR] + sorted(run_dir.glob(f".{LAST_DIR}.old-*"))
    for folder in candidates:
        if (folder / STATE_NAME).exists():
            return folder
    return None


def best_folder(run_dir: Path) -> Path:
    return run_dir / BEST_DIR


def load_state(folder: Path) -> dict[str, Any]:
    try:
        return torch.load(folder / STATE_NAME, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise MavisError(f"the training checkpoint {str(folder)!r} is damaged ({exc}); delete "
                         "it to start the run again") from None


def read_report(run_dir: Path) -> dict[str, Any] | None:
    """The report of a finished (or stopped) run, None when there is none yet."""
    path = run_dir / REPORT_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MavisError(f"{str(path)!r} is damaged ({exc}); delete it and resume the "
                         "run") from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON through `atomic_path` (beside `path`, then renamed into place)."""
    write_text_atomic(path, json.dumps(data, indent=2))


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics log; a last line cut short by a crash is left out."""
    if not path.exists():
        return []
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise MavisError(f"{str(path)!r} is damaged: it is not UTF-8 text") from None
    records = []
    for index, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if index < len(lines) - 1:
                raise MavisError(f"{str(path)!r} is damaged at line {index + 1}") from None
            continue
        if not isinstance(record, dict):
            raise MavisError(f"{str(path)!r} is damaged at line {index + 1}: not a JSON object")
        records.append(record)
    return records


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after `step` (by a run killed before it saved them in `last`)."""
    if path.exists():
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        write_json_lines(path, kept)


def write_json_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
