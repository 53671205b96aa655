"""Units of the generative tasks: loss masking, templates, generation metrics on known strings, bad input."""

import pytest
import torch
from omegaconf import OmegaConf

from lft.config.errors import ConfigError
from lft.data.labels import IGNORE
from lft.data.templates import TEMPLATES, PromptBuilder, Template, get_template
from lft.evaluation.metrics import Perplexity, Rouge, generation_metrics
from lft.models.loading import load_tokenizer
from lft.tasks import build_task


def _encode(make_cfg, model_path, pairs_data, *extra):
    cfg = make_cfg("data=dialogsum", f"data.path={pairs_data}", f"model.name_or_path={model_path}",
                   "data.max_source_length=64", "data.max_target_length=24", *extra)
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    return task, tokenizer, task.encode(tokenizer, cfg.seed).datamodule


def test_only_response_tokens_carry_loss(make_cfg, tiny_gpt2, pairs_data):
    task, tokenizer, dm = _encode(make_cfg, tiny_gpt2, pairs_data)
    row = dm.splits["train"][0]
    n = row["prompt_length"]
    assert row["labels"][:n] == [IGNORE] * n  # the whole prompt is masked
    response = row["labels"][n:]
    assert response == row["input_ids"][n:] and response[-1] == tokenizer.eos_token_id  # response + EOS learned
    prompt = tokenizer.decode(row["input_ids"][:n])  # (the MiniLM tokenizer is uncased)
    assert "summarize the following conversation" in prompt and prompt.endswith("summary :")
    text = tokenizer.decode(response, skip_special_tokens=True)
    assert "will bring" in text and "summarize" not in text


