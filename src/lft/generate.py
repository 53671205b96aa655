"""`python -m lft.generate run=<run dir> prompt="..."`: answer prompts with a trained (or base) model.

Arguments are key=value (free text needs no Hydra quoting):
  run=<dir>            a run folder of lft.train (base model + adapter/, or model/)
  model=<name>         or a base model: a conf/model name (smollm2_135m) or a Hub id/folder; data=<name> picks the template
  prompt=<text>        one prompt; or prompts=<file>: one prompt per line, or .jsonl rows with the template's columns
  format=template      template: the text fills the run's data template (+ chat template), as in training;
                       chat: only the chat template; raw: the text as it is
  max_new_tokens=, num_beams=, do_sample=, temperature=, top_p=   override data.generate
"""

import logging
import sys

from lft.config.errors import ConfigError
from lft.recipes.generate import generate

log = logging.getLogger("lft")
KEYS = ("run", "model", "data", "prompt", "prompts", "format", "max_new_tokens", "num_beams", "do_sample",
        "temperature", "top_p")
FORMATS = ("template", "chat", "raw")


def parse_args(argv: list[str]) -> dict:
    args = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise ConfigError(f"lft.generate: {arg!r} is not key=value with a key among {', '.join(KEYS)}.")
        args[key] = value
    if not args.get("run") and not args.get("model"):
        raise ConfigError("lft.generate: give run=<run dir> (a trained model) or model=<name> (a base model).")
    if bool(args.get("prompt")) == bool(args.get("prompts")):
        raise ConfigError("lft.generate: give exactly one of prompt=<text> or prompts=<file>.")
    if args.setdefault("format", "template") not in FORMATS:
        raise ConfigError(f"lft.generate: format={args['format']!r}; use one of {', '.join(FORMATS)}.")
    return args


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        for answer in generate(args):
            print(answer)
            print("---")
    except ConfigError as err:
        log.error("%s", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
