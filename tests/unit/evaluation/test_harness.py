"""lft.evaluate harness.tasks=[...]: lm-evaluation-harness on a tiny random Llama, checked against a direct
computation of the same log-likelihoods, for a base model and a LoRA run merged in memory."""

import gzip
import json
import random

import pytest
import torch

from lft.config.errors import ConfigError
from lft.recipes.evaluate import evaluate
from lft.reports.results import read_rows
from lft.runs.folder import save_config, save_weights
from tests.conftest import seeded

pytest.importorskip("lm_eval")

TOPICS = ["World", "Sports", "Business", "Sci/Tech"]
PROMPT = "News: {text}\nTopic (World, Sports, Business or Sci/Tech):\n"  # the shipped lft_ag_news task's
WORDS = ["match", "goal", "market", "shares", "chip", "software", "vote", "border", "coach", "bank", "rocket", "talks"]


@pytest.fixture(scope="module")
def news_dir(tmp_path_factory):
    """A harness.data_dir holding ag_news/ shaped like ../shared/data/ag_news: 12 test rows, 8 train rows."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("data")
    (root / "ag_news").mkdir()

    def rows(n):
        return [{"label": TOPICS[i % 4], "title": "t", "text": " ".join(rng.choices(WORDS, k=rng.randint(3, 9)))}
                for i in range(n)]

    test = rows(12)
    (root / "ag_news" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    with gzip.open(root / "ag_news" / "train.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows(8))
    return root, test


@pytest.fixture(scope="module")
def word_llama(tmp_path_factory):
    """A tiny random Llama with a word-level tokenizer over the task's words (no special tokens added), so a
    prompt's tokens followed by a topic's tokens are exactly the tokens of the joined text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace()
    texts = [PROMPT.format(text=" ".join(WORDS)), *TOPICS]
    words = sorted({w for t in texts for w, _ in split.pre_tokenize_str(t)})
    vocab = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = split
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=1, eos_token_id=2, bos_token_id=2,
                         initializer_range=0.5)  # wide weights: the topic picked varies with the text
    path = tmp_path_factory.mktemp("word_llama")
    seeded(LlamaForCausalLM, config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def direct_accuracy(model, tokenizer, rows) -> tuple[float, float]:
    """acc and acc_norm by hand: each topic's summed log-probability after the prompt; acc_norm divides it by the
    topic's length in characters (lm_eval's definition)."""
    hits, norm_hits = 0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(PROMPT.format(text=row["text"]), add_special_tokens=False)["input_ids"]
            scores = []
            for topic in TOPICS:
                answer = tokenizer(topic, add_special_tokens=False)["input_ids"]
                logp = model(torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
                scores.append(sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(answer)))
            gold = TOPICS.index(row["label"])
            hits += max(range(4), key=lambda i: scores[i]) == gold
            norm_hits += max(range(4), key=lambda i: scores[i] / len(TOPICS[i])) == gold
    return hits / len(rows), norm_hits / len(rows)


def harness_cfg(make_cfg, news_dir, model, tmp_path, *extra):
    return make_cfg(f"model.name_or_path={model}", "harness.tasks=[lft_ag_news]", f"harness.data_dir={news_dir}",
                    f"out={tmp_path / 'results.json'}", *extra, config="evaluate", out="eval")


def test_harness_accuracy_equals_direct_computation(make_cfg, news_dir, word_llama, tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    root, test = news_dir
    rows = evaluate(harness_cfg(make_cfg, root, word_llama, tmp_path, "name=base"))
    acc, acc_norm = direct_accuracy(LlamaForCausalLM.from_pretrained(word_llama).eval(),
                                    AutoTokenizer.from_pretrained(word_llama), test)
    (row,) = rows
    assert (row["task"], row["rows"], row["acc"], row["acc_norm"]) == ("lft_ag_news", 12, acc, acc_norm)
    # The row lands in the out= table beside any other rows, and the run folder keeps lm_eval's settings too.
    assert read_rows(tmp_path / "results.json") == rows
    assert json.loads((tmp_path / "eval" / "harness.json").read_text())["rows"] == rows


def test_harness_scores_a_lora_run_merged_in_memory(make_cfg, news_dir, word_llama, tmp_path):
    """A run's adapter, merged into its base: the harness sees the fine-tuned weights, not the base's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    root, test = news_dir
    run = tmp_path / "run"
    save_config(make_cfg(f"model.name_or_path={word_llama}", "data=ag_news_instruct", f"data.path={root}/ag_news"), run)
    tokenizer = AutoTokenizer.from_pretrained(word_llama)
    torch.manual_seed(1)  # init_lora_weights=False: random, non-zero deltas, so the run differs from its base
    lora = get_peft_model(LlamaForCausalLM.from_pretrained(word_llama),
                          LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"],
                                     init_lora_weights=False))
    save_weights(lora, tokenizer, run)
    direct = direct_accuracy(lora.merge_and_unload().eval(), tokenizer, test)
    base = direct_accuracy(LlamaForCausalLM.from_pretrained(word_llama).eval(), tokenizer, test)

    (row,) = evaluate(harness_cfg(make_cfg, root, word_llama, tmp_path, f"run={run}"))
    assert (row["name"], row["weights"]) == ("run", str(run))
    assert (row["acc"], row["acc_norm"]) == direct
    assert direct != base  # the check above would not notice the adapter being dropped otherwise


def test_unknown_task_refused_before_the_model_loads(make_cfg, news_dir, tmp_path):
    cfg = harness_cfg(make_cfg, news_dir[0], tmp_path / "no_model_here", tmp_path, "harness.tasks=[lft_ag_nwes]")
    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['lft_ag_nwes'\].*harness_tasks.*lft_ag_news"):
        evaluate(cfg)


def test_absent_task_data_refused_naming_data_dir(make_cfg, tmp_path):
    cfg = harness_cfg(make_cfg, tmp_path / "empty", tmp_path / "no_model_here", tmp_path)
    with pytest.raises(ConfigError, match=r"lft_ag_news reads .*ag_news/test.jsonl.* harness.data_dir="):
        evaluate(cfg)


def test_bad_harness_values_refused(make_cfg, tmp_path):
    cfg = harness_cfg(make_cfg, tmp_path, tmp_path / "no_model_here", tmp_path, "harness.limit=0")
    with pytest.raises(ConfigError, match=r"harness.limit=0 must be"):
        evaluate(cfg)
