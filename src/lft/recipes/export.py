"""A run's trained weights as a plain folder that loads without lft (`python -m lft.export`, lft/export.py).

merge=True folds a LoRA/AdaLoRA/IA3 adapter into the base weights: `out` then loads with
`AutoModelFor*.from_pretrained(out)` alone (no lft, no peft). merge=False writes the adapter (+ base config) for
`PeftModel.from_pretrained`. Runs that trained the whole model (full, freeze, distill) export their model as is.
A k-bit (QLoRA, 8-bit) run's adapter merges into its base dequantized from the k-bit weights it trained against.
The tokenizer and a model card (README.md) go with it either way. `out` must be new or empty: nothing already
there is overwritten. format=gguf adds `<out name>-<quantization>.gguf` (Llama-family decoders:
lft/exporting/gguf.py) for llama.cpp and Ollama; push_to_hub uploads the folder (lft/exporting/hub.py), checking
the Hub is reachable before any work.
"""

import logging
from pathlib import Path

from peft import PeftModel
from transformers import AutoConfig, AutoTokenizer

from lft.config.errors import ConfigError
from lft.exporting import card, gguf, hub
from lft.runs.folder import load_run_model, save_base_config
from lft.runs.layout import ADAPTER, weights_folder

log = logging.getLogger("lft")


def export(run: str, out: str, merge: bool = True, format: str = "hf", quantization: str = "f16",
           push_to_hub: str | None = None) -> Path:
    """Write the run's model (merged, or adapter only), tokenizer and card to `out`; returns `out`."""
    run_dir, out_dir = Path(run), Path(out)
    if push_to_hub:
        hub.check_reachable(push_to_hub)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"out={out}: the folder exists and is not empty; pick a new folder (nothing is overwritten).")
    weights = weights_folder(run_dir)
    if weights is None:
        raise ConfigError(f"run={run}: not a finished lft run folder (it has neither model/ nor adapter/).")
    adapter = weights.name == ADAPTER
    pre_tokenizer = gguf.check_run(weights, merge, quantization) if format == "gguf" else None
    quantized = hasattr(AutoConfig.from_pretrained(weights), "quantization_config")
    if merge and quantized and adapter:
        log.info("k-bit run: the base is loaded quantized as trained, dequantized to float, then the adapter merged "
                 "into it: the merged model computes what the trained one did, in full precision.")
    model = load_run_model(run_dir, merge=merge and adapter, dequantize=merge)
    model.save_pretrained(out_dir)
    if isinstance(model, PeftModel):  # merge=false: the base config goes beside the adapter
        save_base_config(model, out_dir)
    AutoTokenizer.from_pretrained(weights).save_pretrained(out_dir)
    gguf_file = None
    if format == "gguf":
        gguf_file = gguf.write_gguf(model, out_dir, out_dir / f"{out_dir.name}-{quantization}.gguf", quantization,
                                    pre_tokenizer, license=card.base_license(run_dir))
    card.write_card(run_dir, out_dir, merged=not isinstance(model, PeftModel), gguf_file=gguf_file)
    log.info("Exported %s (%s) to %s", run_dir, "merged" if merge else "adapter only", out_dir.resolve())
    if push_to_hub:
        hub.push(out_dir, push_to_hub)
    return out_dir
