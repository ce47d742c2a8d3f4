"""Long jobs survive `kill -9`: a real `mavis` process is killed part-way, the same command is
run again, and the result equals that of a run never interrupted. (Collection has its own
kill test in test_trees.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import mavis
from mavis.cli import main
from mavis.training.checkpoint import read_metrics

REWARDS = """
import os, time
def vowels(prompts, responses):
    time.sleep(float(os.environ.get("MAVIS_TEST_SLEEP", "0")))
    return [sum(c in 'aeiou' for c in r) / max(len(r), 1) for r in responses]
"""
WORDS = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "happy",
         "dance", "ocean", "bread", "tiger", "chair", "plant", "smile", "sunny", "quiet",
         "brave", "sweet"]


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    (tmp_path / "crash_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "prompts.jsonl").write_text("".join(
        json.dumps({"prompt": f"{q} {w}"}) + "\n" for w in WORDS
        for q in ("tell me about", "what is")))
    return tmp_path


def launch(args: list[str], cwd: Path, slow: bool = True) -> subprocess.Popen:
    # the workspace (reward modules), then the folder this mavis was imported from, so that
    # the process runs the code under test whatever is installed
    path = os.pathsep.join([str(cwd), str(Path(mavis.__file__).resolve().parents[1])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path,
           "MAVIS_TEST_SLEEP": "0.3" if slow else "0"}
    return subprocess.Popen([sys.executable, "-m", "mavis", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240
              ) -> bool:
    """SIGKILL the process once `ready()` holds; False when it finished first."""
    deadline = time.time() + timeout
    while not ready():
        if process.poll() is not None:
            assert process.returncode == 0, process.stderr.read().decode()[-3000:]
            return False
        assert time.time() < deadline, "the milestone never came"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def recipe_file(folder: Path, tiny_lm: Path, name: str) -> Path:
    recipe = {
        "name": name, "out": str(folder / name), "reference": str(tiny_lm),
        "objectives": ["python:crash_rewards:vowels"],
        "prompts": {"sets": [str(folder / "prompts.jsonl")], "train": 8, "test": 3,
                    "max_prompt_tokens": 64},
        "collection": {"T": 6, "L": 2, "K_root": 2, "K": 2, "top_k": 5, "batch_prompts": 2},
        "iterations": [{"beta": 2.0}, {"beta": 2.0, "zeta": 0.01, "K_root": 2}],
        "training": {"base": str(tiny_lm), "num_layers": 1, "lora_r": 4, "lora_alpha": 8,
                     "lora_dropout": 0.0, "lr": 1e-2, "warmup_steps": 0, "epochs": 4,
                     "batch_size": 4, "save_every": 1, "eval_every": 5,
                     "validation_fraction": 0.25, "progress": False},
        "evaluation": {"max_new_tokens": 6, "top_k": 5},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y)
        for key in x:
            if key == "value_model":
                continue
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), key
            else:
                assert x[key] == y[key], key


def test_iterate_killed_at_every_step_resumes_to_the_same_results(workspace, tiny_lm):
    whole = recipe_file(workspace, tiny_lm, "whole")
    assert main(["iterate", str(whole)]) == 0
    expected = read_metrics(workspace / "whole" / "results.jsonl")

    path = recipe_file(workspace, tiny_lm, "killed")
    out = workspace / "killed"
    milestones = [
        lambda: any((out / "iter0" / "trees.h5.parts").glob("group-*.h5")),  # collecting
        lambda: (out / "iter0" / "value_models" / "last").exists(),  # training V^0
        lambda: (out / "results.jsonl").exists(),  # V^0 evaluated
        lambda: any((out / "iter1").glob("trees-*.h5.parts/group-*.h5")),  # collecting, it. 1
    ]
    kills = 0
    for ready in milestones:
        kills += kill_when(launch(["iterate", str(path)], workspace), ready)
    assert kills >= 3, "the kills should land inside the run"
    assert main(["iterate", str(path)]) == 0
    same_rows(read_metrics(out / "results.jsonl"), expected)


def test_training_killed_resumes_to_the_same_model(workspace, tiny_lm):
    assert main(["iterate", str(recipe_file(workspace, tiny_lm, "data")), "--iterations",
                 "1"]) == 0
    trees = workspace / "data" / "iter0" / "trees.h5"
    args = ["train", "--data", str(trees), "--base", str(tiny_lm), "--num-layers", "1",
            "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0", "--lr", "0.01",
            "--warmup-steps", "0", "--epochs", "6", "--batch-size", "4", "--eval-every", "4"]
    assert main([*args, "--out", str(workspace / "whole")]) == 0
    killed = workspace / "killed"
    process = launch([*args, "--out", str(killed)], workspace, slow=False)
    assert kill_when(process, lambda: len(read_metrics(killed / "metrics.jsonl")) >= 3)
    assert main([*args, "--out", str(killed)]) == 0  # the same command resumes
    a = read_metrics(workspace / "whole" / "metrics.jsonl")
    b = read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert b[-1]["val_loss"] == pytest.approx(a[-1]["val_loss"], rel=1e-4)


def untimed(points: dict) -> dict:
    """Saved points without their decoding times (which differ from run to run)."""
    return {key: {k: v for k, v in point.items() if k != "seconds"}
            for key, point in points.items()}


def test_pareto_killed_keeps_finished_points(workspace, tiny_lm):
    from mavis.models.value_model import ValueModel

    vm = ValueModel.build(str(tiny_lm), ["python:crash_rewards:vowels", "positive"],
                          num_layers=1, lora=None).save(workspace / "vm")
    args = ["pareto", "--objectives", "python:crash_rewards:vowels,positive", "--lambdas",
            "0,0.5,1", "--prompts", str(workspace / "prompts.jsonl"), "--split", "all",
            "--limit", "4", "--top-k", "5", "--max-new-tokens", "5", "--model", str(tiny_lm),
            "--value-model", f"python:crash_rewards:vowels={vm}",
            "--value-model", f"positive={vm}"]
    assert main([*args, "--out", str(workspace / "whole.png")]) == 0
    out = workspace / "killed.png"

    def points() -> int:
        try:
            return len(json.loads(out.with_suffix(".json").read_text())["points"])
        except (OSError, ValueError):
            return 0

    assert kill_when(launch([*args, "--out", str(out)], workspace), lambda: points() >= 1)
    done = points()
    assert 1 <= done < 4
    assert main([*args, "--out", str(out)]) == 0
    a = untimed(json.loads((workspace / "whole.json").read_text())["points"])
    b = untimed(json.loads(out.with_suffix(".json").read_text())["points"])
    assert a.keys() == b.keys() and a == b


def test_comparison_killed_keeps_finished_points(workspace, tiny_lm):
    """`mavis pareto --methods ...` killed among the fine-tuned baselines' points: the rerun
    keeps what was saved and ends with the same points as a run never interrupted."""
    from mavis.models.value_model import ValueModel

    vowels = "python:crash_rewards:vowels"
    vm = ValueModel.build(str(tiny_lm), [vowels, "positive"], num_layers=1,
                          lora=None).save(workspace / "vm")
    (workspace / "recipe.yaml").write_text(yaml.safe_dump({
        "name": "cmp", "reference": str(tiny_lm), "objectives": [vowels, "positive"],
        "prompts": {"sets": [str(workspace / "prompts.jsonl")]},
        "baselines": {"prompt_limit": 4, "max_prompt_tokens": None, "lora_r": 4,
                      "lora_alpha": 8, "lora_target_modules": ["q_proj"], "num_generations": 2,
                      "prompts_per_step": 2, "max_new_tokens": 5, "learning_rate": 5e-2,
                      "max_steps": 1}}))
    args = ["pareto", "--objectives", f"{vowels},positive", "--methods", "mavis,morlhf,mod",
            "--lambdas", "0,0.5,1", "--recipe", str(workspace / "recipe.yaml"),
            "--prompts", str(workspace / "prompts.jsonl"), "--split", "all", "--limit", "4",
            "--top-k", "5", "--max-new-tokens", "5", "--model", str(tiny_lm),
            "--value-model", f"{vowels}={vm}", "--value-model", f"positive={vm}"]
    assert main([*args, "--out", str(workspace / "whole.png")]) == 0  # trains the policies
    out = workspace / "killed.png"

    def points() -> int:
        try:
            return len(json.loads(out.with_suffix(".json").read_text())["points"])
        except (OSError, ValueError):
            return 0

    # killed after the MAVIS and pi_ref points, among MORLHF's and MOD's (10 in all)
    assert kill_when(launch([*args, "--out", str(out)], workspace), lambda: points() >= 5)
    assert 5 <= points() < 10
    assert main([*args, "--out", str(out)]) == 0
    a = json.loads((workspace / "whole.json").read_text())
    b = json.loads(out.with_suffix(".json").read_text())
    assert untimed(a["points"]) == untimed(b["points"])
    assert a["fronts"] == b["fronts"]
