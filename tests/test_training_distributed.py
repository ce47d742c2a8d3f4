"""Data-parallel training on CPU: two processes (torchrun, gloo) train the model that one
process trains on the same global batches, only the first process writes, a run resumes under
another process count, a stop request stops every process at one step, and distillation is
data-parallel too.

Every two-process run happens in one torchrun launch (`distributed_worker.py` runs the
commands one after another, so torch and transformers start once), next to the same commands
in this process; each test checks one promise on what they left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_training import write_trees

import mavis
from mavis.cli import main
from mavis.models.loading import load_tokenizer
from mavis.training.checkpoint import load_state, read_metrics
from mavis.training.config import TrainConfig
from mavis.training.packing import collate, predict
from mavis.training.parallel import shard_batch
from mavis.training.samples import prepare_samples
from mavis.training.trainer import epoch_plans
from mavis.trees.store import read_trees

WORKER = Path(__file__).with_name("distributed_worker.py")
STOP_BY_ONE = {"rank": 1, "step": 4, "how": "self"}    # SIGINT seen by process 1 alone
STOP_BY_LAUNCHER = {"rank": 0, "step": 7, "how": "wait"}  # SIGTERM to torchrun, forwarded
# batches of 3 nodes: in some, all 3 are siblings, and process 0 has no read of its own
SMALL_BATCHES = ["--batch-size", "3", "--epochs", "1", "--eval-every", "0"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(),
                                reason="this torch has no gloo backend: no group of CPU "
                                       "processes can start here")


@dataclass
class Runs:
    root: Path
    codes: dict[int, list[int]]
    writes: dict[int, list[list[str]]]
    log: str


def train_args(lm: Path, trees: Path) -> list[str]:
    return ["train", "--data", str(trees), "--objectives", "a_rate", "--base", str(lm),
            "--num-layers", "2", "--epochs", "2", "--batch-size", "16", "--lr", "1e-2",
            "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0", "--warmup-steps", "3",
            "--eval-every", "3", "--validation-fraction", "0.2", "--sibling-weight", "0.5",
            "--device", "cpu"]


def distill_args(lm: Path, trees: Path, teacher: Path) -> list[str]:
    return ["distill", "--teacher", f"a_rate={teacher}", "--data", str(trees), "--base",
            str(lm), "--num-layers", "1", "--epochs", "2", "--batch-size", "48", "--lr", "1e-2",
            "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0", "--warmup-steps", "2",
            "--eval-every", "4", "--validation-fraction", "0.2", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(plan: list[dict], folder: Path, timeout: float = 300) -> str:
    """Run `plan` in two torchrun processes; signal torchrun (SIGTERM) once a worker says it
    waits for that. Returns the launch's output."""
    (folder / "plan.json").write_text(json.dumps(plan))
    port = str(free_port())
    source = str(Path(mavis.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": port, "CUDA_VISIBLE_DEVICES": "",  # CPU processes (gloo) anywhere
           "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", port, str(WORKER),
               str(folder / "plan.json")]
    started, signalled = time.monotonic(), False
    with (folder / "launch.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None and time.monotonic() - started < timeout:
            if not signalled and (folder / "stop-ready").exists():
                process.send_signal(signal.SIGTERM)  # as a scheduler or Ctrl-C would
                signalled = True
            time.sleep(0.05)
        if process.poll() is None:
            process.terminate()
            process.wait(60)
            pytest.fail("the two-process launch took too long:\n" +
                        (folder / "launch.log").read_text()[-4000:])
    return (folder / "launch.log").read_text()


@pytest.fixture(scope="module")
def trees(tmp_path_factory, tiny_lm) -> Path:
    return write_trees(tmp_path_factory.mktemp("ddp-trees") / "small.h5",
                       load_tokenizer(str(tiny_lm)), 6, seed=1, missing_b=(2,))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_lm, trees) -> Runs:
    """One process: the reference run, its first 2 steps, a distillation. Two processes: the
    same run, the rest of the 2-step one, the same distillation, and two runs stopped part
    way. Then one process resumes copies of the stopped ones."""
    root = tmp_path_factory.mktemp("ddp")
    args = train_args(tiny_lm, trees)
    distill = distill_args(tiny_lm, trees, root / "one" / "best")
    assert main([*args, "--out", str(root / "one")]) == 0
    assert main([*args, "--max-steps", "2", "--out", str(root / "one-then-two")]) == 0
    assert main([*distill, "--out", str(root / "distill-one")]) == 0
    assert main([*args, *SMALL_BATCHES, "--out", str(root / "small-one")]) == 0
    plan = [{"argv": [*args, "--out", str(root / "two")]},
            {"argv": [*args, "--out", str(root / "one-then-two"), "--resume"]},
            {"argv": [*distill, "--out", str(root / "distill-two")]},
            {"argv": [*args, *SMALL_BATCHES, "--out", str(root / "small-two")]},
            {"argv": [*args, "--out", str(root / "stopped-by-one")], "stop": STOP_BY_ONE},
            {"argv": [*args, "--out", str(root / "stopped-by-launcher")],
             "stop": STOP_BY_LAUNCHER}]
    log = launch(plan, root)
    results = {}
    for rank in (0, 1):
        path = root / f"codes-{rank}.json"
        assert path.exists(), f"process {rank} left no results:\n{log[-4000:]}"
        results[rank] = json.loads(path.read_text())
    for name in ("stopped-by-one", "stopped-by-launcher"):
        shutil.copytree(root / name, root / f"{name}-resumed")
        assert main([*args, "--out", str(root / f"{name}-resumed"), "--resume"]) == 0
    return Runs(root, {r: v["codes"] for r, v in results.items()},
                {r: v["writes"] for r, v in results.items()}, log)


def assert_same_model(a: Path, b: Path) -> None:
    """The saved LoRA and head weights of two value-model folders agree (float tolerance)."""
    names = sorted(p.name for p in a.glob("*.safetensors"))
    assert names and names == sorted(p.name for p in b.glob("*.safetensors"))
    for name in names:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys()
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=1e-4, atol=1e-5, msg=key)


