import pytest
import torch

from mavis.errors import MavisError
from mavis.models.loading import (
    apply_chat_template,
    load_causal_lm,
    load_tokenizer,
    tokenizer_fingerprint,
)
from mavis.models.value_folder import LoraSettings
from mavis.models.value_model import ValueModel, last_token_index


def test_load_local_causal_lm(tiny_lm):
    model, tokenizer = load_causal_lm(str(tiny_lm))
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    ids = tokenizer(["ab c"], return_tensors="pt")
    assert model(**ids).logits.shape == (1, 4, len(tokenizer))


def test_chat_template_applied(tiny_lm):
    text = apply_chat_template(load_tokenizer(str(tiny_lm)), "hi")
    assert text == "<user>hi</s><assistant>"


def test_unknown_model_name_is_clear():
    with pytest.raises(MavisError, match="unknown model 'no-such-model'.*smollm2-135m-instruct"):
        load_causal_lm("no-such-model")


def test_path_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MavisError, match="not a model folder"):
        load_causal_lm(str(tmp_path))


def test_value_model_round_trip(tiny_lm, tmp_path):
    vm = ValueModel.build(str(tiny_lm), ["harmless", "positive"], num_layers=1,
                          lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # make the adapter non-trivial so the round trip is meaningful
        for name, p in vm.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
        vm.head.weight.normal_()
    tok = load_tokenizer(str(tiny_lm))
    batch = tok(["hello there", "hi"], return_tensors="pt", padding=True)
    vm.eval()
    with torch.no_grad():
        before = vm.values(batch.input_ids, batch.attention_mask)
    folder = vm.save(tmp_path / "vm")
    files = {p.name for p in folder.iterdir()}
    assert files == {"value_config.json", "adapter.safetensors", "head.safetensors",
                     "README.md"}  # the model card
    for merge in (True, False):
        loaded = ValueModel.load(folder, merge=merge)
        assert loaded.objectives == ["harmless", "positive"]
        assert loaded.backbone.config.num_hidden_layers == 1
        with torch.no_grad():
            after = loaded.values(batch.input_ids, batch.attention_mask)
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert before.shape == (2, 2)


def test_value_read_at_last_real_token(tiny_lm):
    vm = ValueModel.build(str(tiny_lm), "x", num_layers=1, lora=None).eval()
    tok = load_tokenizer(str(tiny_lm))
    single = tok(["hi"], return_tensors="pt")
    padded = tok(["hi", "hello world"], return_tensors="pt", padding=True)
    with torch.no_grad():
        alone = vm.values(single.input_ids, single.attention_mask)
        batched = vm.values(padded.input_ids, padded.attention_mask)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)
    assert last_token_index(torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])).tolist() == [1, 3]


def test_value_model_errors(tiny_lm, tmp_path):
    with pytest.raises(MavisError, match="not a mavis value model folder"):
        ValueModel.load(tmp_path)
    with pytest.raises(MavisError, match="num_layers=9 is out of range"):
        ValueModel.build(str(tiny_lm), "x", num_layers=9)


def test_tokenizer_mismatch_is_explained(tiny_lm, other_tokenizer_lm):
    vm = ValueModel.build(str(tiny_lm), "v", num_layers=1, lora=None)
    other = tokenizer_fingerprint(load_tokenizer(str(other_tokenizer_lm)))
    with pytest.raises(MavisError, match="tokenizer differs from the other model's: same ids"):
        vm.check_tokenizer(other, "the other model's", "same ids")
    vm.check_tokenizer(tokenizer_fingerprint(load_tokenizer(str(tiny_lm))), "x", "y")


@pytest.mark.slow
def test_packaged_default_converts_once_and_matches_gguf():
    """The GGUF file is converted to safetensors once; the cached model gives the same logits."""
    from transformers import AutoModelForCausalLM

    from mavis.models.loading import PACKAGED_MODELS, _gguf_path, packaged_model_dir

    folder = packaged_model_dir("smollm2-135m-instruct")
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert packaged_model_dir("smollm2-135m-instruct") == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp  # not converted again
    assert any(p.suffix == ".safetensors" for p in folder.iterdir())

    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    gguf = _gguf_path(PACKAGED_MODELS["smollm2-135m-instruct"])
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ids = tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, direct(**ids).logits)
    assert tokenizer.eos_token == "<|im_end|>" and len(tokenizer) == 49152