def test_masked_prompt_tokens_do_not_change_the_loss(make_cfg, tiny_gpt2, pairs_data):
    """Changing prompt tokens changes the logits but the loss only through the response positions."""
    from transformers import AutoModelForCausalLM

    task, tokenizer, dm = _encode(make_cfg, tiny_gpt2, pairs_data)
    batch = dm.collate_fn([dm.splits["train"][i] for i in range(2)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    shift = inputs["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shift.reshape(-1),
                                               ignore_index=IGNORE)
    torch.testing.assert_close(task.loss(model, batch), manual)
    counted = int((shift != IGNORE).sum())
    responses = sum(len(dm.splits["train"][i]["labels"]) - dm.splits["train"][i]["prompt_length"] for i in range(2))
    assert counted == responses


def test_train_on_inputs_keeps_prompt_labels(make_cfg, tiny_gpt2, pairs_data):
    _, _, dm = _encode(make_cfg, tiny_gpt2, pairs_data, "data.train_on_inputs=true")
    row = dm.splits["train"][0]
    assert row["labels"] == row["input_ids"]


def test_seq2seq_labels_pad_with_ignore_index(make_cfg, tiny_t5, pairs_data):
    task, tokenizer, dm = _encode(make_cfg, tiny_t5, pairs_data)
    assert task.name == "seq2seq"
    batch = dm.collate_fn([dm.splits["train"][i] for i in range(4)])
    lengths = [len(dm.splits["train"][i]["labels"]) for i in range(4)]
    for row, n in enumerate(lengths):
        assert (batch["labels"][row, n:] == IGNORE).all() and (batch["labels"][row, :n] != IGNORE).all()


def test_test_split_keeps_all_references(make_cfg, tiny_t5, pairs_data):
    _, _, dm = _encode(make_cfg, tiny_t5, pairs_data)
    refs = dm.splits["test"][0]["references"]
    assert len(refs) == 3 and refs[1].startswith(refs[1].split()[0])


def test_prompt_is_shortened_to_the_source_limit(make_cfg, tiny_gpt2, pairs_data):
    tokenizer = load_tokenizer(OmegaConf.create({"name_or_path": tiny_gpt2}))
    builder = PromptBuilder(get_template("Summarize:\n{dialogue}\nSummary:", None), tokenizer, 20)
    text, ids = builder.build({"dialogue": "word " * 100})
    assert len(ids) <= 20 and text.endswith("Summary:")  # the template's tail survives


@pytest.mark.parametrize("chat", [False, True])
def test_batched_prompt_ids_equal_row_by_row(tiny_gpt2, chat):
    """build_ids tokenizes many rows in one call; rows over the budget still take build()'s shortening."""
    tokenizer = load_tokenizer(OmegaConf.create({"name_or_path": tiny_gpt2}))
    if chat:
        tokenizer.chat_template = "{% for m in messages %}[CLS] {{ m['content'] }} [SEP]{% endfor %}"
    builder = PromptBuilder(get_template("Summarize:\n{dialogue}\nSummary:", None), tokenizer, 20, chat=chat,
                            decoder=True)
    rows = [{"dialogue": "word " * n} for n in (1, 3, 40, 0, 100)]
    batched = builder.build_ids(rows)
    assert batched == [builder.build(row)[1] for row in rows]
    assert len(builder.ids(builder.text(rows[-1]))) > 20 >= max(map(len, batched))  # the long rows were shortened


def test_alpaca_template_without_input():
    alpaca = TEMPLATES["alpaca"]
    assert "### Input" not in alpaca.render({"instruction": "Name a colour.", "input": ""})
    assert "### Input:\nred" in alpaca.render({"instruction": "Translate.", "input": "red"})
    assert Template("{a} and {b}").columns() == ["a", "b"]


# --- generation metrics on known strings -------------------------------------------------------------
def test_rouge_on_known_strings():
    metrics = generation_metrics()
    preds, refs = ["the cat sat on the mat"], [["the cat sat on the mat"]]
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"):
        metrics[key].update(preds, refs)
        assert metrics[key].compute().item() == pytest.approx(1.0)
    rouge1 = Rouge("rouge1")
    rouge1.update(["the cat"], [["the cat sat on the mat"]])  # P=1, R=2/6 -> F=0.5
    assert rouge1.compute().item() == pytest.approx(0.5)
    rouge2 = Rouge("rouge2")
    rouge2.update(["a b c"], [["x y z"]])
    assert rouge2.compute().item() == 0.0


def test_rouge_lsum_reads_sentences():
    """Summary-level LCS: each reference sentence's best match over the whole prediction, so sentence order no
    longer breaks the subsequence (ROUGE-L) but words stay in order within a sentence."""
    pred, ref = "Bob brings the cake. Amy pays the bill.", "Amy pays the bill. Bob brings the cake."
    lsum, rouge_l = Rouge("rougeLsum"), Rouge("rougeL")
    lsum.update([pred], [[ref]])
    rouge_l.update([pred], [[ref]])
    assert lsum.compute().item() == pytest.approx(1.0)
    assert rouge_l.compute().item() == pytest.approx(0.5)
    one = Rouge("rougeLsum")
    one.update(["the cat sat"], [["the cat sat on the mat"]])  # one sentence each: ROUGE-L's value
    assert one.compute().item() == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_rouge_takes_the_best_reference():
    rouge = Rouge("rouge1")
    rouge.update(["bob brings cake"], [["amy asks for tickets", "bob brings cake"]])
    assert rouge.compute().item() == pytest.approx(1.0)


def test_bleu_is_corpus_level_and_partial():
    bleu = generation_metrics()["bleu"]
    bleu.update(["the cat is on the mat today"], [["the cat is on the mat"]])
    # n-gram precisions 6/7, 5/6, 4/5, 3/4 (product 3/7); 7 words against 6: no brevity penalty
    assert bleu.compute().item() == pytest.approx((3 / 7) ** 0.25)


def test_perplexity_is_exp_of_token_mean_loss():
    ppl = Perplexity()
    ppl.update(torch.tensor(1.0), 10)
    ppl.update(torch.tensor(3.0), 30)  # mean nll = (10 + 90) / 40 = 2.5
    assert ppl.compute().item() == pytest.approx(torch.exp(torch.tensor(2.5)).item(), rel=1e-5)


# --- bad input: clear messages before training ------------------------------------------------------
def test_template_with_missing_column(make_cfg, tiny_t5, pairs_data):
    with pytest.raises(ConfigError, match=r"data.template references column 'transcript'"):
        _encode(make_cfg, tiny_t5, pairs_data, "data.template='Summarize: {transcript}'")


def test_target_longer_than_limit(make_cfg, tiny_t5, pairs_data):
    with pytest.raises(ConfigError, match=r"data.max_target_length=3: .* longer; raise data.max_target_length"):
        _encode(make_cfg, tiny_t5, pairs_data, "data.max_target_length=3", "data.long_targets=error")


def test_long_targets_drop_and_truncate(make_cfg, tiny_t5, pairs_data):
    _, _, dm = _encode(make_cfg, tiny_t5, pairs_data, "data.max_target_length=3", "data.long_targets=truncate")
    assert max(len(r) for r in dm.splits["train"]["labels"]) == 3
    with pytest.raises(ConfigError, match="no train row is left"):
        _encode(make_cfg, tiny_t5, pairs_data, "data.max_target_length=3", "data.long_targets=drop")


def test_seq2seq_data_on_decoder_needs_a_template(make_cfg, tiny_gpt2, pairs_data):
    with pytest.raises(ConfigError, match=r"data.task=seq2seq on the decoder-only model .* set data.template"):
        _encode(make_cfg, tiny_gpt2, pairs_data, "data.template=null")


def test_raw_text_on_encoder_decoder_is_refused(make_cfg, tiny_t5):
    cfg = make_cfg("data=english_quotes", "data.path=unused", f"model.name_or_path={tiny_t5}")
    with pytest.raises(ConfigError, match="data.task=causal_lm .* needs a decoder-only model"):
        build_task(cfg.data, cfg.model)


def test_chat_template_required_but_missing(make_cfg, tiny_gpt2, pairs_data):
    with pytest.raises(ConfigError, match=r"data.chat_template=true but the tokenizer .* has no chat template"):
        _encode(make_cfg, tiny_gpt2, pairs_data, "data.chat_template=true")


def test_template_naming_no_column():
    with pytest.raises(ConfigError, match="names no column"):
        get_template("Summarize this", None)


@pytest.mark.parametrize("override", ["data=dialogsum", "data=samsum", "data=alpaca", "data=dolly",
                                      "data=english_quotes", "data=text", "model=flan_t5_base", "model=gpt2",
                                      "model=llama", "model=opt_6_7b", "experiment=flan_t5_dialogsum_lora"])
def test_new_config_files_compose(make_cfg, override):
    cfg = make_cfg(override, fast=False)
    assert cfg.data.task in ("classification", "seq2seq", "causal_lm") and cfg.model.name_or_path
    if cfg.data.task == "seq2seq":
        assert get_template(cfg.data.template, cfg.data.source_column).columns()
        assert cfg.monitor.metric == "val/rouge1"
    if override.startswith("experiment"):
        assert cfg.strategy.r == 32 and list(cfg.strategy.target_modules) == ["q", "v"]
