"""Tokens and seconds per training epoch: packed trees (tree attention mask) against one
sequence per node, on a synthetic tree set and the packaged default backbone.

Trees are shaped as in design.md's estimate: L=4 layers, K_root=4, K=2 (61 nodes), responses of
about 80 tokens split evenly over the layers, prompts of about 40 tokens, random token ids; half
of the leaves kept (the paper's setting). All modes train the same value model (SmolLM2-135M
cut to 6 layers, the paper's LoRA r=128/alpha=256, Adafactor) on the same nodes for one epoch
(batch 16 nodes). Before timing, the modes' values are compared on every node. Wall time
suffers when other jobs share the CPU, so CPU seconds of this process are reported beside it,
and `--rounds N` times every mode N times, interleaved, keeping the best. The last line is
JSON.

    MAVIS_CACHE=/tmp/mavis-cache python benchmarks/training.py [--trees 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def synthetic_trees(num_trees: int, *, layers: int = 4, k_root: int = 4, k: int = 2,
                    response_tokens: int = 80, prompt_tokens: int = 40, vocab: int = 49152,
                    seed: int = 0):
    """A `TreeTable` of `num_trees` complete trees with random tokens and leaf values."""
    from mavis.trees.table import TreeTable

    rng = np.random.default_rng(seed)
    segment = response_tokens // layers
    cols = {name: [] for name in ("parent", "depth", "prompt", "offset", "count", "leaf")}
    tokens: list[np.ndarray] = []
    size = 0
    prompts, first_node, node_count = [], [], []
    for tree in range(num_trees):
        prompts.append(rng.integers(100, vocab, size=prompt_tokens + int(rng.integers(-8, 9))))
        first_node.append(len(cols["parent"]))
        frontier = [-1]
        for depth in range(layers + 1):
            nxt = []
            for parent in frontier:
                for _ in range(1 if depth == 0 else (k_root if depth == 1 else k)):
                    count = 0 if depth == 0 else max(1, segment + int(rng.integers(-5, 6)))
                    cols["parent"].append(parent)
                    cols["depth"].append(depth)
                    cols["prompt"].append(tree)
                    cols["offset"].append(size)
                    cols["count"].append(count)
                    cols["leaf"].append(depth == layers)
                    tokens.append(rng.integers(100, vocab, size=count))
                    size += count
                    nxt.append(len(cols["parent"]) - 1)
            frontier = nxt
        node_count.append(len(cols["parent"]) - first_node[-1])
    parent = np.array(cols["parent"])
    value = np.where(np.array(cols["leaf"]), rng.uniform(0, 1, len(parent)), 0.0)
    for node in reversed(range(len(parent))):  # children follow their parents
        if not cols["leaf"][node]:
            value[node] = value[parent == node].mean()
    prompt_counts = np.array([len(p) for p in prompts])
    all_tokens = np.concatenate(tokens)
    return TreeTable(["synthetic"], {}, {
        "prompts/id": [f"p{i}" for i in range(num_trees)],
        "prompts/text": [f"prompt {i}" for i in range(num_trees)],
        "prompts/token_offset": np.concatenate([[0], np.cumsum(prompt_counts)[:-1]]),
        "prompts/token_count": prompt_counts, "prompts/tokens": np.concatenate(prompts),
        "prompts/first_node": first_node, "prompts/node_count": node_count,
        "nodes/parent": parent, "nodes/depth": cols["depth"], "nodes/prompt": cols["prompt"],
        "nodes/token_offset": cols["offset"], "nodes/token_count": cols["count"],
        "nodes/is_leaf": cols["leaf"], "nodes/ended_eos": np.zeros(len(parent), bool),
        "nodes/reward": np.where(np.array(cols["leaf"]), value, np.nan)[:, None],
        "nodes/value": value[:, None], "nodes/lpr": np.zeros(len(parent)),
        "tokens/id": all_tokens, "tokens/logp_gen": np.zeros(len(all_tokens)),
        "tokens/logp_ref": np.zeros(len(all_tokens)),
    })


def epoch_seconds(model, units, batch_size: int, lr: float) -> tuple[float, float, int]:
    """Wall and CPU seconds for one training epoch over `units` (forward, backward, Adafactor
    step), and its number of steps."""
    from mavis.training.config import TrainConfig
    from mavis.training.loss import masked_mse
    from mavis.training.packing import collate, plan_batches, predict
    from mavis.training.trainer import make_optimizer

    optimizer = make_optimizer(model, TrainConfig(lr=lr))
    model.train()
    batches = plan_batches(units, batch_size, np.random.default_rng(0))
    wall, cpu = time.perf_counter(), time.process_time()
    for indices in batches:
        batch = collate([units[i] for i in indices])
        loss = masked_mse(predict(model, batch), batch.targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - wall, time.process_time() - cpu, len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=4)
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--lora-r", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--modes", default="packed,packed_whole_trees,per_node",
                        help="Modes to time (per_node is the baseline of the ratios).")
    parser.add_argument("--rounds", type=int, default=1,
                        help="Time every mode this many times, interleaved; the best counts.")
    args = parser.parse_args()
    modes = args.modes.split(",")

    import torch

    from mavis.models.value_folder import LoraSettings
    from mavis.models.value_model import ValueModel
    from mavis.training.packing import build_units, collate, predict
    from mavis.training.targets import node_targets, select_nodes

    data = synthetic_trees(args.trees)
    nodes = select_nodes(data.prompt, data.depth, data.is_leaf, np.arange(args.trees),
                         leaf_fraction=0.5, seed=0)
    targets = node_targets(data.value, data.lpr, 0.0)
    # packed: packs of up to batch_size nodes, as training builds them; packed_whole_trees: one
    # pack per tree (a step then holds a whole tree's nodes); per_node: one sequence per node
    units = {mode: build_units(data, nodes, targets, packed=mode != "per_node",
                               max_pack_tokens=4096, max_length=None,
                               max_pack_reads=args.batch_size if mode == "packed" else None)[0]
             for mode in ("packed", "packed_whole_trees", "per_node")}

    def fresh_model() -> ValueModel:
        torch.manual_seed(0)
        return ValueModel.build(args.base, "synthetic", num_layers=args.layers,
                                attn_implementation=args.attn,
                                lora=LoraSettings(r=args.lora_r, alpha=2 * args.lora_r,
                                                  dropout=0.0))

    model = fresh_model().eval()
    with torch.no_grad():
        values = {}
        for mode, mode_units in units.items():
            got = [predict(model, collate([u])) for u in mode_units]
            read = np.concatenate([u.nodes for u in mode_units])
            values[mode] = torch.cat(got)[np.argsort(read)]
        max_diff = max(float((values[mode] - values["per_node"]).abs().max())
                       for mode in ("packed", "packed_whole_trees"))
    del model

    result = {"trees": args.trees, "nodes_per_tree": int(data.node_count[0]),
              "training_nodes": len(nodes), "backbone": f"{args.base} x {args.layers} layers",
              "lora_r": args.lora_r, "attn": args.attn, "threads": torch.get_num_threads(),
              "max_abs_value_diff": max_diff, "load_average_before": os.getloadavg()[0]}
    timings: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            wall, cpu, steps = epoch_seconds(fresh_model(), units[mode], args.batch_size, 2e-5)
            timings[mode].append((wall, cpu))
            tokens = sum(len(u) for u in units[mode])
            print(f"{mode:>18}: {tokens} tokens, {steps} steps, {wall:.1f} s wall, "
                  f"{cpu:.1f} s CPU", flush=True)
            result[mode] = {"tokens_per_epoch": tokens, "steps": steps,
                            "wall_s": round(min(w for w, _ in timings[mode]), 1),
                            "cpu_s": round(min(c for _, c in timings[mode]), 1)}
    result["load_average_after"] = os.getloadavg()[0]
    if "per_node" in modes:
        base = result["per_node"]
        for mode in (m for m in modes if m != "per_node"):
            result[mode]["token_ratio"] = round(base["tokens_per_epoch"]
                                                / result[mode]["tokens_per_epoch"], 2)
            result[mode]["speedup_wall"] = round(base["wall_s"] / result[mode]["wall_s"], 2)
            result[mode]["speedup_cpu"] = round(base["cpu_s"] / result[mode]["cpu_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
