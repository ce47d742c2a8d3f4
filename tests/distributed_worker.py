"""The worker of tests/test_training_distributed.py, started by torchrun in every process:

    python -m torch.distributed.run --nproc_per_node 2 ... distributed_worker.py PLAN.json

It runs the `mavis` commands of the plan one after another in one group of processes (the
start-up is paid once) and writes, per process, `codes-RANK.json` beside the plan: each
command's exit code and every file the training wrote through its writers (checkpoints, the
metrics log, reports, teacher values), to show that the first process alone writes.

A command may carry a `stop`: {"rank": R, "step": S, "how": "self"} makes process R send
itself SIGINT while it prepares step S's batch (a stop request only one process sees);
{"rank": R, "step": S, "how": "wait"} makes process R write `stop-ready` beside the plan
there and wait until a signal from outside (the test signals torchrun, which forwards it to
every worker) has reached it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

import mavis.paths
import mavis.training.checkpoint as checkpoint
import mavis.training.distillation as distillation
import mavis.training.trainer as trainer
from mavis.cli import main

RANK = int(os.environ["RANK"])
WRITERS = [(trainer, "save_model"), (trainer, "append_metrics"), (trainer, "write_json"),
           (trainer, "truncate_metrics"), (checkpoint, "replace_folder"),
           (distillation, "atomic_path")]


def record_writes(writes: list) -> None:
    """Log the target of every call of the training's writers in `writes`."""
    for module, name in WRITERS:
        real = getattr(module, name)

        def logged(*args, _real=real, _name=name, **kwargs):
            target = args[1] if _name in ("save_model", "replace_folder") else args[0]
            writes.append([_name, str(target)])
            return _real(*args, **kwargs)

        setattr(module, name, logged)


class Stops:
    """The stop hook of the running command and the stop request it watches."""

    def __init__(self) -> None:
        self.plan: dict | None = None
        self.request = None
        self.batches = 0
        real_requests, real_collate = trainer.stop_requests, trainer.collate

        @contextlib.contextmanager
        def watched(*args, **kwargs):
            with real_requests(*args, **kwargs) as request:
                self.request = request
                yield request

        def collate(*args, **kwargs):
            if torch.is_grad_enabled():  # a training batch, not an evaluation
                self.batches += 1
                self.maybe_stop()
            return real_collate(*args, **kwargs)

        trainer.stop_requests, trainer.collate = watched, collate

    def maybe_stop(self) -> None:
        plan = self.plan
        if plan is None or plan["rank"] != RANK or plan["step"] != self.batches:
            return
        if plan["how"] == "self":
            os.kill(os.getpid(), signal.SIGINT)
            return
        (Path(sys.argv[1]).parent / "stop-ready").write_text(str(self.batches))
        deadline = time.monotonic() + 120
        while not self.request.requested and time.monotonic() < deadline:
            time.sleep(0.02)


def run_plan() -> None:
    plan_path = Path(sys.argv[1])
    commands = json.loads(plan_path.read_text())
    # a background job ignores SIGINT from the start; the test's Ctrl-C should count
    signal.signal(signal.SIGINT, signal.default_int_handler)
    writes: list = []
    codes: list[int] = []
    record_writes(writes)
    stops = Stops()
    try:
        for command in commands:
            stops.plan, stops.batches = command.get("stop"), 0
            writes.append(["command", " ".join(command["argv"][:1] + command["argv"][-2:])])
            codes.append(main(command["argv"]))
    finally:
        mavis.paths.write_text_atomic(plan_path.parent / f"codes-{RANK}.json",
                                      json.dumps({"codes": codes, "writes": writes}))


if __name__ == "__main__":
    run_plan()
