"""Baselines: Rewarded Soups interpolate weight deltas exactly; MORLHF trains, resumes and
returns finished runs as they are. Tiny models built by the tests, a `python:` reward."""

import json
import sys

import pytest
import torch

from mavis.baselines import MorlhfSettings, load_policy, soup, train_morlhf
from mavis.baselines.policy import save_policy
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm, quiet_libraries

REWARDS = (
    "CALLS = 0\n"
    "FAIL_ON_CALL = None\n"
    "def vowels(prompts, responses):\n"
    "    global CALLS\n"
    "    CALLS += 1\n"
    "    if CALLS == FAIL_ON_CALL:\n"
    "        raise RuntimeError('boom: simulated crash')\n"
    "    return [sum(c in 'aeiou' for c in r) / max(len(r), 1) for r in responses]\n"
    "def spaces(prompts, responses):\n"
    "    return [r.count(' ') / max(len(r), 1) for r in responses]\n"
)
VOWELS, SPACES = "python:morlhf_toy_rewards:vowels", "python:morlhf_toy_rewards:spaces"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The reward module (its globals steer the crash) and a prompt file."""
    from mavis.objectives import clear_objective_cache

    folder = tmp_path_factory.mktemp("toy")
    (folder / "morlhf_toy_rewards.py").write_text(REWARDS)
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": w}) + "\n" for w in
                               ["say hi", "tell me a joke", "what is the sky", "sing",
                                "hello there", "count to three", "name a fruit", "ok",
                                "why is the sea salty", "good night", "be brief", "go on"]))
    sys.path.insert(0, str(folder))
    clear_objective_cache()
    import morlhf_toy_rewards

    yield morlhf_toy_rewards, prompts
    sys.path.remove(str(folder))
    sys.modules.pop("morlhf_toy_rewards", None)
    clear_objective_cache()


def settings_for(tiny_lm, prompts, **overrides) -> MorlhfSettings:
    base = dict(reference=str(tiny_lm), objectives=[VOWELS, SPACES],
                prompt_sets=[str(prompts)], prompt_limit=4, max_prompt_tokens=None,
                lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
                num_generations=2, prompts_per_step=2, max_new_tokens=8,
                learning_rate=1e-2, max_steps=1, progress=False)
    return MorlhfSettings(**(base | overrides))


def adapter_tensors(folder):
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


# -- MORLHF -------------------------------------------------------------------------------------
def test_one_morlhf_step_trains_the_adapter(tiny_lm, toy, tmp_path):
    module, prompts = toy
    module.CALLS, module.FAIL_ON_CALL = 0, None
    report = train_morlhf(settings_for(tiny_lm, prompts), {VOWELS: 0.7, SPACES: 0.3},
                          tmp_path / "run")
    assert report["steps"] == 1 and module.CALLS == 1
    assert report["weights"] == {VOWELS: 0.7, SPACES: 0.3}
    assert [row["step"] for row in report["history"]] == [1]
    assert set(report["history"][0]["rewards"]) == {VOWELS, SPACES}
    # LoRA's B starts at zero: a step with nonzero advantages must move it.
    tensors = adapter_tensors(tmp_path / "run")
    b_norms = [t.abs().max().item() for k, t in tensors.items() if "lora_B" in k]
    assert b_norms and min(b_norms) > 0
    saved = json.loads((tmp_path / "run" / "policy.json").read_text())
    assert saved["reference"] == str(tiny_lm) and saved["kind"] == "morlhf"
    assert not (tmp_path / "run" / "checkpoints").exists()
    policy, _ = load_policy(tmp_path / "run")
    reference, _ = load_causal_lm(str(tiny_lm))
    q_policy = policy.model.layers[0].self_attn.q_proj.weight
    q_reference = reference.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_policy, q_reference)


def test_morlhf_resumes_from_its_checkpoint_and_returns_finished_runs(tiny_lm, toy, tmp_path):
    module, prompts = toy
    settings = settings_for(tiny_lm, prompts, max_steps=2, save_every=1)
    weights = {VOWELS: 1.0}
    out = tmp_path / "run"
    module.CALLS, module.FAIL_ON_CALL = 0, 2  # crash while scoring step 2
    with pytest.raises(MavisError, match="raised RuntimeError: boom"):  # the user's code
        train_morlhf(settings, weights, out)
    assert (out / "checkpoints" / "checkpoint-1").is_dir() and not (out / "policy.json").exists()
    step1_b = {k: t for k, t in adapter_tensors(out / "checkpoints" / "checkpoint-1").items()}

    module.CALLS, module.FAIL_ON_CALL = 0, None
    report = train_morlhf(settings, weights, out)
    assert report["resumed_from_step"] == 1 and report["steps"] == 2
    assert module.CALLS == 1  # only step 2 was sampled and scored again
    assert [row["step"] for row in report["history"]] == [1, 2]
    final = adapter_tensors(out)
    assert any(not torch.equal(final[k], step1_b[k]) for k in step1_b)

    module.CALLS = 0
    again = train_morlhf(settings_for(tiny_lm, prompts, max_steps=2, save_every=5),
                         weights, out)  # save_every only changes how it runs: same run
    assert again == report and module.CALLS == 0
    with pytest.raises(MavisError, match="other weights"):
        train_morlhf(settings, {VOWELS: 0.5, SPACES: 0.5}, out)
    with pytest.raises(MavisError, match="kl_coef"):
        train_morlhf(settings_for(tiny_lm, prompts, max_steps=2, kl_coef=0.5), weights, out)


def test_morlhf_settings_refuse_what_cannot_work(tiny_lm, toy):
    _, prompts = toy
    with pytest.raises(MavisError, match="kl_coef is 0; give a number > 0"):
        settings_for(tiny_lm, prompts, kl_coef=0.0)
    with pytest.raises(MavisError, match="num_generations"):
        settings_for(tiny_lm, prompts, num_generations=1)
    settings = settings_for(tiny_lm, prompts)
    with pytest.raises(MavisError, match="sum to 1.5"):
        settings.check_weights({VOWELS: 1.0, SPACES: 0.5})
    with pytest.raises(MavisError, match="not in settings.objectives"):
        settings.check_weights({"harmless": 1.0})
    with pytest.raises(MavisError, match="unknown MORLHF setting"):
        MorlhfSettings.from_dict({"kl": 0.1})
    assert settings.check_weights({SPACES: 1.0}) == {VOWELS: 0.0, SPACES: 1.0}


def test_morlhf_refuses_too_few_prompts(tiny_lm, toy, tmp_path):
    _, prompts = toy
    settings = settings_for(tiny_lm, prompts, prompt_limit=1, prompts_per_step=2)
    with pytest.raises(MavisError, match="fewer than prompts_per_step=2"):
        train_morlhf(settings, {VOWELS: 1.0}, tmp_path / "run")


# -- Rewarded Soups ---------------------------------------------------------------------------
def random_policy(tiny_lm, folder, *, r, alpha, targets, seed, weights):
    """A LoRA policy with random A and B (as if trained), saved as a policy folder."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(str(tiny_lm))
    torch.manual_seed(seed)
    with quiet_libraries():
        peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha,
                                                      target_modules=targets,
                                                      init_lora_weights=False))
    return save_policy(peft_model, folder, {"kind": "morlhf", "reference": str(tiny_lm),
                                            "weights": weights})


