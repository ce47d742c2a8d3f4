"""The on-disk layout of a tree dataset (GET_DATA, Algorithm 3), format version 1.

One HDF5 file holds the trees of many prompts. As in the paper, token sequences are stored
apart from the tree structure: each node owns only the tokens it added to its parent's
sequence, and concatenating the segments along a root-to-leaf path gives the full response.

File attributes (`f.attrs`):
    format        "mavis-trees"
    version       1
    objectives    JSON list of objective names, the column order of rewards/values
    meta          JSON object: reference model, generator ("reference" or value models + beta,
                  weights, top_k), T, L, K_root, K, seed, iteration, prompt set, mavis version

Datasets (N nodes, P prompts/trees, S stored tokens, M objectives):
    prompts/text            [P] utf-8 str   the raw prompt text
    prompts/id              [P] utf-8 str   stable prompt id (from mavis.prompts)
    prompts/token_offset    [P] int64       slice of prompts/tokens holding the formatted prompt
    prompts/token_count     [P] int32
    prompts/tokens          [sum] int32     formatted (chat-template) prompt token ids
    prompts/first_node      [P] int64       index of the tree's root node
    prompts/node_count      [P] int32       nodes of this tree (contiguous from first_node)

    nodes/parent            [N] int64       global index of the parent node, -1 for the root
    nodes/depth             [N] int16       0 for the root (the prompt itself, no tokens)
    nodes/prompt            [N] int32       index into prompts/*
    nodes/token_offset      [N] int64       slice of tokens/* holding this node's own segment
    nodes/token_count       [N] int32
    nodes/is_leaf           [N] bool        a completed response (EOS or length T)
    nodes/ended_eos         [N] bool        the segment ended with EOS
    nodes/reward            [N, M] float32  R_m(y|x) at leaves, NaN elsewhere
    nodes/value             [N, M] float32  leaf: reward; inner: mean of its children's values
    nodes/lpr               [N] float32     leaf: log pi_gen(y|x) - log pi_ref(y|x) summed over
                                            the whole response; inner: mean of its children's
    tokens/id               [S] int32       generated tokens, node segments back to back
    tokens/logp_gen         [S] float32     log pi_gen(a_t|s_t) of each generated token
    tokens/logp_ref         [S] float32     log pi_ref(a_t|s_t) of each generated token

The training target of equation 6 for node s with KL multiplier zeta is
    nodes/value[s, m] - zeta * nodes/lpr[s]
(both are means over the same leaves below s, so the mean of the difference is the
difference of the means).
"""

FORMAT = "mavis-trees"
VERSION = 1

# Every dataset of the layout above: (dtype, the axis its first dimension runs over, whether it
# has one column per objective). Axes: "prompts" (P), "prompt_tokens" (sum of
# prompts/token_count), "nodes" (N), "tokens" (S). "str" is variable-length UTF-8.
DATASETS: dict[str, tuple[str, str, bool]] = {
    "prompts/text": ("str", "prompts", False),
    "prompts/id": ("str", "prompts", False),
    "prompts/token_offset": ("int64", "prompts", False),
    "prompts/token_count": ("int32", "prompts", False),
    "prompts/tokens": ("int32", "prompt_tokens", False),
    "prompts/first_node": ("int64", "prompts", False),
    "prompts/node_count": ("int32", "prompts", False),
    "nodes/parent": ("int64", "nodes", False),
    "nodes/depth": ("int16", "nodes", False),
    "nodes/prompt": ("int32", "nodes", False),
    "nodes/token_offset": ("int64", "nodes", False),
    "nodes/token_count": ("int32", "nodes", False),
    "nodes/is_leaf": ("bool", "nodes", False),
    "nodes/ended_eos": ("bool", "nodes", False),
    "nodes/reward": ("float32", "nodes", True),
    "nodes/value": ("float32", "nodes", True),
    "nodes/lpr": ("float32", "nodes", False),
    "tokens/id": ("int32", "tokens", False),
    "tokens/logp_gen": ("float32", "tokens", False),
    "tokens/logp_ref": ("float32", "tokens", False),
}

# Datasets holding indices into an axis: merging files shifts them by that axis's length so
# far (the root's parent, -1, stays -1).
INDEX_DATASETS: dict[str, str] = {
    "prompts/token_offset": "prompt_tokens",
    "prompts/first_node": "nodes",
    "nodes/parent": "nodes",
    "nodes/prompt": "prompts",
    "nodes/token_offset": "tokens",
}

AXIS_DATASET: dict[str, str] = {
    "prompts": "prompts/id",
    "prompt_tokens": "prompts/tokens",
    "nodes": "nodes/parent",
    "tokens": "tokens/id",
}
"""For each axis, a dataset whose length is that axis's length."""
