"""Every token-length setting of a data config, checked against the model's positions before any data is encoded.

A model reads at most as many tokens as it has positions: BERT-style encoders and GPT-2 a learned table (512 for
MiniLM, 1,024 for GPT-2), rotary decoders the context they were trained for (`max_position_embeddings`). Past
it, a learned table fails mid-forward (`The size of tensor a (1504) must match ... (512)`) and a rotary model
reads positions it never saw. So each length setting is compared with the limit when the task is built, from the
model's config alone (no weights), and refused with the setting, the limit and the fix. T5's relative positions
and ALiBi have no table: no limit.

null means "as many as the model takes": it is replaced by the limit (on a decoder, what the other of prompt and
response leave), and the run's config.yaml records the number used. On a model without a limit, null leaves the
text untruncated, except where a number is needed (preference pairs' data.max_length).
"""

from lft.config.errors import ConfigError

# Their embeddings count positions from pad_token_id + 1 (fairseq's convention): 514 rows hold 512 tokens.
PADDING_OFFSET_MODELS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text",
                         "roberta-prelayernorm", "mpnet", "longformer")
NO_TABLE_MODELS = ("t5", "mt5", "umt5", "longt5", "bloom")  # relative positions (T5) or ALiBi (Bloom)


def position_limit(config) -> int | None:
    """The most tokens one sequence of the model may hold; None where positions are relative (T5)."""
    if config.model_type in NO_TABLE_MODELS:
        return None
    positions = getattr(config, "max_position_embeddings", None)  # GPT-2's n_positions answers to this name too
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    if config.model_type in PADDING_OFFSET_MODELS:
        positions -= (config.pad_token_id or 0) + 1
    return positions


def fit_lengths(data_cfg, model_config, model_name: str, prefix: str = "data") -> None:
    """Refuse length settings over the model's limit; replace nulls with what fits (in data_cfg itself).

    model_name: how messages name the model (model.name_or_path); prefix: how they name the data config
    (`data.members.alpaca` for a mixture's member).
    """
    limit = position_limit(model_config)
    fit = _Fit(data_cfg, prefix, limit, model_name)
    task = data_cfg.get("task")
    if task == "classification" or task == "reward":
        fit.at_most("max_length", limit)
    elif task in ("dpo", "chat"):
        fit.at_most("max_length", limit, needed=True)
    elif task == "causal_lm":
        fit.at_most("block_size", limit, default=128)
    elif task == "seq2seq" and getattr(model_config, "is_encoder_decoder", False):
        fit.at_most("max_source_length", limit)  # the encoder's positions and the decoder's are separate tables
        fit.at_most("max_target_length", limit)
        fit.generation(limit, prompt=0)
    elif task == "seq2seq":
        fit.prompt_and_response(limit)
        fit.generation(limit, prompt=data_cfg.get("max_source_length") or 0)


class _Fit:
    def __init__(self, cfg, prefix: str, limit: int | None, model: str):
        self.cfg, self.prefix, self.limit, self.model = cfg, prefix, limit, model

    def _positions(self) -> str:
        return f"the {self.limit} positions of {self.model!r} (the most tokens it reads at once)"

    def at_most(self, key: str, limit: int | None, needed: bool = False, default: int | None = None) -> None:
        value = self.cfg.get(key)
        if value is None and default is not None:
            value = default  # the task's own default for null; checked like a number the user set
        elif value is None:
            if limit is None and needed:
                raise ConfigError(f"{self.prefix}.{key}=null: the model {self.model!r} has no position limit to take "
                                  f"it from; set {self.prefix}.{key} (e.g. {self.prefix}.{key}=512).")
            if limit is not None:
                self.cfg[key] = limit
            return
        if limit is not None and value > limit:
            raise ConfigError(f"{self.prefix}.{key}={value} is over {self._positions()}; set {self.prefix}.{key}="
                              f"{limit} or less (or null, which takes the model's limit).")

    def prompt_and_response(self, limit: int | None) -> None:
        """A decoder reads prompt and response as one sequence: together they must fit."""
        source, target = self.cfg.get("max_source_length"), self.cfg.get("max_target_length")
        if limit is None:
            return
        keys = f"{self.prefix}.max_source_length and {self.prefix}.max_target_length"
        if source is None and target is None:
            raise ConfigError(f"{keys} are both null: on a decoder the prompt and the response share "
                              f"{self._positions()}; set at least one (a null one takes what the other leaves).")
        for key, value in (("max_source_length", source), ("max_target_length", target)):
            if value is not None and value >= limit:
                other = "response" if key == "max_source_length" else "prompt"
                raise ConfigError(f"{self.prefix}.{key}={value} leaves no room for the {other}: on a decoder the "
                                  f"prompt and the response share {self._positions()}; lower it below {limit}.")
        if source is None:
            self.cfg.max_source_length = limit - target
        elif target is None:
            self.cfg.max_target_length = limit - source
        elif source + target > limit:
            raise ConfigError(f"{self.prefix}.max_source_length={source} + {self.prefix}.max_target_length={target} "
                              f"= {source + target} tokens, over {self._positions()} (a decoder reads prompt and "
                              "response as one sequence); lower them to fit together.")

    def generation(self, limit: int | None, prompt: int) -> None:
        """Generated tokens follow the prompt (decoders) or fill the decoder's own positions."""
        gen = self.cfg.get("generate") or {}
        new = gen.get("max_new_tokens")
        if limit is None or not gen.get("val_samples") or not isinstance(new, int) or prompt + new <= limit:
            return
        after = f" after a prompt of up to {self.prefix}.max_source_length={prompt} tokens" if prompt else ""
        raise ConfigError(f"{self.prefix}.generate.max_new_tokens={new}{after} is over {self._positions()}; set "
                          f"{self.prefix}.generate.max_new_tokens={limit - prompt} or less"
                          + (", or lower the prompt's." if prompt else "."))
