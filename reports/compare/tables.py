"""The comparison report's tables, from the points `mavis pareto` saved (see README.md here).

    python reports/compare/tables.py > reports/compare/tables.md

For each trade-off front: every method's points in lambda order (rewards with standard errors,
KL against pi_ref and its kind, whether another method's point dominates it), each method's
hypervolume above pi_ref, and the methods side by side at the weights they all share, by the
weighted reward lambda * r1 + (1 - lambda) * r2 that each of them was asked to raise.
"""

from __future__ import annotations

import json
from pathlib import Path

from mavis.evaluation.summary import method_mips

HERE = Path(__file__).resolve().parent
FRONTS = {"relevant-harmless": ("relevant", "harmless"),
          "relevant-positive": ("relevant", "positive")}
ORDER = ("pi_ref", "MAVIS", "MORLHF", "RSoup", "MOD", "best-of-4", "best-of-16")


def load(name: str) -> dict:
    return json.loads((HERE / f"{name}.json").read_text())


def method_rank(method: str) -> int:
    return ORDER.index(method) if method in ORDER else len(ORDER)


def points_table(saved: dict, first: str, second: str) -> list[str]:
    dominated = saved["fronts"]["dominated_overall"]
    rows = [f"| method | {first} weight | {first} | {second} | KL (eq. 7) | KL kind | "
            "dominated |", "| --- | --- | --- | --- | --- | --- | --- |"]
    ordered = sorted(saved["points"].items(), key=lambda kv: (
        method_rank(kv[1]["method"]), kv[1]["weights"].get(first, -1.0)))
    for key, p in ordered:
        lam = p["weights"].get(first)
        rows.append(
            f"| {p['method']} | {'' if lam is None else f'{lam:g}'} | "
            f"{p['reward'][first]:.3f} ± {p['reward_se'][first]:.3f} | "
            f"{p['reward'][second]:.3f} ± {p['reward_se'][second]:.3f} | "
            f"{p['kl']:.1f} ± {p['kl_se']:.1f} | {p['kl_kind']} | "
            f"{'yes' if dominated.get(key) else ''} |")
    return rows


def hypervolume_table(saved: dict) -> list[str]:
    fronts = saved["fronts"]
    corner = ", ".join(f"{k} {v:.3f}" for k, v in fronts["reference_point"].items())
    points = saved["points"].values()
    mips = method_mips([(p["method"], p["weights"], p["reward"]) for p in points],
                       fronts["objectives"])
    counts = {m: sum(p["method"] == m and bool(p["weights"]) for p in points) for m in mips}
    rows = [f"Hypervolume above pi_ref ({corner}) and MIP (the mean over the method's weight "
            "vectors of weights . rewards; pi_ref at every vector of the sweep); larger is "
            "better:", "", "| method | hypervolume | MIP | weight vectors |",
            "| --- | --- | --- | --- |"]
    for method, value in sorted(fronts["hypervolume"].items(), key=lambda kv: -kv[1]):
        rows.append(f"| {method} | {value:.4f} | {mips[method]:.4f} | "
                    f"{counts[method] or 'all'} |")
    return rows


def same_weights_table(saved: dict, first: str, second: str) -> list[str]:
    by_lambda: dict[float, dict[str, dict]] = {}
    for p in saved["points"].values():
        if first in p["weights"]:
            by_lambda.setdefault(round(p["weights"][first], 6), {})[p["method"]] = p
    methods = sorted({m for ps in by_lambda.values() for m in ps}, key=method_rank)
    shared = [lam for lam, ps in sorted(by_lambda.items()) if len(ps) == len(methods)]
    reference = next(p for p in saved["points"].values() if p["method"] == "pi_ref")
    rows = [f"Weighted reward lambda * {first} + (1 - lambda) * {second} (KL) at the weights "
            "every method has; pi_ref's in the first column:", "",
            "| lambda | pi_ref | " + " | ".join(methods) + " |",
            "| --- | --- | " + " | ".join("---" for _ in methods) + " |"]

    def weighted(p: dict, lam: float) -> float:
        return lam * p["reward"][first] + (1 - lam) * p["reward"][second]

    for lam in shared:
        cells = [f"{weighted(by_lambda[lam][m], lam):.3f} ({by_lambda[lam][m]['kl']:.1f})"
                 for m in methods]
        rows.append(f"| {lam:g} | {weighted(reference, lam):.3f} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    print("<!-- written by `python reports/compare/tables.py`; do not edit -->")
    for name, (first, second) in FRONTS.items():
        if not (HERE / f"{name}.json").exists():
            continue
        saved = load(name)
        prompts = saved["identity"]["prompt_ids"]
        print(f"\n## {first} vs {second} ({len(prompts)} held-out test prompts, "
              f"{saved['identity']['settings']['num_samples']} answer each)\n")
        for block in (points_table(saved, first, second), hypervolume_table(saved),
                      same_weights_table(saved, first, second)):
            print("\n".join(block) + "\n")


if __name__ == "__main__":
    main()
