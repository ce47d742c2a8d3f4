"""MORLHF (paper section 4): fine-tune pi_ref for one fixed weight vector lambda, by
KL-regularised RL on the weighted reward

    maximise  E_{x, y ~ pi}[ sum_m lambda_m R_m(y|x) ]  -  kl_coef * KL(pi || pi_ref)

with a LoRA adapter on the reference model as the policy; one run (one policy) per lambda.

    from mavis.baselines import MorlhfSettings, train_morlhf, load_policy
    report = train_morlhf(MorlhfSettings(), {"harmless": 0.4, "relevant": 0.6}, "runs/morlhf-0.4")
    model, tokenizer = load_policy("runs/morlhf-0.4")

Why TRL's RLOOTrainer (not GRPOTrainer, not PPO). The paper ran PPO with the KL penalty in
the reward, whose optimum is pi_ref(y|x) exp(R(y|x) / kl_coef) / Z: the very policy that MAVIS
approximates at inference time, so the two are compared on one objective. RLOO keeps that
objective exactly: each answer's reward is sum_m lambda_m R_m - kl_coef * sum_t log(pi/pi_ref)
(the sequence KL of equation 7), and its baseline is the mean of the other answers to the same
prompt (no value network to train, unlike PPO, which TRL has moved to its experimental corner).
GRPO with beta > 0 instead adds a per-token k3 KL estimate to the loss and, by default,
divides rewards by their per-group standard deviation; its gradient is then not that of the
objective above, and kl_coef would lose its meaning as the inverse of MAVIS's beta. Answers are
sampled from the full policy (temperature 1, no top-k/top-p), so the KL in the reward is the
KL of the policy that is evaluated.

The reference model serves as pi_ref by switching the adapter off (no second copy in memory).
Rewards come from `mavis.objectives` on the prompt text as the user wrote it (the chat template
is applied for generation only).

Output folder (`out_dir`):
    run.json                     weights + settings of the run in progress (checked on rerun)
    checkpoints/checkpoint-N/    resumable trainer state every `save_every` steps
    adapter_*, policy.json       the finished policy (see `mavis.baselines.policy`); once
                                 policy.json exists the checkpoints are removed
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from peft import LoraConfig
from tqdm.auto import tqdm
from transformers import PrinterCallback, TrainerCallback
from trl import RLOOConfig, RLOOTrainer

from mavis.baselines.config import MorlhfSettings
from mavis.baselines.policy import POLICY_FILE, load_policy, read_policy_info, save_policy
from mavis.errors import MavisError
from mavis.models.loading import load_causal_lm, quiet_libraries
from mavis.objectives import get_objective
from mavis.prompts import load_prompts

__all__ = ["load_policy", "train_morlhf"]

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
# Settings that change how a run is shown or saved, not what it learns: a rerun may differ.
_RUN_ONLY = ("progress", "save_every", "keep_checkpoints")


def train_morlhf(settings: MorlhfSettings, weights: dict[str, float],
                 out_dir: str | Path) -> dict[str, Any]:
    """Train (or finish, or just return) the MORLHF policy for `weights` in `out_dir`.

    Rerunning the same call continues from the latest checkpoint; a finished run (its
    `policy.json` exists) is returned as it is. A folder holding a run with other weights or
    settings is refused. Returns the report that `policy.json` holds: reference, weights,
    settings, steps, the step it resumed from, per-step reward and KL, and the run time.
    """
    lambdas = settings.check_weights(weights)
    out = Path(out_dir).expanduser()
    identity = {"weights": lambdas, "settings": _learning_settings(settings.to_dict())}
    if (out / POLICY_FILE).exists():
        info = read_policy_info(out)
        _check_same_run(info, identity, out / POLICY_FILE)
        return info
    _claim(out, identity)

    started = time.monotonic()
    with quiet_libraries():
        trainer = _build_trainer(settings, lambdas, out / CHECKPOINTS)
        last = _last_checkpoint(out / CHECKPOINTS)
        resumed_from = _checkpoint_step(last) if last else 0
        trainer.train(resume_from_checkpoint=str(last) if last else None)
        report = {
            "kind": "morlhf",
            "reference": settings.reference,
            "weights": lambdas,
            "settings": settings.to_dict(),
            "steps": int(trainer.state.global_step),
            "resumed_from_step": resumed_from,
            "history": _history(trainer.state.log_history, settings.objectives),
            "seconds_this_run": round(time.monotonic() - started, 1),
        }
        save_policy(trainer.model, out, report)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    (out / RUN_FILE).unlink(missing_ok=True)
    return read_policy_info(out)


# -- the trainer ------------------------------------------------------------------------------
def _build_trainer(settings: MorlhfSettings, lambdas: dict[str, float], checkpoints: Path) -> Any:
    model, tokenizer = load_causal_lm(settings.reference)
    dataset = _prompt_dataset(settings, tokenizer)
    args = RLOOConfig(
        output_dir=str(checkpoints),
        # One batch of answers per optimiser step: prompts_per_step prompts x num_generations.
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0,
        beta=settings.kl_coef,
        reward_weights=[lambdas[name] for name in settings.objectives],
        normalize_advantages=settings.normalize_advantages,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        bf16=settings.bf16,
        gradient_checkpointing=False,
        save_strategy="steps",
        save_steps=settings.save_every,
        save_total_limit=settings.keep_checkpoints,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        seed=settings.seed,
        data_seed=settings.seed,
    )
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                      lora_dropout=settings.lora_dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=_present_targets(model, settings.lora_target_modules))
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=[_reward_function(name) for name in settings.objectives],
        args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; we show a bar instead
    trainer.add_callback(_progress_callback(settings.progress))
    return trainer


def _prompt_dataset(settings: MorlhfSettings, tokenizer: Any) -> Any:
    """Training prompts as a `datasets.Dataset`: `prompt` for generation (a chat turn when the
    tokenizer has a chat template, so TRL applies it as `MavisDecoder` does) and `user_prompt`,
    the bare text the objectives score."""
    texts: list[str] = []
    for name in settings.prompt_sets:
        texts += [p.text for p in load_prompts(
            name, "train", tokenizer=tokenizer, limit=settings.prompt_limit,
            max_prompt_tokens=settings.max_prompt_tokens, seed=settings.prompt_seed)]
    if len(texts) < settings.prompts_per_step:
        raise MavisError(f"{len(texts)} training prompt(s) in {', '.join(settings.prompt_sets)} "
                         f"(train split, after the length filter), fewer than prompts_per_step="
                         f"{settings.prompts_per_step}; add prompts, raise prompt_limit or "
                         "max_prompt_tokens, or lower prompts_per_step")
    chat = bool(getattr(tokenizer, "chat_template", None))
    rows = [{"prompt": [{"role": "user", "content": t}] if chat else t, "user_prompt": t}
            for t in texts]
    return Dataset.from_list(rows)


def _reward_function(name: str) -> Callable[..., list[float]]:
    """A TRL reward function scoring answers with objective `name` (logged under that name)."""
    objective = get_objective(name)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], user_prompt: Sequence[str],
               **_: Any) -> list[float]:
        return objective.score(list(user_prompt), [_completion_text(c) for c in completions])

    reward.__name__ = name
    return reward


def _completion_text(completion: Any) -> str:
    """TRL passes a string, or for chat prompts a list of messages ending with the answer."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1]["content"])


