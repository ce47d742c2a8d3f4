"""The value models' dtype chosen for the hardware (`value_dtype="auto"`)."""

import pytest
import torch

from mavis.errors import MavisError
from mavis.models import dtypes
from mavis.models.dtypes import (
    cpu_has_native_bf16,
    dtype_identity,
    fastest_value_dtype,
    resolve_dtype,
)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    with_bf16 = tmp_path / "a"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx2\n")
    without = tmp_path / "b"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    amx = tmp_path / "c"
    amx.write_text("flags : amx_tile amx_bf16\n")
    assert cpu_has_native_bf16(str(with_bf16)) and cpu_has_native_bf16(str(amx))
    assert not cpu_has_native_bf16(str(without))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))  # unreadable: float32


def test_resolve_dtype():
    assert resolve_dtype(None, "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype(torch.float16, "cpu") is torch.float16
    assert resolve_dtype("auto", "cpu") is fastest_value_dtype("cpu")
    assert fastest_value_dtype("cpu") in (torch.bfloat16, torch.float32)
    with pytest.raises(MavisError, match="choose auto, float32, bfloat16"):
        resolve_dtype("nope", "cpu")


def test_results_files_keep_the_dtype_auto_resolved_to(monkeypatch):
    """A results file made with "auto" is float32's file where the CPU has no native bf16
    (so files made before the default changed keep their identity), bfloat16's where it has."""
    assert dtype_identity("float32") == {} and dtype_identity(torch.float32) == {}
    assert dtype_identity("bfloat16") == {"value_dtype": "bfloat16"}
    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda: False)
    assert dtype_identity("auto") == {}
    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda: True)
    assert dtype_identity("auto") == {"value_dtype": "bfloat16"}


def test_value_models_load_in_the_dtype_asked_for(tiny_lm, tmp_path, capsys):
    import json

    from mavis.cli import main
    from mavis.decoding.decoder import MavisDecoder
    from mavis.models.value_model import ValueModel

    ValueModel.build(str(tiny_lm), ["a"], num_layers=1, lora=None).save(tmp_path / "vm")
    decoder = MavisDecoder.load(str(tiny_lm), [tmp_path / "vm"], value_dtype="bfloat16")
    assert decoder.guide.value_models[0].head.weight.dtype is torch.bfloat16
    assert next(decoder.reference.parameters()).dtype is torch.float32  # the KL's footing
    auto = MavisDecoder.load(str(tiny_lm), [tmp_path / "vm"], value_dtype="auto")
    assert auto.guide.value_models[0].head.weight.dtype is fastest_value_dtype("cpu")
    assert main(["generate", "hi", "--model", str(tiny_lm), "--value-model",
                 f"a={tmp_path / 'vm'}", "--weights", "a=1", "--value-dtype", "bfloat16",
                 "--max-new-tokens", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["weights"] == {"a": 1.0}
