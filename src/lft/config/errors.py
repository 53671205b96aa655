"""One exception type for mistakes a user can fix; train() reports it without a traceback."""


class ConfigError(ValueError):
    """Bad input (config, data, model): the message names what is wrong and how to fix it."""
