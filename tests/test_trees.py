"""Tree data collection (GET_DATA, Algorithm 3): shape rules, value/LPR propagation, the HDF5
store, collection on tiny models, the two-layer guarantee, resuming, inspection and the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama
from scipy.stats import chisquare

from mavis.cli import main
from mavis.decoding.decoder import MavisDecoder
from mavis.decoding.tilt import mavis_logprobs, top_k_candidates
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm
from mavis.models.value_model import ValueModel
from mavis.trees.collect import collect_trees
from mavis.trees.decoder_spec import DecoderSpec
from mavis.trees.settings import SAMPLING_KEYS, CollectionSettings
from mavis.trees.store import merge_parts, read_trees, write_trees
from mavis.trees.table import TreeTable
from mavis.trees.tree_shape import (
    children_count,
    is_terminal,
    node_depths,
    path_sums,
    propagate_means,
    round_half_up,
    sample_segment_length,
    segment_bounds,
)

PROMPTS = ["hello there", "how are you today", "tell me a joke", "what is up",
           "good morning friend"]


pytestmark = pytest.mark.usefixtures("one_thread")


# -- helpers -----------------------------------------------------------------------------------

def assert_same_file(a: Path, b: Path) -> None:
    """Every dataset equal (NaN == NaN), and the same objectives and meta."""
    x, y = read_trees(a), read_trees(b)
    assert x.objectives == y.objectives
    assert x.meta == y.meta
    for name in x.data:
        left, right = x.data[name], y.data[name]
        assert left.shape == right.shape, name
        if left.dtype.kind == "f":
            np.testing.assert_array_equal(left, right, err_msg=name)
        else:
            assert left.tolist() == right.tolist(), name


def check_tree_rules(data: TreeTable, *, T: int, L: int, K_root: int, K: int, eos: int,
                     split_children: int | None = None) -> set[int]:
    """Algorithm 3's invariants on every node of `data` (see the asserts); returns the nodes
    split by the two-layer guarantee."""
    parent, depth, leaf, eos_end = data.parent, data.depth, data.is_leaf, data.ended_eos
    counts = data.token_count
    used = path_sums(parent, counts)
    children = {n: data.children(n) for n in range(data.num_nodes)}
    # first-layer nodes split by the two-layer guarantee: 1 + split_children children, the
    # first being the split-off rest of the answer (EOS included)
    split = {n for n in range(data.num_nodes) if split_children is not None
             and depth[n] == 1 and len(children[n]) == 1 + split_children
             and eos_end[children[n][0]] and depth[children[n][0]] == 2}
    for node in range(data.num_nodes):
        kids = children[node]
        segment = data.segment(node)
        # EOS only ever ends a segment, and a segment that ends with EOS is a leaf
        assert eos not in segment[:-1].tolist()
        assert eos_end[node] == (len(segment) > 0 and int(segment[-1]) == eos)
        if eos_end[node]:
            assert leaf[node]
        if leaf[node]:
            assert len(kids) == 0
            # leaves have exactly T tokens unless they ended with EOS
            assert used[node] == T or (eos_end[node] and used[node] <= T)
            assert depth[node] <= L
            continue
        assert used[node] < T and depth[node] < L
        if node in split:
            assert leaf[kids[0]]
            grown = kids[1:]
        else:
            assert len(kids) == children_count(int(depth[node]), K_root, K)
            grown = kids
        low, high = segment_bounds(int(depth[node]), T - int(used[node]), L)
        # siblings share one drawn length; EOS (or a split) may end a segment earlier
        full = {int(counts[k]) for k in grown if not eos_end[k] and k not in split}
        assert len(full) <= 1
        length = full.pop() if full else max(int(counts[k]) for k in grown)
        assert low <= length <= high or not full and any(eos_end[k] or k in split
                                                          for k in grown)
        for k in grown:
            assert 1 <= counts[k] <= length
            assert eos_end[k] or k in split or counts[k] == length
    return split


def check_values(data: TreeTable) -> None:
    """Leaves: value = reward, LPR = sum over the response; inner nodes: children's means."""
    reward, value, lpr = data.reward, data.value, data.lpr
    for node in range(data.num_nodes):
        if data.is_leaf[node]:
            np.testing.assert_allclose(value[node], reward[node], rtol=1e-6)
            gen = data.response_tokens(node, "tokens/logp_gen").astype(np.float64)
            ref = data.response_tokens(node, "tokens/logp_ref").astype(np.float64)
            assert lpr[node] == pytest.approx(float((gen - ref).sum()), abs=1e-4)
        else:
            assert np.isnan(reward[node]).all()
            kids = data.children(node)
            np.testing.assert_allclose(value[node], value[kids].mean(0), rtol=1e-5, atol=1e-6)
            assert lpr[node] == pytest.approx(float(lpr[kids].astype(np.float64).mean()),
                                              abs=1e-5)


def objective_file(folder: Path) -> str:
    """A `python:` objective: the response's share of vowels; sleeps when asked to (for the
    kill test), so that a collection can be caught half-way."""
    path = folder / "vowels.py"
    path.write_text(textwrap.dedent("""
        import os
        import time

        def vowels(prompts, responses):
            time.sleep(float(os.environ.get("MAVIS_TEST_SLEEP", "0")))
            return [sum(c in "aeiou" for c in r) / max(len(r), 1) for r in responses]
    """))
    return f"python:{path}:vowels"


@pytest.fixture(scope="module")
def objective(tmp_path_factory) -> str:
    return objective_file(tmp_path_factory.mktemp("objective"))


