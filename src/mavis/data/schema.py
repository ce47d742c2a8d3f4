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