def assert_same_metrics(a: Path, b: Path) -> None:
    first, second = read_metrics(a / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    assert [r["step"] for r in first] == [r["step"] for r in second]
    for x, y in zip(first, second, strict=True):
        assert x["tokens"] == y["tokens"] and x["lr"] == pytest.approx(y["lr"])
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4, abs=1e-7)
        if x["train_loss"] is None:
            assert y["train_loss"] is None
        else:
            assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4, abs=1e-7)


def assert_same_run(a: Path, b: Path) -> None:
    for folder in ("best", "last"):
        assert_same_model(a / folder, b / folder)
    assert_same_metrics(a, b)
    one, other = (json.loads((p / "report.json").read_text()) for p in (a, b))
    assert one["complete"] and other["complete"]
    assert (one["steps"], one["total_steps"]) == (other["steps"], other["total_steps"])
    assert one["best"]["step"] == other["best"]["step"]


# -- the promises -------------------------------------------------------------------------------
def test_two_processes_train_the_model_one_process_trains(runs):
    """--batch-size 16 is the global batch: two processes of 8 reads each give the model,
    the validation figures and the steps of one process."""
    assert runs.codes == {0: [0, 0, 0, 0, 130, 130], 1: [0, 0, 0, 0, 130, 130]}, \
        runs.log[-4000:]
    assert_same_run(runs.root / "one", runs.root / "two")
    report = json.loads((runs.root / "two" / "report.json").read_text())
    assert report["steps"] == report["total_steps"] == 10
    assert report["config"]["batch_size"] == 16


def test_a_process_without_reads_in_a_step_still_takes_it(runs):
    """Where a global batch is one group of siblings, one process trains on nothing (one read
    weighted 0, for DDP's sake): still the one-process model."""
    assert_same_run(runs.root / "small-one", runs.root / "small-two")
    assert json.loads((runs.root / "small-two" / "report.json").read_text())["steps"] == 24


def test_only_the_first_process_writes(runs):
    """Checkpoints, the metrics log, the report and the teachers' values: all from process 0
    (process 1 waits at the barriers); no duplicate lines, nothing left half-written."""
    assert {name for name, _ in runs.writes[1]} == {"command"}
    assert runs.log.count(f"a_rate: {runs.root / 'two' / 'best'}  steps 10/10") == 1
    written = {name for name, _ in runs.writes[0]}
    assert {"save_model", "append_metrics", "write_json", "replace_folder",
            "atomic_path"} <= written
    for name in ("two", "one-then-two", "distill-two", "stopped-by-one"):
        steps = [r["step"] for r in read_metrics(runs.root / name / "metrics.jsonl")]
        assert steps == sorted(set(steps)), name
        leftovers = [p.name for p in (runs.root / name).iterdir()
                     if p.name.endswith(".tmp") or ".old-" in p.name or ".tmp-" in p.name]
        assert not leftovers, (name, leftovers)