@pytest.fixture(scope="module")
def decoder(tiny_lm) -> MavisDecoder:
    model, tokenizer = load_causal_lm(str(tiny_lm))
    return MavisDecoder(model, tokenizer)


@pytest.fixture(scope="module")
def eos_lm(tmp_path_factory) -> Path:
    """A tiny Llama over 7 tokens whose final norm is zero: every next-token distribution is
    uniform, so EOS comes with probability 1/7 at every step (many short answers)."""
    from transformers import LlamaForCausalLM

    path = build_tiny_llama(tmp_path_factory.mktemp("eos-lm"), alphabet="ab")
    model = LlamaForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(path)
    return path


# -- shape rules (pure) ----------------------------------------------------------------------

def test_round_half_up():
    assert [round_half_up(x) for x in (0.49, 0.5, 1.5, 2.5, 3.2)] == [0, 1, 2, 3, 3]


def test_segment_bounds_known_values():
    assert segment_bounds(0, 48, 4) == (1, 23)  # 2 * round(12) - 1
    assert segment_bounds(1, 40, 4) == (1, 25)  # 2 * round(13.3) - 1
    assert segment_bounds(2, 5, 4) == (1, 5)  # 2 * round(2.5) - 1 = 5 = N
    assert segment_bounds(0, 1, 3) == (1, 1)  # 2 * round(0.33) - 1 = -1 -> guarded to 1
    assert segment_bounds(3, 17, 4) == (17, 17)  # the last layer fills up to T
    with pytest.raises(ValueError):
        segment_bounds(0, 0, 4)
    with pytest.raises(ValueError):
        segment_bounds(4, 10, 4)


def test_segment_bounds_enumerated():
    for layers in range(1, 7):
        for remaining in range(1, 80):
            for depth in range(layers):
                low, high = segment_bounds(depth, remaining, layers)
                assert 1 <= low <= high <= remaining
                if depth == layers - 1:
                    assert low == high == remaining
                else:
                    rule = 2 * math.floor(remaining / (layers - depth) + 0.5) - 1
                    assert low == 1 and high == min(max(rule, 1), remaining)


def test_segment_lengths_are_uniform_on_the_rule():
    rng = np.random.default_rng(0)
    draws = np.array([sample_segment_length(0, 48, 4, rng) for _ in range(23 * 400)])
    assert set(draws.tolist()) == set(range(1, 24))
    _, p = chisquare(np.bincount(draws, minlength=24)[1:])
    assert p > 1e-3
    assert draws.mean() == pytest.approx(12, abs=0.3)


def test_layers_can_end_at_every_length_and_leaves_fill_T():
    """The paper: a layer can end at any completion length between 1 and T, and unless EOS
    every leaf has exactly T tokens. Simulated with the shape rule alone."""
    rng = np.random.default_rng(1)
    T, L = 30, 4
    ends: set[int] = set()
    for _ in range(3000):
        used, depth = 0, 0
        while not is_terminal(depth, used, T, L, ended_eos=False):
            used += sample_segment_length(depth, T - used, L, rng)
            depth += 1
            ends.add(used)
        assert used == T and 1 <= depth <= L
    assert ends == set(range(1, T + 1))


def test_children_count_and_terminal():
    assert children_count(0, 4, 2) == 4 and children_count(1, 4, 2) == 2
    assert is_terminal(2, 5, 10, 4, ended_eos=True)
    assert is_terminal(4, 5, 10, 4, ended_eos=False)
    assert is_terminal(1, 10, 10, 4, ended_eos=False)
    assert not is_terminal(1, 5, 10, 4, ended_eos=False)


def test_values_are_means_of_children_not_of_leaves():
    #        0
    #      /   \
    #     1     2 (leaf 1.0)
    #    / \
    #   3   4        3: leaf 2.0
    #      / \
    #     5   6      5: leaf 4.0, 6: leaf 6.0
    parent = [-1, 0, 0, 1, 1, 4, 4]
    leaf = [False, False, True, True, False, True, True]
    rewards = np.array([[np.nan, 0], [np.nan, 0], [1.0, 10], [2.0, 20], [np.nan, 0],
                        [4.0, 40], [6.0, 60]])
    values = propagate_means(parent, leaf, rewards)
    np.testing.assert_allclose(values[:, 0], [2.25, 3.5, 1.0, 2.0, 5.0, 4.0, 6.0])
    np.testing.assert_allclose(values[:, 1], 10 * values[:, 0])
    # the mean of the root's leaves would be 3.25: the tree is weighted by branching
    assert values[0, 0] != pytest.approx(np.mean([1, 2, 4, 6]))
    np.testing.assert_allclose(propagate_means(parent, leaf, rewards[:, 0]), values[:, 0])
    assert node_depths(parent).tolist() == [0, 1, 1, 2, 2, 3, 3]
    np.testing.assert_allclose(path_sums(parent, [0, 1, 2, 3, 4, 5, 6]), [0, 1, 2, 4, 5, 10, 11])


def test_propagation_rejects_malformed_trees():
    with pytest.raises(ValueError, match="no children"):
        propagate_means([-1, 0, 0], [False, False, True], np.zeros(3))
    with pytest.raises(ValueError, match="before"):
        propagate_means([-1, 2, 0], [False, True, False], np.zeros(3))
    with pytest.raises(ValueError, match="leaf has children"):
        propagate_means([-1, 0, 1], [False, True, True], np.zeros(3))


# -- the store -------------------------------------------------------------------------------

