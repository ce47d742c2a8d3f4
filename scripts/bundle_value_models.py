"""Copy a trained value model from a `mavis iterate` run into the package, with provenance.

    python scripts/bundle_value_models.py runs/default --iteration 0 --name default

The model folder (LoRA adapter + head + config) lands in src/mavis/assets/value_models/NAME/
beside a PROVENANCE.md that records the recipe, the data sizes, the validation figures, the
held-out evaluation and the command that made it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "src" / "mavis" / "assets" / "value_models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--iteration", type=int, default=0)
    parser.add_argument("--name", default="default")
    args = parser.parse_args()

    run_dir = args.run / f"iter{args.iteration}" / "value_models"
    report = json.loads((run_dir / "report.json").read_text())
    source = Path(report["model"])
    target = ASSETS / args.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("value_config.json", "adapter.safetensors", "head.safetensors"):
        shutil.copy2(source / name, target / name)
    recipe = json.loads((args.run / "recipe.json").read_text())
    results = [json.loads(line) for line in (args.run / "results.jsonl").read_text().splitlines()
               if line.strip()]
    trees_meta = report.get("data", {})
    lines = [
        f"# Value model `{args.name}`",
        "",
        f"Made by `mavis iterate {recipe['path']} --iterations {args.iteration + 1}` "
        f"(iteration {args.iteration}), then `python scripts/bundle_value_models.py {args.run} "
        f"--iteration {args.iteration} --name {args.name}`.",
        "",
        "## Recipe",
        "```json",
        json.dumps(recipe["recipe"], indent=2),
        "```",
        "## Training data",
        "```json",
        json.dumps(trees_meta, indent=2),
        "```",
        "## Validation (held-out prompts' tree nodes, best checkpoint)",
        "```json",
        json.dumps(report.get("best", {}), indent=2),
        "```",
        "## Held-out evaluation (test prompts; reward of pi_ref vs MAVIS, KL of equation 7)",
        "",
        "| iteration | objective | beta | pi_ref reward | MAVIS reward | KL |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results:
        lines.append(
            f"| {row['iteration']} | {row['objective']} | {row['beta']:g} | "
            f"{row['reference_reward']:.3f} ± {row['reference_reward_se']:.3f} | "
            f"{row['mavis_reward']:.3f} ± {row['mavis_reward_se']:.3f} | "
            f"{row['mavis_kl']:.2f} ± {row['mavis_kl_se']:.2f} |")
    (target / "PROVENANCE.md").write_text("\n".join(lines) + "\n")
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"bundled {source} -> {target} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
