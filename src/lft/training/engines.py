"""Lightning's sharding engines (FSDP, DeepSpeed) from config: which modules to wrap, and what cannot shard.

conf/trainer/fsdp.yaml and deepspeed_zero{2,3}.yaml build the strategies; train() never branches on them.
"""

import importlib.util

from lightning.pytorch.strategies import FSDPStrategy

from lft.config.errors import ConfigError
from lft.models.blocks import block_names


class TransformerBlocks:
    """FSDP auto-wrap policy: wrap each transformer block, found from the Hugging Face model's own
    `_no_split_modules` (e.g. LlamaDecoderLayer, BertLayer), so one config serves every architecture."""

    def __init__(self, names: list[str] | None = None):
        self.names = set(names or [])

    def __call__(self, module, recurse: bool, nonwrapped_numel: int) -> bool:
        if recurse:  # called on parents first: learn the block names from the first HF model seen
            self.names = self.names or block_names(module)
            return True
        return type(module).__name__ in self.names


def fsdp(wrap_blocks: list[str] | None = None, **kwargs) -> FSDPStrategy:
    # use_orig_params: LoRA trains a few parameters inside frozen, flattened blocks.
    return FSDPStrategy(auto_wrap_policy=TransformerBlocks(wrap_blocks), use_orig_params=True, **kwargs)


def deepspeed(stage: int, **kwargs):
    from lightning.pytorch.strategies import DeepSpeedStrategy  # check_engine made sure DeepSpeed is there

    return DeepSpeedStrategy(stage=stage, **kwargs)


def check_engine(cfg) -> None:
    """Before anything loads: DeepSpeed installed, and no k-bit weights under an engine that shards them."""
    strategy = cfg.trainer.get("strategy")
    target = str(strategy.get("_target_", "")) if hasattr(strategy, "get") else str(strategy)
    engine = next((name for name in ("fsdp", "deepspeed") if name in target.lower()), None)
    if engine == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("trainer.strategy is DeepSpeed, which is not installed: pip install -e '.[deepspeed]' "
                          "(it needs a CUDA toolkit), or use trainer=fsdp / trainer=ddp.")
    if engine and cfg.model.get("quantization"):
        raise ConfigError(f"model.quantization (bits={cfg.model.quantization.get('bits')}) with {engine}: the "
                          "engine cannot shard bitsandbytes k-bit weights; use trainer=ddp with QLoRA, or "
                          "strategy=lora without quantization under a sharding engine.")
