"""`mavis data score`: scoring an existing tree file with more objectives (paper section 4.5).

Trees collected on a tiny model with objective A, then scored with B, must equal the trees
collected with A and B from the start; objectives already present are refused unless replaced;
a killed run leaves the file whole and resumes; bad names are refused before any work."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import mavis
from mavis.cli import main
from mavis.decoding.decoder import MavisDecoder
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm
from mavis.trees import rescore
from mavis.trees.collect import collect_trees
from mavis.trees.rescore import score_trees
from mavis.trees.settings import CollectionSettings
from mavis.trees.store import read_trees, write_trees
from mavis.trees.table import TreeTable

PROMPTS = ["hello there", "how are you today", "tell me a joke", "what is up",
           "good morning friend"]
SETTINGS = CollectionSettings.from_dict(dict(T=12, L=3, K_root=3, K=2, top_k=6,
                                             temperature=0.8, seed=3, batch_prompts=2))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rewards(tmp_path_factory) -> dict[str, str]:
    """`python:` objectives: A (share of vowels), B (count of "e"), and a slow one that
    sleeps MAVIS_TEST_SLEEP seconds per call and counts its calls in MAVIS_TEST_CALLS."""
    path = tmp_path_factory.mktemp("objectives") / "rescore_rewards.py"
    path.write_text(textwrap.dedent("""
        import os
        import time
        from pathlib import Path

        def vowels(prompts, responses):
            return [sum(c in "aeiou" for c in r) / max(len(r), 1) for r in responses]

        def count_e(prompts, responses):
            return [float(r.count("e")) + 0.1 * len(p) for p, r in zip(prompts, responses)]

        def slow(prompts, responses):
            time.sleep(float(os.environ.get("MAVIS_TEST_SLEEP", "0")))
            calls = os.environ.get("MAVIS_TEST_CALLS")
            if calls:
                counter = Path(calls)
                done = int(counter.read_text()) if counter.exists() else 0
                counter.write_text(str(done + 1))
            return [len(r) / 7.0 for r in responses]
    """))
    return {name: f"python:{path}:{name}" for name in ("vowels", "count_e", "slow")}


@pytest.fixture(scope="module")
def decoder(tiny_lm) -> MavisDecoder:
    model, tokenizer = load_causal_lm(str(tiny_lm))
    return MavisDecoder(model, tokenizer)


def collect(decoder, objectives, out: Path) -> Path:
    return collect_trees(decoder, PROMPTS, objectives, out, SETTINGS, progress=False,
                         meta={"prompt_set": "inline"})


@pytest.fixture(scope="module")
def only_a(decoder, rewards, tmp_path_factory) -> Path:
    return collect(decoder, [rewards["vowels"]], tmp_path_factory.mktemp("a") / "a.h5")


@pytest.fixture(scope="module")
def all_three(decoder, rewards, tmp_path_factory) -> Path:
    return collect(decoder, [rewards["vowels"], rewards["count_e"], "positive"],
                   tmp_path_factory.mktemp("abc") / "abc.h5")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_trees(a: TreeTable, b: TreeTable, *, meta: bool = True) -> None:
    assert a.objectives == b.objectives
    for name in a.data:
        np.testing.assert_array_equal(a.data[name], b.data[name], err_msg=name)
    if meta:
        assert a.meta == b.meta


def leftovers(folder: Path) -> list[str]:
    """Hidden files (side files, temporary files) in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- (a) the same as collecting the objective from the start ---------------------------------