def hand_built(objectives=("a", "b"), shift: int = 0) -> TreeTable:
    """Two trees: prompt 0 (3 tokens) with root -> (n1 -> n3, n4), n2; prompt 1 (2 tokens)
    with root -> n6."""
    return TreeTable(list(objectives), {"T": 4, "note": "hand-built"}, {
        "prompts/text": ["first ü", "second"],
        "prompts/id": ["p0", "p1"],
        "prompts/token_offset": [0, 3],
        "prompts/token_count": [3, 2],
        "prompts/tokens": [1, 2, 3, 4, 5],
        "prompts/first_node": [0, 5],
        "prompts/node_count": [5, 2],
        "nodes/parent": [-1, 0, 0, 1, 1, -1, 5],
        "nodes/depth": [0, 1, 1, 2, 2, 0, 1],
        "nodes/prompt": [0, 0, 0, 0, 0, 1, 1],
        "nodes/token_offset": [0, 0, 2, 6, 8, 10, 10],
        "nodes/token_count": [0, 2, 4, 2, 2, 0, 3],
        "nodes/is_leaf": [False, False, True, True, True, False, True],
        "nodes/ended_eos": [False, False, False, False, True, False, True],
        "nodes/reward": [[np.nan] * 2, [np.nan] * 2, [1, 2], [3, 4], [5, 6], [np.nan] * 2,
                         [7, 8]],
        "nodes/value": [[2.5, 3.5], [4, 5], [1, 2], [3, 4], [5, 6], [7, 8], [7, 8]],
        "nodes/lpr": [0.5, 0.25, 0.75, 0.5, 0.0, 1.0, 1.0],
        "tokens/id": (np.arange(13) + 10 + shift).tolist(),
        "tokens/logp_gen": -np.arange(13) / 10,
        "tokens/logp_ref": -np.arange(13) / 5,
    })


def test_write_read_round_trip(tmp_path):
    trees = hand_built()
    path = write_trees(tmp_path / "t.h5", trees)
    back = read_trees(path)
    assert back.objectives == ["a", "b"] and back.meta == {"T": 4, "note": "hand-built"}
    for name, array in trees.data.items():
        np.testing.assert_array_equal(back.data[name], array, err_msg=name)
    assert back.data["prompts/text"].tolist() == ["first ü", "second"]
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    data = read_trees(path)
    assert (data.num_prompts, data.num_nodes, data.num_tokens) == (2, 7, 13)
    assert data.ancestors(4) == [0, 1, 4]
    assert data.path_tokens(4).tolist() == [1, 2, 3, 10, 11, 18, 19]
    assert data.path_tokens(2).tolist() == [1, 2, 3, 12, 13, 14, 15]
    assert data.path_tokens(6).tolist() == [4, 5, 20, 21, 22]
    assert data.path_tokens(0).tolist() == [1, 2, 3]
    assert data.children(1).tolist() == [3, 4]
    assert list(data.tree(1)) == [5, 6]
    assert data.response_tokens(4, "tokens/logp_gen") == pytest.approx([0, -0.1, -0.8, -0.9])


def test_validate_catches_broken_offsets():
    trees = hand_built()
    trees.data["nodes/token_offset"][3] += 1
    with pytest.raises(ValueError, match="back to back"):
        trees.validate()
    trees = hand_built()
    trees.data["nodes/prompt"][4] = 1
    with pytest.raises(ValueError, match="nodes/prompt"):
        trees.validate()


def test_merge_parts_shifts_indices(tmp_path):
    first, second = hand_built(), hand_built(shift=100)
    parts = [write_trees(tmp_path / "p0.h5", first), write_trees(tmp_path / "p1.h5", second)]
    out = merge_parts(parts, tmp_path / "all.h5", meta={"merged": True})
    merged = read_trees(out)
    merged.validate()
    expected = TreeTable.concat([first, second], meta={"merged": True})
    for name in expected.data:
        np.testing.assert_array_equal(merged.data[name], expected.data[name], err_msg=name)
    data = read_trees(out)
    assert data.num_prompts == 4 and data.meta == {"merged": True}
    assert data.path_tokens(7 + 4).tolist() == [1, 2, 3, 110, 111, 118, 119]
    assert data.parent[7:].tolist() == [-1, 7, 7, 8, 8, -1, 12]
    write_trees(tmp_path / "other.h5", hand_built(objectives=("a", "c")))
    with pytest.raises(MavisError, match="objectives"):
        merge_parts([parts[0], tmp_path / "other.h5"], tmp_path / "bad.h5")


def renamed(table: TreeTable, prefix: str, **meta) -> TreeTable:
    """`table` with other prompt ids (and meta entries set)."""
    table.data["prompts/id"] = np.asarray([f"{prefix}{i}" for i in range(table.num_prompts)],
                                          dtype=object)
    table.meta.update(meta)
    return table


