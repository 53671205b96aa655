"""`python -m lft.export run=<run dir> out=<dir> [merge=true] [format=hf|gguf] [quantization=f16|q8_0|f32]
[push_to_hub=<repo id>]`: a run's weights as a plain folder, with a model card (README.md).

The export itself is lft/recipes/export.py's export() (re-exported here); this module parses the key=value
arguments and turns a refusal into one message and exit code 2.
"""

import logging
import sys

from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.config.schema import entry_defaults
from lft.config.validate import validate
from lft.recipes.export import export

__all__ = ["export", "main", "parse"]
log = logging.getLogger("lft")
DEFAULTS = entry_defaults("export")


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
