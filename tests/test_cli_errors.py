"""Everything a person can type wrong, through the command line's entry point: a non-zero exit,
typer's usage block for usage errors or exactly one stderr line starting with `error:` for the
rest, never a traceback, and nothing written.

Usage errors (and a few others) run as a new process (`python -m mavis`, the console script's
path); the long table runs `mavis.cli.main` in this process, the same function the console
script calls, so that it takes seconds, not minutes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mavis.cli import main
from mavis.models.value_model import ValueModel

USAGE = [
    ([], "Usage: mavis"),
    (["nope"], "No such command 'nope'"),
    (["generate"], "Missing argument"),
    (["generate", "hi", "--bogus"], "No such option: --bogus"),
    (["generate", "hi", "--top-k", "abc"], "Invalid value for '--top-k'"),
    (["train", "--out", "x"], "Missing option '--data'"),
]

# (arguments, words the one error line must hold); {lm}, {vm}, {fx} are filled in below
ERRORS = [
    # silent acceptance of nonsense
    (["generate", "hi", "--model", "{lm}", "-n", "0"], "ask for at least 1"),
    (["generate", "hi", "--model", "{lm}", "--stop", ""], "would stop at once"),
    (["generate", "   ", "--model", "{lm}"], "prompt is empty"),
    (["generate", "hi", "--model", "{lm}", "--max-new-tokens", "0"], "--max-new-tokens is 0"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model",
      "aa={vm}"], "does not use"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1,a=0.5"], "names 'a' twice"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=0,b=0"], "every weight is zero"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=nan"], "finite numbers"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=inf"], "finite numbers"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=-1"], "must be >= 0"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a"], "write NAME=VALUE"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=x"], "not a number"),
    (["generate", "hi", "--model", "{lm}", "--top-k", "0"], "--top-k is 0"),
    (["generate", "hi", "--model", "{lm}", "--value-dtype", "nope"], "--value-dtype 'nope'"),
    (["serve", "--model", "{lm}", "--value-dtype", "int8"], "--value-dtype 'int8'"),
    (["generate", "hi", "--model", "{lm}", "--beta", "-1"], "--beta is -1"),
    (["generate", "hi", "--model", "{lm}", "--temperature", "-1"], "--temperature is -1"),
    (["generate", "hi", "--model", "{lm}", "--seed", "-1"], "--seed is -1"),
    (["generate", "hi", "--model", "{lm}", "--seed", str(2**64)], "--seed is 1844"),
    (["generate", "hi", "--model", "{lm}", "--beta", "nan"], "--beta is nan"),
    (["generate", "hi", "--model", "{lm}", "--beta", "1e308"], "--beta is 1e+308"),
    (["generate", "hi", "--model", "{lm}", "--beam", "2", "-n", "2"], "leave out -n"),
    (["generate", "hi", "--model", "{lm}", "--kl-budget", "-1"], "--kl-budget"),
    (["generate", "hi", "--model", "{lm}", "--weights", "zzz=1"], "no value model for"),
    # files that are not what they claim
    (["generate", "hi", "--model", "{fx}/missing"], "does not exist"),
    (["generate", "hi", "--model", "{fx}/empty_dir"], "not a model folder"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model",
      "a={fx}/truncated_vm"], "not valid JSON"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model",
      "a={fx}/list_vm"], "not an object"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model",
      "a={fx}/noweights_vm", "--top-k", "5"], "lacks"),
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model",
      "a={fx}/a_file"], "is a file"),
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--prompts",
      "{fx}/bad_utf8.jsonl", "--split", "all"], "not UTF-8"),
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--prompts",
      "{fx}/number.jsonl", "--split", "all"], "of type int"),
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--prompts",
      "{fx}/null.jsonl", "--split", "all"], "null prompt"),
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--prompts",
      "{fx}/folder.jsonl", "--split", "all"], "is a folder"),
    (["evaluate", "--objectives", "nope"], "unknown objective"),
    (["evaluate", "--objectives", "positive", "--limit", "0"], "--limit is 0"),
    (["evaluate", "--objectives", "positive", "--best-of", "2", "--beam", "2"],
     "choose one search mode"),
    (["evaluate", "--objectives", "positive", "--rank", "value"], "--rank value ranks"),
    (["evaluate", "--objectives", "positive", "--rank", "nope"], "--rank 'nope'"),
    (["evaluate", "--objectives", "positive", "--best-of", "1"], "N >= 2"),
    (["data", "inspect", "{fx}/damaged.h5"], "damaged"),
    (["data", "inspect", "{fx}"], "is a folder"),
    (["data", "inspect", "{fx}/missing.h5"], "no tree file"),
    (["train", "--data", "{fx}/damaged.h5", "--out", "out"], "damaged"),
    (["iterate", "{fx}/negative.yaml"], "T is -1"),
    (["iterate", "{fx}/overridden.yaml"], "collection.beta is set by iterations[i-1].beta"),
    (["iterate", "{fx}/valid.yaml", "--iterations", "0"], "iterations is 0"),
    (["iterate", "{fx}/valid.yaml", "--iterations", "-1"], "iterations is -1"),
    (["iterate", "{fx}/broken.yaml"], "not valid YAML"),
    (["iterate", "{fx}/missing.yaml"], "does not exist"),
    # validation before work
    (["pareto", "--objectives", "positive,harmless", "--lambdas", "0,1.5"], "outside [0, 1]"),
    (["pareto", "--objectives", "positive", "--lambdas", "0,1"], "two objectives or more"),
    (["pareto", "--objectives", "positive,harmless", "--best-of", "1"], "N >= 2"),
    (["pareto", "--objectives", "positive,harmless", "--vectors", "0.5,0.4"],
     "give 2 weights summing to 1"),
    (["pareto", "--objectives", "positive,harmless", "--beta", "0:8"], "no beta for lambda"),
    (["collect", "--out", "x.txt"], "should end in .h5"),
    (["collect", "--out", "x.h5", "--T", "0"], "--T is 0"),
    (["collect", "--out", "x.h5", "--objectives", "nope"], "unknown objective"),
    (["collect", "--out", "x.h5", "--weights", "a=1"], "--weights needs --value-model"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--base", "{lm}", "--num-layers",
      "999"], "out of range"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--lr", "0"],
     "--lr is 0; give a number > 0"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--objectives", " , "],
     "--objectives is empty"),
    (["distill", "--teacher", "nopath", "--data", "{fx}/trees.h5", "--out", "s"],
     "write NAME=VALUE"),
    (["demo", "--objectives", "relevant,harmless,witty"], "cannot be shown"),
    (["bundle", "{fx}/empty_dir", "name"], "no finished training"),
    # outputs that cannot be written
    (["collect", "--out", "{fx}/a_file/trees.h5"], "is a file, not a folder"),
    (["pareto", "--objectives", "positive,harmless", "--out", "{fx}/a_file/p.png"],
     "is a file, not a folder"),
    (["train", "--data", "{fx}/trees.h5", "--out", "{fx}/a_file"], "is a file"),
    (["prompts", "show", "nope"], "unknown prompt set"),
    (["objectives", "show", "nope"], "unknown objective"),
]

# The faults of issue 25: each was a traceback, a silent misreading (exit 0, a wrong result),
# a message naming the wrong cause, or a file left behind.
FAULTS = [
    # devices that do not exist or are not here, refused before any model loads
    *[(args + ["--device", device], f"--device {device!r}")
      for args in (["generate", "hi", "--model", "{lm}", "--beta", "0"], ["demo"],
                   ["collect", "--out", "x.h5", "--model", "{lm}"], ["serve", "--model", "{lm}"])
      for device in ("nosuch", "cuda:99")],
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--device", "nosuch"],
     "--device is 'nosuch'; choose 'auto', 'cpu', 'cuda'"),
    *([] if torch.cuda.is_available() else [
        (["train", "--data", "{fx}/trees.h5", "--out", "out", "--device", "cuda"],
         "device 'cuda': this torch was built without CUDA" if torch.version.cuda is None
         else "device 'cuda': torch sees no GPU"),
        (["generate", "hi", "--model", "{lm}", "--beta", "0", "--device", "cuda"],
         "--device 'cuda'")]),
    # damaged value-model folders, named, before any model loads (NaN weights: at load)
    *[(args + [prefix + f"{{fx}}/{damaged}"], words) for args, prefix in (
        (["generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model"], "a="),
        (["train", "--data", "{fx}/trees.h5", "--out", "out", "--init-from"], ""))
      for damaged, words in (("truncated_st", "truncated_st/backbone.safetensors' is not a "
                              "whole safetensors file"),
                             ("garbage_st", "garbage_st/head.safetensors' is not a whole"),
                             ("string_number", "num_layers is 'one'; give a whole number"),
                             ("nan_vm", "nan_vm' holds NaN or infinite weights"))],
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--value-model",
      "positive={fx}/truncated_st", "--limit", "1"], "is not a whole safetensors file"),
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--value-model",
      "positive={fx}/string_number", "--limit", "1"], "num_layers is 'one'"),
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--value-model",
      "positive={fx}/nan_vm", "--limit", "1", "--max-new-tokens", "2", "--out", "r.json"],
     "holds NaN or infinite weights"),
    (["pareto", "--objectives", "positive,harmless", "--model", "{lm}", "--value-model",
      "positive={fx}/nan_vm", "--value-model", "harmless={fx}/nan_vm", "--limit", "1",
      "--lambdas", "0,1", "--max-new-tokens", "2", "--out", "front.png"],
     "holds NaN or infinite weights"),  # and no front.json with the command in it
    # files: not UTF-8, a folder for a file and the reverse
    (["score", "-f", "{fx}/bad_utf8.jsonl"], "is not UTF-8 text"),
    (["score", "-f", "{fx}/empty_dir"], "--file '{fx}/empty_dir' is a folder"),
    (["iterate", "{fx}/empty_dir"], "is a folder; give the recipe's YAML file"),
    (["generate", "hi", "--model", "{fx}/a_file"], "is a file, not a model folder"),
    (["prompts", "show", "{fx}/empty_dir"], "is a folder; give a prompt file"),
    (["report", "iterations", "{fx}/a_file"], "is a file; give the folder"),
    (["bundle", "{fx}/a_file", "name"], "is a file, not a run folder"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--init-from", "{fx}/a_file"],
     "is a file, not a value model folder"),
    # a user's objective that raises: its name and message on one line
    (["score", "-o", "python:{fx}/boom.py:boom", "-p", "hi", "-r", "there"],
     "the objective python:{fx}/boom.py:boom raised ValueError: the scorer broke"),
    (["score", "-o", "python:{fx}/broken_import.py:f", "-p", "hi", "-r", "there"],
     "broken_import.py' raised RuntimeError: cannot start"),
    # outputs and options checked up front
    (["pareto", "--objectives", "positive,harmless", "--out", "front.xyz"],
     "--out 'front.xyz' ends in .xyz, not a picture format"),
    (["pareto", "--objectives", "positive,harmless", "--out", "front"], "has no suffix"),
    (["serve", "--model", "{lm}", "--log-level", "nosuch"], "--log-level 'nosuch' is not"),
    # training numbers: NaN, infinities, out of range, named by their option
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--lr", "inf"], "--lr is inf"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--lr", "nan"], "--lr is nan"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--zeta", "nan"],
     "--zeta is nan; give a finite number >= 0"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--zeta", "-1"], "--zeta is -1"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--weight-decay", "inf"],
     "--weight-decay is inf"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--lora-dropout", "1"],
     "--lora-dropout is 1; give a number in [0, 1)"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--leaf-fraction", "nan"],
     "--leaf-fraction is nan"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--eval-every", "-1"],
     "--eval-every is -1"),
    (["distill", "--teacher", "a={vm}", "--data", "{fx}/trees.h5", "--out", "s", "--lr",
      "-inf"], "--lr is -inf"),
    # --init-from trains on the initial model's backbone: other layers or LoRA are refused
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--init-from", "{vm}",
      "--num-layers", "2"], "has num_layers 1: training goes on from its backbone"),
    (["train", "--data", "{fx}/trees.h5", "--out", "out", "--init-from", "{vm}",
      "--lora-r", "8"], "has lora_r 0"),
    # duplicates, refused by name
    (["evaluate", "--objectives", "positive,positive"], "name 'positive' more than once"),
    (["pareto", "--objectives", "positive,positive"], "name 'positive' more than once"),
    (["collect", "--out", "x.h5", "--objectives", "harmless,harmless"],
     "name 'harmless' more than once"),
    (["score", "-o", "positive,positive", "-p", "a", "-r", "b"], "more than once"),
    (["pareto", "--objectives", "positive,harmless", "--lambdas", "0,0,1"],
     "--lambdas gives 0 more than once"),
    (["pareto", "--objectives", "positive,harmless", "--methods", "bon", "--best-of", "4,4"],
     "--best-of gives 4 more than once"),
    (["pareto", "--objectives", "positive,harmless", "--lambdas", "0,1", "--beta", "0:8,0:9,1:8"],
     "gives lambda 0 twice"),
    (["iterate", "{fx}/valid.yaml", "--objective", "positive", "--objective", "positive"],
     "--objective names 'positive' more than once"),
    # counts at 0 or below
    (["bundle", "{fx}/empty_dir", "name", "--iteration", "-5"], "--iteration is -5"),
    (["pareto", "--objectives", "positive,harmless", "--methods", "beam", "--beams", "0"],
     "--methods beam needs one"),
    (["pareto", "--objectives", "positive,harmless", "--methods", "bon", "--best-of", "0"],
     "--methods bon needs one"),
    (["pareto", "--objectives", "positive,harmless", "-n", "0"], "-n/--num-samples is 0"),
    (["evaluate", "--objectives", "positive", "-n", "-1"], "-n/--num-samples is -1"),
    (["serve", "--model", "{lm}", "--replicas", "0"], "--replicas is 0"),
    (["serve", "--model", "{lm}", "--cpus-per-replica", "nan"], "--cpus-per-replica is nan"),
    (["collect", "--out", "x.h5", "--limit", "0"], "--limit is 0; collect trees for at least"),
    (["collect", "--out", "x.h5", "--limit", "-3"], "--limit is -3"),
    (["collect", "--out", "x.h5", "--max-prompt-tokens", "0"], "--max-prompt-tokens is 0"),
    (["collect", "--out", "x.h5", "--iteration", "-1"], "--iteration is -1"),
    (["collect", "--out", "x.h5", "--workers", "-2"], "--workers is -2"),
    (["prompts", "show", "chitchat", "--max-tokens", "-1"], "--max-tokens is -1"),
    (["prompts", "show", "chitchat", "--seed", "-1"], "--seed is -1"),
    (["pareto", "--objectives", "positive,harmless", "--methods", "beam", "--beam-expand",
      "0"], "--beam-expand is 0"),
    (["data", "score", "{fx}/trees.h5", "--objectives", "positive", "--chunk-leaves", "0"],
     "--chunk-leaves is 0"),
    # a prompt-file record with a misspelt key: refused with its line and the keys read
    (["evaluate", "--objectives", "positive", "--model", "{lm}", "--prompts",
      "{fx}/misspelt.jsonl", "--split", "all"],
     "misspelt.jsonl: line 2 has no 'prompt' key (its keys: promt)"),
    # nothing written before the checks pass: recipe.json waited for the objectives
    (["iterate", "{fx}/unknown_objective.yaml"], "unknown objective 'nope'"),
]
ERRORS += FAULTS


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, tiny_lm) -> dict[str, str]:
    fx = tmp_path_factory.mktemp("fx")
    vm = ValueModel.build(str(tiny_lm), ["a"], num_layers=1, lora=None).save(fx / "vm")
    (fx / "empty_dir").mkdir()
    (fx / "a_file").write_text("not a folder")
    (fx / "truncated_vm").mkdir()
    (fx / "truncated_vm" / "value_config.json").write_text('{"base": ')
    (fx / "list_vm").mkdir()
    (fx / "list_vm" / "value_config.json").write_text("[1, 2]")
    (fx / "noweights_vm").mkdir()
    (fx / "noweights_vm" / "value_config.json").write_text(
        (vm / "value_config.json").read_text())
    (fx / "bad_utf8.jsonl").write_bytes(b'{"prompt": "caf\xe9 \xff"}\n')
    (fx / "number.jsonl").write_text('{"prompt": "fine"}\n{"prompt": 42}\n')
    (fx / "null.jsonl").write_text('{"prompt": null}\n')
    (fx / "folder.jsonl").mkdir()
    (fx / "negative.yaml").write_text("name: neg\nout: out\ncollection: {T: -1}\n")
    (fx / "overridden.yaml").write_text("name: o\nout: out\ncollection: {beta: 4}\n")
    (fx / "valid.yaml").write_text("name: v\nout: out\n")
    (fx / "broken.yaml").write_text("name: [unclosed\n")
    damaged_value_models(fx, str(tiny_lm))
    (fx / "boom.py").write_text("def boom(prompts, responses):\n"
                                "    raise ValueError('the scorer\\nbroke')\n")
    (fx / "broken_import.py").write_text("raise RuntimeError('cannot start')\n")
    (fx / "misspelt.jsonl").write_text('{"prompt": "hello"}\n{"promt": "typo"}\n')
    (fx / "unknown_objective.yaml").write_text("name: u\nout: out\nobjectives: [nope]\n")
    write_tiny_trees(fx / "trees.h5")
    blob = bytearray((fx / "trees.h5").read_bytes())
    blob[len(blob) // 3: len(blob) // 3 + 2048] = bytes(2048)
    (fx / "damaged.h5").write_bytes(bytes(blob))
    return {"lm": str(tiny_lm), "vm": str(vm), "fx": str(fx)}


def damaged_value_models(fx: Path, lm: str) -> None:
    """A value model (objectives a, positive, harmless) damaged four ways: a truncated weights
    file, a head file of garbage, a string where value_config.json wants a number, NaN
    weights (as a diverged training run saves them)."""
    good = ValueModel.build(lm, ["a", "positive", "harmless"], num_layers=1,
                            lora=None).save(fx / "good_vm")
    for name in ("truncated_st", "garbage_st", "string_number", "nan_vm"):
        shutil.copytree(good, fx / name)
    weights = (good / "backbone.safetensors").read_bytes()
    (fx / "truncated_st" / "backbone.safetensors").write_bytes(weights[: len(weights) // 2])
    (fx / "garbage_st" / "head.safetensors").write_bytes(bytes(range(256)) * 3)
    config = json.loads((good / "value_config.json").read_text())
    (fx / "string_number" / "value_config.json").write_text(
        json.dumps({**config, "num_layers": "one"}))
    head = load_file(good / "head.safetensors")
    save_file({k: torch.full_like(v, float("nan")) for k, v in head.items()},
              fx / "nan_vm" / "head.safetensors")


def write_tiny_trees(path: Path) -> None:
    """One prompt, a root and two leaves, in the tree-file layout."""
    from mavis.trees.store import write_trees
    from mavis.trees.table import TreeTable

    write_trees(path, TreeTable(["a"], {}, {
        "prompts/text": ["hi"], "prompts/id": ["p0"], "prompts/token_offset": [0],
        "prompts/token_count": [2], "prompts/tokens": [5, 6], "prompts/first_node": [0],
        "prompts/node_count": [3], "nodes/parent": [-1, 0, 0], "nodes/depth": [0, 1, 1],
        "nodes/prompt": [0, 0, 0], "nodes/token_offset": [0, 0, 2],
        "nodes/token_count": [0, 2, 2], "nodes/is_leaf": [False, True, True],
        "nodes/ended_eos": [False, False, False],
        "nodes/reward": [[np.nan], [1.0], [0.0]], "nodes/value": [[0.5], [1.0], [0.0]],
        "nodes/lpr": [0.0, 0.0, 0.0], "tokens/id": [7, 8, 9, 10],
        "tokens/logp_gen": [0.0] * 4, "tokens/logp_ref": [0.0] * 4}))
    with h5py.File(path, "r") as handle:  # a real HDF5 file
        assert handle.attrs["format"] == "mavis-trees"


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mavis", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, words", USAGE, ids=[" ".join(a) or "(none)" for a, _ in USAGE])
def test_usage_errors_print_the_usage_and_exit_2(args, words, tmp_path):
    result = run(args, tmp_path)
    assert result.returncode == 2
    shown = result.stderr + result.stdout
    assert "Usage: mavis" in shown and words in shown and "Traceback" not in shown


@pytest.mark.parametrize("args, words", ERRORS, ids=[" ".join(a)[:60] for a, _ in ERRORS])
def test_errors_are_one_line_and_write_nothing(args, words, fixtures, tmp_path, capsys,
                                              monkeypatch):
    fx = Path(fixtures["fx"])
    before = snapshot(fx)
    monkeypatch.chdir(tmp_path)
    code = main([a.format(**fixtures) for a in args])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code != 0, captured.out
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert words.format(**fixtures) in lines[0], lines[0]
    assert not list(tmp_path.iterdir()), "something was written"
    assert snapshot(fx) == before


@pytest.mark.parametrize("args, words", [
    (["generate", "hi", "--model", "{lm}", "--weights", "a=1,a=0.5"], "names 'a' twice"),
    (["data", "inspect", "{fx}/damaged.h5"], "damaged.h5"),
    (["collect", "--out", "{fx}/a_file/trees.h5"], "is a file, not a folder"),
])
def test_errors_in_a_new_process(args, words, fixtures, tmp_path):
    result = run([a.format(**fixtures) for a in args], tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert words in lines[0] and "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.iterdir())


def test_verbose_shows_the_traceback_behind_an_error(fixtures, capsys):
    """A user's objective that raises: one line naming it and its message; with --verbose the
    traceback of the user's code first, then the same line."""
    args = ["score", "-o", f"python:{fixtures['fx']}/boom.py:boom", "-p", "hi", "-r", "there"]
    assert main(args) == 2
    plain = capsys.readouterr().err.strip().splitlines()
    assert len(plain) == 1 and plain[0].startswith("error: the objective python:")
    assert main(["--verbose", *args]) == 2
    shown = capsys.readouterr().err.strip().splitlines()
    assert shown[0].startswith("Traceback") and shown[-1] == plain[0]
    assert any("boom.py" in line and "line 2" in line for line in shown)