def test_merged_meta_keeps_the_tree_settings_and_lists_the_parts():
    from mavis.trees.merge import merged_meta

    recipe = {"T": 48, "top_k": 40, "num_prompts": 800, "prompts_sha256": "a", "seed": 0,
              "recipe": "default", "prompt_sets": ["chitchat", "harmful"],
              "objectives": ["relevant"], "scored_later": ["witty"]}
    more = {"T": 48, "top_k": 40, "num_prompts": 300, "prompts_sha256": "b", "seed": 1,
            "prompt_set": "chitchat", "split": "train", "skip": 400,
            "objectives": ["relevant", "witty"]}
    meta = merged_meta([recipe, more], ["a.h5", "b.h5"])
    assert meta["T"] == 48 and meta["top_k"] == 40 and meta["num_prompts"] == 1100
    assert meta["prompt_sets"] == ["chitchat", "harmful"] and meta["scored_later"] == ["witty"]
    assert [p["file"] for p in meta["merged_from"]] == ["a.h5", "b.h5"]
    assert meta["merged_from"][1]["skip"] == 400 and meta["merged_from"][1]["seed"] == 1
    assert "seed" not in meta and "recipe" not in meta
    assert meta["prompts_sha256"] != merged_meta([more, recipe], ["b", "a"])["prompts_sha256"]
    with pytest.raises(MavisError, match=r"b.h5 was collected with T = 32, a.h5 with 48"):
        merged_meta([recipe, {**more, "T": 32}], ["a.h5", "b.h5"])
    with pytest.raises(MavisError, match="top_p = 0.9.*with null"):
        merged_meta([recipe, {**more, "top_p": 0.9}], ["a.h5", "b.h5"])


