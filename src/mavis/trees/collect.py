"""`collect_trees`: GET_DATA (Algorithm 3) over a prompt set, written to one HDF5 tree file.

    decoder = MavisDecoder.load("smollm2-135m-instruct")
    collect_trees(decoder, load_prompts("chitchat", "train", limit=50), "relevant,harmless",
                  "runs/x/trees.h5", CollectionSettings(L=4, K_root=4, K=2))

The prompts are cut into groups of `settings.batch_prompts`; each group's trees are grown in
one batched decoding state (see `mavis.trees.grow`), scored with every objective in one call,
and written as a part file; the parts are merged into `out_path` at the end. An interrupted run
(Ctrl-C, `kill -9`) restarted with the same arguments skips the groups already written and
produces the same file as an uninterrupted run: each group's random streams come from
(seed, group index) alone.

With `settings.sampling.beta = 0` the trees are sampled from the reference model (top-k,
iteration 0); with value models and beta > 0 from the MAVIS policy (later iterations, where the
two-layer guarantee of appendix C is usually turned on).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mavis import __version__
from mavis.decoding.guide import resolve_guidance
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.objectives import get_objective, parse_objective_names
from mavis.trees.decoder_spec import DecoderSpec, decoder_info
from mavis.trees.group import PromptRecord, collect_group, prompt_records
from mavis.trees.parts import PartsFolder, describe_differences
from mavis.trees.settings import CollectionSettings
from mavis.trees.store import read_attrs


def collect_trees(decoder: Any, prompts: Sequence[Any], objectives: str | Sequence[str],
                  out_path: str | Path, settings: CollectionSettings, *,
                  progress: bool = True, meta: Mapping[str, Any] | None = None,
                  keep_parts: bool = False) -> Path:
    """Collect one tree per prompt into `out_path` (HDF5, `mavis.trees.schema`); return it.

    Args:
        decoder: a `MavisDecoder` (reference model, tokenizer, value models), or a
            `DecoderSpec` naming them (loaded only if there is work left to do).
        prompts: `mavis.prompts.Prompt` objects or plain strings, one tree each.
        objectives: names (or "a,b") of the objectives that score the leaves.
        settings: tree shape, sampling policy and seed (`CollectionSettings`); beta > 0
            needs value models, whose objectives get equal weights unless the sampling's
            weights say.
        meta: extra or overriding entries for the file's meta (e.g. "reference" as a model
            name, "prompt_set", "split", "iteration").
        keep_parts: keep the parts folder after the merge.

    If `out_path` exists and was collected with the same settings it is returned as it is;
    with other settings it is an error (so is a parts folder of another collection).
    """
    plan = prepare_collection(decoder, prompts, objectives, out_path, settings, meta)
    if plan.complete:
        return plan.out
    if plan.pending and isinstance(decoder, DecoderSpec):
        decoder = decoder.load()
    meter = Meter(len(plan.records), plan.done_prompts, enabled=progress)
    try:
        for group in plan.pending:
            chunk = [plan.records[i] for i in plan.groups[group]]
            result = collect_group(decoder, chunk, group, plan.objectives, plan.settings,
                                   plan.meta, on_step=meter.tokens)
            plan.parts.write(group, result.trees)
            meter.prompts(len(chunk))
    except KeyboardInterrupt:
        meter.close()
        print(f"interrupted: {plan.resume_hint()}", file=sys.stderr)
        raise
    meter.close()
    return plan.finish(keep_parts=keep_parts)


def prepare_collection(decoder: Any, prompts: Sequence[Any], objectives: str | Sequence[str],
                       out_path: str | Path, settings: CollectionSettings,
                       meta: Mapping[str, Any] | None) -> CollectionPlan:
    """Everything before generation: objectives built, prompts read, the guidance resolved
    (`guided_sampling`), the output and parts folder checked against the settings."""
    names = load_objectives(objectives)
    records = prompt_records(prompts)
    if isinstance(decoder, DecoderSpec):
        reference = decoder.reference
        available, described = decoder.value_model_info()
    else:
        reference, available, described = decoder_info(decoder)
    settings = replace(settings, sampling=guided_sampling(settings.sampling, available))
    return plan_collection(records, names, out_path, settings,
                           {"reference": reference, "value_models": described, **(meta or {})})


def load_objectives(objectives: str | Sequence[str]) -> list[str]:
    """Check the names and build every objective now, before any generation."""
    names = parse_objective_names(objectives)
    for name in names:
        get_objective(name)
    return names


def guided_sampling(sampling: SamplingSettings, available: Sequence[str]) -> SamplingSettings:
    """The sampling policy of the trees, resolved against the value models' objectives
    (`resolve_guidance`: no weights give each the same weight; without value models, or at
    beta 0, plain reference sampling); weights at beta 0 are an error, not ignored."""
    if sampling.beta == 0.0 and sampling.weights:
        raise MavisError("weights were given with beta=0, which samples from the reference "
                         "model alone; give beta > 0 to use the value models")
    return resolve_guidance(sampling, available)


def prompts_digest(records: Sequence[PromptRecord]) -> str:
    blob = json.dumps([[r.id, r.text, r.base_text] for r in records], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def group_indices(count: int, batch_prompts: int) -> list[list[int]]:
    """Prompt indices of every group: consecutive runs of `batch_prompts`."""
    return [list(range(s, min(s + batch_prompts, count))) for s in range(0, count, batch_prompts)]


def collection_meta(records: Sequence[PromptRecord], objectives: Sequence[str],
                    settings: CollectionSettings, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The file's meta: everything that decides its content, plus what the caller adds."""
    extra = dict(extra)
    value_models = extra.pop("value_models", [])
    weights = settings.sampling.weights
    if weights is None:
        generator: Any = "reference"
    else:
        generator = {"value_models": value_models, "beta": settings.sampling.beta,
                     "weights": weights, "top_k": settings.sampling.top_k}
    meta = {**settings.to_dict(), "weights": weights, "generator": generator,
            "objectives": list(objectives), "num_prompts": len(records),
            "prompts_sha256": prompts_digest(records),
            "iteration": 0 if weights is None else None}
    meta.update(extra)
    meta["mavis_version"] = __version__
    return json.loads(json.dumps(meta, sort_keys=True))


