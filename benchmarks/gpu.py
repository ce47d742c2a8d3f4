"""Decoding speed on a GPU at the paper's shapes: plain `generate` against MAVIS, eager and
compiled, measured in one run.

    python benchmarks/gpu.py                      # on a CUDA GPU (benchmarks/gpu.sh runs it)
    python benchmarks/gpu.py --shape tiny --device cpu --new-tokens 8   # a dry run anywhere

Models are randomly initialised in the paper's shapes (speed depends on shapes, not on trained
weights; nothing is downloaded): a Llama-2-7B-shaped reference, two TinyLlama-1.1B-shaped value
models (one objective each, the paper's setting) and the shared variant (one TinyLlama-shaped
backbone with two heads), all in bf16; top-k 40, `--new-tokens` (128) new tokens per row,
EOS ignored, batch 1 and 16. Cases, per batch size:

  plain eager       transformers `generate` (top-k sampling), growing cache
  plain compiled    `generate(cache_implementation="static")`: static cache, the forward
                    compiled with CUDA graphs (transformers' own auto-compilation)
  mavis eager       `MavisDecoder(compile=False)`: growing caches, eager forwards
  mavis compiled    `MavisDecoder(compile=True)`: static caches, reference step and candidate
                    value passes compiled with CUDA graphs (`mavis.models.layout`)
  ... separate      two value models;  ... shared: one backbone, two heads

Each case is warmed up once at full length (compilation and graph capture happen there) and
then timed. tok/s counts new tokens of all rows; `ratio` is against compiled plain of the same
batch size; peak memory is `torch.cuda.max_memory_allocated` during the timed run (the plain
cases run before the value models exist). Every case prints one JSON line as it finishes; the
last line is one JSON object with all of them. `--budget-s` skips what would not finish.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

from mavis.decoding.decoder import MavisDecoder
from mavis.models.value_folder import ValueModelConfig
from mavis.models.value_model import ValueModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import build_char_tokenizer  # noqa: E402  (the tests' character tokenizer)

SHAPES = {
    "llama-2-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 32},
    "tinyllama-1.1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                       "num_attention_heads": 32, "num_key_value_heads": 4},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},
}
VOCAB = 32000
PROMPT = "tell me about your favourite book, and why you like it so much."


def config(shape: str, tokenizer) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, max_position_embeddings=4096,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=None, **SHAPES[shape])


def build(cls, cfg: LlamaConfig, device: str, dtype: torch.dtype):
    """A randomly initialised model, made directly on `device` in `dtype`."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return cls(cfg).eval()
    finally:
        torch.set_default_dtype(default)


def value_model(shape: str, objectives: list[str], tokenizer, device: str,
                dtype: torch.dtype) -> ValueModel:
    cfg = ValueModelConfig(base=f"random {shape}", objectives=objectives, lora=None)
    model = ValueModel(build(LlamaModel, config(shape, tokenizer), device, dtype), cfg)
    return model.to(device=device, dtype=dtype).eval()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.rows, self.started = args, [], time.perf_counter()
        self.tokenizer = build_char_tokenizer()
        self.cuda = args.device.startswith("cuda")

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.started)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, run) -> tuple[float, float]:
        """(seconds, peak GiB) of run(), after one warm-up run."""
        run()
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run()
        self.sync()
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")
        return time.perf_counter() - start, peak

    def record(self, case: str, batch: int, run) -> None:
        if self.left() < 0:
            row = {"case": case, "batch": batch, "skipped": "out of --budget-s"}
        else:
            seconds, peak = self.timed(run)
            row = {"case": case, "batch": batch,
                   "tok_s": round(batch * self.args.new_tokens / seconds, 2),
                   "peak_gib": round(peak, 2)}
            base = next((r for r in self.rows if r["case"] == "plain compiled"
                         and r["batch"] == batch and "tok_s" in r), None)
            if base:
                row["ratio"] = round(row["tok_s"] / base["tok_s"], 3)
                row["memory_ratio"] = round(row["peak_gib"] / base["peak_gib"], 3)
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def plain(self, model, batch: int, compiled: bool):
        enc = self.tokenizer([PROMPT] * batch, return_tensors="pt").to(self.args.device)
        extra = {"cache_implementation": "static"} if compiled else {}
        n = self.args.new_tokens

        def run():
            with torch.inference_mode():
                out = model.generate(**enc, do_sample=True, top_k=40, max_new_tokens=n,
                                     min_new_tokens=n, pad_token_id=self.tokenizer.pad_token_id,
                                     **extra)
            assert out.shape[1] - enc["input_ids"].shape[1] == n
        return run

    def mavis(self, decoder: MavisDecoder, batch: int):
        weights = {"relevant": 0.5, "harmless": 0.5}

        def run():
            out = decoder.generate([PROMPT] * batch, weights=weights, beta=self.args.beta,
                                   top_k=40, max_new_tokens=self.args.new_tokens, seed=0,
                                   batch_size=batch, ignore_eos=True)
            assert all(len(s.token_ids) == self.args.new_tokens for s in out)
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama-2-7b", choices=sorted(SHAPES))
    parser.add_argument("--value-shape", default=None, choices=sorted(SHAPES),
                        help="default: tinyllama-1.1b (tiny with --shape tiny)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--beta", type=float, default=8.0)
    parser.add_argument("--budget-s", type=float, default=420.0)
    args = parser.parse_args()
    value_shape = args.value_shape or ("tiny" if args.shape == "tiny" else "tinyllama-1.1b")
    dtype = torch.bfloat16
    bench = Bench(args)
    batches = [int(b) for b in args.batches.split(",")]
    torch.manual_seed(0)
    reference = build(LlamaForCausalLM, config(args.shape, bench.tokenizer), args.device, dtype)
    for batch in batches:
        bench.record("plain eager", batch, bench.plain(reference, batch, compiled=False))
        bench.record("plain compiled", batch, bench.plain(reference, batch, compiled=True))
    separate = [value_model(value_shape, [name], bench.tokenizer, args.device, dtype)
                for name in ("relevant", "harmless")]
    shared = value_model(value_shape, ["relevant", "harmless"], bench.tokenizer, args.device,
                         dtype)
    for batch in batches:
        for label, models in (("separate", separate), ("shared", [shared])):
            for compiled in (False, True):
                decoder = MavisDecoder(reference, bench.tokenizer, models,
                                       check_tokenizers=False, compile=compiled)
                name = f"mavis {'compiled' if compiled else 'eager'} {label}"
                bench.record(name, batch, bench.mavis(decoder, batch))
    device = torch.cuda.get_device_name() if bench.cuda else args.device
    print(json.dumps({"device": device, "torch": torch.__version__, "reference": args.shape,
                      "value_models": value_shape, "dtype": "bf16", "top_k": 40,
                      "new_tokens": args.new_tokens, "cases": bench.rows}))


if __name__ == "__main__":
    main()