def test_merge_tree_files_concatenates_and_refuses_mixed_trees(tmp_path, capsys):
    from mavis.trees.merge import merge_tree_files

    first = write_trees(tmp_path / "a.h5", renamed(hand_built(), "a", num_prompts=2, seed=0))
    second = write_trees(tmp_path / "b.h5",
                         renamed(hand_built(shift=100), "b", num_prompts=2, seed=5))
    out = merge_tree_files([first, second], tmp_path / "ab.h5")
    merged = read_trees(out)
    assert merged.prompt_ids == ["a0", "a1", "b0", "b1"] and merged.num_prompts == 4
    expected = TreeTable.concat([read_trees(first), read_trees(second)])
    for name in expected.data:
        np.testing.assert_array_equal(merged.data[name], expected.data[name], err_msg=name)
    assert merged.meta["num_prompts"] == 4 and merged.meta["T"] == 4
    assert [p["seed"] for p in merged.meta["merged_from"]] == [0, 5]

    again = write_trees(tmp_path / "again.h5", renamed(hand_built(), "b", num_prompts=2))
    with pytest.raises(MavisError, match="prompt b0 is in both .*b.h5 and .*again.h5"):
        merge_tree_files([first, second, again], tmp_path / "x.h5")
    longer = write_trees(tmp_path / "t5.h5", renamed(hand_built(), "c", T=5))
    with pytest.raises(MavisError, match="collected with T = 5"):
        merge_tree_files([first, longer], tmp_path / "x.h5")
    other = write_trees(tmp_path / "ac.h5", renamed(hand_built(objectives=("a", "c")), "d"))
    with pytest.raises(MavisError, match="objectives.*mavis data score"):
        merge_tree_files([first, other], tmp_path / "x.h5")
    with pytest.raises(MavisError, match="one of the files to merge"):
        merge_tree_files([first, second], first)
    with pytest.raises(MavisError, match="at least two"):
        merge_tree_files([first], tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()

    assert main(["data", "merge", str(first), str(second), "--out",
                 str(tmp_path / "cli.h5")]) == 0
    assert f"wrote {tmp_path / 'cli.h5'}: 4 trees from 2 files" in capsys.readouterr().out
    assert main(["data", "merge", str(first), str(again), str(second), "--out",
                 str(tmp_path / "y.h5")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "prompt b0 is in both" in err and "Traceback" not in err


def test_reading_a_foreign_file_is_a_clear_error(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle.attrs["format"] = "something-else"
    with pytest.raises(MavisError, match="not a mavis tree file"):
        read_trees(tmp_path / "x.h5")
    with pytest.raises(MavisError, match="no tree file"):
        read_trees(tmp_path / "missing.h5")
    with pytest.raises(MavisError, match="is a folder"):
        read_trees(tmp_path)
    good = write_trees(tmp_path / "good.h5", hand_built())
    damaged = tmp_path / "damaged.h5"
    blob = bytearray(good.read_bytes())
    middle = len(blob) // 2
    blob[middle:middle + 4096] = bytes(4096)  # zero a block in the middle
    damaged.write_bytes(bytes(blob))
    with pytest.raises(MavisError, match="damaged.h5"):
        read_trees(damaged)


# -- collection on the tiny reference --------------------------------------------------------

SHAPE = {"T": 12, "L": 3, "K_root": 3, "K": 2}
SETTING_NAMES = (set(CollectionSettings.__dataclass_fields__) - {"sampling"}) | set(SAMPLING_KEYS)


def collect(decoder, prompts, objectives, out, **kwargs):
    """`collect_trees` with the settings given as keywords, flat as a recipe spells them."""
    settings = CollectionSettings.from_dict({k: v for k, v in kwargs.items()
                                             if k in SETTING_NAMES})
    rest = {k: v for k, v in kwargs.items() if k not in SETTING_NAMES}
    return collect_trees(decoder, prompts, objectives, out, settings, **rest)


@pytest.fixture(scope="module")
def reference_trees(decoder, objective, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trees") / "trees.h5"
    return collect(decoder, PROMPTS, [objective, "positive"], out, **SHAPE, top_k=6,
                         temperature=0.8, seed=3, batch_prompts=2, progress=False,
                         meta={"prompt_set": "inline"})


def test_collected_trees_follow_algorithm_3(reference_trees, decoder):
    data = read_trees(reference_trees)
    assert data.num_prompts == len(PROMPTS)
    assert data["prompts/text"].tolist() == PROMPTS
    check_tree_rules(data, **SHAPE, eos=decoder.tokenizer.eos_token_id)
    check_values(data)
    assert data.meta["generator"] == "reference" and data.meta["iteration"] == 0
    assert data.meta["prompt_set"] == "inline" and data.meta["T"] == 12
    # the random segment lengths actually vary
    assert len(set(data.token_count[data.depth == 1].tolist())) > 1


def test_rewards_are_the_objectives_on_the_decoded_responses(reference_trees, decoder,
                                                             objective):
    from mavis.objectives import score_all

    data = read_trees(reference_trees)
    leaves = np.nonzero(data.is_leaf)[0]
    texts = [decoder.tokenizer.decode(data.response_tokens(n).tolist(),
                                      skip_special_tokens=True) for n in leaves]
    prompts = [PROMPTS[int(data.prompt[n])] for n in leaves]
    expected = score_all([objective, "positive"], prompts, texts)
    np.testing.assert_allclose(data.reward[leaves, 0], expected[objective], rtol=1e-6)
    np.testing.assert_allclose(data.reward[leaves, 1], expected["positive"], rtol=1e-6)


def test_stored_logprobs_equal_a_fresh_forward(reference_trees, decoder):
    """log pi_ref (temperature 1, full vocabulary) and log pi_gen (top-6 at temperature 0.8)
    of every stored token, recomputed from scratch along each leaf's path."""
    data = read_trees(reference_trees)
    for leaf in np.nonzero(data.is_leaf)[0]:
        ids = torch.tensor(data.path_tokens(int(leaf)))
        start = len(data.prompt_tokens(int(data.prompt[leaf])))
        with torch.no_grad():
            logits = decoder.reference(ids[None]).logits[0, start - 1:-1].float()
        targets = ids[start:]
        ref = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
        top, cand = top_k_candidates(logits, 6, 0.8)
        renorm = top - torch.logsumexp(top, -1, keepdim=True)
        gen = renorm[cand == targets[:, None]]
        np.testing.assert_allclose(data.response_tokens(int(leaf), "tokens/logp_ref"),
                                   ref.numpy(), atol=1e-4)
        np.testing.assert_allclose(data.response_tokens(int(leaf), "tokens/logp_gen"),
                                   gen.numpy(), atol=1e-4)


def test_same_seed_same_trees_other_seed_other_trees(reference_trees, decoder, objective,
                                                     tmp_path):
    again = collect(decoder, PROMPTS, [objective, "positive"], tmp_path / "again.h5",
                          **SHAPE, top_k=6, temperature=0.8, seed=3, batch_prompts=2,
                          progress=False, meta={"prompt_set": "inline"})
    assert_same_file(reference_trees, again)
    other = collect(decoder, PROMPTS, [objective, "positive"], tmp_path / "other.h5",
                          **SHAPE, top_k=6, temperature=0.8, seed=4, batch_prompts=2,
                          progress=False, meta={"prompt_set": "inline"})
    assert read_trees(other).data["tokens/id"].tolist() != read_trees(
        reference_trees).data["tokens/id"].tolist()


def test_guided_collection_tracks_the_mavis_policy(tiny_lm, objective, tmp_path):
    """Trees sampled from the MAVIS policy: stored log pi_gen equals the tilted top-k
    distribution recomputed without any cache, through every branch point (the value-model
    caches are duplicated when a node branches)."""
    model, tokenizer = load_causal_lm(str(tiny_lm))
    torch.manual_seed(5)
    vm = ValueModel.build(str(tiny_lm), ["v"], num_layers=1, lora=None)
    with torch.no_grad():
        vm.head.weight.normal_(std=1.0)
    guided = MavisDecoder(model, tokenizer, [vm.eval()])
    out = collect(guided, PROMPTS[:2], objective, tmp_path / "guided.h5", T=8, L=3,
                        K_root=2, K=2, top_k=4, beta=2.0, seed=0, progress=False,
                        certain_p=1.0)  # every step guided: the exact tilt below
    data = read_trees(out)
    check_tree_rules(data, T=8, L=3, K_root=2, K=2, eos=tokenizer.eos_token_id)
    check_values(data)
    assert data.meta["generator"]["beta"] == 2.0
    assert data.meta["generator"]["weights"] == {"v": 1.0}
    assert data.meta["generator"]["value_models"] == [{"objectives": ["v"],
                                                       "base": str(tiny_lm)}]
    assert data.meta["iteration"] is None
    for leaf in np.nonzero(data.is_leaf)[0][:6]:
        ids = torch.tensor(data.path_tokens(int(leaf)))
        start = len(data.prompt_tokens(int(data.prompt[leaf])))
        stored = data.response_tokens(int(leaf), "tokens/logp_gen")
        with torch.no_grad():
            logits = model(ids[None]).logits[0].float()
            for t in range(start, len(ids)):
                logp, cand = top_k_candidates(logits[t - 1][None], 4)
                seqs = torch.cat([ids[:t].expand(4, -1), cand[0][:, None]], 1)
                values = vm.values(seqs, torch.ones_like(seqs))[:, 0]
                policy = mavis_logprobs(logp, values[None, :, None], torch.ones(1), 2.0)[0]
                chosen = int((cand[0] == ids[t]).nonzero()[0, 0])
                assert stored[t - start] == pytest.approx(float(policy[chosen]), abs=1e-4)


# -- the two-layer guarantee -----------------------------------------------------------------

EOS_PROMPTS = ["ab", "ba", "aab", "abb", "bab", "bba", "aba", "bbb", "aaa", "baa"]


def test_two_layer_guarantee(eos_lm, objective, tmp_path):
    model, tokenizer = load_causal_lm(str(eos_lm))
    decoder = MavisDecoder(model, tokenizer)
    eos = tokenizer.eos_token_id
    shape = {"T": 16, "L": 3, "K_root": 2, "K": 2}
    plain = collect(decoder, EOS_PROMPTS, objective, tmp_path / "plain.h5", **shape,
                          top_k=7, seed=0, progress=False)
    kept = collect(decoder, EOS_PROMPTS, objective, tmp_path / "kept.h5", **shape,
                         top_k=7, seed=0, two_layer_guarantee=True, extra_children=3,
                         progress=False)

    def tree_depths(data):
        return [int(data.depth[list(data.tree(t))].max()) for t in range(data.num_prompts)]

    def lone_eos_only(data, tree):
        """All first-layer answers are a lone EOS: nothing to split."""
        return all(data.token_count[n] == 1 for n in data.tree(tree) if data.depth[n] == 1)

    data = read_trees(plain)
    check_tree_rules(data, **shape, eos=eos)
    # without the guarantee some trees are one layer deep although they could be split
    assert any(d == 1 and not lone_eos_only(data, t) for t, d in enumerate(tree_depths(data)))
    data = read_trees(kept)
    assert data.meta["two_layer_guarantee"] is True and data.meta["extra_children"] == 3
    split = check_tree_rules(data, **shape, eos=eos, split_children=3)
    check_values(data)
    for tree, deepest in enumerate(tree_depths(data)):
        # every tree is two layers deep, unless its first layer is lone EOS tokens only
        assert deepest >= 2 or lone_eos_only(data, tree)
    assert len(split) >= 3  # some first-layer answers hit EOS and were split
    for n in split:
        kids = data.children(n)
        assert data.ended_eos[kids[0]] and data.is_leaf[kids[0]]
        assert not data.ended_eos[n]
    # a uniform model with top_k = vocabulary: pi_gen = pi_ref, LPR 0 everywhere
    np.testing.assert_allclose(data["tokens/logp_ref"], -math.log(7), atol=1e-5)
    np.testing.assert_allclose(data.lpr, 0.0, atol=1e-4)


@pytest.mark.parametrize("template", [True, False])
def test_collection_and_evaluation_frame_prompts_alike(tiny_lm, objective, tmp_path, template):
    """A value model must see at evaluation the prompt tokens it was trained on: collection
    and generation frame a prompt with one function (the chat template, or a base model's
    plain text, e.g. the HH frame)."""
    from mavis.prompts.base import Prompt

    model, tokenizer = load_causal_lm(str(tiny_lm))
    if not template:
        tokenizer.chat_template = None
    decoder = MavisDecoder(model, tokenizer)
    prompt = Prompt(id="hh-1", text="how are you", source="hh-rlhf",
                    base_text="\n\nhuman: how are you\n\nassistant:")
    out = collect(decoder, [prompt], objective, tmp_path / "t.h5", T=4, L=2, K_root=2, K=2,
                  top_k=5, progress=False)
    stored = read_trees(out).prompt_tokens(0).tolist()
    batch = decoder.encode([prompt])
    assert batch.input_ids[0][batch.attention_mask[0].bool()].tolist() == stored
    assert batch.prompts == ["how are you"]  # the objectives score against the user's words
    framed = tokenizer.decode(stored)
    assert ("h u m a n" in framed) != template and ("<user>" in framed) == template


def test_two_layer_guarantee_needs_two_layers(decoder, objective, tmp_path):
    with pytest.raises(MavisError, match="L >= 2"):
        collect(decoder, PROMPTS, objective, tmp_path / "x.h5", T=8, L=1, K_root=2, K=2,
                      two_layer_guarantee=True, progress=False)


# -- resuming ----------------------------------------------------------------------------------

RUNNER = """
import sys
import torch
torch.set_num_threads(1)
from mavis.trees.collect import collect_trees
from mavis.trees.decoder_spec import DecoderSpec
from mavis.trees.settings import CollectionSettings
model, objective, out = sys.argv[1:4]
prompts = [f"prompt number {i}" for i in range(6)]
settings = CollectionSettings.from_dict(dict(T=10, L=3, K_root=2, K=2, top_k=5, seed=11,
                                            batch_prompts=1))
collect_trees(DecoderSpec(model), prompts, objective, out, settings, progress=False)
"""


def test_resume_after_kill_gives_the_same_file(tiny_lm, objective, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    out = tmp_path / "killed.h5"
    parts = Path(str(out) + ".parts")
    env = {**os.environ, "MAVIS_TEST_SLEEP": "0.5"}
    process = subprocess.Popen([sys.executable, str(script), str(tiny_lm), objective, str(out)],
                               env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list(parts.glob("group-*.h5"))) < 2:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = sorted(p.name for p in parts.glob("group-*.h5"))
    assert 2 <= len(written) < 6 and not out.exists()

    # resume (here, in this process): the groups already there are not collected again
    stamps = {name: (parts / name).stat().st_mtime_ns for name in written}
    kept = {name: read_trees(parts / name) for name in written}
    prompts = [f"prompt number {i}" for i in range(6)]
    args = dict(T=10, L=3, K_root=2, K=2, top_k=5, seed=11, batch_prompts=1, progress=False)
    collect(DecoderSpec(str(tiny_lm)), prompts, objective, out, keep_parts=True, **args)
    assert {name: (parts / name).stat().st_mtime_ns for name in written} == stamps
    assert out.exists() and len(list(parts.glob("group-*.h5"))) == 6
    assert read_trees(out).data["tokens/id"][:len(kept[written[0]].data["tokens/id"])].tolist() \
        == kept[written[0]].data["tokens/id"].tolist()

    fresh = tmp_path / "fresh.h5"
    collect(DecoderSpec(str(tiny_lm)), prompts, objective, fresh, **args)
    assert not Path(str(fresh) + ".parts").exists()  # merged and tidied up
    assert_same_file(out, fresh)

    # parts left next to a finished file (a kill between merge and tidy-up) are removed by
    # the next run, which finds the file complete and does nothing else
    stamp = out.stat().st_mtime_ns
    collect(DecoderSpec(str(tiny_lm)), prompts, objective, out, **args)
    assert not parts.exists() and out.stat().st_mtime_ns == stamp


def test_resume_skips_finished_groups_in_process(decoder, tmp_path, capsys):
    """Interrupt after two groups (an objective that raises on its third call), resume,
    compare with an uninterrupted run."""
    counter = tmp_path / "calls.txt"
    counter.write_text("0")
    source = tmp_path / "flaky.py"
    source.write_text(textwrap.dedent(f"""
        from pathlib import Path

        def flaky(prompts, responses):
            counter = Path({str(counter)!r})
            calls = int(counter.read_text()) + 1
            counter.write_text(str(calls))
            if calls == 3:
                raise KeyboardInterrupt
            return [float(len(r)) for r in responses]
    """))
    objective = f"python:{source}:flaky"
    args = dict(T=8, L=2, K_root=2, K=2, top_k=5, seed=2, batch_prompts=2, progress=False)
    out = tmp_path / "t.h5"
    with pytest.raises(KeyboardInterrupt):
        collect(decoder, PROMPTS, objective, out, **args)
    parts = Path(str(out) + ".parts")
    assert "interrupted: 2 of 3 groups are saved" in capsys.readouterr().err
    assert sorted(p.name for p in parts.glob("group-*.h5")) == ["group-000000.h5",
                                                              "group-000001.h5"]
    (parts / ".group-000002.h5.tmp-999").write_bytes(b"half a file")  # debris of a crash
    collect(decoder, PROMPTS, objective, out, **args)
    assert "resuming: 2 of 3 groups already in" in capsys.readouterr().err
    assert counter.read_text() == "4"  # only the missing group was scored again
    assert not parts.exists()
    collect(decoder, PROMPTS, objective, tmp_path / "fresh.h5", **args)
    assert_same_file(out, tmp_path / "fresh.h5")


# -- errors ------------------------------------------------------------------------------------

def test_existing_output_with_other_settings_is_refused(reference_trees, decoder, objective):
    with pytest.raises(MavisError, match=r"other settings \(T: 12 -> 14\).*new --out"):
        collect(decoder, PROMPTS, [objective, "positive"], reference_trees,
                      **{**SHAPE, "T": 14}, top_k=6, temperature=0.8, seed=3, batch_prompts=2,
                      progress=False, meta={"prompt_set": "inline"})
    # the same settings: nothing to do, the file is returned untouched
    stamp = reference_trees.stat().st_mtime_ns
    collect(decoder, PROMPTS, [objective, "positive"], reference_trees, **SHAPE, top_k=6,
                  temperature=0.8, seed=3, batch_prompts=2, progress=False,
                  meta={"prompt_set": "inline"})
    assert reference_trees.stat().st_mtime_ns == stamp


def test_parts_of_another_collection_are_refused(decoder, objective, tmp_path):
    out = tmp_path / "t.h5"
    parts = Path(str(out) + ".parts")
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"T": 99}))
    write_trees(parts / "group-000000.h5", hand_built())  # a group of that collection is done
    with pytest.raises(MavisError, match=r"unfinished collection with other settings "
                       r"\(.*T: 99 -> 8.*choose a new --out or delete"):
        collect(decoder, PROMPTS, objective, out, T=8, L=2, K_root=2, K=2, top_k=5,
                      progress=False)


def test_a_collection_that_failed_before_its_first_group_blocks_nothing(decoder, objective,
                                                                       tiny_lm, tmp_path):
    """A run that fails before any group is done (a device, a damaged value model) leaves no
    parts folder; one left by an older version, holding no group, is taken over by a run with
    other settings instead of refusing it."""
    out = tmp_path / "t.h5"
    parts = Path(str(out) + ".parts")
    with pytest.raises(MavisError, match="not a device name"):
        collect(DecoderSpec(str(tiny_lm), device="nosuch"), PROMPTS,
                objective, out, T=8, L=2, K_root=2, K=2, top_k=5, progress=False)
    assert not parts.exists() and not out.exists()
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"T": 99}))  # no group: nothing to keep
    collect(decoder, PROMPTS, objective, out, T=8, L=2, K_root=2, K=2, top_k=5,
            progress=False)
    assert out.exists() and not parts.exists()


