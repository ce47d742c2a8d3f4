"""The libraries' own noise (transformers' "Loading weights" bar, deprecation warnings and
logs) stays out of the terminal unless `mavis --verbose` asks for it: in the console script,
and in a process that imported the libraries before calling `mavis.cli.main` (a notebook, a
host program, the tests), where their switches were read before the command could set the
environment. Each run is a new process, its stderr read whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

# A host that loaded the libraries first, then runs a command; it reports whether the command
# gave it its own switches back.
HOST = """
import sys
import peft, torch, transformers
from transformers.utils import logging as hf_logging
from mavis.cli import main
code = main(sys.argv[1:])
print("host settings:", hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity(),
      file=sys.stderr)
sys.exit(code)
"""
NOISE = ("Loading weights", "Warning", "warn(", "deprecated")


def run(args: list[str], cwd: Path, host: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
                 "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
        env.pop(name, None)  # as a user's shell has them: unset
    start = [sys.executable, "-c", HOST] if host else [sys.executable, "-m", "mavis"]
    return subprocess.run([*start, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def noise(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines()
            if any(word in line for word in NOISE)]


@pytest.fixture
def recipe(tmp_path, tiny_lm) -> Path:
    """The smoke recipe's first iteration on the tiny model: collect, train, evaluate."""
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
name: tiny
out: {tmp_path / "run"}
reference: {tiny_lm}
objectives: [positive]
prompts: {{sets: [chitchat], train: 4, test: 2, max_prompt_tokens: 40}}
collection: {{T: 4, L: 2, K_root: 2, K: 2, top_k: 5, batch_prompts: 4, seed: 0}}
iterations: [{{beta: 4.0, zeta: 0.0}}]
training: {{num_layers: 1, lora_r: 4, lora_alpha: 8, lr: 1.0e-3, warmup_steps: 1,
           batch_size: 8, epochs: 1, validation_fraction: 0.25, progress: false}}
evaluation: {{max_new_tokens: 4, top_k: 5}}
""")
    return path


def test_iterate_in_a_host_process_is_quiet_and_gives_the_settings_back(recipe, tmp_path):
    result = run(["iterate", str(recipe)], tmp_path, host=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert noise(result.stderr) == [], result.stderr[-3000:]
    assert "[mavis iterate]" in result.stderr  # mavis's own notes stay
    assert "host settings: True 30" in result.stderr  # bars on, WARNING: as the host had them


def test_generate_is_quiet_unless_verbose(tmp_path, tiny_lm):
    args = ["generate", "hi", "--model", str(tiny_lm), "--beta", "0", "--max-new-tokens", "2"]
    for host in (False, True):
        result = run(args, tmp_path, host=host)
        assert result.returncode == 0 and noise(result.stderr) == [], result.stderr
    verbose = run(["--verbose", *args], tmp_path, host=True)  # the test can see the bar
    assert verbose.returncode == 0 and "Loading weights" in verbose.stderr, verbose.stderr
