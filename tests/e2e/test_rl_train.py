"""Online RL end to end (data.task=ppo / rloo): a tiny Llama over a 32-word vocabulary learns to say one word.

The rule reward is the share of the word `w5` in each response (lft.rewards.rules.TokenShare); at the start the
random policy says it about 1 time in 32. A small vocabulary keeps the reward findable by sampling, so a few
dozen updates on a CPU show learning well beyond noise."""

import json
import random

import pytest
import torch

from lft.training.fit import train

WORDS = [f"w{i}" for i in range(28)]
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


@pytest.fixture(scope="module")
def word_llama(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random Llama whose tokenizer knows 28 words and 4 specials (EOS ends a response)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        bos_token="[BOS]", eos_token="[EOS]")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("word_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def word_prompts(tmp_path_factory) -> str:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("word_prompts")
    for split, n in (("train", 64), ("validation", 32), ("test", 16)):
        rows = [{"text": " ".join(rng.choices(WORDS, k=rng.randint(2, 5)))} for _ in range(n)]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rl_cfg(make_cfg, word_llama, word_prompts, task: str, *extra: str):
    target = WORDS.index("w5") + len(SPECIALS)
    return make_cfg(f"model.name_or_path={word_llama}", "model.dtype=null", "model.gradient_checkpointing=false",
                    f"data.path={word_prompts}", f"data.task={task}", "data.max_length=16", "data.batch_size=8",
                    "data.eval_batch_size=32", "data.monitor.metric=val/reward", "data.monitor.mode=max",
                    f"+reward.fn={{_target_:lft.rewards.rules.TokenShare,token_id:{target}}}",
                    "rl.max_new_tokens=6", "rl.samples_per_prompt=4", "rl.mini_batch_size=16", "logger=csv",
                    "scheduler=constant", "test=false", *extra)


@pytest.mark.parametrize("task", ["ppo", "rloo"])
def test_online_rl_smoke_writes_a_run(make_cfg, word_llama, word_prompts, task):
    cfg = _rl_cfg(make_cfg, word_llama, word_prompts, task, "strategy=lora",
                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 8  # 2 batches of 8 prompts x 4 samples: 2 epochs x 2 minibatches each
    for name in ("val/reward", "val/kl", "val/response_length", "val/clip_fraction"):
        assert name in metrics, name
    assert 0 < metrics["val/response_length"] <= 6
    assert metrics["val/kl"] != 0  # the policy moved away from its reference