def test_a_run_resumes_under_another_process_count(runs):
    """Stopped after a checkpoint and resumed under the other process count (1 -> 2 and
    2 -> 1), a run ends where the uninterrupted one-process run does, its steps continued."""
    assert_same_run(runs.root / "one", runs.root / "one-then-two")
    assert_same_run(runs.root / "one", runs.root / "stopped-by-one-resumed")
    assert_same_run(runs.root / "one", runs.root / "stopped-by-launcher-resumed")


@pytest.mark.parametrize("name, stop, signal_name, receivers", [
    ("stopped-by-one", STOP_BY_ONE, "SIGINT", 1),
    ("stopped-by-launcher", STOP_BY_LAUNCHER, "SIGTERM", 2)])
def test_a_stop_request_stops_every_process_at_one_step(runs, name, stop, signal_name,
                                                        receivers):
    """Ctrl-C (here seen by one process only) or SIGTERM to torchrun (forwarded to every
    process): the processes agree on the step, both exit 130 there, one checkpoint is saved
    at that step and the first process says how to continue."""
    step = stop["step"]
    assert load_state(runs.root / name / "last")["step"] == step
    report = json.loads((runs.root / name / "report.json").read_text())
    assert not report["complete"] and report["steps"] == step
    assert runs.log.count(f"{signal_name}: stopping after this step") == receivers
    message = f"stopped by {signal_name} at step {step} of 10"
    assert runs.log.count(message) == 1 and "run the same command again to continue" \
        in runs.log.split(message)[1].splitlines()[0]
    assert max(r["step"] for r in read_metrics(runs.root / name / "metrics.jsonl")) <= step


def test_distillation_with_two_processes(runs):
    """The teachers' values, scored half by each process and gathered, are the one-process
    values, and the student trains to the one-process student."""
    one, two = runs.root / "distill-one", runs.root / "distill-two"
    with np.load(one / "teacher_values" / "a_rate.npz") as a, \
            np.load(two / "teacher_values" / "a_rate.npz") as b:
        assert str(a["key"]) == str(b["key"])
        np.testing.assert_allclose(a["values"], b["values"], rtol=1e-5, atol=1e-6)
    assert_same_run(one, two)


# -- the shards, in one process -------------------------------------------------------------------
@pytest.mark.parametrize("world", [2, 3, 40])
def test_shards_split_every_batch_and_read_the_same_values(tiny_lm, trees, world):
    """Each process's shard of a global batch: together they hold every read once, siblings
    in one process, and their cut-down units read the values the whole units read. A process
    without reads gets one read to run, weighted 0."""
    from mavis.models.value_model import ValueModel

    config = TrainConfig(base=str(tiny_lm), num_layers=2, objectives=["a_rate"], lora_r=0,
                         batch_size=16, epochs=1, validation_fraction=0.2, progress=False)
    samples = prepare_samples(read_trees(trees), ["a_rate"], config)
    torch.manual_seed(0)
    model = ValueModel.build(str(tiny_lm), "a_rate", num_layers=2, lora=None).eval()
    for batch in epoch_plans(samples.train, config)[0]:
        units = [samples.train[i] for i in batch]
        whole = collate(units)
        with torch.no_grad():
            expected = dict(zip(whole.nodes.tolist(), predict(model, whole)[:, 0].tolist(),
                                strict=True))
        shards = [shard_batch(units, samples.parent, world, rank, pairs=True)
                  for rank in range(world)]
        assert {(s.count, s.pairs) for s in shards} == {(shards[0].count, shards[0].pairs)}
        owner: dict[int, int] = {}
        for rank, shard in enumerate(shards):
            if shard.empty:
                assert len(shard.units) == 1 and shard.units[0].num_reads == 1
                continue
            part = collate(shard.units)
            with torch.no_grad():
                values = predict(model, part)[:, 0].tolist()
            for node, value in zip(part.nodes.tolist(), values, strict=True):
                assert node not in owner
                owner[node] = rank
                assert value == pytest.approx(expected[node], abs=1e-5)
        assert sorted(owner) == sorted(expected)
        parents = {}
        for node, rank in owner.items():
            parents.setdefault(int(samples.parent[node]), set()).add(rank)
        assert all(len(ranks) == 1 for parent, ranks in parents.items() if parent >= 0)
        assert world < 40 or any(s.empty for s in shards)


def test_a_signal_delivered_twice_is_one_request():
    """A launcher forwards the signal a scheduler already sent its workers: a repeat within
    `repeat_after` seconds is the same request; a later one still stops at once."""
    from mavis.training.stopping import stop_requests

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with stop_requests(repeat_after=60.0) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signal_name == "SIGTERM"
            stop.at -= 61.0
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