def test_scoring_later_equals_collecting_from_the_start(only_a, all_three, rewards, tmp_path):
    before = digest(only_a)
    out = tmp_path / "scored.h5"
    added = [rewards["count_e"], "positive"]
    assert score_trees(only_a, added, out=out, progress=False, chunk_leaves=7) == out
    assert digest(only_a) == before  # the source is left alone
    scored, collected, source = read_trees(out), read_trees(all_three), read_trees(only_a)
    assert scored.objectives == collected.objectives == [rewards["vowels"], *added]
    assert_same_trees(scored, collected, meta=False)  # rewards and values bit for bit
    assert scored.meta == {**source.meta, "scored_later": added}
    assert leftovers(tmp_path) == []  # the side file is removed at the end
    # chunking does not change the result
    score_trees(only_a, added, out=tmp_path / "one-chunk.h5", progress=False,
                chunk_leaves=10_000)
    assert_same_trees(read_trees(tmp_path / "one-chunk.h5"), scored)


def test_leaf_texts_are_the_collected_responses(only_a, decoder):
    table = read_trees(only_a)
    leaves = np.flatnonzero(table.is_leaf)[:5]
    prompts, responses = rescore.leaf_texts(table, leaves, decoder.tokenizer)
    assert prompts == [PROMPTS[int(table.prompt[n])] for n in leaves]
    assert responses == [decoder.tokenizer.decode(table.response_tokens(n).tolist(),
                                                  skip_special_tokens=True) for n in leaves]


# -- (b) objectives already present ----------------------------------------------------------

def test_present_objective_is_refused_and_replace_recomputes_it(all_three, rewards, tmp_path):
    tampered = read_trees(all_three)
    tampered.data["nodes/reward"][:, 1] = np.where(tampered.is_leaf, 0.0, np.nan)
    tampered.data["nodes/value"][:, 1] = 0.0
    path = write_trees(tmp_path / "tampered.h5", tampered)
    before = digest(path)
    with pytest.raises(MavisError, match=r"count_e' already in .*--replace"):
        score_trees(path, rewards["count_e"], progress=False)
    assert digest(path) == before
    score_trees(path, rewards["count_e"], replace=True, progress=False, chunk_leaves=9)
    fixed = read_trees(path)
    assert_same_trees(fixed, read_trees(all_three), meta=False)  # same column order, too
    assert fixed.meta["scored_later"] == [rewards["count_e"]]
    # replacing one and adding another in one call
    score_trees(path, ["positive", rewards["slow"]], replace=True, progress=False)
    again = read_trees(path)
    assert again.objectives == [*fixed.objectives, rewards["slow"]]
    np.testing.assert_array_equal(again.reward[:, :3], fixed.reward)
    assert again.meta["scored_later"] == [rewards["count_e"], "positive", rewards["slow"]]


def test_a_file_scored_in_place_is_still_the_collection_it_was(only_a, decoder, rewards,
                                                               tmp_path, capsys):
    """Objectives scored later do not change the trees: the same collection finds the file
    complete (a recipe's iteration 0 goes on to training) instead of refusing it."""
    path = shutil.copy(only_a, tmp_path / "trees.h5")
    score_trees(path, "positive", progress=False)
    scored = digest(path)
    assert collect(decoder, [rewards["vowels"]], path) == path
    assert "already complete" in capsys.readouterr().err and digest(path) == scored


# -- (c) killed half-way: the file stays whole, the next run resumes ---------------------------

