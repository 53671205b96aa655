"""Which _target_s a run folder's config may name when resumed: the shipped configs', an allowlist, trust_targets."""

from pathlib import Path

import pytest

from lft.config.errors import ConfigError
from lft.runs.resume import resume_config


def fake_run(make_cfg, tiny_bert, **nodes) -> Path:
    """A run folder as resume= finds it (config.yaml, checkpoints/last.ckpt), its config given extra nodes."""
    from omegaconf import OmegaConf, open_dict

    cfg = make_cfg(f"model.name_or_path={tiny_bert}")
    with open_dict(cfg):
        for key, node in nodes.items():
            OmegaConf.update(cfg, key, node, force_add=True)
    run = Path(cfg.paths.output_dir)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    OmegaConf.save(cfg, run / "config.yaml", resolve=True)
    return run


def test_every_target_the_shipped_configs_name_may_be_resumed(make_cfg):
    from omegaconf import OmegaConf

    from lft.config.paths import CONFIG_DIR
    from lft.runs.targets import allowed, check_run_targets, targets

    shipped = {t for f in CONFIG_DIR.rglob("*.yaml") for t in targets(OmegaConf.load(f)).values()}
    assert len(shipped) >= 15 and "torch.optim.AdamW" in shipped and "lft.training.engines.fsdp" in shipped
    assert [t for t in shipped if not allowed(t)] == []
    check_run_targets(make_cfg("logger=csv"), "resume=run")  # a composed config, interpolations resolved


@pytest.mark.parametrize("node", [
    {"callbacks.browse": {"_target_": "webbrowser.open", "url": "https://example.com"}},
    {"forgetting": {"_target_": "lft.runs.resume.os.system", "_args_": ["touch x"]}},  # os, reached through lft
    {"trainer.plugins": [{"_target_": "lightning.fabric.utilities.cloud_io._atomic_save"}]},  # private helper
    {"logger.save": {"_target_": "lft.runs.folder.save_metrics"}},  # lft, but a function no config names
], ids=["webbrowser", "os-through-lft", "private", "lft-function"])
def test_resume_refuses_targets_outside_the_allowlist(make_cfg, tiny_bert, node):
    (key, value), = node.items()
    run = fake_run(make_cfg, tiny_bert, **node)
    target = value[0]["_target_"] if isinstance(value, list) else value["_target_"]
    with pytest.raises(ConfigError, match=rf"resume={run}: {key}(\.0)?\._target_={target} is not a target"):
        resume_config(str(run), [])


def test_trust_targets_accepts_a_target_by_name_but_not_from_the_folder(make_cfg, tiny_bert, tmp_path):
    handler = {"_target_": "logging.FileHandler", "filename": str(tmp_path / "log.txt")}
    run = fake_run(make_cfg, tiny_bert, **{"callbacks.log_file": handler, "trust_targets": ["logging.FileHandler"]})
    with pytest.raises(ConfigError, match="trust_targets=\\[logging.FileHandler\\]"):
        resume_config(str(run), [])  # the folder vouching for itself counts for nothing
    cfg = resume_config(str(run), ["trust_targets=[logging.FileHandler]"], trusted=["logging.FileHandler"])
    assert cfg.callbacks.log_file._target_ == "logging.FileHandler"
