"""`mavis collect` (GET_DATA: value-model training trees), `mavis data inspect FILE` and
`mavis data merge A.h5 B.h5 --out C.h5`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from mavis.cli import data_score
from mavis.cli.options import option_error, parse_assignments
from mavis.cli.sampling import sampling_options
from mavis.decoding.sampling import SamplingSettings, SettingsError
from mavis.errors import MavisError
from mavis.models.names import DEFAULT_MODEL
from mavis.paths import check_writable
from mavis.trees.settings import NOT_FOR_TREES, CollectionSettings

_C = CollectionSettings

data_app = typer.Typer(
    name="data",
    help="Tree data sets for value-model training: inspect them, score them with more "
    "objectives, merge them.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `collect` and the `data` command group to the main app."""
    app.command("collect")(collect_command)
    app.add_typer(data_app, name="data")
    data_score.register(data_app)


@sampling_options(exclude=NOT_FOR_TREES, defaults={"seed": 0})
def collect_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="The tree file to write (.h5).")],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Reference model: packaged name, local folder or hub id.")
    ] = DEFAULT_MODEL,
    prompts: Annotated[str, typer.Option(
        help="Prompt set name (see `mavis prompts list`) or a .jsonl/.json/.csv file.")
    ] = "chitchat",
    split: Annotated[str, typer.Option(help="train, validation, test or all.")] = "train",
    limit: Annotated[int | None, typer.Option(help="At most this many prompts.")] = None,
    skip: Annotated[int, typer.Option(
        help="Leave out the split's first N prompts (those an earlier collection with --limit N "
        "took), to collect the next ones for `mavis data merge`.")] = 0,
    objectives: Annotated[str, typer.Option(
        help="Comma-separated objectives that score the leaves (see `mavis objectives list`).")
    ] = "relevant,harmless",
    T: Annotated[int, typer.Option("--T", help="Response length in tokens (T).")] = _C().T,
    L: Annotated[int, typer.Option("--L", help="Layers of each tree (L).")] = _C.L,
    K_root: Annotated[int, typer.Option("--K-root", help="Children of the root.")] = _C.K_root,
    K: Annotated[int, typer.Option("--K", help="Children of every other inner node.")] = _C.K,
    value_model: Annotated[list[str] | None, typer.Option(
        "--value-model", help="OBJECTIVE=PATH (a folder or a hub id org/name) of a value "
        "model guiding the sampling (later iterations; without: the reference model alone); "
        "repeat for several.")] = None,
    two_layer_guarantee: Annotated[bool | None, typer.Option(
        "--two-layer-guarantee/--no-two-layer-guarantee",
        help="Split first-layer answers that hit EOS so that every tree is at least two layers "
        "deep (appendix C). Default: on with --value-model, off without.")] = None,
    extra_children: Annotated[int | None, typer.Option(
        help="Children grown under a split first-layer node (default K - 1).")] = None,
    iteration: Annotated[int | None, typer.Option(
        help="Iteration number recorded in the file (default: 0 without value models).")
    ] = None,
    batch_prompts: Annotated[int, typer.Option(
        help="Prompts decoded together (a group: the unit of resuming and sharding).")]
    = _C.batch_prompts,
    workers: Annotated[int, typer.Option(
        help="Ray workers (0: collect in this process). Needs mavis-align[distributed].")] = 0,
    ray_address: Annotated[str | None, typer.Option(
        help="Address of a running Ray cluster (default: start a local one).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ...")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16, float16.")] = None,
    max_prompt_tokens: Annotated[int, typer.Option(
        help="Drop longer prompts (tokens of the reference's tokenizer).")] = 256,
    keep_parts: Annotated[bool, typer.Option(
        help="Keep the per-group part files after merging.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    *, sampling: SamplingSettings,
) -> None:
    """Collect value-model training trees (GET_DATA, Algorithm 3) into an HDF5 file.

    Without --value-model the trees are sampled from the reference model (iteration 0); with
    value models from MAVIS, at the default guidance unless --beta/--kl-budget say otherwise.
    An interrupted run resumes when started again with the same arguments.
    """
    from mavis.models.loading import load_tokenizer
    from mavis.models.value_hub import value_model_folder
    from mavis.prompts import load_prompts
    from mavis.trees.collect import collect_trees, load_objectives
    from mavis.trees.decoder_spec import DecoderSpec

    value_models = parse_assignments(value_model or [], "--value-model",
                                     "harmless=runs/iter0/harmless")
    if sampling.weights and not value_models:
        raise MavisError("--weights needs --value-model: they weight the value models")
    _check_counts(limit, skip, max_prompt_tokens, iteration, workers)
    if dtype is not None and dtype not in ("float32", "bfloat16", "float16"):
        raise MavisError(f"--dtype {dtype!r}: choose float32, bfloat16 or float16")
    if not (workers and ray_address):  # a remote cluster's workers may have devices we lack
        from mavis.models.devices import check_device

        check_device(device, "--device")
    if out.suffix not in (".h5", ".hdf5"):
        raise MavisError(f"--out {str(out)!r} should end in .h5 (an HDF5 tree file)")
    check_writable(out, what="--out")
    try:
        settings = CollectionSettings(
            replace(sampling, max_new_tokens=T), L=L, K_root=K_root, K=K,  # T: the trees'
            two_layer_guarantee=bool(value_models) if two_layer_guarantee is None
            else two_layer_guarantee, extra_children=extra_children,
            batch_prompts=batch_prompts, workers=max(workers, 1))
    except SettingsError as exc:
        raise option_error(exc, _OPTIONS) from None
    names = load_objectives(objectives)  # fail on a bad name before loading any model
    folders = {name: value_model_folder(path) for name, path in value_models.items()}
    chosen = load_prompts(prompts, split, tokenizer=load_tokenizer(model), limit=limit,
                          skip=skip, max_prompt_tokens=max_prompt_tokens)
    if not chosen:
        raise MavisError(f"no prompts in {prompts!r} split {split!r}" + (
            f" after the first {skip}" if skip else "") + " (after the length filter)")
    meta = {"reference": model, "prompt_set": prompts, "split": split}
    if skip:
        meta["skip"] = skip
    if iteration is not None:
        meta["iteration"] = iteration
    if value_models:
        meta["value_model_paths"] = value_models
    options = dict(progress=progress, meta=meta, keep_parts=keep_parts)
    if workers:
        from mavis.trees.distributed import collect_trees_distributed

        path = collect_trees_distributed(model, chosen, names, out, settings,
                                         value_models=folders, address=ray_address,
                                         device=device, dtype=dtype, **options)
    else:
        spec = DecoderSpec(model, folders, device=device, dtype=dtype)
        path = collect_trees(spec, chosen, names, out, settings, **options)
    from mavis.trees.inspect import inspect_trees

    summary = inspect_trees(path)
    typer.echo(f"wrote {path}: {summary['prompts']} trees, {summary['nodes']} nodes, "
               f"{summary['leaves']} leaves, {summary['tokens']} tokens")


# The options of `CollectionSettings`' fields whose flag is not --field-name.
_OPTIONS = {"max_new_tokens": "--T", "L": "--L", "K": "--K", "K_root": "--K-root"}


def _check_counts(limit: int | None, skip: int, max_prompt_tokens: int, iteration: int | None,
                  workers: int) -> None:
    if limit is not None and limit < 1:
        raise MavisError(f"--limit is {limit}; collect trees for at least 1 prompt (leave "
                         "--limit out for every prompt of the split)")
    if skip < 0:
        raise MavisError(f"--skip is {skip}; give a whole number >= 0 (the prompts to leave "
                         "out at the start of the split)")
    if max_prompt_tokens < 1:
        raise MavisError(f"--max-prompt-tokens is {max_prompt_tokens}; give a whole number "
                         ">= 1 (prompts longer than it are left out)")
    if iteration is not None and iteration < 0:
        raise MavisError(f"--iteration is {iteration}; give a whole number >= 0 (0: trees "
                         "from the reference model)")
    if workers < 0:
        raise MavisError(f"--workers is {workers}; give a whole number >= 0 (0: collect in "
                         "this process)")


@data_app.command("inspect")
def inspect_command(
    file: Annotated[Path, typer.Argument(help="A tree file written by `mavis collect`.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Summarise a tree file: prompts, nodes per depth, leaves, EOS, tokens, values, LPR, meta."""
    from mavis.trees.inspect import format_summary, inspect_trees

    summary = inspect_trees(file)
    if json_output:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        typer.echo(format_summary(summary))


@data_app.command("merge")
def merge_command(
    files: Annotated[list[Path], typer.Argument(help="Tree files, merged in this order.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged tree file (.h5).")],
) -> None:
    """Merge tree files grown alike (same shape, sampling, reference, objectives; different
    prompts) into one training set, e.g. a recipe's trees and `mavis collect --skip N`'s."""
    from mavis.trees.inspect import inspect_trees
    from mavis.trees.merge import merge_tree_files

    if out.suffix not in (".h5", ".hdf5"):
        raise MavisError(f"--out {str(out)!r} should end in .h5 (an HDF5 tree file)")
    check_writable(out, what="--out")
    path = merge_tree_files(files, out)
    summary = inspect_trees(path)
    typer.echo(f"wrote {path}: {summary['prompts']} trees from {len(files)} files, "
               f"{summary['nodes']} nodes, {summary['leaves']} leaves")
