"""Value-model distillation (appendix E): one backbone, one head per objective, trained to
reproduce each objective's teacher value model.

The teachers read every completion token of the collected sequences (the tree paths); the
student regresses all its heads on those values at the same tokens with the MSE of `masked_mse`.
Trees are packed here too: the tokens of a packed tree are exactly the distinct prefixes of all
its paths, so every completion state is scored once, by teachers and student alike. Each
teacher's values are saved in `out_dir/teacher_values/` as soon as they are computed, so a
resumed (or repeated) distillation does not score the trees again.

With several processes (`torchrun`, `accelerate launch`) each teacher scores every world-th
batch in each process, the values are gathered into all of them and the first process saves
them; the student then trains data-parallel as `mavis train` does (see `parallel`).

    distill({"relevant": "runs/rel/best", "harmless": "runs/harm/best"},
            "smollm2-135m-instruct", "trees.h5", "runs/student")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState

from mavis.errors import MavisError
from mavis.models.loading import DEFAULT_MODEL, load_tokenizer, tokenizer_fingerprint
from mavis.models.value_folder import read_value_config, value_model_fingerprint
from mavis.models.value_hub import value_model_folder
from mavis.models.value_model import ValueModel
from mavis.paths import atomic_path
from mavis.progress import track
from mavis.training.config import TrainConfig
from mavis.training.packing import Unit, collate, fit_length, pack_tree, plan_batches, predict
from mavis.training.parallel import from_main_process, gather_in_order
from mavis.training.samples import Samples
from mavis.training.targets import split_prompts
from mavis.training.trainer import fit, initial_model, make_accelerator
from mavis.trees.store import read_trees
from mavis.trees.table import TreeTable


def distill(teachers: dict[str, str | Path], student_base: str | None,
            data: str | Path | TreeTable, out_dir: str | Path, *,
            config: TrainConfig | None = None, resume: bool = False) -> dict[str, Any]:
    """Train one student with a head per teacher objective; return the run report.

    teachers: objective name -> value-model folder or hub id `org/name[@revision]` (a teacher
    with several heads must have one named like the objective; the report records them as
    given). student_base: the student's backbone (None: `config.base`).
    config: optimisation, LoRA, layers, validation split, packing (defaults: `TrainConfig()`);
    its target and node-selection settings do not apply. In distillation a "sample" of
    `batch_size` is one completion token. The student lands in `out_dir/best`.
    """
    if not teachers:
        raise MavisError("distillation needs at least one teacher (objective=PATH)")
    given = {name: str(spec) for name, spec in teachers.items()}
    teachers = {name: value_model_folder(spec) for name, spec in teachers.items()}
    config = config or TrainConfig()
    objectives = list(teachers)
    config = dataclasses.replace(config, objectives=objectives, shared=True,
                                 base=student_base or config.base or DEFAULT_MODEL)
    trees = data if isinstance(data, TreeTable) else read_trees(data)
    make_accelerator(config)  # this process's device (and its group of processes)

    train_prompts, val_prompts = split_prompts(trees.num_prompts, config.validation_fraction,
                                               config.seed)
    train_units = _token_units(trees, train_prompts, len(objectives), config)
    val_units = _token_units(trees, val_prompts, len(objectives), config)
    ranges = _saved_ranges(teachers)
    units = train_units + val_units
    columns = {name: column for column, name in enumerate(objectives)}
    for path, names in _by_folder(teachers).items():  # one teacher in memory at a time,
        _fill_teacher_values(path, names, columns, units, config, ranges,  # one pass each
                             Path(out_dir).expanduser() / "teacher_values")

    samples = Samples(
        train=train_units, val=val_units,
        value_range={**_observed_ranges(train_units, objectives), **ranges},
        value_scale=_saved_scales(teachers),
        sizes={"prompts_train": len(train_prompts), "prompts_val": len(val_prompts),
               "tokens_train": int(sum(u.num_reads for u in train_units)),
               "tokens_val": int(sum(u.num_reads for u in val_units)),
               "tokens_per_epoch_train": int(sum(len(u) for u in train_units))},
    )
    extra = {"teachers": given} | ({} if isinstance(data, TreeTable) else {"data_file": str(data)})
    return fit(lambda: initial_model(config, objectives), samples, config, out_dir,
               resume=resume, extra_report=extra)


def _by_folder(teachers: dict[str, str | Path]) -> dict[Path, list[str]]:
    """The objectives each teacher folder is named for: a multi-head teacher given for
    several objectives (`--teacher relevant=M --teacher harmless=M`) reads the trees once."""
    groups: dict[Path, list[str]] = {}
    for name, path in teachers.items():
        groups.setdefault(Path(path).expanduser().resolve(), []).append(name)
    return groups


def _load_teacher(names: list[str], path: str | Path, config: TrainConfig) -> ValueModel:
    """Load a teacher (LoRA merged, eval mode) after checking its heads and tokenizer."""
    teacher = ValueModel.load(path, merge=True, attn_implementation=config.attn_implementation)
    missing = [name for name in names if name not in teacher.objectives]
    if len(teacher.objectives) > 1 and missing:
        raise MavisError(f"teacher {str(path)!r} has heads {', '.join(teacher.objectives)}, "
                         f"none named {', '.join(map(repr, missing))}")
    teacher.check_tokenizer(tokenizer_fingerprint(load_tokenizer(config.base)),
                            f"the student base {config.base!r}",
                            f"the {names[0]!r} teacher and a distilled value model must read "
                            "the same ids")
    return teacher.eval()


def _teacher_column(teacher: ValueModel, name: str) -> int:
    return teacher.objectives.index(name) if name in teacher.objectives else 0


def _token_units(trees: TreeTable, prompts: np.ndarray, width: int,
                 config: TrainConfig) -> list[Unit]:
    """Packed trees read at every completion token, targets still NaN."""
    units: list[Unit] = []
    for prompt in prompts.tolist():
        nodes = [n for n in trees.tree(prompt) if trees.depth[n] > 0]
        prompt_tokens, kept = fit_length(trees, prompt, nodes, config.max_length)
        units.extend(pack_tree(trees, prompt, kept, prompt_tokens, None, every_token=True,
                               max_tokens=config.max_pack_tokens,
                               max_reads=config.batch_size, num_objectives=width))
    return [unit for unit in units if unit.num_reads]


def _fill_teacher_values(path: Path, names: list[str], columns: dict[str, int],
                         units: list[Unit], config: TrainConfig,
                         ranges: dict[str, list[float]], folder: Path) -> None:
    """Write the teacher's values for each of `names` (clamped to its trained range, as the
    decoder clamps them) into that objective's column of the units' targets. An objective's
    values are read from `folder/NAME.npz` when they were saved there for the same teacher and
    units; the others are computed in one pass of the teacher and saved (the first process
    reads and writes the files; every process gets the values)."""
    main = PartialState().is_main_process
    keys = {name: _teacher_key(path, units, ranges.get(name)) for name in names}
    count = sum(u.num_reads for u in units)
    found = from_main_process(  # the first process decides for all
        {name: _cached_values(folder / f"{name}.npz", keys[name], count) for name in names}
        if main else None)
    missing = [name for name in names if found[name] is None]
    if missing:
        teacher = _load_teacher(missing, path, config)
        computed = _teacher_values(teacher, missing, units, config,
                                   [ranges.get(name) for name in missing])
        del teacher
        for name, values in zip(missing, computed.T, strict=True):
            found[name] = values
            if main:
                with atomic_path(folder / f"{name}.npz") as temp, temp.open("wb") as handle:
                    np.savez(handle, values=values, key=np.array(keys[name]))
    for name in names:
        start = 0
        for unit in units:
            unit.targets[:, columns[name]] = found[name][start:start + unit.num_reads]
            start += unit.num_reads


def _teacher_values(teacher: ValueModel, names: list[str], units: list[Unit],
                    config: TrainConfig, clamps: list[list[float] | None]) -> np.ndarray:
    """The teacher's values for `names` at every read of `units`, in order, as one float32
    array [reads, len(names)]. With several processes each scores every world-th batch, and
    every process gets all values."""
    heads = [_teacher_column(teacher, name) for name in names]
    state = PartialState()  # as `make_accelerator` set it up: the device of this process
    teacher.to(state.device)
    dtype = teacher.head.weight.dtype
    low = torch.tensor([c[0] if c else -torch.inf for c in clamps], device=state.device)
    high = torch.tensor([c[1] if c else torch.inf for c in clamps], device=state.device)
    batches = plan_batches(units, config.batch_size)
    mine = range(state.process_index, len(batches), state.num_processes)
    pieces = []
    with torch.no_grad():
        for index in track(mine, f"teacher {', '.join(names)}", total=len(mine), unit="batch",
                           disable=not (config.progress and state.is_main_process)):
            chosen = [units[i] for i in batches[index]]
            values = predict(teacher, collate(chosen, dtype).to(state.device))[:, heads]
            values = values.float().clamp(low, high)
            pieces.append((index, values.cpu().numpy()))
    out = np.empty((sum(u.num_reads for u in units), len(names)), dtype=np.float32)
    offsets = np.cumsum([0] + [u.num_reads for u in units])
    for indices, values in zip(batches, gather_in_order(pieces), strict=True):
        start = 0
        for i in indices:
            out[offsets[i]:offsets[i + 1]] = values[start:start + units[i].num_reads]
            start += units[i].num_reads
    return out


def _teacher_key(path: str | Path, units: list[Unit], clamp: list[float] | None) -> str:
    """What a teacher's saved values depend on: its model files' contents, the exact
    sequences it reads, and the clamp."""
    digest = hashlib.sha256()
    digest.update(value_model_fingerprint(path).encode())
    digest.update(json.dumps(clamp).encode())
    for unit in units:
        for array in (unit.tokens, unit.positions, unit.segment, unit.ancestry, unit.reads):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _cached_values(cache: Path, key: str, count: int) -> np.ndarray | None:
    """The values saved in `cache` under `key` (None: missing, stale or unreadable)."""
    try:
        with np.load(cache) as saved:
            if str(saved["key"]) != key or len(saved["values"]) != count:
                return None
            return saved["values"].astype(np.float32)
    except (OSError, KeyError, ValueError):
        return None


def _saved_ranges(teachers: dict[str, str | Path]) -> dict[str, list[float]]:
    """Each teacher's trained value range for its objective, where it saved one."""
    return {name: [float(v) for v in value]
            for name, value in _teacher_settings(teachers, "value_range").items()}


def _saved_scales(teachers: dict[str, str | Path]) -> dict[str, float]:
    """Each teacher's value scale (typical sibling difference) for its objective, where it
    saved one: the student's values stand for the teacher's, so the decoder divides them by
    the same scale, and a beta means the same guidance with the student as with the teacher."""
    return {name: float(value)
            for name, value in _teacher_settings(teachers, "value_scale").items()}


def _teacher_settings(teachers: dict[str, str | Path], setting: str) -> dict[str, Any]:
    """Per objective, the teacher's saved per-objective `setting` of its value config: the
    entry named like the objective, or a one-objective teacher's only entry."""
    out = {}
    for name, path in teachers.items():
        own = getattr(read_value_config(path), setting)
        value = own.get(name) if name in own else (
            next(iter(own.values())) if len(own) == 1 else None)
        if value:
            out[name] = value
    return out


def _observed_ranges(units: list[Unit], objectives: list[str]) -> dict[str, list[float]]:
    """The range of the teachers' values seen in training, for teachers without a saved one."""
    if not units:
        return {}
    values = np.concatenate([u.targets for u in units])
    return {name: [float(np.nanmin(values[:, c])), float(np.nanmax(values[:, c]))]
            for c, name in enumerate(objectives)}
