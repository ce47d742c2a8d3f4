"""Tree collection sharded over Ray workers: each worker loads the models itself, collects the
groups it is handed and writes their part files into the shared parts folder; the driver
merges them.

Groups are the same as in `collect_trees` (consecutive runs of `batch_prompts` prompts) and a
group's random streams depend on (seed, group index) only, so the merged file has the same
content as a single-process run with the same arguments, whichever worker took which group.
Workers share the parts folder through the file system: one machine, or a cluster with a
shared disk. A run interrupted here resumes in either mode.

    collect_trees_distributed("smollm2-135m-instruct", prompts, "relevant,harmless",
                              "runs/x/trees.h5", CollectionSettings(workers=4))

Ray is an optional extra: `pip install mavis-align[distributed]`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mavis.errors import MavisError
from mavis.trees.collect import (
    CollectionPlan,
    Meter,
    load_objectives,
    prepare_collection,
)
from mavis.trees.decoder_spec import DecoderSpec
from mavis.trees.group import PromptRecord, collect_group
from mavis.trees.settings import CollectionSettings
from mavis.trees.store import write_trees


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MavisError("distributed collection needs Ray: pip install "
                         "'mavis-align[distributed]'") from None
    return ray


class _Worker:
    """One Ray actor: a decoder loaded once, then groups collected one call at a time."""

    def __init__(self, spec: DecoderSpec, threads: int | None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.decoder = spec.load()

    def collect(self, group: int, records: list[PromptRecord], objectives: list[str],
                settings: CollectionSettings, meta: dict[str, Any], part: str
                ) -> tuple[int, int, int]:
        load_objectives(objectives)
        result = collect_group(self.decoder, records, group, objectives, settings, meta)
        write_trees(part, result.trees, attrs={"group": group})
        return group, len(records), result.generated_tokens


def collect_trees_distributed(
        reference: str, prompts: Sequence[Any], objectives: str | Sequence[str],
        out_path: str | Path, settings: CollectionSettings, *,
        value_models: Mapping[str, str | Path] | Sequence[str | Path] = (),
        progress: bool = True, meta: Mapping[str, Any] | None = None,
        keep_parts: bool = False, address: str | None = None, num_cpus: int | None = None,
        cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, device: str | None = None,
        dtype: str | None = None, threads_per_worker: int | None = None,
        ray_init: Mapping[str, Any] | None = None) -> Path:
    """`collect_trees` with the groups spread over `settings.workers` Ray actors.

    Models are given by name or path (each worker loads its own copy). `address` connects to
    a running Ray cluster (e.g. "auto" or "ray://host:10001"); without it a local cluster with
    `num_cpus` CPUs (default: `workers * cpus_per_worker`) is started, and shut down at the end.
    `threads_per_worker` sets torch's thread count in each worker (default: Ray's setting,
    one thread per CPU it reserved). Other arguments are those of `collect_trees`.
    """
    workers = settings.workers
    ray = _ray()
    spec = DecoderSpec(reference, dict(value_models) if isinstance(value_models, Mapping)
                       else [str(p) for p in value_models], device=device, dtype=dtype)
    plan = prepare_collection(spec, prompts, objectives, out_path, settings, meta)
    if plan.complete:
        return plan.out
    if plan.pending:
        started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                options["address"] = address
            else:
                options["num_cpus"] = num_cpus or max(1, int(workers * cpus_per_worker + 0.999))
                # a local cluster of this run's own: Ray's start-up notices are noise here
                options["logging_level"] = logging.ERROR
            options.update(ray_init or {})
            ray.init(**options)
            started = True
        try:
            _run(ray, plan, workers, progress, spec=spec,
                 threads=threads_per_worker, cpus=cpus_per_worker, gpus=gpus_per_worker)
        finally:
            if started:
                ray.shutdown()
    return plan.finish(keep_parts=keep_parts)


def _run(ray: Any, plan: CollectionPlan, workers: int, progress: bool, *,
         spec: DecoderSpec, threads: int | None, cpus: float, gpus: float) -> None:
    from ray.util import ActorPool

    actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(_Worker)
    count = min(workers, len(plan.pending))
    pool = ActorPool([actor.remote(spec, threads) for _ in range(count)])
    plan.parts.ensure()  # the workers write their parts into it
    meter = Meter(len(plan.records), plan.done_prompts, enabled=progress)
    jobs = [(g, [plan.records[i] for i in plan.groups[g]], str(plan.parts.part_path(g)))
            for g in plan.pending]
    try:
        for _, prompts_done, tokens in pool.map_unordered(
                lambda a, job: a.collect.remote(job[0], job[1], plan.objectives, plan.settings,
                                                plan.meta, job[2]), jobs):
            meter.prompts(prompts_done, tokens)
    except KeyboardInterrupt:
        meter.close()
        print(f"interrupted: {plan.resume_hint()}", file=sys.stderr)
        raise
    except ray.exceptions.RayTaskError as exc:
        meter.close()
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MavisError):
            raise MavisError(f"a worker failed: {cause}") from None
        raise
    except ray.exceptions.RayError as exc:  # a worker died or stopped answering
        meter.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MavisError(f"a Ray worker was lost ({reason}); {plan.resume_hint()}") from None
    meter.close()