def test_a_tree_meta_names_certain_p_only_where_it_decides_the_trees():
    """Guided trees name certain_p when it differs from its old default (so guided trees made
    at 1 before the default became 0.9 keep their identity, and new ones are not taken for
    them); trees sampled from the reference alone never name it (it decides nothing there)."""
    def meta(**given):
        return CollectionSettings.from_dict(given).to_dict()

    guided = {"beta": 2.0, "weights": {"v": 1.0}}
    assert meta(**guided)["certain_p"] == 0.5  # the default now
    assert "certain_p" not in meta(**guided, certain_p=1.0)  # as files made before it
    assert meta(**guided, certain_p=0.9)["certain_p"] == 0.9  # the default before
    for certain_p in (0.5, 0.9, 1.0):
        assert "certain_p" not in meta(certain_p=certain_p)  # no weights: the reference alone


@pytest.mark.parametrize("kwargs, message", [
    ({"T": 0}, "T is 0; give a whole number >= 1"),
    ({"K": 0}, "K is 0; give a whole number >= 1"),
    ({"top_k": 0}, "top_k is 0"),
    ({"beta": 0.0, "weights": {"x": 1.0}}, "weights were given with beta=0"),
    ({"beta": 2.0, "weights": {"x": 1.0}}, "weights name.*'x' without a value model"),
    ({"temperature": 0.0}, "greedy decoding and ignore_eos do not apply"),
    ({"seed": -1}, "seed is -1"),
])
def test_bad_settings(decoder, objective, tmp_path, kwargs, message):
    args = {"T": 8, "L": 2, "K_root": 2, "K": 2, "top_k": 5, "progress": False, **kwargs}
    with pytest.raises(MavisError, match=message):
        collect(decoder, PROMPTS, objective, tmp_path / "x.h5", **args)
    assert not (tmp_path / "x.h5.parts").exists()  # refused before anything was written


