"""The paper's Table 1 on our objectives, from the points `mavis pareto` saved (README.md here).

    python reports/compare/table1.py

Reads `table1/table1.json` and writes `table1/table1.md`: for each of the paper's six weight
vectors, each method's combined reward gain over pi_ref (sum over objectives of weight times
the reward's gain) with its standard error (from the objectives' standard errors, taken as
independent: the saved points keep means, not answers), and its KL against pi_ref (equation 7);
then the fronts' hypervolume and MIP as `mavis pareto` computed them; and, to say why these
three objectives, the correlations of the six built-in objectives' rewards over the leaves of
`data/trees/default-iter0-six.h5` (raw, and within prompt: each prompt's mean removed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent / "table1"
TREES = HERE.parents[2] / "data/trees/default-iter0-six.h5"
METHODS = ["MAVIS", "RSoup", "MOD"]


def correlations() -> list[str]:
    """Lower triangle: correlation of the leaves' rewards; upper: the same within prompt."""
    import numpy as np

    from mavis.trees.store import read_trees

    trees = read_trees(TREES)
    leaves = trees.is_leaf.astype(bool)
    rewards, prompt = trees.reward[leaves], trees.prompt[leaves]
    means = np.stack([np.bincount(prompt, weights=rewards[:, j]) / np.bincount(prompt)
                      for j in range(rewards.shape[1])], axis=1)
    raw = np.corrcoef(rewards.T)
    within = np.corrcoef((rewards - means[prompt]).T)
    names = trees.objectives
    lines = [f"Reward correlations over {int(leaves.sum())} leaves of {TREES.name} (below the "
             "diagonal: raw; above: within prompt).", "",
             "| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for i, a in enumerate(names):
        cells = ["1" if i == j else f"{(raw if j < i else within)[i, j]:+.2f}"
                 for j in range(len(names))]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    saved = json.loads((HERE / "table1.json").read_text())
    objectives = saved["identity"]["objectives"]
    points = list(saved["points"].values())
    base = next(p for p in points if p["method"] == "pi_ref")
    vectors = [p["weights"] for p in points if p["method"] == "MAVIS"]
    head = " | ".join(f"{m} gain | {m} KL" for m in METHODS)
    lines = [f"Objectives {', '.join(objectives)}; pi_ref: " +
             ", ".join(f"{k} {base['reward'][k]:.3f}" for k in objectives) +
             f", KL {base['kl']:.1f} (top-k sampling).", "",
             f"| weights ({'/'.join(objectives)}) | {head} | highest gain |",
             "| --- | " + " | ".join("---: | ---:" for _ in METHODS) + " | --- |"]
    wins = {m: 0 for m in METHODS}
    for weights in vectors:
        cells, gains = [], {}
        for method in METHODS:
            point = next(p for p in points if p["method"] == method and all(
                abs(p["weights"][k] - weights[k]) < 1e-9 for k in objectives))
            gain = sum(w * (point["reward"][k] - base["reward"][k]) for k, w in weights.items())
            se = math.sqrt(sum((w * point["reward_se"][k]) ** 2 for k, w in weights.items()))
            gains[method] = gain
            cells.append(f"{gain:+.3f} ± {se:.3f} | {point['kl']:.1f}")
        best = max(gains, key=gains.get)
        wins[best] += 1
        label = "/".join(f"{weights[k]:g}" for k in objectives)
        lines.append(f"| {label} | {' | '.join(cells)} | {best} |")
    fronts = saved["fronts"]
    lines += ["", "| method | hypervolume above pi_ref | MIP | vectors with the highest gain |",
              "| --- | ---: | ---: | ---: |"]
    for method in METHODS:
        lines.append(f"| {method} | {fronts['hypervolume'][method]:.3g} | "
                     f"{fronts['mip'][method]:.3f} | {wins[method]} of {len(vectors)} |")
    lines.append(f"| pi_ref | 0 | {fronts['mip']['pi_ref']:.3f} | |")
    lines += ["", *correlations()]
    (HERE / "table1.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
