"""The shape of the package, checked: layers import only downward, functions fit on a screen,
imports sit at the top of modules (outside the command line), and `mavis --help` loads no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "mavis"

# Lowest first. A module may import from its own layer and the layers before it.
LAYERS = [
    {"errors", "checks", "paths", "registry", "progress", "__init__", "assets"},
    {"objectives"},
    {"models"},
    {"prompts"},
    {"decoding"},
    {"trees"},
    {"training"},
    {"evaluation"},
    {"baselines"},
    {"recipes"},
    {"serving"},
    {"cli", "__main__"},
]
LONGEST_FUNCTION = 60
# Imports that may stay inside functions outside the CLI, and why.
LAZY_ALLOWED = {
    "ray": "an optional extra (mavis-align[distributed])",
    "ray.util": "an optional extra (mavis-align[distributed])",
    "datasets": "heavy (pyarrow, pandas) and only needed for prompt sets from the hub",
    "pyarrow.parquet": "heavy and only needed for .parquet prompt files",
}


def modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(SRC.rglob("*.py"))]


def layer_of(name: str) -> int:
    top = name.split(".")[1] if name.startswith("mavis.") else "__init__"
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{name} belongs to no layer; add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts)


def test_layers_import_only_downward():
    wrong = []
    for path, tree in modules():
        own = layer_of(module_name(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("mavis.") and layer_of(target) > own:
                    wrong.append(f"{module_name(path)} imports {target}")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_functions_fit_on_a_screen():
    long = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body = body[1:]  # the docstring
            if body and node.end_lineno - body[0].lineno + 1 > LONGEST_FUNCTION:
                long.append(f"{module_name(path)}.{node.name}: "
                            f"{node.end_lineno - body[0].lineno + 1} lines")
    assert not long, "functions longer than a screen:\n" + "\n".join(long)


def test_imports_at_the_top_outside_the_command_line():
    lazy = []
    for path, tree in modules():
        if module_name(path).startswith("mavis.cli"):
            continue  # the CLI imports inside commands so that `mavis --help` stays fast
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    names = ([inner.module] if isinstance(inner, ast.ImportFrom)
                             else [a.name for a in inner.names])
                    lazy += [f"{module_name(path)}.{node.name} imports {name}"
                             for name in names if name not in LAZY_ALLOWED]
    assert not lazy, "imports inside functions:\n" + "\n".join(lazy)


@pytest.mark.parametrize("module", ["mavis.cli", "mavis.training.config", "mavis.baselines.config",
                                    "mavis.recipes.recipe",
                                    "mavis.trees.settings", "mavis.evaluation.settings"])
def test_command_line_and_settings_load_without_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
