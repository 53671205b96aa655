"""DPO's reference: the frozen starting point the policy's log-probabilities are compared with.

The same model with its peft adapter switched off (no second copy), or else a frozen copy of the base loaded on
first use, which lives here (never in the LightningModule, so never checkpointed nor counted trainable). Its
summed answer log-probabilities are computed without gradients and, with `data.preference.cache_reference`, once
per pair (kept in memory, and in `reference_cache_file` across runs). The task holds one Reference for its life;
what it loads lazily (the frozen copy, the cache) changes here, never the task's attributes.
"""

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import PeftModel
from torch import nn
from transformers import AutoModelForCausalLM

from lft.losses.preference import sequence_logps
from lft.models.loading import load_pretrained

log = logging.getLogger(__name__)


class Reference:
    def __init__(self, model_cfg, cache: bool = True, cache_file: Path | None = None,
                 policy_is_reference: bool = False):
        """model_cfg: the reference's model config (reference_config); policy_is_reference: the policy is the
        starting point itself (lft.evaluate scoring a base model), so its own log-probabilities are the reference's."""
        self.model_cfg = model_cfg
        self.use_cache, self.cache_file, self.policy_is_reference = cache, cache_file, policy_is_reference
        self.model: nn.Module | None = None  # the frozen copy, for policies without an adapter
        self.cache: dict[int, tuple[float, float]] | None = None  # pair_key -> summed log-probs, read on first use

    @torch.no_grad()
    def logps(self, model, pair_keys: torch.Tensor | None, inputs, labels, policy_logps) -> torch.Tensor:
        """Summed answer log-probabilities under the reference, [chosen..., rejected...]: cached, or one forward.
        pair_keys None: nothing is cached (KTO: sequences whose pairing changes with the batch)."""
        keys = pair_keys.tolist() if pair_keys is not None else []
        n = len(keys)
        cache = self._cache() if pair_keys is not None else None
        if cache is not None and all(k in cache for k in keys):
            values = torch.tensor([cache[k] for k in keys], device=labels.device, dtype=policy_logps.dtype)
            return torch.cat([values[:, 0], values[:, 1]])
        if self.policy_is_reference:
            logps = policy_logps
        else:
            with self.frozen(model) as reference:
                logps = sequence_logps(reference(**inputs).logits, labels)[0]
        if cache is not None:
            cache.update(zip(keys, zip(logps[:n].tolist(), logps[n:].tolist(), strict=True), strict=True))
            self._save_cache()
        return logps

    def _cache(self) -> dict | None:
        if not self.use_cache:
            return None
        if self.cache is None:
            self.cache = {}
            if self.cache_file and self.cache_file.exists():
                saved = torch.load(self.cache_file, weights_only=True)  # plain data: nothing to run
                if saved.get("reference") == self.name():
                    self.cache = saved["logps"]
                    log.info("DPO reference log-probabilities of %d pairs read from %s.", len(saved["logps"]),
                             self.cache_file)
                else:
                    log.warning("%s holds another reference's log-probabilities (%s); recomputing.", self.cache_file,
                                saved.get("reference"))
        return self.cache

    def _save_cache(self) -> None:
        if self.cache_file:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"reference": self.name(), "logps": self.cache}, self.cache_file)

    def name(self) -> str:
        cfg = self.model_cfg
        return f"{cfg.name_or_path}:{cfg.get('gguf_file') or ''}" if cfg is not None else ""

    @contextmanager
    def frozen(self, model):
        """The frozen starting point, in eval mode (no dropout): adapter off, or the separate frozen copy."""
        if isinstance(model, PeftModel):
            training = model.training
            model.eval()
            try:
                with model.disable_adapter():
                    yield model
            finally:
                model.train(training)
            return
        if self.model is None:
            log.info("The reference: a frozen copy of %s (the policy has no adapter to switch off).",
                     self.model_cfg.name_or_path)
            self.model = self.build()
        device = next(model.parameters()).device
        if next(self.model.parameters()).device != device:  # Lightning moves the policy only
            self.model.to(device)
        yield self.model

    def build(self) -> nn.Module:
        reference = load_pretrained(self.model_cfg, AutoModelForCausalLM).eval()
        for param in reference.parameters():
            param.requires_grad_(False)
        return reference


def reference_config(model_cfg, override=None):
    """The DPO reference's model config: `override` (a folder or Hub id), else the base an lft run started from
    (when `model_cfg` points at a run's model/ folder, as lft.evaluate does for full fine-tunes), else model_cfg."""
    from lft.runs import layout
    from lft.runs.folder import load_run_config

    if override:
        return OmegaConf.merge(model_cfg, {"name_or_path": str(override), "gguf_file": None})
    folder = Path(str(model_cfg.name_or_path))
    if folder.name == layout.MODEL and (folder.parent / layout.CONFIG).exists():
        return load_run_config(folder.parent).model
    return model_cfg
