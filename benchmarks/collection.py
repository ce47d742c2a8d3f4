"""Tree collection throughput: generated tokens per second of `collect_trees` against plain
batched generation of the same number of tokens, in one run on the same model.

    MAVIS_CACHE=/tmp/mavis-cache python benchmarks/collection.py           # T=48 L=4 K_root=4 K=2
    python benchmarks/collection.py --prompts 8 --batch-prompts 4 --T 48

Compared (all sample top-k 40 from the packaged default reference, SmolLM2-135M-Instruct):
  trees      `collect_trees`: the whole pipeline (growth, scoring with a trivial objective, part
             files, merge). Its rows grow from batch_prompts * K_root to the number of leaves;
             every stored token is generated exactly once.
  engine     the same `DecodingState` without trees, at the trees' mean batch: a group's prompts
             prefilled once and duplicated (as the trees do), T steps, no branching, scoring
             or files; isolates the cost of branching and bookkeeping.
  hf         `model.generate(do_sample=True, top_k=40)` at the same batch, exactly T new tokens
             per row, every row prefilled with its prompt: plain batched generation.
Baselines generate at least as many tokens as the trees hold. Time spent in
`DecodingState.select` (the cache copies made when nodes branch or finish) is measured too.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

PROMPTS = [
    "Tell me about your favourite book and why you like it.",
    "How can I make my neighbour stop playing loud music at night?",
    "Write a short note to cheer up a friend who failed an exam.",
    "What is the best way to learn a new language as an adult?",
    "What should I cook tonight with rice, eggs and spinach?",
    "Why is the sky blue? Explain it to a ten year old.",
    "Give me three tips for a job interview tomorrow.",
    "How do I stay focused when working from home?",
    "What are some fun things to do on a rainy weekend?",
    "Can you explain what a budget is and why it helps?",
    "What's a good way to start running if I have never done it?",
    "How do I apologise to a friend I was rude to?",
]


def length_reward(prompts: list[str], responses: list[str]) -> list[float]:
    """A trivial objective (words in the response), so that scoring costs nothing."""
    return [float(len(r.split())) for r in responses]


def timed_select():
    """Wrap DecodingState.select to add up its time; returns the accumulator."""
    from mavis.decoding.state import DecodingState

    total = {"seconds": 0.0, "calls": 0}
    original = DecodingState.select

    def select(self, rows):
        start = time.perf_counter()
        original(self, rows)
        total["seconds"] += time.perf_counter() - start
        total["calls"] += 1

    DecodingState.select = select
    return total, lambda: setattr(DecodingState, "select", original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-prompts", type=int, default=4)
    parser.add_argument("--T", type=int, default=48)
    parser.add_argument("--L", type=int, default=4)
    parser.add_argument("--K-root", type=int, default=4)
    parser.add_argument("--K", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from mavis.decoding.decoder import MavisDecoder
    from mavis.decoding.sampling import SamplingSettings
    from mavis.models.loading import load_causal_lm
    from mavis.trees.collect import collect_trees
    from mavis.trees.settings import CollectionSettings
    from mavis.trees.store import read_trees
    from mavis.trees.tree_shape import path_sums

    model, tokenizer = load_causal_lm(args.model)
    decoder = MavisDecoder(model, tokenizer)
    prompts = (PROMPTS * math.ceil(args.prompts / len(PROMPTS)))[:args.prompts]
    objective = f"python:{Path(__file__).resolve()}:length_reward"
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    # warm-up (first-call allocations, kernel selection)
    decoder.generate(prompts[:2], beta=0.0, top_k=args.top_k, max_new_tokens=4, seed=0)

    def trees() -> dict:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "trees.h5"
            selects, restore = timed_select()
            start = time.perf_counter()
            try:
                settings = CollectionSettings.from_dict(dict(
                    T=args.T, L=args.L, K_root=args.K_root, K=args.K, top_k=args.top_k, seed=0,
                    batch_prompts=args.batch_prompts))
                collect_trees(decoder, prompts, objective, out, settings, progress=False)
            finally:
                restore()
            seconds = time.perf_counter() - start
            data = read_trees(out)
            used = path_sums(data.parent, data.token_count)
            inner = ~data.is_leaf
            prompt_len = data["prompts/token_count"][data.prompt]
            reprefill = int((prompt_len[inner] + used[inner]).sum())
            return {"seconds": seconds, "tokens": data.num_tokens, "nodes": data.num_nodes,
                    "reprefill_tokens": reprefill,
                    "leaves": int(data.is_leaf.sum()),
                    "eos": float(data.ended_eos[data.is_leaf].mean()),
                    "select_seconds": selects["seconds"], "select_calls": selects["calls"]}

    first = trees()
    tokens = first["tokens"]
    groups = math.ceil(len(prompts) / args.batch_prompts)
    # a group runs about T steps, so tokens / (groups * T) is the mean number of rows per step
    mean_rows = max(1, round(tokens / (groups * args.T)))
    rows = [prompts[i % len(prompts)] for i in range(mean_rows)]
    calls = math.ceil(tokens / (mean_rows * args.T))
    base_tokens = calls * mean_rows * args.T
    batch = decoder.encode(rows)

    settings = decoder.resolve(SamplingSettings(beta=0.0, top_k=args.top_k,
                                                max_new_tokens=args.T))
    group_prompts = prompts[:args.batch_prompts]

    def engine() -> float:
        """The trees' decoding state without trees: prompts prefilled once, duplicated to
        mean_rows rows, T steps (no branching, no scoring, no files)."""
        start = time.perf_counter()
        for call in range(calls):
            state = decoder.start(decoder.encode(group_prompts), settings)
            state.select(torch.arange(mean_rows) % len(group_prompts))
            generator = torch.Generator().manual_seed(call)
            with torch.inference_mode():
                for step in range(args.T):
                    state.choose(generator)
                    if step < args.T - 1:
                        state.advance()
        return time.perf_counter() - start

    def hf() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for call in range(calls):
                torch.manual_seed(call)
                model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               do_sample=True, top_k=args.top_k, max_new_tokens=args.T,
                               min_new_tokens=args.T, pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - start

    # interleaved repeats; the best of each is reported (the machine may be shared)
    runs = {"trees": [first], "engine": [], "hf": []}
    for repeat in range(args.repeats):
        if repeat:
            runs["trees"].append(trees())
        runs["engine"].append({"seconds": engine()})
        runs["hf"].append({"seconds": hf()})
    best = {name: min(r["seconds"] for r in results) for name, results in runs.items()}
    tree_best = min(runs["trees"], key=lambda r: r["seconds"])
    tree_rate = tokens / best["trees"]
    engine_rate = base_tokens / best["engine"]
    hf_rate = base_tokens / best["hf"]
    share = tree_best["select_seconds"] / tree_best["seconds"]
    print(f"trees   {len(prompts)} prompts, {first['nodes']} nodes, {first['leaves']} leaves "
          f"({first['eos']:.0%} EOS), {tokens} tokens: best {best['trees']:.1f} s, "
          f"{tree_rate:.0f} tok/s ({len(prompts) / best['trees']:.2f} prompts/s); select "
          f"{tree_best['select_calls']} calls, {tree_best['select_seconds']:.2f} s ({share:.0%})")
    print(f"        a design that re-prefills prompt + path for every expanded node would "
          f"prefill {first['reprefill_tokens']} tokens ({first['reprefill_tokens'] / tokens:.1f}x"
          f" the generated tokens)")
    print(f"engine  batch {mean_rows}, {calls} call(s), {base_tokens} tokens: best "
          f"{best['engine']:.1f} s, {engine_rate:.0f} tok/s")
    print(f"hf      batch {mean_rows}, {calls} call(s), {base_tokens} tokens: best "
          f"{best['hf']:.1f} s, {hf_rate:.0f} tok/s")
    print("all times (s): " + "; ".join(
        f"{name} " + ", ".join(f"{r['seconds']:.1f}" for r in results)
        for name, results in runs.items()))
    print(f"trees / hf = {tree_rate / hf_rate:.2f}; trees / engine = {tree_rate / engine_rate:.2f}")
    nodes = first["nodes"]
    selects = {"seconds": tree_best["select_seconds"]}
    tree_seconds = tree_best["seconds"]
    print(json.dumps({
        "model": args.model, "prompts": len(prompts), "batch_prompts": args.batch_prompts,
        "T": args.T, "L": args.L, "K_root": args.K_root, "K": args.K, "top_k": args.top_k,
        "threads": torch.get_num_threads(), "tree_tokens": tokens, "tree_nodes": nodes,
        "tree_tok_s": round(tree_rate, 1), "tree_prompts_s": round(len(prompts) / tree_seconds, 3),
        "select_share": round(selects["seconds"] / tree_seconds, 3), "mean_rows": mean_rows,
        "engine_tok_s": round(engine_rate, 1), "hf_tok_s": round(hf_rate, 1),
        "trees_over_hf": round(tree_rate / hf_rate, 3),
        "trees_over_engine": round(tree_rate / engine_rate, 3),
        "reprefill_tokens": first["reprefill_tokens"],
        "load_average": round(os.getloadavg()[0], 1),
    }))


if __name__ == "__main__":
    main()
