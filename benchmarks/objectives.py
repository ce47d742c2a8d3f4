"""Seconds to score 256 (prompt, response) pairs with each built-in objective, and all together.

The pairs are consecutive turns of real chitchat-dataset conversations. For each objective:
`load_s` is building it (imports, model loading; in one process, so the MiniLM load is paid by
`relevant`, the first objective that needs it; the chitchat heads come from the cache, fitted
first, outside the timings, if missing); `first_s` the first call on all pairs (it includes the
one-off warm-up of the first forward pass); `score_s` a second call, `cpu_s` its CPU seconds
summed over this process's threads. Both calls embed every text
afresh (no remembered embeddings). The last line is JSON, with the 1-minute load average: other
processes on the machine slow the embedding-based objectives down.

    python benchmarks/objectives.py [--pairs 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

BUILTINS = ("harmless", "positive", "relevant", "witty", "upbeat", "interesting")


def chitchat_pairs(n: int) -> tuple[list[str], list[str]]:
    """`n` (turn, next turn) pairs from the chitchat conversations, in dataset order."""
    import chitchat_dataset

    prompts, responses = [], []
    for conversation in chitchat_dataset.Dataset().values():
        turns = [" ".join(m["text"] for m in turn) for turn in conversation["messages"]]
        for a, b in zip(turns, turns[1:], strict=False):
            prompts.append(a)
            responses.append(b)
            if len(prompts) == n:
                return prompts, responses
    return prompts, responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    args = parser.parse_args()

    from mavis.objectives import clear_objective_cache, get_objective, score_all
    from mavis.objectives.chitchat import fit_chitchat_heads
    from mavis.objectives.embeddings import forget_embeddings

    prompts, responses = chitchat_pairs(args.pairs)
    t = time.perf_counter()
    fit_chitchat_heads()  # loads the cached fit; fits it (minutes, once) when missing
    fit_s = time.perf_counter() - t

    def score(name: str) -> tuple[float, float]:
        """Wall and CPU seconds (all threads of this process) of one scoring call."""
        forget_embeddings()  # every timed call embeds its texts afresh
        t, c = time.perf_counter(), time.process_time()
        if name == "all":
            score_all(BUILTINS, prompts, responses)
        else:
            get_objective(name).score(prompts, responses)
        return time.perf_counter() - t, time.process_time() - c

    results: dict[str, dict[str, float]] = {}
    print(f"{len(prompts)} pairs; chitchat heads ready in {fit_s:.2f} s")
    header = ("load_s", "first_s", "score_s", "cpu_s", "pairs/s")
    print(f"{'objective':<12} " + " ".join(f"{h:>8}" for h in header))
    for name in (*BUILTINS, "all"):
        clear_objective_cache()
        t = time.perf_counter()
        for n in BUILTINS if name == "all" else (name,):
            objective = get_objective(n)
            _ = getattr(objective, "heads", None)  # chitchat heads: read from the cache
        load_s = time.perf_counter() - t
        first_s, _ = score(name)  # includes one-off warm-up of the first forward pass
        score_s, cpu_s = score(name)
        results[name] = {
            "load_s": round(load_s, 3),
            "first_s": round(first_s, 3),
            "score_s": round(score_s, 3),
            "cpu_s": round(cpu_s, 3),
        }
        print(
            f"{name:<12} {load_s:>8.2f} {first_s:>8.2f} {score_s:>8.2f} {cpu_s:>8.2f} "
            f"{len(prompts) / score_s:>8.0f}"
        )
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} CPUs; wall times are inflated")
    print(
        json.dumps(
            {
                "benchmark": "objectives",
                "pairs": len(prompts),
                "cpus": os.cpu_count(),
                "loadavg_1min": round(load, 2),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