def expected_deltas(folder):
    """{layer weight name: scaling * B @ A} computed from the saved adapter by hand."""
    config = json.loads((folder / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    tensors = adapter_tensors(folder)
    deltas = {}
    for key, a in tensors.items():
        if ".lora_A." in key:
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            name = key.split("base_model.model.", 1)[1].replace(".lora_A.weight", ".weight")
            deltas[name] = scaling * b @ a
    return deltas


@pytest.fixture(scope="module")
def two_policies(tiny_lm, tmp_path_factory):
    root = tmp_path_factory.mktemp("soups")
    # Different ranks, scalings and layers: the soup must still be exact.
    first = random_policy(tiny_lm, root / "a", r=4, alpha=8, targets=["q_proj", "v_proj"],
                          seed=1, weights={"x": 1.0})
    second = random_policy(tiny_lm, root / "b", r=2, alpha=6, targets=["q_proj", "o_proj"],
                           seed=2, weights={"y": 1.0})
    return first, second


def test_soup_interpolates_weight_deltas_exactly(tiny_lm, two_policies, tmp_path):
    first, second = two_policies
    base = dict(load_causal_lm(str(tiny_lm))[0].named_parameters())
    deltas = expected_deltas(first), expected_deltas(second)
    assert set(deltas[0]) != set(deltas[1])  # some layers are adapted by one policy only
    for lam in (1.0, 0.0, 0.5, 0.3):
        model, _ = soup([first, second], [lam, 1.0 - lam])
        weights = dict(model.named_parameters())
        assert set(weights) == set(base)
        for name, w in weights.items():
            want = base[name].detach().clone()
            if name in deltas[0]:
                want += lam * deltas[0][name]
            if name in deltas[1]:
                want += (1.0 - lam) * deltas[1][name]
            torch.testing.assert_close(w.detach(), want, atol=1e-6, rtol=1e-5, msg=name)


def test_soup_endpoints_are_the_policies_and_the_middle_their_mean(tiny_lm, two_policies,
                                                                   tmp_path):
    first, second = two_policies
    base = dict(load_causal_lm(str(tiny_lm))[0].named_parameters())
    policies = [dict(load_policy(p)[0].named_parameters()) for p in (first, second)]
    for lam, target in ((1.0, policies[0]), (0.0, policies[1])):
        weights = dict(soup([first, second], [lam, 1.0 - lam])[0].named_parameters())
        for name, w in weights.items():
            torch.testing.assert_close(w, target[name], atol=1e-6, rtol=1e-5, msg=name)
    model, _ = soup([first, second], [0.5, 1.0 - 0.5], out_dir=tmp_path / "soup")
    weights = dict(model.named_parameters())
    changed = 0
    for name, w in weights.items():
        mean_delta = 0.5 * ((policies[0][name] - base[name]) + (policies[1][name] - base[name]))
        torch.testing.assert_close(w - base[name], mean_delta, atol=1e-6, rtol=1e-5, msg=name)
        changed += int(mean_delta.abs().max() > 1e-3)
    assert changed >= 3  # q (both), v (first only), o (second only)
    # Saved as a policy folder, the soup loads back to the same weights.
    info = json.loads((tmp_path / "soup" / "policy.json").read_text())
    assert info["kind"] == "rewarded-soup" and info["soup_weights"] == [0.5, 0.5]
    assert info["weights"] == {"x": 0.5, "y": 0.5}
    reloaded = dict(load_policy(tmp_path / "soup")[0].named_parameters())
    for name, w in weights.items():
        torch.testing.assert_close(reloaded[name], w, atol=1e-6, rtol=1e-5, msg=name)


def test_soup_of_three_policies_is_the_weighted_sum_of_their_deltas(tiny_lm, two_policies,
                                                                     tmp_path):
    first, second = two_policies
    third = random_policy(tiny_lm, tmp_path / "third", r=2, alpha=4, targets=["k_proj"],
                          seed=7, weights={"z": 1.0})
    base = dict(load_causal_lm(str(tiny_lm))[0].named_parameters())
    deltas = [expected_deltas(p) for p in (first, second, third)]
    weights = [0.2, 0.3, 0.5]
    model, _ = soup([first, second, third], weights, out_dir=tmp_path / "soup3")
    for name, w in model.named_parameters():
        want = base[name].detach().clone()
        for delta, weight in zip(deltas, weights, strict=True):
            if name in delta:
                want += weight * delta[name]
        torch.testing.assert_close(w.detach(), want, atol=1e-6, rtol=1e-5, msg=name)
    info = json.loads((tmp_path / "soup3" / "policy.json").read_text())
    assert info["weights"] == pytest.approx({"x": 0.2, "y": 0.3, "z": 0.5})


def test_soup_refuses_bad_input(tiny_lm, two_policies, tmp_path, other_tokenizer_lm):
    first, second = two_policies
    with pytest.raises(MavisError, match="must be in \\[0, 1\\] and sum to 1"):
        soup([first, second], [1.5, 1.0 - 1.5])
    with pytest.raises(MavisError, match="not a finished baseline policy"):
        soup([first, tmp_path], [0.5, 0.5])
    other = random_policy(other_tokenizer_lm, tmp_path / "other", r=2, alpha=2,
                          targets=["q_proj"], seed=3, weights={"y": 1.0})
    with pytest.raises(MavisError, match="different reference models"):
        soup([first, other], [0.5, 0.5])
