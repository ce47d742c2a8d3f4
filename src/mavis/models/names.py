"""Names every layer uses, without loading torch: the packaged default reference model and the
hub repo it was made from."""

from __future__ import annotations

# SmolLM2-135M-Instruct, shipped as a GGUF file inside a pip package (see `mavis.models.loading`).
DEFAULT_MODEL = "smollm2-135m-instruct"

# The hub repos the packaged models were made from (a model card's `base_model`).
HUB_IDS = {DEFAULT_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct"}

# The value models' dtype when none is asked for, everywhere (library, command line, server):
# the hardware's fastest (`mavis.models.dtypes`; held-out rewards in bfloat16 as in float32:
# reports/steering).
DEFAULT_VALUE_DTYPE = "auto"