def _present_targets(model: Any, wanted: Sequence[str]) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    present = [t for t in wanted if t in names]
    if not present:
        raise MavisError(f"none of the LoRA target modules {list(wanted)} exist in the reference "
                         "model; set lora_target_modules to its linear layer names")
    return present


def _progress_callback(enabled: bool) -> Any:
    class ProgressBar(TrainerCallback):
        """One bar of optimiser steps, with the latest weighted reward and KL per token."""

        bar: Any = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is None:  # created here: on resume the step counter is restored by now
                self.bar = tqdm(total=state.max_steps, initial=state.global_step,
                                desc="MORLHF", unit="step", disable=not enabled,
                                dynamic_ncols=True, file=sys.stderr)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if self.bar is not None and logs and "reward" in logs:
                self.bar.set_postfix(reward=f"{logs['reward']:.3g}",
                                     kl_per_token=f"{logs.get('kl', 0.0):.3g}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return ProgressBar()


# -- run folder bookkeeping ---------------------------------------------------------------
def _learning_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in _RUN_ONLY}


def _check_same_run(saved: dict[str, Any], identity: dict[str, Any], where: Path) -> None:
    theirs = {"weights": saved.get("weights"),
              "settings": _learning_settings(saved.get("settings") or {})}
    if theirs != identity:
        differ = [k for k in identity["settings"]
                  if theirs["settings"].get(k) != identity["settings"][k]]
        if theirs["weights"] != identity["weights"]:
            differ.insert(0, "weights")
        raise MavisError(f"{where} belongs to a MORLHF run with other {', '.join(differ)}; "
                         "use another out_dir (or delete that one to start over)")


def _claim(out: Path, identity: dict[str, Any]) -> None:
    """Record the run's identity in `run.json`, or check it against an unfinished run's."""
    path = out / RUN_FILE
    if path.exists():
        _check_same_run(json.loads(path.read_text()), identity, path)
        return
    if out.exists() and any(out.iterdir()):
        raise MavisError(f"{out} exists and holds no MORLHF run; give an empty or new out_dir")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2) + "\n")


def _last_checkpoint(folder: Path) -> Path | None:
    """The latest complete checkpoint (one with its trainer state written), if any."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=_checkpoint_step, default=None)


def _checkpoint_step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def _history(log_history: list[dict[str, Any]], objectives: Sequence[str]) -> list[dict]:
    """Per-step means from TRL's logs: weighted reward (before the KL penalty), each
    objective's reward, KL per answer token, and answer length."""
    rows = []
    for entry in log_history:
        if "reward" not in entry:
            continue
        rows.append({
            "step": int(entry["step"]),
            "reward": entry["reward"],
            "rewards": {name: entry.get(f"rewards/{name}/mean") for name in objectives},
            "kl_per_token": entry.get("kl"),
            "mean_length": entry.get("completions/mean_length"),
        })
    return rows
