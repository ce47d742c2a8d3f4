"""The value model's learning curve: validation ranking against the number of training trees.

    python reports/steering/learning_curve.py

Reads the training reports (`mavis train --json`) kept in `learning-curve/` (one per run:
`curve-<prompts>.json`, `curve-<prompts>x<epochs>.json`) and the bundled model's PROVENANCE.md
(the 720-prompt point), all trained on `data/trees/default-iter0-six.h5` with the same settings
and validated on the same 80 held-out prompts' trees. Writes `learning-curve/curve.{csv,md,png}`
and `learning-curve/variance.md`: how much of the leaves' reward variance each objective has
between prompts, between the root's children within a prompt, and below them; and
`learning-curve/ceiling.md`: how well the validation's targets can be ranked at all.
Sibling accuracy's standard error is the binomial one over the validation pairs (a lower bound:
pairs share nodes).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "learning-curve"
BUNDLED = HERE.parents[1] / "src/mavis/assets/value_models/default/PROVENANCE.md"
TREES = HERE.parents[1] / "data/trees/default-iter0-six.h5"
OBJECTIVES = ["relevant", "harmless", "positive", "witty", "upbeat", "interesting"]
VALIDATION_PAIRS = 1580  # relevant's sibling pairs with different targets in the 80 prompts


def bundled_point() -> dict:
    """The bundled model's training data and best validation, from its PROVENANCE.md."""
    blocks = re.findall(r"```json\n(.*?)\n```", BUNDLED.read_text(), flags=re.S)
    data, best = json.loads(blocks[1]), json.loads(blocks[2])
    settings = json.loads(blocks[0])
    steps = int(re.search(r"\((\d+) steps", BUNDLED.read_text()).group(1))
    return {"prompts": data["prompts_train"], "epochs": settings["epochs"], "steps": steps,
            "best": best, "source": "bundled model (PROVENANCE.md)"}


def run_points() -> list[dict]:
    rows = []
    for path in sorted(OUT.glob("curve-*.json")):
        report = json.loads(path.read_text())
        rows.append({"prompts": report["data"]["prompts_train"],
                     "epochs": report["config"]["epochs"], "steps": report["steps"],
                     "best": report["best"], "source": path.name})
    return rows


def table(points: list[dict]) -> tuple[list[dict], list[str]]:
    rows = []
    for p in sorted(points, key=lambda p: (p["prompts"], p["epochs"])):
        best = p["best"]
        row = {"train_prompts": p["prompts"], "epochs": p["epochs"], "steps": p["steps"],
               "val_loss": round(best["val_loss"], 4)}
        for name in OBJECTIVES:
            row[f"sibling_{name}"] = round(best["sibling_accuracy"][name], 3)
        row["within_prompt_spearman_relevant"] = round(
            best["within_prompt_spearman"]["relevant"], 3)
        row["source"] = p["source"]
        rows.append(row)
    se = math.sqrt(0.6 * 0.4 / VALIDATION_PAIRS)
    lines = [f"Sibling accuracy on the 80 validation prompts' trees (binomial SE about {se:.3f}).",
             "", "| training prompts | epochs | steps | val loss | " +
             " | ".join(OBJECTIVES) + " | relevant within-prompt Spearman |",
             "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in OBJECTIVES) +
             " | ---: |"]
    for r in rows:
        lines.append(f"| {r['train_prompts']} | {r['epochs']} | {r['steps']} | {r['val_loss']} | "
                     + " | ".join(f"{r[f'sibling_{n}']:.3f}" for n in OBJECTIVES)
                     + f" | {r['within_prompt_spearman_relevant']:.3f} |")
    return rows, lines


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one_epoch = [r for r in rows if r["epochs"] == 1]
    se = math.sqrt(0.6 * 0.4 / VALIDATION_PAIRS)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in ("relevant", "harmless", "positive"):
        xs = [r["train_prompts"] for r in one_epoch]
        ys = [r[f"sibling_{name}"] for r in one_epoch]
        line = ax.errorbar(xs, ys, yerr=se, marker="o", capsize=3, label=f"{name} (1 epoch)")
        more = [r for r in rows if r["epochs"] > 1]
        if more:
            ax.scatter([r["train_prompts"] for r in more], [r[f"sibling_{name}"] for r in more],
                       marker="s", color=line[0].get_color(), facecolors="none", s=60,
                       label=f"{name} ({more[0]['epochs']} epochs)")
    ax.axhline(0.68, color="grey", linestyle=":", label="issue target (relevant)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([r["train_prompts"] for r in one_epoch],
                  [str(r["train_prompts"]) for r in one_epoch])
    ax.set_xlabel("training prompts (trees), log scale")
    ax.set_ylabel("validation sibling accuracy")
    ax.set_title("Shared 12-layer value model, LoRA r 16")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "curve.png", dpi=120)


