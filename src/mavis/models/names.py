"""Names every layer uses, without loading torch: the packaged default reference model."""

from __future__ import annotations

# SmolLM2-135M-Instruct, shipped as a GGUF file inside a pip package (see `mavis.models.loading`).
DEFAULT_MODEL = "smollm2-135m-instruct"