def test_bad_objective_and_prompts(decoder, tmp_path):
    args = {"T": 8, "L": 2, "K_root": 2, "K": 2, "top_k": 5, "progress": False}
    with pytest.raises(MavisError, match="unknown objective"):
        collect(decoder, PROMPTS, "no-such-objective", tmp_path / "x.h5", **args)
    with pytest.raises(MavisError, match="no prompts"):
        collect(decoder, [], "positive", tmp_path / "x.h5", **args)
    with pytest.raises(MavisError, match="empty"):
        collect(decoder, ["ok", "  "], "positive", tmp_path / "x.h5", **args)


# -- inspection and the command line -----------------------------------------------------------

def test_data_inspect(reference_trees, capsys):
    assert main(["data", "inspect", str(reference_trees), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = read_trees(reference_trees)
    assert summary["prompts"] == data.num_prompts and summary["nodes"] == data.num_nodes
    assert summary["leaves"] == int(data.is_leaf.sum())
    assert sum(summary["nodes_per_depth"].values()) == data.num_nodes
    assert summary["nodes_per_depth"]["0"] == data.num_prompts
    assert summary["nodes_per_depth"]["1"] == 3 * data.num_prompts
    assert summary["tokens"] == data.num_tokens
    leaves = data.is_leaf
    name = data.objectives[1]
    assert summary["reward"][name]["mean"] == pytest.approx(
        float(data.reward[leaves, 1].mean()))
    assert summary["lpr"]["roots"]["mean"] == pytest.approx(
        float(data.lpr[data.parent < 0].mean()), rel=1e-5)
    assert summary["eos_fraction"] == pytest.approx(float(data.ended_eos[leaves].mean()))
    assert summary["meta"]["K_root"] == 3
    assert main(["data", "inspect", str(reference_trees)]) == 0
    text = capsys.readouterr().out
    assert "nodes per depth" not in text and "per depth: 0: 5, 1: 15" in text
    assert "reward at leaves" in text and "K_root" in text
    assert main(["data", "inspect", str(reference_trees.parent / "nope.h5")]) == 2
    assert "no tree file" in capsys.readouterr().err


def test_cli_collect(tiny_lm, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = tmp_path / "cli.h5"
    args = ["collect", "--model", str(tiny_lm), "--prompts", str(prompts), "--split", "all",
            "--objectives", "positive", "--out", str(out), "--T", "8", "--L", "2",
            "--K-root", "2", "--K", "2", "--top-k", "5", "--batch-prompts", "2",
            "--no-progress"]
    assert main(args) == 0
    assert f"wrote {out}: 5 trees" in capsys.readouterr().out
    data = read_trees(out)
    assert data.meta["reference"] == str(tiny_lm) and data.meta["split"] == "all"
    check_tree_rules(data, T=8, L=2, K_root=2, K=2, eos=1)  # "</s>" of the tiny vocabulary
    assert main(args[:-1] + ["--T", "9", "--no-progress"]) == 2
    assert "other settings (T: 8 -> 9)" in capsys.readouterr().err
    rest = tmp_path / "rest.h5"  # the prompts after the first three, for `mavis data merge`
    assert main([str(rest) if a == str(out) else a for a in args] + ["--skip", "3"]) == 0
    assert f"wrote {rest}: 2 trees" in capsys.readouterr().out
    assert read_trees(rest).prompt_ids == data.prompt_ids[3:]
    assert read_trees(rest).meta["skip"] == 3

    def run(*extra: str) -> str:
        assert main(args[:-1] + ["--out", str(tmp_path / "y.h5"), *extra]) == 2
        return capsys.readouterr().err

    assert "unknown objective" in run("--objectives", "nope")
    assert "/tmp" in run("--value-model", "v=/tmp")
    assert "write NAME=VALUE" in run("--value-model", "novalue")
    assert "--weights needs --value-model" in run("--weights", "v=1")
    assert "--seed is -1" in run("--seed", "-1")
    assert "--skip is -2" in run("--skip", "-2")
    assert "after the first 5" in run("--skip", "5")
    assert "should end in .h5" in main_error(args[:-1] + ["--out", str(tmp_path / "y.txt")],
                                             capsys)


def main_error(args: list[str], capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err
