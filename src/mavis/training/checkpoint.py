"""Checkpoints of a training run: the best model, the resumable last state, the metrics log.

Layout of a run folder:
    best/               the value model with the lowest validation loss (ValueModel.save)
    last/               the latest value model plus `trainer_state.pt`: optimizer, scheduler,
                        step, epoch, batches done in that epoch, RNG states, best so far
    metrics.jsonl       one JSON line per evaluation
    report.json         the summary written at the end

Folders are written next to their target and renamed into place, so a run killed while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from mavis.models.value_model import ValueModel

STATE_NAME = "trainer_state.pt"


def save_model(model: ValueModel, folder: Path, extra_state: dict[str, Any] | None = None) -> None:
    """Save `model` (and, for `last`, the trainer state) to `folder`, replacing it whole."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp)
    if extra_state is not None:
        torch.save(extra_state, tmp / STATE_NAME)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)


def find_last(run_dir: Path) -> Path | None:
    """The resumable checkpoint of a run (also one interrupted between two renames)."""
    for name in ("last", "last.old"):
        if (run_dir / name / STATE_NAME).exists():
            return run_dir / name
    return None


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(folder / STATE_NAME, map_location="cpu", weights_only=False)


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
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after `step` (by a run killed before it saved them in `last`)."""
    if path.exists():
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
