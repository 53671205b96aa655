"""Scaling out on Lightning's engines: DDP equals one process with the doubled batch; FSDP/DeepSpeed configs."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from lft.config.errors import ConfigError
from lft.config.validate import check_config
from lft.training.engines import TransformerBlocks

CUDA = torch.cuda.is_available()
# Dropout off: the two runs draw their masks on different processes, so only the data order can match.
RUN = ["trainer.max_epochs=1", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "model.dropout=0.0",
       "data.max_length=32", "optimizer.lr=1e-3",
       "precision=fp32"]  # bf16 matmuls round differently for 8 and 16 rows: compare in fp32


def run_cli(*overrides, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lft.train", *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_ddp_two_processes_equal_one_process_with_double_batch(tmp_path, tiny_bert):
    model = f"model.name_or_path={tiny_bert}"
    ddp = run_cli("trainer=ddp_cpu", "data.batch_size=8", model, *RUN, "hydra.run.dir=ddp", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = run_cli("trainer=cpu", "data.batch_size=16", model, *RUN, "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = (torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for r in ("ddp", "one"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"DDP weights differ from the single process by {worst}"
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("ddp", "one"))
    assert ma["optimizer_steps"] == mb["optimizer_steps"] == 6
    assert ma["val/loss"] == pytest.approx(mb["val/loss"], abs=1e-5)


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


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run on a lent GPU: see experiments/scale/README.md)")
@pytest.mark.parametrize("trainer", ["fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_sharded_lora_trains_on_gpus(tmp_path, tiny_llama, pairs_data, trainer):
    if trainer.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed (pip install -e '.[deepspeed]')")
    result = run_cli(f"trainer={trainer}", "trainer.devices=1", "strategy=lora", f"model.name_or_path={tiny_llama}",
                     "data=dialogsum", f"data.path={pairs_data}", "debug=limit", "trainer.enable_progress_bar=false",
                     "precision=bf16", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["optimizer_steps"] == 5
