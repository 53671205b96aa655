"""A run's trained weights as a plain folder that loads without lft (`python -m lft.export`, lft/export.py).

merge=True folds a LoRA/AdaLoRA/IA3 adapter into the base weights: `out` then loads with
`AutoModelFor*.from_pretrained(out)` alone (no lft, no peft). merge=False writes the adapter (+ base config) for
`PeftModel.from_pretrained`. Runs that trained the whole model (full, freeze, distill) export their model as is.
The tokenizer goes with it either way. `out` must be new or empty: nothing already there is overwritten.
"""

import logging
from pathlib import Path

from peft import PeftModel
from transformers import AutoConfig, AutoTokenizer

from lft.config.errors import ConfigError
from lft.runs.folder import load_run_model, save_base_config
from lft.runs.layout import ADAPTER, weights_folder

log = logging.getLogger("lft")


def export(run: str, out: str, merge: bool = True, force: bool = False) -> Path:
    """Write the run's model (merged, or adapter only) and tokenizer to `out`; returns `out`."""
    run_dir, out_dir = Path(run), Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"out={out}: the folder exists and is not empty; pick a new folder (nothing is overwritten).")
    weights = weights_folder(run_dir)
    if weights is None:
        raise ConfigError(f"run={run}: not a finished lft run folder (it has neither model/ nor adapter/).")
    adapter = weights.name == ADAPTER
    quantized = hasattr(AutoConfig.from_pretrained(weights), "quantization_config")
    if merge and quantized and adapter:
        if not force:
            raise ConfigError(
                f"run={run}: the adapter was trained on a k-bit (bitsandbytes) base. Merging it into the full-precision "
                "weights changes the outputs (the adapter learned to correct the quantized ones). Export the adapter "
                "with merge=false, or pass force=true to merge anyway."
            )
        log.warning("Merging an adapter trained on a k-bit base into full-precision weights: outputs will differ "
                    "from the trained model's.")
    model = load_run_model(run_dir, merge=merge and adapter, dequantize=merge)
    model.save_pretrained(out_dir)
    if isinstance(model, PeftModel):  # merge=false: the base config goes beside the adapter
        save_base_config(model, out_dir)
    AutoTokenizer.from_pretrained(weights).save_pretrained(out_dir)
    log.info("Exported %s (%s) to %s", run_dir, "merged" if merge else "adapter only", out_dir.resolve())
    return out_dir