def test_killed_run_keeps_the_file_whole_and_resumes(only_a, rewards, tmp_path, monkeypatch):
    path = shutil.copy(only_a, tmp_path / "trees.h5")
    before = digest(path)
    leaves = int(read_trees(path).is_leaf.sum())
    chunk = 4
    assert leaves > 4 * chunk
    command = [sys.executable, "-m", "mavis", "data", "score", str(path), "--objectives",
               rewards["slow"], "--chunk-leaves", str(chunk), "--no-progress"]
    src = str(Path(mavis.__file__).resolve().parents[1])  # this checkout's mavis
    env = {**os.environ, "MAVIS_TEST_SLEEP": "0.3",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".trees.h5.score-*.npz")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert digest(path) == before  # untouched, and it still reads
    assert read_trees(path).objectives == [rewards["vowels"]]

    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("MAVIS_TEST_CALLS", str(calls))
    main(["data", "score", str(path), "--objectives", rewards["slow"], "--chunk-leaves",
          str(chunk), "--no-progress"])
    saved_chunks = -(-leaves // chunk) - int(calls.read_text())
    assert saved_chunks >= 1  # the finished chunks were not scored again
    assert leftovers(tmp_path) == []

    fresh = tmp_path / "fresh.h5"
    score_trees(only_a, rewards["slow"], out=fresh, progress=False)
    assert_same_trees(read_trees(path), read_trees(fresh))


def test_side_file_of_other_objectives_is_not_resumed(only_a, rewards, tmp_path):
    path = shutil.copy(only_a, tmp_path / "trees.h5")
    plan = rescore.plan_scoring(path, rewards["slow"], out=None, replace=False,
                                tokenizer=None, chunk_leaves=4)
    other = rescore.plan_scoring(path, rewards["count_e"], out=None, replace=False,
                                 tokenizer=None, chunk_leaves=4)
    assert plan.side != other.side and plan.key != other.key
    count = len(plan.leaves)
    rescore.save_side(plan, np.zeros((count, 1)), 8)
    assert rescore.load_side(plan, count)[1] == 8
    plan.key = other.key  # a side file holding another key starts afresh
    scores, done = rescore.load_side(plan, count)
    assert done == 0 and np.isnan(scores).all()


# -- (d) refused before any work -------------------------------------------------------------

def test_bad_names_are_refused_before_any_work(only_a, rewards, tmp_path, monkeypatch, capsys):
    path = shutil.copy(only_a, tmp_path / "trees.h5")
    before = digest(path)

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the names were checked")

    monkeypatch.setattr(rescore, "load_tokenizer", forbidden)
    monkeypatch.setattr(rescore, "score_all", forbidden)
    with pytest.raises(MavisError, match="unknown objective 'nope'"):
        score_trees(path, "positive,nope")
    with pytest.raises(MavisError, match="does not exist"):
        score_trees(path, f"python:{tmp_path}/missing.py:f")
    with pytest.raises(MavisError, match="has no function 'nope'"):
        score_trees(path, rewards["slow"].replace(":slow", ":nope"))
    with pytest.raises(MavisError, match="vowels' already in"):
        score_trees(path, [rewards["count_e"], rewards["vowels"]])
    with pytest.raises(MavisError, match="no tree file"):
        score_trees(tmp_path / "none.h5", "positive")
    with pytest.raises(MavisError, match="exists; choose a new name"):
        score_trees(path, "positive", out=only_a)
    assert main(["data", "score", str(path), "--objectives", "witty,nope"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: unknown objective 'nope'") and "\n" not in error
    assert digest(path) == before and leftovers(tmp_path) == []


def test_foreign_tokenizer_is_refused(only_a, other_tokenizer_lm, tmp_path):
    with pytest.raises(MavisError, match="beyond the vocabulary"):
        score_trees(only_a, "positive", out=tmp_path / "x.h5",
                    tokenizer=str(other_tokenizer_lm), progress=False)
    assert not (tmp_path / "x.h5").exists()


# -- the command line --------------------------------------------------------------------------

def test_cli_score(only_a, rewards, tmp_path, capsys):
    out = tmp_path / "more.h5"
    args = ["data", "score", str(only_a), "--objectives", f"{rewards['count_e']}, positive",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    leaves = int(read_trees(only_a).is_leaf.sum())
    line = capsys.readouterr().out.strip()
    assert line == (f"wrote {out}: scored {leaves} leaves with {rewards['count_e']}, positive; "
                    f"objectives now: {rewards['vowels']}, {rewards['count_e']}, positive")
    assert main(args) == 2
    assert "exists; choose a new name" in capsys.readouterr().err
    assert main(args[:-3] + ["--out", str(tmp_path / "y.txt")]) == 2
    assert "should end in .h5" in capsys.readouterr().err
    assert main(["data", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "positive" in text and "scored_later" in text
