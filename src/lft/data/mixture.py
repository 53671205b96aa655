"""Several data configs trained as one: member configs, mixing probabilities and each epoch's row order.

A mixture's training split is its members' training rows side by side (member k owns rows offset_k ..
offset_k + size_k - 1). Each epoch draws `epoch_rows` rows (default: all members' training rows together)
member by member in proportion to the mixing probabilities, without replacement inside a pass over a member
(a member drawn more often than it has rows starts a fresh shuffled pass), then shuffles them together. The
draw depends on (seed, epoch) alone, so it is an `order` for the resumable sampler: exact resume, length
grouping and data parallelism work unchanged.
"""

import math
from collections.abc import Callable, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from lft.config.compose import group_option
from lft.config.errors import ConfigError
from lft.config.paths import CONFIG_DIR


def data_config_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml") if p.stem != "mixture")


def load_data_config(name: str) -> DictConfig:
    """conf/data/<name>.yaml with its defaults list applied (data configs extend one another: alpaca < dialogsum)."""
    if name == "mixture" or not (CONFIG_DIR / "data" / f"{name}.yaml").exists():
        raise ConfigError(f"{name!r} is not a data config (conf/data/<name>.yaml); choose from "
                          f"{', '.join(data_config_names())}.")
    return group_option("data", name)


def data_config(name: str, settings=None) -> DictConfig:
    """A named data config with some of its settings changed (null values keep the config's)."""
    own = OmegaConf.to_container(settings, resolve=True) if isinstance(settings, DictConfig) else dict(settings or {})
    return OmegaConf.merge(load_data_config(name), {k: v for k, v in own.items() if v is not None})


def member_configs(data_cfg) -> dict[str, DictConfig]:
    """Each member's data config: conf/data/<name>.yaml, then `data.members.<name>` settings (null = keep),
    then the mixture's batching settings (one loader serves every member)."""
    weights = data_cfg.get("mixture") or {}
    if not isinstance(weights, Mapping) or len(weights) < 1:
        raise ConfigError("data.mixture must name at least one data config with a weight, e.g. "
                          "data.mixture='{dialogsum: 0.6, alpaca: 0.4}'.")
    check_weights(weights)
    shared = {k: data_cfg[k] for k in ("batch_size", "eval_batch_size", "num_workers", "group_by_length", "packing",
                                       "cache") if data_cfg.get(k) is not None}
    out = {}
    for name in weights:
        cfg = OmegaConf.merge(data_config(str(name), (data_cfg.get("members") or {}).get(name)), shared)
        OmegaConf.resolve(cfg)
        out[str(name)] = cfg
    return out


def check_weights(weights: Mapping[str, float]) -> None:
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ConfigError(f"data.mixture.{name}={w!r}: weights must be positive numbers "
                              "(e.g. data.mixture='{dialogsum: 0.6, alpaca: 0.4}').")


def mixing_probabilities(weights: Mapping[str, float], sizes: Mapping[str, int], sampling: str,
                         temperature: float = 1.0) -> dict[str, float]:
    """weights: as given; proportional: by training rows; temperature: rows^(1/T) (T > 1 lifts small members).
    lft.config.validate has refused other samplings and temperatures <= 0."""
    check_weights(weights)
    if sampling == "weights":
        raw = {name: float(w) for name, w in weights.items()}
    elif sampling == "proportional":
        raw = {name: float(sizes[name]) for name in weights}
    else:
        raw = {name: float(sizes[name]) ** (1.0 / temperature) for name in weights}
    total = sum(raw.values())
    return {name: w / total for name, w in raw.items()}


def member_counts(probabilities: Mapping[str, float], epoch_rows: int) -> dict[str, int]:
    """Rows per member in an epoch: probabilities x epoch_rows, rounded by largest remainder (sums exactly)."""
    exact = {name: p * epoch_rows for name, p in probabilities.items()}
    counts = {name: int(x) for name, x in exact.items()}
    for name in sorted(exact, key=lambda n: exact[n] - counts[n], reverse=True)[: epoch_rows - sum(counts.values())]:
        counts[name] += 1
    return counts


def mixture_order(offsets: Mapping[str, int], sizes: Mapping[str, int], counts: Mapping[str, int]
                  ) -> Callable[[torch.Generator, int], list[int]]:
    """The sampler's `order`: each member's drawn rows (global indices), shuffled together."""

    def order(generator: torch.Generator, epoch: int) -> list[int]:
        rows = []
        for name, count in counts.items():
            passes = -(-count // sizes[name])
            local = torch.cat([torch.randperm(sizes[name], generator=generator) for _ in range(passes)])[:count]
            rows.append(local + offsets[name])
        rows = torch.cat(rows) if rows else torch.empty(0, dtype=torch.long)
        return rows[torch.randperm(len(rows), generator=generator)].tolist()

    return order
