"""`python -m lft.export run=<run dir> out=<dir> [merge=true] [force=false]`: a run's weights as a plain folder.

merge=true folds a LoRA/AdaLoRA/IA3 adapter into the base weights: `out` then loads with
`AutoModelFor*.from_pretrained(out)` alone (no lft, no peft). merge=false writes the adapter (+ base config) for
`PeftModel.from_pretrained`. Runs that trained the whole model (full, freeze, distill) export their model as is.
The tokenizer goes with it either way. `out` must be new or empty: nothing already there is overwritten.
"""

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf
from peft import PeftModel
from transformers import AutoConfig, AutoTokenizer

from lft.config.errors import ConfigError
from lft.config.schema import entry_defaults
from lft.config.validate import validate
from lft.runs.folder import load_run_model, save_base_config

log = logging.getLogger("lft")
DEFAULTS = entry_defaults("export")


def export(run: str, out: str, merge: bool = True, force: bool = False) -> Path:
    """Write the run's model (merged, or adapter only) and tokenizer to `out`; returns `out`."""
    run_dir, out_dir = Path(run), Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"out={out}: the folder exists and is not empty; pick a new folder (nothing is overwritten).")
    weights = run_dir / "model" if (run_dir / "model").is_dir() else run_dir / "adapter"
    if not weights.is_dir():
        raise ConfigError(f"run={run}: not a finished lft run folder (it has neither model/ nor adapter/).")
    quantized = hasattr(AutoConfig.from_pretrained(weights), "quantization_config")
    if merge and quantized and weights.name == "adapter":
        if not force:
            raise ConfigError(
                f"run={run}: the adapter was trained on a k-bit (bitsandbytes) base. Merging it into the full-precision "
                "weights changes the outputs (the adapter learned to correct the quantized ones). Export the adapter "
                "with merge=false, or pass force=true to merge anyway."
            )
        log.warning("Merging an adapter trained on a k-bit base into full-precision weights: outputs will differ "
                    "from the trained model's.")
    model = load_run_model(run_dir, merge=merge and weights.name == "adapter", dequantize=merge)
    model.save_pretrained(out_dir)
    if isinstance(model, PeftModel):  # merge=false: the base config goes beside the adapter
        save_base_config(model, out_dir)
    AutoTokenizer.from_pretrained(weights).save_pretrained(out_dir)
    log.info("Exported %s (%s) to %s", run_dir, "merged" if merge else "adapter only", out_dir.resolve())
    return out_dir


def parse(argv: list[str]) -> dict:
    """key=value arguments, as the other entry points take them; unknown keys are refused."""
    args = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(argv))
    validate(args, "export")
    return OmegaConf.to_container(args)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export(**parse(sys.argv[1:] if argv is None else argv))
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
