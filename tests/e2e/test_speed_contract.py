"""A run logs its speed paths and falls back to the stock path where its first batch differs."""

import logging

from transformers import FalconH1Config, FalconH1ForCausalLM

from lft.train import train
from tests.conftest import _save_tiny, _tiny_tokenizer
from tests.unit.speed.test_fidelity_matrix import DECODER, _one_thread  # noqa: F401 (_one_thread: autouse)
from tests.unit.speed.test_speed_contract import _allow


def test_a_run_logs_its_speed_paths_and_falls_back_where_its_first_batch_differs(
        make_cfg, pairs_data, tmp_path_factory, monkeypatch, caplog):
    """The whole chain through train(): the allowlists widened to a model whose loss lft's lean paths get wrong;
    the first batch's check turns them off, with one warning, and the run trains on the stock path."""
    tokenizer = _tiny_tokenizer()
    config = FalconH1Config(**{**DECODER, "vocab_size": tokenizer.vocab_size}, head_dim=8, mamba_d_ssm=32,
                            mamba_n_heads=4, mamba_d_head=8, mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=16,
                            lm_head_multiplier=4.0, eos_token_id=tokenizer.sep_token_id)
    path = _save_tiny(tmp_path_factory, "tiny_falcon_h1", FalconH1ForCausalLM, config)
    _allow(monkeypatch, "lean_loss", "FalconH1ForCausalLM")
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={path}", "precision=fp32",
                   "data.max_source_length=32", "data.max_target_length=16", "data.generate.val_samples=0",
                   "data.monitor.metric=val/loss", "data.monitor.mode=min", "test=false", "trainer.limit_train_batches=2")
    with caplog.at_level(logging.INFO, logger="lft"):
        metrics = train(cfg)
    assert "Speed paths on for FalconH1ForCausalLM (lft/speed/contract.py): lean_loss." in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Fidelity" in r.getMessage()]
    assert len(warnings) == 1 and "FalconH1ForCausalLM trains on the stock path" in warnings[0], warnings
    assert metrics["optimizer_steps"] == 2
