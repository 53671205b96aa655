"""`python -m lft.evaluate [run=<run dir>] model=... data=... [out=results.json] [name=...]`: score on the test split.

The same data flags score a base model, a run's LoRA adapter or a run's full fine-tune, so "original vs full
fine-tune vs PEFT" is three commands appending to one `out` file, printed as one table (see lft.report).
Generation settings come from `data.generate` (`test_samples`: rows generated, null = all).
`runs=[<run a>,<run b>,...]` scores each run and then their ensemble on the same rows (lft.evaluation.ensemble).
An online-RL run (`run=<ppo or rloo run>`) is scored on its own prompts, sampling settings and reward unless the
command line names others (config_for_run): mean reward with its 95% interval, KL to the base, response length.
`predictions=<an evaluation's folder>` scores its saved generations again, e.g. against one reference column
(lft.recipes.rescore).
"""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR
from lft.recipes.evaluate import config_for_run, evaluate, score

__all__ = ["config_for_run", "evaluate", "main", "score"]
log = logging.getLogger("lft")


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(config_for_run(cfg, list(HydraConfig.get().overrides.task)))
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