def variance_split() -> list[str]:
    """Per objective, the share of the leaves' reward variance between prompts, between the
    first branches (the root's children) within a prompt, and within a first branch."""
    import numpy as np

    from mavis.trees.store import read_trees

    trees = read_trees(TREES)
    parent, depth = trees.parent, trees.depth
    branch = np.arange(len(parent))  # each node's ancestor at depth 1 (itself at depth <= 1)
    while (depth[branch] > 1).any():
        branch = np.where(depth[branch] > 1, parent[branch], branch)
    leaves = np.flatnonzero(trees.is_leaf.astype(bool))
    prompt, first = trees.prompt[leaves], np.unique(branch[leaves], return_inverse=True)[1]
    lines = [f"Leaves' reward variance of {TREES.name} ({len(leaves)} leaves), split:", "",
             "| objective | between prompts | between first branches | within a branch |",
             "| --- | ---: | ---: | ---: |"]
    for j, name in enumerate(trees.objectives):
        reward = trees.reward[leaves, j]
        by_prompt = (np.bincount(prompt, weights=reward) / np.bincount(prompt))[prompt]
        rest = reward - by_prompt
        by_branch = (np.bincount(first, weights=rest) / np.bincount(first))[first]
        total = reward.var()
        lines.append(f"| {name} | {by_prompt.var() / total:.2f} | {by_branch.var() / total:.2f} "
                     f"| {(rest - by_branch).var() / total:.2f} |")
    return lines


def sibling_halves(trees, depth: int):
    """For each pair of siblings at `depth` that both have two children: the pair's target
    difference as each child's subtree alone estimates it ([pairs, objectives] twice). A
    node's target is the mean of its two children's, so these are two independent halves of
    the difference the validation scores a ranking against."""
    import numpy as np

    first, second = [], []
    for node in np.flatnonzero(trees.depth == depth - 1):
        split = [c for c in trees.children(node) if len(trees.children(c)) == 2]
        for i, a in enumerate(split):
            for b in split[i + 1:]:
                (a0, a1), (b0, b1) = trees.children(a), trees.children(b)
                first.append(trees.value[a0] - trees.value[b0])
                second.append(trees.value[a1] - trees.value[b1])
    return np.asarray(first), np.asarray(second)


def target_ceiling() -> list[str]:
    """How well the validation's own targets can be ranked: by depth, the agreement of two
    independent halves of each sibling pair's target and the estimated perfect ranker's."""
    from mavis.training.metrics import ranking_ceiling
    from mavis.trees.store import read_trees

    trees = read_trees(TREES)
    lines = [f"Sibling targets of {TREES.name} against themselves: for pairs of siblings that "
             "each have two children, how often the two children's subtrees order the pair "
             "alike (halves), and the estimated accuracy of a ranker that knew every node's "
             "true value (perfect; normal approximation). Leaves' targets are exact rewards.",
             "", "| depth | pairs | " + " | ".join(f"{n} halves / perfect" for n in
                                                     trees.objectives) + " |",
             "| ---: | ---: | " + " | ".join("---:" for _ in trees.objectives) + " |"]
    for depth in (1, 2, 3):
        first, second = sibling_halves(trees, depth)
        agree, perfect = ranking_ceiling(first, second)
        lines.append(f"| {depth} | {len(first)} | " + " | ".join(
            f"{a:.3f} / {c:.3f}" for a, c in zip(agree, perfect, strict=True)) + " |")
    return lines


def main() -> None:
    rows, lines = table([*run_points(), bundled_point()])
    with (OUT / "curve.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (OUT / "curve.md").write_text("\n".join(lines) + "\n")
    plot(rows)
    split = variance_split()
    (OUT / "variance.md").write_text("\n".join(split) + "\n")
    ceiling = target_ceiling()
    (OUT / "ceiling.md").write_text("\n".join(ceiling) + "\n")
    print("\n".join([*lines, "", *split, "", *ceiling]))


if __name__ == "__main__":
    main()
