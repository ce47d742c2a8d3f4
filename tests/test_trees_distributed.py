"""Tree collection sharded over a local Ray cluster of two workers equals the single-process
collection, dataset by dataset."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

import numpy as np
import pytest

from mavis.errors import MavisError
from mavis.trees.collect import collect_trees
from mavis.trees.decoder_spec import DecoderSpec
from mavis.trees.settings import CollectionSettings
from mavis.trees.store import read_trees

PROMPTS = ["hello there", "how are you today", "tell me a joke", "what is up",
           "good morning friend"]
SETTINGS = CollectionSettings.from_dict(dict(T=10, L=3, K_root=2, K=2, top_k=5,
                                             temperature=0.9, seed=5, batch_prompts=2))


def test_ray_sharded_collection_equals_single_process(tiny_lm, tmp_path, capfd):
    ray = pytest.importorskip("ray")
    from mavis.trees.distributed import collect_trees_distributed

    single = collect_trees(DecoderSpec(str(tiny_lm)), PROMPTS, "positive", tmp_path / "one.h5",
                           SETTINGS, progress=False)
    # group 0 already collected by a single-process run that stopped there: the workers take
    # only groups 1 and 2, and the result is still the same file
    sharded_out = tmp_path / "ray.h5"
    parts_dir = tmp_path / "ray.h5.parts"
    collect_trees(DecoderSpec(str(tiny_lm)), PROMPTS, "positive", sharded_out, SETTINGS,
                  keep_parts=True, progress=False)
    sharded_out.unlink()
    for name in ("group-000001.h5", "group-000002.h5"):
        (parts_dir / name).unlink()
    stamp = (parts_dir / "group-000000.h5").stat().st_mtime_ns
    try:
        sharded = collect_trees_distributed(
            str(tiny_lm), PROMPTS, "positive", sharded_out,
            dataclasses.replace(SETTINGS, workers=2), keep_parts=True, progress=False,
            threads_per_worker=1,
            ray_init={"num_cpus": 2, "include_dashboard": False, "log_to_driver": False})
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert not ray.is_initialized()  # the local cluster it started is shut down
    assert "Started a local Ray instance" not in capfd.readouterr().err  # no Ray notices
    parts = sorted(p.name for p in parts_dir.glob("group-*.h5"))
    assert parts == ["group-000000.h5", "group-000001.h5", "group-000002.h5"]
    assert (parts_dir / "group-000000.h5").stat().st_mtime_ns == stamp

    a, b = read_trees(single), read_trees(sharded)
    assert a.objectives == b.objectives and a.meta == b.meta
    for name in a.data:
        if a.data[name].dtype.kind == "f":
            np.testing.assert_array_equal(a.data[name], b.data[name], err_msg=name)
        else:
            assert a.data[name].tolist() == b.data[name].tolist(), name
    data = read_trees(sharded)
    assert data.num_prompts == len(PROMPTS)
    assert data["prompts/text"].tolist() == PROMPTS


def test_missing_ray_is_a_clear_error(tiny_lm, tmp_path, monkeypatch):
    from mavis.trees.distributed import collect_trees_distributed

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(MavisError, match=r"pip install 'mavis-align\[distributed\]'"):
        collect_trees_distributed(str(tiny_lm), PROMPTS, "positive", tmp_path / "x.h5",
                                  dataclasses.replace(SETTINGS, workers=2), progress=False)


def test_a_lost_worker_is_a_clear_error_and_keeps_the_saved_groups(tiny_lm, tmp_path):
    ray = pytest.importorskip("ray")
    import psutil

    from mavis.trees.distributed import collect_trees_distributed

    out = tmp_path / "lost.h5"
    parts = tmp_path / "lost.h5.parts"
    prompts = [f"{p} number {i}" for i in range(12) for p in PROMPTS]  # 30 groups of 2

    def command_line(process: psutil.Process) -> str:
        try:
            return " ".join(process.cmdline())
        except psutil.Error:  # ended meanwhile
            return ""

    def kill_a_worker_once_a_group_is_saved() -> None:
        deadline = time.monotonic() + 600  # a loaded machine starts Ray slowly
        while time.monotonic() < deadline:
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "_Worker" in command_line(p)]
            if workers and list(parts.glob("group-*.h5")):
                workers[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_once_a_group_is_saved, daemon=True)
    killer.start()
    try:
        with pytest.raises(MavisError, match="a Ray worker was lost .*groups are saved in .*; "
                                             "run the same command again to resume"):
            collect_trees_distributed(
                str(tiny_lm), prompts, "positive", out,
                dataclasses.replace(SETTINGS, workers=2), keep_parts=True, progress=False,
                threads_per_worker=1,
                ray_init={"num_cpus": 2, "include_dashboard": False, "log_to_driver": False})
    finally:
        killer.join(5)
        if ray.is_initialized():
            ray.shutdown()
    assert list(parts.glob("group-*.h5"))  # the finished groups are kept for the rerun
    assert not out.exists()

