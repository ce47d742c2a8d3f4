"""Value models from the Hugging Face hub (`--value-model NAME=org/name`) and the model card every
saved value model carries.

Nothing is downloaded: each test lays out a local hub cache under tmp_path exactly as
huggingface_hub lays out a downloaded snapshot (`models--org--name/refs/main`,
`snapshots/<commit>/FILE` -> `../../blobs/<hash>`), checks that huggingface_hub itself sees it,
and runs offline (`HF_HUB_OFFLINE=1`) with `HF_HUB_CACHE` pointing there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import constants, scan_cache_dir, try_to_load_from_cache
from huggingface_hub.utils import _cache_manager as cache_manager
from test_training import write_trees

import mavis.models.value_hub as value_hub
from mavis.cli import main
from mavis.errors import MavisError
from mavis.models.model_card import TAGS, model_card
from mavis.models.value_folder import (
    ADAPTER_NAME,
    BACKBONE_NAME,
    CARD_NAME,
    CONFIG_NAME,
    HEAD_NAME,
    VALUE_MODEL_FILE_NAMES,
    LoraSettings,
    ValueModelConfig,
    read_value_config,
    value_model_fingerprint,
)
from mavis.models.value_hub import parse_hub_id, value_model_folder
from mavis.models.value_model import ValueModel
from mavis.recipes.bundle import bundle_run
from mavis.training.config import TrainConfig
from mavis.training.trainer import initial_model

pytestmark = pytest.mark.usefixtures("one_thread")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def publish(cache: Path, repo_id: str, folder: Path, names: list[str] | None = None,
            commit: str = COMMIT) -> Path:
    """Lay out files of `folder` in the hub cache `cache` as huggingface_hub leaves a snapshot
    of `repo_id` it downloaded (refs/main -> commit; snapshot files are links to blobs)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name in names or sorted(p.name for p in folder.iterdir() if p.is_file()):
        data = (folder / name).read_bytes()
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache, offline. huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE into
    `huggingface_hub.constants` at import (downloads read them there when called), and its
    cache scanner binds its own copy of HF_HUB_CACHE: those are patched beside the
    environment."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(cache_manager, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def value_folder(tiny_lm, tmp_path_factory) -> Path:
    """A small value model for objective `a` on the tiny Llama, with a head that matters."""
    import torch

    torch.manual_seed(3)
    model = ValueModel.build(str(tiny_lm), ["a"], num_layers=1,
                             lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        model.head.weight.normal_(0.0, 2.0)
    model.config.value_range = {"a": [-1.0, 1.0]}
    model.config.value_scale = {"a": 0.25}
    return model.save(tmp_path_factory.mktemp("vm") / "best")


def test_the_hand_made_cache_is_what_huggingface_hub_sees(hub_cache, value_folder):
    snapshot = publish(hub_cache, "org/name", value_folder)
    assert try_to_load_from_cache("org/name", CONFIG_NAME) == str(snapshot / CONFIG_NAME)
    assert try_to_load_from_cache("org/name", HEAD_NAME, revision=COMMIT) == str(
        snapshot / HEAD_NAME)
    (repo,) = scan_cache_dir().repos
    assert (repo.repo_id, repo.repo_type) == ("org/name", "model")
    (revision,) = repo.revisions
    assert revision.commit_hash == COMMIT and revision.refs == frozenset({"main"})
    assert {f.file_name for f in revision.files} == {CONFIG_NAME, ADAPTER_NAME, HEAD_NAME,
                                                     CARD_NAME}


def test_hub_ids_are_told_from_paths():
    assert parse_hub_id("org/name") == ("org/name", None)
    assert parse_hub_id("org/name@v1.0") == ("org/name", "v1.0")
    assert parse_hub_id("org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    for path in ("runs/vm/best", "./org/name", "/org/name", "~/vm", "name", "org/a--b", ""):
        assert parse_hub_id(path) is None, path


def test_a_hub_id_is_the_cached_snapshot_fetched_with_only_its_files(hub_cache, value_folder,
                                                                    monkeypatch):
    snapshot = publish(hub_cache, "org/name", value_folder)
    calls = []
    real = value_hub.snapshot_download

    def recording(repo_id, **kwargs):
        calls.append((repo_id, kwargs["repo_type"], kwargs["revision"],
                      kwargs["allow_patterns"]))
        return real(repo_id, **kwargs)

    monkeypatch.setattr(value_hub, "snapshot_download", recording)
    assert value_model_folder("org/name") == str(snapshot)
    assert calls == [("org/name", "model", None, list(VALUE_MODEL_FILE_NAMES))]
    assert VALUE_MODEL_FILE_NAMES == (CONFIG_NAME, ADAPTER_NAME, BACKBONE_NAME, HEAD_NAME)
    assert value_model_folder("org/name@main") == value_model_folder(f"org/name@{COMMIT}")
    # results files record the fingerprint: the downloaded copy is the uploaded model
    assert value_model_fingerprint(snapshot) == value_model_fingerprint(value_folder)
    loaded, local = ValueModel.load("org/name"), ValueModel.load(value_folder)
    assert loaded.objectives == ["a"]
    assert loaded.head.weight.equal(local.head.weight)


def test_a_local_folder_wins_and_other_paths_pass_through(hub_cache, value_folder, tmp_path,
                                                          monkeypatch):
    assert value_model_folder(str(value_folder)) == str(value_folder)
    assert value_model_folder("./no/such/folder") == "./no/such/folder"
    monkeypatch.chdir(tmp_path)
    shutil.copytree(value_folder, tmp_path / "org" / "name")  # shaped like an id, but here
    assert value_model_folder("org/name") == "org/name"


def generate(tiny_lm, value_model: str) -> int:
    return main(["generate", "hi", "--model", str(tiny_lm), "--value-model", f"a={value_model}",
                 "--weights", "a=1", "--max-new-tokens", "3", "--seed", "0", "--json"])


def test_every_command_resolves_value_models_in_one_place(hub_cache, tiny_lm, value_folder,
                                                         monkeypatch):
    """generate, evaluate, pareto and serve pick their value models by choose_value_models."""
    from mavis.models.bundled import choose_value_models

    snapshot = publish(hub_cache, "org/name", value_folder)
    assert choose_value_models(str(tiny_lm), {"a": "org/name"}, ["a"]) == [str(snapshot)]
    assert choose_value_models(str(tiny_lm), {"a": str(value_folder)}, ["a"]) == [
        str(value_folder)]
    monkeypatch.setattr(value_hub, "snapshot_download", None)  # a wrong name fetches nothing
    with pytest.raises(MavisError, match="names an objective this command does not use"):
        choose_value_models(str(tiny_lm), {"b": "org/name"}, ["a"])


def test_generate_with_a_hub_id_gives_the_tokens_of_the_folder(hub_cache, tiny_lm,
                                                               value_folder, capsys):
    publish(hub_cache, "org/name", value_folder)
    assert generate(tiny_lm, str(value_folder)) == 0
    from_folder = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert generate(tiny_lm, "org/name") == 0
    from_hub = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(from_hub) == 1 and from_hub[0]["token_ids"]
    assert from_hub == from_folder


def test_an_id_missing_from_the_cache_offline_is_one_line(hub_cache, tiny_lm, capsys):
    assert generate(tiny_lm, "org/missing") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert "'org/missing'" in err and "not a local folder" in err
    assert "HF_HUB_OFFLINE=1" in err and "download it once online" in err
    assert "HF_HUB_OFFLINE=0" in err and str(hub_cache) in err


def test_online_an_unreachable_hub_falls_back_to_the_cache(hub_cache, value_folder,
                                                          monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    snapshot = publish(hub_cache, "org/name", value_folder)
    assert value_model_folder("org/name") == str(snapshot)
    with pytest.raises(MavisError, match="'org/missing' could not be reached .* not in the "
                                         "Hugging Face cache"):
        value_model_folder("org/missing")


def test_what_is_not_a_value_model_is_refused(hub_cache, tiny_lm, value_folder, capsys):
    publish(hub_cache, "org/plain", tiny_lm)  # a causal LM, not a value model
    with pytest.raises(MavisError, match="'org/plain' is not a mavis value model"):
        value_model_folder("org/plain")
    publish(hub_cache, "org/part", value_folder, [CONFIG_NAME])  # config only: cut short
    with pytest.raises(MavisError, match=f"lacks {ADAPTER_NAME}, {HEAD_NAME}.*download it "
                                         "once online"):
        value_model_folder("org/part")
    assert generate(tiny_lm, str(tiny_lm)) == 2  # a local folder without value_config.json
    err = capsys.readouterr().err
    assert "is not a mavis value model folder" in err and err.count("\n") == 1


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_a_saved_value_model_has_a_model_card_outside_its_fingerprint(value_folder, tmp_path):
    card = (value_folder / CARD_NAME).read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "mavis" and meta["tags"] == TAGS == [
        "mavis", "value-model", "reward-model", "multi-objective-alignment"]
    assert meta["objectives"] == ["a"] and "base_model" not in meta  # a local backbone
    config = read_value_config(value_folder)
    assert f"`{config.base}`" in card and "its first layer" in card and "LoRA" in card
    assert "| `a` | -1 to 1 | 0.25 |" in card
    assert "--value-model a=ORG/NAME --weights a=1" in card and "MavisDecoder.load(" in card
    fingerprint = value_model_fingerprint(value_folder)
    copy = shutil.copytree(value_folder, tmp_path / "copy")
    (copy / CARD_NAME).write_text("---\nlibrary_name: mavis\n---\nrewritten\n")
    assert value_model_fingerprint(copy) == fingerprint
    (copy / CARD_NAME).unlink()
    assert value_model_fingerprint(copy) == fingerprint


def test_the_card_names_a_hub_backbone_and_what_is_known_of_the_training():
    packaged = ValueModelConfig(base="smollm2-135m-instruct", objectives=["relevant", "harmless"],
                                num_layers=12)
    card = model_card(packaged)
    assert front_matter(card)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "--weights relevant=1,harmless=1" in card and "--model" not in card
    assert "## Training" not in card
    odd = ValueModelConfig(base="org/backbone", objectives=["python:/x/f.py:fn"], lora=None)
    card = model_card(odd, {"data_file": "trees.h5", "steps": 7, "complete": True,
                            "best": {"val_loss": 0.5, "step": 6}, "config": {"lr": 0.01}})
    meta = front_matter(card)
    assert meta["base_model"] == "org/backbone" and meta["objectives"] == ["python:/x/f.py:fn"]
    assert "--model org/backbone" in card and "no LoRA" in card
    assert "- data: `trees.h5`" in card and "- 7 steps, complete" in card
    assert '"val_loss": 0.5' in card and '"lr": 0.01' in card


def test_a_bundle_carries_a_card_with_the_run_report(value_folder, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(value_folder, run / "best")
    report = {"objectives": ["a"], "data_file": "trees.h5", "steps": 3, "complete": True,
              "data": {"prompts_train": 5}, "best": {"val_loss": 0.1}, "config": {"lr": 0.01}}
    (run / "report.json").write_text(json.dumps(report))
    bundle = bundle_run(run, "shared", into=tmp_path / "bundles")
    card = (bundle / CARD_NAME).read_text()
    assert front_matter(card)["objectives"] == ["a"]
    assert "- data: `trees.h5`" in card and '"prompts_train": 5' in card
    provenance = (bundle / "PROVENANCE.md").read_text()
    assert "Trained by `mavis train` on `trees.h5`" in provenance
    # the command it names makes the same bundle again: --into included
    assert f"`mavis bundle {run} shared --into {tmp_path / 'bundles'}`" in provenance
    assert value_model_fingerprint(bundle) == value_model_fingerprint(value_folder)
    # the run's report travels with it, so `mavis report heads BUNDLE` shows the validation
    # figures
    from mavis.recipes.heads import sibling_accuracy

    report["best"]["sibling_accuracy"] = {"a": 0.61}
    (run / "report.json").write_text(json.dumps(report))
    bundle = bundle_run(run, "shared", into=tmp_path / "bundles")
    assert sibling_accuracy(bundle) == {"a": 0.61}

    # A distilled run says so, with its teachers.
    (run / "report.json").write_text(json.dumps(report | {"teachers": {"a": "runs/t/best"}}))
    bundle = bundle_run(run, "student", into=tmp_path / "bundles")
    assert ("Distilled by `mavis distill` from the teachers `a`=runs/t/best on `trees.h5`"
            in (bundle / "PROVENANCE.md").read_text())


def test_train_init_from_takes_a_hub_id(hub_cache, tiny_lm, value_folder):
    publish(hub_cache, "org/name", value_folder)
    config = TrainConfig(base=str(tiny_lm), objectives=["a"], init_from="org/name")
    model = initial_model(config, ["a"])
    assert model.objectives == ["a"] and hasattr(model.backbone, "peft_config")
    assert model.head.weight.equal(ValueModel.load(value_folder).head.weight)


def test_distill_takes_a_hub_teacher_and_its_student_has_a_card(hub_cache, tiny_lm, tmp_path,
                                                                capsys):
    from mavis.models.loading import load_tokenizer

    teacher = ValueModel.build(str(tiny_lm), ["a_rate"], num_layers=1, lora=None)
    publish(hub_cache, "org/teacher", teacher.save(tmp_path / "teacher"))
    trees = write_trees(tmp_path / "trees.h5", load_tokenizer(str(tiny_lm)), 4, seed=1)
    out = tmp_path / "student"
    assert main(["distill", "--teacher", "a_rate=org/teacher", "--data", str(trees), "--out",
                 str(out), "--base", str(tiny_lm), "--num-layers", "1", "--epochs", "1",
                 "--batch-size", "64", "--lora-r", "4", "--lora-alpha", "8", "--warmup-steps",
                 "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["teachers"] == {"a_rate": "org/teacher"} and report["complete"]
    assert report["data_file"] == str(trees)
    card = (out / "best" / CARD_NAME).read_text()
    assert front_matter(card)["objectives"] == ["a_rate"]
    assert "Distilled (`mavis distill`) from the teachers `a_rate`=org/teacher" in card
    assert f"- data: `{trees}`" in card and f"- {report['steps']} steps, complete" in card
