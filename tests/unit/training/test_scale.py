"""Scaling out on Lightning's engines: FSDP wraps each block; FSDP/DeepSpeed configs compose or refuse (DDP
against one process, and sharded runs on GPUs: tests/e2e/test_scale.py)."""

import importlib.util

import pytest
import torch
from hydra.utils import instantiate

from lft.config.errors import ConfigError
from lft.config.validate import check_config
from lft.training.engines import TransformerBlocks

CUDA = torch.cuda.is_available()


def test_fsdp_wraps_each_transformer_block(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    policy = TransformerBlocks()
    assert policy(model, recurse=True, nonwrapped_numel=0)
    wrapped = [name for name, m in model.named_modules() if policy(m, recurse=False, nonwrapped_numel=0)]
    assert wrapped == ["model.layers.0", "model.layers.1"]


@pytest.mark.parametrize("trainer", ["fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_sharding_configs_compose_and_refuse_what_cannot_run(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}", "strategy=lora")
    cfg.trainer.accelerator = "gpu"  # make_cfg pins tests to the CPU
    if trainer.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match=r"DeepSpeed, which is not installed: pip install -e '\.\[deepspeed\]'"):
            check_config(cfg)
    elif not CUDA:
        with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
            check_config(cfg)
    else:
        check_config(cfg)
        assert type(instantiate(cfg.trainer.strategy)).__name__ in ("FSDPStrategy", "DeepSpeedStrategy")


def test_kbit_weights_under_a_sharding_engine_are_refused(make_cfg):
    cfg = make_cfg("trainer=fsdp", "strategy=qlora")
    with pytest.raises(ConfigError, match="cannot shard bitsandbytes k-bit weights"):
        check_config(cfg)


def test_multi_node_and_slurm_launcher_compose(make_cfg):
    cfg = make_cfg("trainer=ddp", "trainer.num_nodes=2")
    assert cfg.trainer.num_nodes == 2
    from hydra import compose, initialize_config_dir

    from lft.config.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        full = compose(config_name="train", overrides=["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    assert "submitit" in full.hydra.launcher._target_
