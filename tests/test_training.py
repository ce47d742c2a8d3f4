"""Value-model training: equation-6 targets and loss, node selection, packed trees, the training
loop (learning, best checkpoint, resume, init_from, shared heads), distillation and the CLI.

The tree files are written here in the exact `mavis.trees.schema` layout, with rewards that are
a learnable function of the text: the share of the letter 'a' (and of 'b') in the response.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mavis.cli import main
from mavis.errors import MavisError
from mavis.models.value_folder import LoraSettings
from mavis.models.value_model import ValueModel
from mavis.training import TrainConfig, distill, train
from mavis.training.checkpoint import STATE_NAME, load_state, read_metrics
from mavis.training.loss import masked_mse
from mavis.training.metrics import (
    ranking_ceiling,
    sibling_accuracy,
    sibling_difference_scale,
    within_group_spearman,
)
from mavis.training.packing import build_units, collate, node_unit, pack_tree, predict
from mavis.training.targets import node_targets, select_nodes, split_prompts
from mavis.trees.store import read_trees

OBJECTIVES = ["a_rate", "b_rate"]
LETTERS = "abcdefghij "


# -- a synthetic tree file ------------------------------------------------------------------------
def write_trees(path: Path, tokenizer, num_prompts: int, *, seed: int = 0, layers: int = 3,
                k_root: int = 3, k: int = 2, eos_rate: float = 0.15,
                missing_b: tuple[int, ...] = ()) -> Path:
    """Trees per `mavis.trees.schema` v1. Per tree, tokens are 'a' with a tree-specific chance;
    leaf rewards are the shares of 'a' and 'b' in the response, values are means of children,
    lpr is random at the leaves and averaged up. Trees in `missing_b` have no 'b' reward."""
    rng = np.random.default_rng(seed)
    ids = {ch: tokenizer.convert_tokens_to_ids(ch) for ch in LETTERS}
    eos = tokenizer.eos_token_id
    letter_of = {v: ch for ch, v in ids.items()}
    nodes = {key: [] for key in ("parent", "depth", "prompt", "offset", "count", "leaf", "eos")}
    tokens: list[int] = []
    prompt_text, prompt_tokens, prompt_offset, first_node, node_count = [], [], [], [], []
    rewards, values, lprs = [], [], []
    for p in range(num_prompts):
        text = "".join(rng.choice(list("klmnop"), size=int(rng.integers(3, 8))))
        ids_prompt = tokenizer(tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False)["input_ids"]
        prompt_text.append(text)
        prompt_offset.append(len(prompt_tokens))
        prompt_tokens.extend(ids_prompt)
        p_a = rng.uniform(0.05, 0.8)
        first = len(nodes["parent"])
        first_node.append(first)
        # breadth-first: (global index, depth, response so far)
        def add(parent, depth, segment, leaf, ended, p=p):
            nodes["parent"].append(parent)
            nodes["depth"].append(depth)
            nodes["prompt"].append(p)
            nodes["offset"].append(len(tokens))
            nodes["count"].append(len(segment))
            nodes["leaf"].append(leaf)
            nodes["eos"].append(ended)
            tokens.extend(segment)
            return len(nodes["parent"]) - 1
        root = add(-1, 0, [], False, False)
        frontier = [(root, [])]
        response_of = {root: []}
        for depth in range(1, layers + 1):
            nxt = []
            for parent, so_far in frontier:
                for _ in range(k_root if depth == 1 else k):
                    n = int(rng.integers(3, 7))
                    seg = [ids["a"] if rng.random() < p_a else ids[LETTERS[int(rng.integers(1,
                           len(LETTERS)))]] for _ in range(n)]
                    ended = depth < layers and rng.random() < eos_rate
                    if ended:
                        seg.append(eos)
                    leaf = ended or depth == layers
                    node = add(parent, depth, seg, leaf, ended)
                    response_of[node] = so_far + seg
                    if not leaf:
                        nxt.append((node, so_far + seg))
            frontier = nxt
        count = len(nodes["parent"]) - first
        node_count.append(count)
        # rewards at leaves, then values and lpr bottom-up (children come after parents)
        local_r = np.full((count, 2), np.nan)
        local_v = np.full((count, 2), np.nan)
        local_l = np.zeros(count)
        children: dict[int, list[int]] = {}
        for i in range(count):
            parent = nodes["parent"][first + i]
            if parent >= 0:
                children.setdefault(parent - first, []).append(i)
        for i in reversed(range(count)):
            if nodes["leaf"][first + i]:
                letters = [letter_of.get(t, "") for t in response_of[first + i]]
                local_r[i] = [letters.count("a") / len(letters), letters.count("b") / len(letters)]
                local_v[i] = local_r[i]
                local_l[i] = rng.normal(0.0, 1.0)
            else:
                local_v[i] = np.mean([local_v[c] for c in children[i]], axis=0)
                local_l[i] = np.mean([local_l[c] for c in children[i]])
        if p in missing_b:
            local_r[:, 1] = np.nan
            local_v[:, 1] = np.nan
        rewards.append(local_r)
        values.append(local_v)
        lprs.append(local_l)
    str_dtype = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "mavis-trees"
        f.attrs["version"] = 1
        f.attrs["objectives"] = json.dumps(OBJECTIVES)
        f.attrs["meta"] = json.dumps({"T": 32, "L": layers, "K_root": k_root, "K": k})
        f["prompts/text"] = np.array(prompt_text, dtype=object).astype(str_dtype)
        f["prompts/id"] = np.array([f"p{i}" for i in range(num_prompts)], dtype=str_dtype)
        f["prompts/token_offset"] = np.array(prompt_offset, np.int64)
        f["prompts/token_count"] = np.diff(prompt_offset + [len(prompt_tokens)]).astype(np.int32)
        f["prompts/tokens"] = np.array(prompt_tokens, np.int32)
        f["prompts/first_node"] = np.array(first_node, np.int64)
        f["prompts/node_count"] = np.array(node_count, np.int32)
        f["nodes/parent"] = np.array(nodes["parent"], np.int64)
        f["nodes/depth"] = np.array(nodes["depth"], np.int16)
        f["nodes/prompt"] = np.array(nodes["prompt"], np.int32)
        f["nodes/token_offset"] = np.array(nodes["offset"], np.int64)
        f["nodes/token_count"] = np.array(nodes["count"], np.int32)
        f["nodes/is_leaf"] = np.array(nodes["leaf"], bool)
        f["nodes/ended_eos"] = np.array(nodes["eos"], bool)
        f["nodes/reward"] = np.concatenate(rewards).astype(np.float32)
        f["nodes/value"] = np.concatenate(values).astype(np.float32)
        f["nodes/lpr"] = np.concatenate(lprs).astype(np.float32)
        f["tokens/id"] = np.array(tokens, np.int32)
        f["tokens/logp_gen"] = np.zeros(len(tokens), np.float32)
        f["tokens/logp_ref"] = np.zeros(len(tokens), np.float32)
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_lm):
    from mavis.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_lm))


@pytest.fixture(scope="module")
def small_trees(tmp_path_factory, tokenizer) -> Path:
    return write_trees(tmp_path_factory.mktemp("trees") / "small.h5", tokenizer, 6, seed=1,
                       missing_b=(2,))


@pytest.fixture(scope="module")
def learn_trees(tmp_path_factory, tokenizer) -> Path:
    return write_trees(tmp_path_factory.mktemp("trees") / "learn.h5", tokenizer, 40, seed=2)


def fast_config(tiny_lm: Path, **overrides) -> TrainConfig:
    settings = dict(base=str(tiny_lm), num_layers=2, objectives=["a_rate"], lora_r=8,
                    lora_alpha=16, lora_dropout=0.0, lr=1e-2, warmup_steps=5, batch_size=16,
                    epochs=2, validation_fraction=0.2, eval_every=None, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


# -- targets, loss, selection -----------------------------------------------------------------
def test_steering_metrics_by_hand():
    parent = np.array([-1, 0, 0, 0, 1, 1])
    target = np.array([0.5, 1.0, 0.0, 0.5, 2.0, 2.0])
    # children of the root: three pairs, all ordered right; the two children of node 1 tie in
    # their targets and do not count
    assert sibling_accuracy(np.array([9, 3.0, 1.0, 2.0, 5.0, 4.0]), target, parent) == 1.0
    # (1,2) and (1,3) wrong, (2,3) a tie in the predictions: half a pair right
    assert sibling_accuracy(np.array([9, 1.0, 3.0, 3.0, 5.0, 4.0]), target,
                            parent) == pytest.approx(0.5 / 3)
    assert sibling_accuracy(np.zeros(6), target, np.full(6, -1)) is None
    scale = math.sqrt(((1 - 0) ** 2 + (1 - 0.5) ** 2 + (0 - 0.5) ** 2 + 0) / 4)
    assert sibling_difference_scale(target, parent) == pytest.approx(scale)
    # within-prompt: a perfect order in one prompt, a reversed one in the other -> mean 0
    group = np.array([0, 0, 0, 1, 1, 1])
    values = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    predicted = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])
    assert within_group_spearman(predicted, values, group) == pytest.approx(0.0)
    assert within_group_spearman(values, values, group) == pytest.approx(1.0)


def test_ranking_ceiling_recovers_a_perfect_rankers_accuracy_on_noisy_targets():
    # true differences d; each half of a target is d plus its own noise; the target their mean
    rng = np.random.default_rng(0)
    d = rng.normal(size=(40000, 2))
    noise = np.array([0.5, 2.0])  # a clean objective and a noisy one
    first = d + noise * rng.normal(size=d.shape)
    second = d + noise * rng.normal(size=d.shape)
    agree, perfect = ranking_ceiling(first, second)
    truth = (np.sign(d) == np.sign(first + second)).mean(axis=0)
    assert perfect == pytest.approx(truth, abs=0.01)
    assert (agree < perfect).all() and perfect[0] > perfect[1]


def test_equation6_targets_and_loss_by_hand():
    # root -> c1 (-> l1, l2), c2 (a leaf that ended early). Values are means of children.
    #          root  c1   c2   l1   l2
    reward = [np.nan, np.nan, 0.9, 1.0, 0.0]
    leaf_lpr = {2: 3.0, 3: 2.0, 4: 0.0}
    value = np.array([[(0.5 + 0.9) / 2], [0.5], [0.9], [1.0], [0.0]])
    lpr = np.array([(1.0 + 3.0) / 2, 1.0, 3.0, 2.0, 0.0])
    targets = node_targets(value, lpr, zeta=0.1)
    np.testing.assert_allclose(targets[:, 0], [0.5, 0.4, 0.6, 0.8, 0.0])
    predicted = torch.tensor([[0.3], [0.4], [1.0], [0.8], [0.5]])
    loss = masked_mse(predicted, torch.tensor(targets, dtype=torch.float32))
    assert loss.item() == pytest.approx((0.04 + 0 + 0.16 + 0 + 0.25) / 5)
    # a second objective scored only at the root: its NaNs do not count
    both = np.concatenate([targets, [[1.0], [np.nan], [np.nan], [np.nan], [np.nan]]], axis=1)
    predicted2 = torch.cat([predicted, torch.zeros(5, 1)], dim=1)
    loss2 = masked_mse(predicted2, torch.tensor(both, dtype=torch.float32))
    assert loss2.item() == pytest.approx((0.45 + 1.0) / 6)
    # the literal equation 6 over c1's explicit continuations (l1, l2) gives c1's target
    literal = np.mean([reward[n] - 0.1 * leaf_lpr[n] for n in (3, 4)])
    assert targets[1, 0] == pytest.approx(literal)


def test_masked_mse_has_gradient_without_targets():
    predicted = torch.zeros(2, 1, requires_grad=True)
    loss = masked_mse(predicted, torch.full((2, 1), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and predicted.grad is not None


def test_selection_is_seeded_and_validation_is_by_prompt(small_trees):
    data = read_trees(small_trees)
    train_p, val_p = split_prompts(data.num_prompts, 0.34, seed=3)
    assert len(val_p) == 2 and set(train_p).isdisjoint(val_p)
    assert sorted([*train_p, *val_p]) == list(range(data.num_prompts))
    assert np.array_equal(split_prompts(data.num_prompts, 0.34, seed=3)[1], val_p)
    assert any(not np.array_equal(split_prompts(data.num_prompts, 0.34, seed=s)[1], val_p)
               for s in range(4, 10))
    args = (data.prompt, data.depth, data.is_leaf)
    train_nodes = select_nodes(*args, train_p, leaf_fraction=0.5, seed=0)
    val_nodes = select_nodes(*args, val_p, leaf_fraction=0.5, seed=0, include_leaves=False)
    assert set(train_nodes).isdisjoint(val_nodes)
    assert set(data.prompt[train_nodes]) <= set(train_p)
    assert set(data.prompt[val_nodes]) == set(val_p)
    assert not data.is_leaf[val_nodes].any()
    in_train = np.isin(data.prompt, train_p)
    leaves = np.flatnonzero(in_train & data.is_leaf)
    inner = np.flatnonzero(in_train & ~data.is_leaf)
    kept_leaves = [n for n in train_nodes if data.is_leaf[n]]
    assert len(kept_leaves) == round(0.5 * len(leaves))
    assert set(inner) <= set(train_nodes)          # every inner node, the roots included
    assert np.array_equal(select_nodes(*args, train_p, leaf_fraction=0.5, seed=0), train_nodes)
    other = select_nodes(*args, train_p, leaf_fraction=0.5, seed=1)
    assert not np.array_equal(other, train_nodes)
    no_root = select_nodes(*args, train_p, leaf_fraction=0.5, seed=0, include_root=False)
    assert not (data.depth[no_root] == 0).any()


def test_read_trees_errors(tmp_path, small_trees):
    with pytest.raises(MavisError, match="no tree file at"):
        read_trees(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(MavisError, match="not a readable HDF5 file"):
        read_trees(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(MavisError, match="not a mavis tree file"):
        read_trees(tmp_path / "other.h5")
    with pytest.raises(MavisError, match="a_rate, b_rate"):
        read_trees(small_trees).columns(["helpful"])


# -- packing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_tree_values_equal_per_node_values(tiny_lm, small_trees, attn):
    data = read_trees(small_trees)
    torch.manual_seed(0)
    model = ValueModel.build(str(tiny_lm), OBJECTIVES, num_layers=2, attn_implementation=attn,
                             lora=LoraSettings(r=4, alpha=8, dropout=0.0)).eval()
    with torch.no_grad():  # a non-trivial adapter and head, so that every layer matters
        for name, param in model.named_parameters():
            if "lora_B" in name or "head" in name:
                param.normal_(0, 0.3)
    nodes = np.arange(data.num_nodes)
    targets = node_targets(data.value, data.lpr, 0.0)
    per_node, _ = build_units(data, nodes, targets, packed=False, max_pack_tokens=4096,
                              max_length=None)
    with torch.no_grad():
        expected = predict(model, collate(per_node))
        # whole trees, then trees split by tokens, then by nodes
        for max_tokens, max_reads in ((4096, None), (40, None), (4096, 5)):
            packed, _ = build_units(data, nodes, targets, packed=True,
                                    max_pack_tokens=max_tokens, max_pack_reads=max_reads,
                                    max_length=None)
            if max_reads:
                assert max(u.num_reads for u in packed) == max_reads
            if max_tokens == 40 or max_reads:
                assert len(packed) > data.num_prompts
            else:
                assert len(packed) == data.num_prompts
                assert sum(map(len, packed)) < sum(map(len, per_node)) / 2
            batch = collate(packed)
            got = predict(model, batch)
            order = np.argsort(batch.nodes.numpy())
            assert np.array_equal(batch.nodes.numpy()[order], nodes)
            torch.testing.assert_close(got[order], expected, atol=2e-5, rtol=1e-4)
            # the tree mask matters: plain causal attention over the pack reads other values
            causal = collate(packed)
            causal.attention_mask = torch.ones(causal.input_ids.shape, dtype=torch.long)
            wrong = predict(model, causal)[order]
            assert (wrong - expected).abs().max() > 1e-3


def test_pack_reads_every_token_for_distillation(small_trees):
    data = read_trees(small_trees)
    nodes = [n for n in data.tree(0) if data.depth[n] > 0]
    (unit,) = pack_tree(data, 0, nodes, data.prompt_tokens(0), None, max_tokens=4096,
                        every_token=True, num_objectives=2)
    assert unit.num_reads == sum(int(data.token_count[n]) for n in nodes)
    assert len(unit) == len(data.prompt_tokens(0)) + unit.num_reads
    one = node_unit(data, nodes[-1], data.prompt_tokens(0), np.zeros((data.num_nodes, 2)))
    # the deepest node's path is visible to its last token, at the same position id
    last = unit.reads[unit.nodes == nodes[-1]][-1]
    assert unit.positions[last] == one.positions[-1]
    assert unit.allowed()[last].sum() == len(one)


def test_max_length_truncates_prompts_and_drops_long_nodes(small_trees):
    data = read_trees(small_trees)
    nodes = np.arange(data.num_nodes)
    targets = node_targets(data.value, data.lpr, 0.0)
    units, dropped = build_units(data, nodes, targets, packed=False, max_pack_tokens=4096,
                                 max_length=12)
    assert dropped > 0 and all(len(u) <= 12 for u in units)
    assert len(units) + dropped == data.num_nodes


# -- training ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_lm, learn_trees):
    out = tmp_path_factory.mktemp("run") / "vm"
    report = train(fast_config(tiny_lm, epochs=3, eval_every=10), learn_trees, out)
    return out, report


def test_training_learns_values_on_held_out_prompts(trained):
    out, report = trained
    records = read_metrics(out / "metrics.jsonl")
    # a fresh head starts exactly at the best constant: the training targets' mean
    assert records[0]["step"] == 0
    assert records[0]["val_loss"] == pytest.approx(records[0]["val_baseline_loss"], rel=1e-5)
    assert report["complete"] and report["steps"] == report["total_steps"]
    # more than half of the variance around that constant is explained on held-out prompts
    assert report["best"]["val_loss"] < 0.5 * records[0]["val_baseline_loss"]
    assert report["best"]["spearman"]["a_rate"] > 0.5
    # and it orders the continuations of one prefix, which is what the tilt uses: the step-0
    # model predicts one constant, so every pair is a tie (0.5)
    assert records[0]["sibling_accuracy"]["a_rate"] == pytest.approx(0.5)
    # (about 50 sibling pairs: one checkpoint's figure moves by 0.1 with the thread count, so
    # the evaluations of the second half of training are averaged)
    late = [r for r in records if "sibling_accuracy" in r and r["step"] >= report["steps"] / 2]
    assert sum(r["sibling_accuracy"]["a_rate"] for r in late) / len(late) > 0.6
    assert report["best"]["sibling_accuracy"]["a_rate"] > 0.5
    assert sum(r["within_prompt_spearman"]["a_rate"] for r in late) / len(late) > 0.3
    assert report["value_scale"]["a_rate"] > 0  # the typical sibling difference, saved
    saved_config = json.loads((out / "best" / "value_config.json").read_text())
    assert saved_config["value_scale"] == report["value_scale"]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps))
    sizes = report["data"]
    assert sizes["prompts_val"] == 8 and sizes["nodes_train"] > 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["best"] == report["best"]


def test_best_checkpoint_loads_with_value_range(trained, learn_trees):
    out, report = trained
    model = ValueModel.load(out / "best")
    low, high = model.config.value_range["a_rate"]
    data = read_trees(learn_trees)
    assert 0.0 <= low < 0.1 and 0.6 < high <= 1.0
    assert [low, high] == report["value_range"]["a_rate"]
    # the saved best reproduces the best validation loss
    from mavis.training.samples import prepare_samples

    samples = prepare_samples(data, ["a_rate"], fast_config(Path(model.config.base)))
    with torch.no_grad():
        batch = collate(samples.val)
        loss = masked_mse(predict(model, batch), batch.targets).item()
    assert loss == pytest.approx(report["best"]["val_loss"], rel=1e-4)


def test_resume_continues_from_the_saved_step(tmp_path, tiny_lm, small_trees):
    config = fast_config(tiny_lm, batch_size=8, eval_every=3, save_every=2, lora_dropout=0.1)
    whole = train(config, small_trees, tmp_path / "whole")
    first = train(fast_config(tiny_lm, batch_size=8, eval_every=3, save_every=2,
                              lora_dropout=0.1, max_steps=5), small_trees, tmp_path / "cut")
    assert not first["complete"] and first["steps"] == 5
    assert load_state(tmp_path / "cut" / "last")["step"] == 5
    # other settings are refused, naming them (max_steps only splits a run: it may change)
    changed = fast_config(tiny_lm, batch_size=8, eval_every=3, save_every=2, lora_dropout=0.1,
                          lr=2e-2)
    with pytest.raises(MavisError, match=r"other settings \(lr: 0.01 there, 0.02 now\)"):
        train(changed, small_trees, tmp_path / "cut")
    resumed = train(config, small_trees, tmp_path / "cut")  # the same settings continue it
    assert resumed["complete"] and resumed["steps"] == whole["steps"]
    cut = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    full = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in cut] == [r["step"] for r in full]
    for a, b in zip(cut, full, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-7)
        if b["step"] == 0:
            assert a["train_loss"] is b["train_loss"] is None
        else:
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-7)
    assert resumed["best"]["val_loss"] == pytest.approx(whole["best"]["val_loss"], rel=1e-4)
    # resuming a finished run changes nothing
    assert train(config, small_trees, tmp_path / "cut", resume=True)["steps"] == whole["steps"]


def test_crashed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_lm, small_trees,
                                                      monkeypatch):
    import mavis.training.trainer as trainer

    config = fast_config(tiny_lm, batch_size=8, eval_every=3, save_every=2)
    whole = train(config, small_trees, tmp_path / "whole")
    real_collate, training_batches = trainer.collate, []

    def crash_in_step_5(*args, **kwargs):
        if torch.is_grad_enabled():  # a training batch, not an evaluation
            training_batches.append(1)
            if len(training_batches) == 5:
                raise RuntimeError("killed")
        return real_collate(*args, **kwargs)

    monkeypatch.setattr(trainer, "collate", crash_in_step_5)
    with pytest.raises(RuntimeError, match="killed"):
        train(config, small_trees, tmp_path / "crashed")
    monkeypatch.setattr(trainer, "collate", real_collate)
    assert load_state(tmp_path / "crashed" / "last")["step"] == 4   # saved every 2 steps
    resumed = train(config, small_trees, tmp_path / "crashed", resume=True)
    assert resumed["steps"] == whole["steps"]
    crashed = read_metrics(tmp_path / "crashed" / "metrics.jsonl")
    full = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in crashed] == [r["step"] for r in full]
    assert crashed[-1]["val_loss"] == pytest.approx(full[-1]["val_loss"], rel=1e-4)


def test_sigterm_saves_the_step_it_stopped_at_and_resumes(tmp_path, tiny_lm, small_trees,
                                                          monkeypatch, capsys):
    """Ctrl-C or SIGTERM finishes the step, saves `last/` at it (not at the last regular
    save) and exits 130 saying how to continue; resuming gives the uninterrupted run."""
    import os
    import signal

    import mavis.training.trainer as trainer

    args = ["train", "--data", str(small_trees), "--objectives", "a_rate", "--base",
            str(tiny_lm), "--num-layers", "1", "--epochs", "2", "--batch-size", "8", "--lr",
            "1e-2", "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0",
            "--warmup-steps", "1", "--eval-every", "3", "--json"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads(capsys.readouterr().out)
    real_collate, training_batches = trainer.collate, []

    def terminate_in_step_5(*args, **kwargs):
        if torch.is_grad_enabled():  # a training batch, not an evaluation
            training_batches.append(1)
            if len(training_batches) == 5:
                os.kill(os.getpid(), signal.SIGTERM)
        return real_collate(*args, **kwargs)

    monkeypatch.setattr(trainer, "collate", terminate_in_step_5)
    before = signal.getsignal(signal.SIGTERM)
    assert main([*args, "--out", str(tmp_path / "stopped")]) == 130
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    err = capsys.readouterr().err
    assert "SIGTERM: stopping after this step" in err
    assert f"stopped by SIGTERM at step 5 of {whole['total_steps']}" in err
    assert "run the same command again to continue" in err
    assert load_state(tmp_path / "stopped" / "last")["step"] == 5  # evaluated and saved at 3
    report = json.loads((tmp_path / "stopped" / "report.json").read_text())
    assert not report["complete"] and report["steps"] == 5
    monkeypatch.setattr(trainer, "collate", real_collate)
    assert main([*args, "--out", str(tmp_path / "stopped")]) == 0  # the same command
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["complete"] and resumed["steps"] == whole["steps"]
    stopped = read_metrics(tmp_path / "stopped" / "metrics.jsonl")
    full = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in stopped] == [r["step"] for r in full]
    assert stopped[-1]["val_loss"] == pytest.approx(full[-1]["val_loss"], rel=1e-4)


def test_a_second_interrupt_stops_at_once():
    import os
    import signal

    from mavis.training.stopping import stop_requests

    # as in a terminal (a background job started by a script ignores SIGINT, and so do we)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with stop_requests() as stop:
            assert not stop.requested
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.signal_name == "SIGINT"
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with stop_requests(enabled=False) as stop, pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # disabled: Ctrl-C acts as usual
        assert not stop.requested
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with stop_requests() as stop:
            os.kill(os.getpid(), signal.SIGINT)  # ignored before: still ignored
        assert not stop.requested
    finally:
        signal.signal(signal.SIGINT, before)


def test_init_from_previous_iteration(tmp_path, tiny_lm, learn_trees, trained):
    out, report = trained
    # the backbone options say other things than the initial model: its backbone is trained,
    # and the report says so
    again = train(fast_config(tiny_lm, init_from=str(out), max_steps=1, num_layers=1,
                              lora_r=4, lora_alpha=4), learn_trees, tmp_path / "next")
    assert {k: again["config"][k] for k in ("num_layers", "lora_r", "lora_alpha")} == {
        "num_layers": 2, "lora_r": 8, "lora_alpha": 16}
    start = read_metrics(tmp_path / "next" / "metrics.jsonl")[0]
    assert start["step"] == 0
    assert start["val_loss"] == pytest.approx(report["best"]["val_loss"], rel=1e-4)
    assert not again["complete"]


def test_shared_heads_and_separate_models(tmp_path, tiny_lm, small_trees):
    shared = train(fast_config(tiny_lm, objectives=OBJECTIVES, shared=True, epochs=1),
                   small_trees, tmp_path / "shared")
    model = ValueModel.load(tmp_path / "shared" / "best")
    assert model.objectives == OBJECTIVES
    assert set(shared["value_range"]) == set(OBJECTIVES)
    separate = train(fast_config(tiny_lm, objectives=OBJECTIVES, epochs=1), small_trees,
                     tmp_path / "separate")
    assert set(separate["models"]) == set(OBJECTIVES)
    for name in OBJECTIVES:
        assert ValueModel.load(tmp_path / "separate" / name / "best").objectives == [name]
    assert json.loads((tmp_path / "separate" / "report.json").read_text())["models"]


def test_run_folder_names_are_plain():
    from mavis.models.value_folder import run_folder_name

    assert run_folder_name("relevant") == "relevant"
    assert run_folder_name("python:/tmp/x/vowels.py:vowels") == "python_tmp_x_vowels.py_vowels"
    assert run_folder_name("../..") == "objective"


# -- distillation -----------------------------------------------------------------------------
def test_distillation_brings_the_student_to_its_teachers(tmp_path, tiny_lm, small_trees):
    teachers = {}
    for seed, name in enumerate(OBJECTIVES):
        torch.manual_seed(seed + 10)
        teacher = ValueModel.build(str(tiny_lm), name, num_layers=2, lora=None)
        with torch.no_grad():
            teacher.head.weight.normal_(0, 0.2)
        teachers[name] = str(teacher.save(tmp_path / f"teacher-{name}"))
    config = fast_config(tiny_lm, num_layers=1, lr=1e-2, epochs=4, batch_size=32)
    report = distill(teachers, str(tiny_lm), small_trees, tmp_path / "student", config=config)
    records = read_metrics(tmp_path / "student" / "metrics.jsonl")
    assert records[0]["step"] == 0
    assert report["best"]["val_loss"] < 0.2 * records[0]["val_loss"]
    student = ValueModel.load(tmp_path / "student" / "best")
    assert student.objectives == OBJECTIVES
    assert set(student.config.value_range) == set(OBJECTIVES)
    assert (tmp_path / "student" / "last" / STATE_NAME).exists()


def test_distillation_saves_teacher_values_and_reuses_them(tmp_path, tiny_lm, small_trees):
    teacher = ValueModel.build(str(tiny_lm), "a_rate", num_layers=1, lora=None)
    folder = teacher.save(tmp_path / "teacher")
    config = fast_config(tiny_lm, num_layers=1, max_steps=1)
    distill({"a_rate": folder}, str(tiny_lm), small_trees, tmp_path / "first", config=config)
    cache = tmp_path / "first" / "teacher_values" / "a_rate.npz"
    with np.load(cache) as saved:
        values, key = saved["values"], saved["key"]
    assert len(values) > 0 and np.isfinite(values).all() and len(np.unique(values)) > 1

    # A second run finds the saved values (here replaced by a constant) instead of scoring again.
    (tmp_path / "second" / "teacher_values").mkdir(parents=True)
    np.savez(tmp_path / "second" / "teacher_values" / "a_rate.npz",
             values=np.full_like(values, 0.25), key=key)
    distill({"a_rate": folder}, str(tiny_lm), small_trees, tmp_path / "second", config=config)
    assert ValueModel.load(tmp_path / "second" / "best").config.value_range["a_rate"] == \
        pytest.approx([0.25, 0.25])

    # A changed teacher invalidates them.
    with torch.no_grad():
        teacher.head.bias.fill_(0.5)
    teacher.save(folder)
    distill({"a_rate": folder}, str(tiny_lm), small_trees, tmp_path / "second", config=config,
            resume=True)
    with np.load(tmp_path / "second" / "teacher_values" / "a_rate.npz") as saved:
        assert str(saved["key"]) != str(key)
        assert not np.allclose(saved["values"], 0.25)


def test_distillation_reads_the_trees_once_per_multi_head_teacher(
        tmp_path, tiny_lm, small_trees, monkeypatch):
    import mavis.training.distillation as distillation

    torch.manual_seed(3)
    teacher = ValueModel.build(str(tiny_lm), OBJECTIVES, num_layers=1, lora=None)
    with torch.no_grad():
        teacher.head.weight.normal_(0, 0.5)
    folder = teacher.save(tmp_path / "teacher")
    loads = []
    load = distillation._load_teacher
    monkeypatch.setattr(distillation, "_load_teacher",
                        lambda names, *a, **k: loads.append(list(names)) or load(names, *a, **k))
    config = fast_config(tiny_lm, num_layers=1, max_steps=1)
    distill({name: folder for name in OBJECTIVES}, str(tiny_lm), small_trees,
            tmp_path / "student", config=config)
    assert loads == [OBJECTIVES]
    saved = {}
    for name in OBJECTIVES:
        with np.load(tmp_path / "student" / "teacher_values" / f"{name}.npz") as data:
            saved[name] = data["values"]
    assert not np.allclose(*saved.values())  # each objective got its own head's values
    # Each head's values are the teacher's own, as when it is given alone.
    distill({OBJECTIVES[1]: folder}, str(tiny_lm), small_trees, tmp_path / "alone",
            config=config)
    with np.load(tmp_path / "alone" / "teacher_values" / f"{OBJECTIVES[1]}.npz") as data:
        np.testing.assert_allclose(data["values"], saved[OBJECTIVES[1]], rtol=1e-5, atol=1e-6)


def test_distillation_refuses_a_teacher_with_another_tokenizer(tmp_path, tiny_lm,
                                                               other_tokenizer_lm, small_trees):
    teacher = ValueModel.build(str(other_tokenizer_lm), "a_rate", num_layers=1, lora=None)
    teacher.save(tmp_path / "teacher")
    with pytest.raises(MavisError, match="tokenizer differs"):
        distill({"a_rate": tmp_path / "teacher"}, str(tiny_lm), small_trees, tmp_path / "s",
                config=fast_config(tiny_lm, num_layers=1))


# -- command line -----------------------------------------------------------------------------
def test_cli_errors(tmp_path, small_trees, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.h5"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "no tree file at" in capsys.readouterr().err
    (tmp_path / "bad.h5").write_text("x")
    assert main(["train", "--data", str(tmp_path / "bad.h5"), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err
    assert main(["train", "--data", str(small_trees), "--objectives", "helpful",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "helpful" in err and "a_rate, b_rate" in err
    assert main(["train", "--data", str(small_trees), "--lr", "0", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--lr is 0; give a number > 0" in capsys.readouterr().err
    assert main(["distill", "--teacher", "nopath", "--data", str(small_trees), "--out",
                 str(tmp_path / "s")]) == 2
    assert "write NAME=VALUE" in capsys.readouterr().err
    assert main(["distill", "--teacher", f"a_rate={tmp_path / 'none'}", "--data",
                 str(small_trees), "--out", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_trains_and_resumes(tmp_path, tiny_lm, small_trees, capsys):
    args = ["train", "--data", str(small_trees), "--objectives", "a_rate", "--base",
            str(tiny_lm), "--num-layers", "1", "--out", str(tmp_path / "vm"), "--epochs", "1",
            "--batch-size", "8", "--lr", "1e-3", "--lora-r", "4", "--lora-alpha", "8",
            "--warmup-steps", "1"]
    assert main([*args, "--max-steps", "2"]) == 0
    assert "stopped early: run the same command again to continue" in capsys.readouterr().out
    assert main([*args, "--lr", "2e-3"]) == 2  # another run's settings: refused, named
    assert "other settings (lr: 0.001 there, 0.002 now)" in capsys.readouterr().err
    assert not (tmp_path / "vm" / "report.json").exists() or not json.loads(
        (tmp_path / "vm" / "report.json").read_text())["complete"]
    assert main([*args, "--json"]) == 0  # the same command continues (README: it resumes)
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] and report["steps"] == report["total_steps"] > 2
    assert main([*args, "--json"]) == 0  # and, finished, returns the run as it is
    assert json.loads(capsys.readouterr().out)["steps"] == report["steps"]
    assert ValueModel.load(tmp_path / "vm" / "best").config.value_range["a_rate"]
    assert main(["distill", "--teacher", f"a_rate={tmp_path / 'vm' / 'best'}", "--data",
                 str(small_trees), "--out", str(tmp_path / "student"), "--base", str(tiny_lm),
                 "--num-layers", "1", "--epochs", "1", "--batch-size", "64", "--lr", "1e-3",
                 "--lora-r", "4", "--lora-alpha", "8", "--warmup-steps", "1"]) == 0
    assert "a_rate: " in capsys.readouterr().out
    student = ValueModel.load(tmp_path / "student" / "best")
    assert student.objectives == ["a_rate"]
    # the student's range and scale are its teacher's: the same beta guides as strongly
    assert student.config.value_range == report["value_range"]
    assert student.config.value_scale == report["value_scale"] == pytest.approx(
        ValueModel.load(tmp_path / "vm" / "best").config.value_scale) != {}


def test_sibling_difference_loss_by_hand():
    from mavis.training.loss import sibling_difference_mse

    predicted = torch.tensor([[1.0], [2.0], [0.0], [5.0]])
    targets = torch.tensor([[0.0], [3.0], [1.0], [float("nan")]])
    parent = torch.tensor([7, 7, 7, 7])
    # pairs (0,1): (-1) - (-3) = 2; (0,2): 1 - (-1) = 2; (1,2): 2 - 2 = 0; pairs with 3: NaN
    loss = sibling_difference_mse(predicted, targets, parent)
    assert loss.item() == pytest.approx((4 + 4 + 0) / 3)
    # a constant shift of all predictions costs nothing: only differences count
    shifted = sibling_difference_mse(predicted + 10, targets, parent)
    assert shifted.item() == pytest.approx(loss.item())
    assert sibling_difference_mse(predicted, targets, torch.tensor([1, 2, 3, -1])).item() == 0


def test_sibling_weight_trains(tmp_path, tiny_lm, small_trees):
    report = train(fast_config(tiny_lm, objectives=["a_rate"], sibling_weight=1.0, epochs=1,
                               max_steps=3), small_trees, tmp_path / "vm")
    assert report["steps"] == 3 and report["config"]["sibling_weight"] == 1.0


def test_gradient_checkpointing_and_bf16_autocast_train_the_same_way(tmp_path, tiny_lm,
                                                                      small_trees):
    """Gradient checkpointing recomputes exactly what plain training keeps; bf16 autocast (the
    GPU default) trains too, to nearly the same losses."""
    common = dict(objectives=["a_rate"], epochs=1, max_steps=3, eval_every=3)
    plain = train(fast_config(tiny_lm, **common), small_trees, tmp_path / "plain")
    checkpointed = train(fast_config(tiny_lm, gradient_checkpointing=True, **common),
                         small_trees, tmp_path / "gc")
    assert checkpointed["final"]["val_loss"] == pytest.approx(plain["final"]["val_loss"],
                                                              rel=1e-4)
    bf16 = train(fast_config(tiny_lm, mixed_precision="bf16", **common), small_trees,
                 tmp_path / "bf16")
    assert bf16["final"]["val_loss"] == pytest.approx(plain["final"]["val_loss"], rel=0.05)
    with pytest.raises(MavisError, match="device is 'tpu'; choose 'auto', 'cpu', 'cuda'"):
        fast_config(tiny_lm, device="tpu")