# provenance, and objectives scored later (`mavis data score`): they do not change the trees
_UNCHECKED = ("mavis_version", "recipe", "scored_later")


def identity(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the meta two runs must share to be the same collection."""
    return {k: v for k, v in meta.items() if k not in _UNCHECKED}


@dataclass
class CollectionPlan:
    """What a collection has to do: its groups, which are pending, where parts go."""

    out: Path
    parts: PartsFolder
    groups: list[list[int]]
    pending: list[int]
    meta: dict[str, Any]
    complete: bool
    records: list[PromptRecord]
    objectives: list[str]
    settings: CollectionSettings  # its sampling resolved (`guided_sampling`)

    @property
    def done_prompts(self) -> int:
        return sum(len(self.groups[g]) for g in range(len(self.groups))
                   if g not in set(self.pending))

    def resume_hint(self) -> str:
        """What is kept of a stopped collection, and how to go on."""
        return (f"{len(self.parts.done())} of {len(self.groups)} groups are saved in "
                f"{self.parts.root}; run the same command again to resume")

    def finish(self, keep_parts: bool = False) -> Path:
        """Merge the parts into the output file (in group order) and tidy up."""
        self.parts.merge(len(self.groups), self.meta)
        if not keep_parts:
            self.parts.remove()
        return self.out


def plan_collection(records: Sequence[PromptRecord], objectives: Sequence[str],
                    out_path: str | Path, settings: CollectionSettings,
                    extra_meta: Mapping[str, Any]) -> CollectionPlan:
    """Check the output and the parts folder against the settings; list the groups to do."""
    if not records:
        raise MavisError("no prompts to collect trees for")
    out = Path(out_path)
    meta = collection_meta(records, objectives, settings, extra_meta)
    parts = PartsFolder(out)
    groups = group_indices(len(records), settings.batch_prompts)
    if out.is_dir():
        raise MavisError(f"--out {str(out)!r} is a folder; give a file name like trees.h5")
    if out.exists():
        try:
            _, existing = read_attrs(out)
        except MavisError as exc:
            raise MavisError(f"{out} exists and is not a tree file of this collection ({exc}); "
                             "choose a new --out") from None
        if identity(existing) != identity(meta):
            raise MavisError(
                f"{out} exists and was collected with other settings "
                f"({describe_differences(identity(existing), identity(meta))}); choose a new "
                "--out, or delete the file to collect again")
        print(f"{out} is already complete (same settings); nothing to do", file=sys.stderr)
        if parts.root.exists():  # a run killed between the merge and the tidying up
            try:
                parts.open(identity(meta))
            except MavisError:
                pass  # not this collection's: leave it alone
            else:
                parts.remove()
        return CollectionPlan(out, parts, groups, [], meta, True, list(records),
                              list(objectives), settings)
    done = parts.open(identity(meta))
    pending = [g for g in range(len(groups)) if g not in done]
    if done:
        print(f"resuming: {len(groups) - len(pending)} of {len(groups)} groups already in "
              f"{parts.root}", file=sys.stderr)
    return CollectionPlan(out, parts, groups, pending, meta, False, list(records),
                          list(objectives), settings)


class Meter:
    """Progress on stderr: prompts done (rate, ETA) and generated tokens per second."""

    def __init__(self, total: int, done: int = 0, *, enabled: bool = True,
                 description: str = "collecting trees") -> None:
        self.bar = None
        self.generated = 0
        self.start = time.perf_counter()
        self.last = 0.0
        if enabled:
            self.bar = tqdm(total=total, initial=done, desc=description, unit="prompt",
                            dynamic_ncols=True, file=sys.stderr)

    def tokens(self, count: int) -> None:
        self.generated += count
        now = time.perf_counter()
        if self.bar is not None and now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(f"{self.generated / (now - self.start):.0f} tok/s",
                                     refresh=True)

    def prompts(self, count: int, tokens: int | None = None) -> None:
        if tokens is not None:
            self.generated += tokens
        if self.bar is not None:
            elapsed = time.perf_counter() - self.start
            self.bar.set_postfix_str(f"{self.generated / max(elapsed, 1e-9):.0f} tok/s",
                                     refresh=False)
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
